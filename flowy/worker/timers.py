"""Durable timers: retry delays, timer dependencies, and the timeouts that watch attempts.

Timer messages wait on the timer queue, delayed until they are due (a queue
delays a message at most ``Queues.max_delay``, so a later timer is re-armed
when it comes back early).  When one is due, the keeper turns it into a fact
in the run's inbox: a fired timer, or a timed-out attempt unless the attempt
ended, started or heartbeated in time (:func:`flowy.core.protocol.check_timeout`).
A timer message is a wake-up, not a fact the engine trusts: the decider
takes a fired timer or a timeout only if the run's history has it due
(:mod:`flowy.core.admission`), and a timer for a run that is not open
writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..backends.base import TIMERS, Backend
from ..core.events import TimerFired
from ..core.protocol import attempt_id, check_timeout
from .inbox import notify, report, tell
from .messages import TimerMessage, notification, timer_outgoing

log = logging.getLogger("flowy.timers")


def arm(backend: Backend, timers: list[TimerMessage]) -> None:
    """Send timer messages, each delayed until it is due (or as long as the queue allows)."""
    if timers:
        queues, now = backend.queues, backend.clock.now()
        queues.send(TIMERS, [timer_outgoing(t, now, queues.max_delay) for t in timers])


class TimerKeeper:
    """Fires durable timers and enforces attempt timeouts from the timer queue."""

    def __init__(self, backend: Backend, run_is_open: Callable[[str], bool]) -> None:
        self.backend = backend
        self._run_is_open = run_is_open

    def handle(self, timer: TimerMessage) -> None:
        backend = self.backend
        now = backend.clock.now()
        if timer.fire_at > now:  # delays stop at max_delay: re-arm
            arm(backend, [timer])
            return
        if not self._run_is_open(timer.run):
            log.info("timer %r (%s) of run %r dropped: the run is not open",
                     timer.key, timer.kind, timer.run)
            return
        if timer.kind == "timer":
            notify(backend, [tell(backend, timer.run, TimerFired(timer.key, at=now))])
            return
        store, attempt = backend.store, attempt_id(timer.key, timer.token)
        check = check_timeout(timer.kind, timer.key, timer.token,
                              ended=store.outcome_of(timer.run, attempt),
                              beat=store.get_beat(timer.run, attempt), limit=timer.limit,
                              now=now)
        if check.recheck_at is not None:
            arm(backend, [timer.model_copy(update={"fire_at": check.recheck_at})])
        elif check.timed_out is not None:
            notify(backend, [report(backend, timer.run, check.timed_out)])
        elif check.news is not None:
            notify(backend, [notification(timer.run, check.news)])
