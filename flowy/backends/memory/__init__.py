"""The in-memory backend: a run store, SQS-like queues and a clock in one process.

``LocalWorkflow`` runs the engine's decider, timer keeper and activity
worker on it with a :class:`RealClock`; the deterministic simulation runs
them on a :class:`ManualClock` with seeded :class:`Faults`.  It keeps the
promises of :mod:`flowy.backends.base` the way DynamoDB and SQS do, so that
what passes here exercises the same protocol as AWS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..base import DEFAULT_MAX_RECEIVES, Backend
from ..clocks import ManualClock, MemoryClock, RealClock
from .faults import Faults
from .queues import DEDUP_WINDOW, MAX_DELAY, MemoryQueues, dead_letter_queue
from .store import MemoryStore

__all__ = ["DEDUP_WINDOW", "MAX_DELAY", "ManualClock", "MemoryBackend", "MemoryClock",
           "MemoryQueues", "MemoryStore", "Faults", "RealClock", "dead_letter_queue",
           "memory_backend"]


@dataclass
class MemoryBackend(Backend):
    """A :class:`~flowy.backends.base.Backend` whose parts are typed as what
    they are, so that tests reach ``queues.join``, ``queues.depth`` or
    ``queues.dead_letters`` without casts (``clock`` is only a MemoryClock:
    a test keeps its own ManualClock to advance)."""

    store: MemoryStore
    queues: MemoryQueues
    clock: MemoryClock
    faults: Faults | None = None


def _no_checkpoint(step: str) -> None:
    """Without faults a checkpoint is a no-op."""


def memory_backend(*, clock: MemoryClock | None = None, lease: float = 60.0,
                   max_receives: int = DEFAULT_MAX_RECEIVES, faults: Faults | None = None
                   ) -> MemoryBackend:
    """A fresh in-memory backend on ``clock`` (the real one by default)."""
    clock = RealClock() if clock is None else clock
    queues = MemoryQueues(clock, max_receives=max_receives, faults=faults)

    def join(timeout: float | None) -> bool:
        # Delayed messages are timers (a timeout check may be armed for minutes
        # after its run closed): they are neither waiting nor held.
        return queues.join(timeout, delayed=False)

    checkpoint: Callable[[str], None] = _no_checkpoint if faults is None else faults.checkpoint
    return MemoryBackend(name="memory", store=MemoryStore(clock), queues=queues, clock=clock,
                         lease=lease, remote=False,
                         checkpoint=checkpoint, join=join, close=queues.close, faults=faults)
