"""Fault injection for the deterministic simulation: what SQS and a crashing
process may do to the engine, drawn from one seeded generator.

Every draw is made only for a fault whose probability is above zero, so
turning one fault on does not change the draws (and so the run) of a seed
for the others, and every fault injected is logged, so that the log of a
failing seed says what happened to it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from typing import Protocol

from ...core.errors import ConfigurationError, SimulatedCrash


class Leases(Protocol):
    """Queues whose leases can be cut short (MemoryQueues)."""

    def expire_leases(self, queue: str | None = None) -> int: ...


class Faults:
    """Seeded faults for :class:`~flowy.backends.memory.queues.MemoryQueues`
    and the engine's checkpoints.

    Probabilities, per message sent: ``drop`` (the send is lost), ``duplicate``
    (the message is enqueued twice, as at-least-once delivery may), ``delay``
    (standard queues only: up to ``max_extra_delay`` more seconds); per
    message received from a standard queue: ``reorder`` (a random visible
    message comes instead of the oldest); per checkpoint:
    ``crash_probability``, and ``stall`` (the process stalls there past its
    leases: every message in flight becomes visible again, for another
    receiver).  They may be changed at any time.  ``drop_from`` names the
    queues whose sends may be dropped (None: every queue).
    """

    def __init__(self, seed: int = 0, *, drop: float = 0.0, duplicate: float = 0.0,
                 delay: float = 0.0, max_extra_delay: float = 30.0, reorder: float = 0.0,
                 crash_probability: float = 0.0, stall: float = 0.0,
                 drop_from: frozenset[str] | None = None) -> None:
        for name, p in (("drop", drop), ("duplicate", duplicate), ("delay", delay),
                        ("reorder", reorder), ("crash_probability", crash_probability),
                        ("stall", stall)):
            if not 0.0 <= p <= 1.0:
                raise ConfigurationError(f"{name} is a probability, between 0 and 1, not {p}")
        self.seed = seed
        self.drop, self.duplicate, self.delay, self.reorder = drop, duplicate, delay, reorder
        self.drop_from = drop_from
        self.max_extra_delay = max_extra_delay
        self.crash_probability = crash_probability
        self.stall = stall
        self.log: list[str] = []
        self.steps_seen: Counter[str] = Counter()
        self._random = random.Random(seed)
        self._armed: Counter[str] = Counter()
        # Checkpoints come from every engine thread; queues draw under their
        # own lock, and call in here while holding it (never the other way).
        self._lock = threading.Lock()
        self._queues: list[Leases] = []

    def attach(self, queues: Leases) -> None:
        """Called by MemoryQueues: the queues :meth:`expire_leases` acts on."""
        self._queues.append(queues)

    def drops(self, queue: str) -> bool:
        """Whether this send to ``queue`` is lost."""
        return (self.drop_from is None or queue in self.drop_from) and self.draw(self.drop)

    def draw(self, p: float) -> bool:
        """True with probability ``p``; no draw at all when ``p`` is 0."""
        if p <= 0.0:
            return False
        with self._lock:
            return self._random.random() < p

    def uniform(self, low: float, high: float) -> float:
        with self._lock:
            return self._random.uniform(low, high)

    def choose(self, count: int) -> int:
        """A random index below ``count``."""
        with self._lock:
            return self._random.randrange(count)

    def record(self, entry: str) -> None:
        with self._lock:
            self.log.append(entry)

    # -- leases ---------------------------------------------------------------

    def expire_leases(self, queue: str | None = None) -> int:
        """Make every in-flight message (of ``queue``, or of every queue)
        visible now, as if its holder stalled past its lease; how many."""
        expired = sum(q.expire_leases(queue) for q in self._queues)
        self.record(f"expire {queue or '*'} {expired}")
        return expired

    # -- crashes --------------------------------------------------------------

    def crash_at(self, step: str, times: int = 1) -> None:
        """Crash the next ``times`` times the engine reaches checkpoint ``step``."""
        with self._lock:
            self._armed[step] += times

    def checkpoint(self, step: str) -> None:
        """The engine reached ``step``: raise SimulatedCrash if it is armed,
        or if the seeded draw says so; or stall there, if that draw says so."""
        if self.draw(self.stall):
            self.record(f"stall {step}")
            self.expire_leases()
        with self._lock:
            self.steps_seen[step] += 1
            if self._armed[step] > 0:
                self._armed[step] -= 1
                self.log.append(f"crash {step}")
                raise SimulatedCrash(step)
            if self.crash_probability > 0.0 and self._random.random() < self.crash_probability:
                self.log.append(f"crash {step} (random)")
                raise SimulatedCrash(step)
