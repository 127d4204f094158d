"""``flowy chaos``: the engine's real processes on an emulator, SIGKILLed at random.

:mod:`.workflows` declares the workloads (served by the decider and worker
processes), :mod:`.checks` holds the pure checks of what the runs ended in,
:mod:`.fleet` keeps the processes alive while a seeded killer kills them,
and :mod:`.runner` puts these together.
"""
