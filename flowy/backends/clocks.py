"""Clocks for the engine: the real one, and a manual one that tests
and the deterministic simulation move by hand.

Everything in the backend that waits (a receive, ``join``, ``wait_closed``)
waits through its clock, never on the wall clock directly, so that under a
:class:`ManualClock` time passes only when the test says so: a lease ends, a
delayed message comes due, or a receive times out exactly at an ``advance``.
Waits take absolute deadlines of the clock's time, so that an ``advance``
between a caller's reading of the time and its wait is never lost.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from typing import Protocol

from ..core.errors import ConfigurationError


class MemoryClock(Protocol):
    """A :class:`~flowy.backends.base.Clock` that the backend can also wait on."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        """With ``condition`` held: wait until notified, or ``timeout`` seconds
        of this clock (None: no limit).  May return early, as any condition
        wait may: callers re-check what they wait for."""
        ...

    def wait_until(self, condition: threading.Condition, deadline: float) -> None:
        """:meth:`wait`, up to the clock's time ``deadline`` (math.inf: no limit)."""
        ...


class RealClock:
    """Wall-clock time: what ``LocalWorkflow`` runs on."""

    # time.time itself, not a method calling it: the engine reads the time
    # several times in every step of every run.
    now = staticmethod(time.time)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        condition.wait(None if timeout is None else max(0.0, timeout))

    def wait_until(self, condition: threading.Condition, deadline: float) -> None:
        condition.wait(None if deadline == math.inf else max(0.0, deadline - time.time()))


class _Waiter:
    __slots__ = ("deadline", "condition")

    def __init__(self, deadline: float, condition: threading.Condition) -> None:
        self.deadline = deadline
        self.condition = condition

    def wake(self) -> None:
        with self.condition:
            self.condition.notify_all()


class ManualClock:
    """Time that passes only by :meth:`advance` (or :meth:`advance_to`).

    Every thread blocked in :meth:`sleep` or :meth:`wait` is registered, so
    that ``advance`` can wake them all to look at the new time, and so that a
    test can see how many there are (:meth:`pending_sleepers`,
    :meth:`wait_for_sleepers`) instead of sleeping on the wall clock and
    hoping the other thread got there.
    """

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._registry = threading.Condition()  # guards _waiters; notified as it changes
        self._waiters: dict[int, _Waiter] = {}
        self._ids = itertools.count()

    def now(self) -> float:
        return self._now  # one float read is atomic: no lock needed

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` and wake every waiter to look at it."""
        if seconds < 0:
            raise ConfigurationError(f"time does not go backwards (advance by {seconds}): "
                                     "advance by a number of seconds >= 0")
        with self._registry:
            self._now += seconds
            waiters = list(self._waiters.values())
        # Wake outside the registry lock: a waker takes the waiter's own lock,
        # which the waiter holds while it registers (lock order waiter -> registry).
        for waiter in waiters:
            waiter.wake()

    def advance_to(self, t: float) -> None:
        """Move time on to ``t``; a time already past changes nothing."""
        self.advance(max(0.0, t - self._now))

    def sleep(self, seconds: float) -> None:
        """Block until another thread advances the clock ``seconds`` on."""
        if seconds <= 0:
            return
        deadline = self._now + seconds
        condition = threading.Condition()
        with condition:
            while self._now < deadline:
                self.wait_until(condition, deadline)

    def wait(self, condition: threading.Condition, timeout: float | None) -> None:
        if timeout is not None and timeout <= 0:
            return
        self.wait_until(condition, math.inf if timeout is None else self._now + timeout)

    def wait_until(self, condition: threading.Condition, deadline: float) -> None:
        # The caller holds ``condition``, and an advance notifies it only by
        # taking it, so a wake-up between registering and waiting is not lost.
        ident = self._register(deadline, condition)
        if ident is None:
            return
        try:
            condition.wait()
        finally:
            self._unregister(ident)

    def _register(self, deadline: float, condition: threading.Condition) -> int | None:
        """Register a waiter, or None if ``deadline`` has passed; atomic with
        ``advance``, so that time can't move between the check and the
        registration."""
        with self._registry:
            if self._now >= deadline:
                return None
            ident = next(self._ids)
            self._waiters[ident] = _Waiter(deadline, condition)
            self._registry.notify_all()
            return ident

    def _unregister(self, ident: int) -> None:
        with self._registry:
            del self._waiters[ident]
            self._registry.notify_all()

    # -- for tests and the simulation -----------------------------------------

    def pending_sleepers(self) -> int:
        """How many threads are blocked in sleep or a wait now."""
        with self._registry:
            return len(self._waiters)

    def wait_for_sleepers(self, count: int, timeout: float | None = 10.0) -> bool:
        """Block until at least ``count`` waiters are registered; False after
        ``timeout`` *wall-clock* seconds (a safety net, never a test's bound)."""
        with self._registry:
            return self._registry.wait_for(lambda: len(self._waiters) >= count, timeout)

    def next_deadline(self) -> float | None:
        """The earliest time a registered waiter waits for, if any waits for one:
        a simulation advances to it to run the next timed event."""
        with self._registry:
            finite = [w.deadline for w in self._waiters.values() if w.deadline != math.inf]
        return min(finite, default=None)
