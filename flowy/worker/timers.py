"""A timer thread: call functions at given monotonic times."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger("flowy.timers")


class TimerService:
    """One daemon thread that runs short callbacks when their time comes.

    Callbacks run on the timer thread and must not block; they usually hand
    a fact to a decider.  ``call_later`` is thread-safe.
    """

    def __init__(self, name: str = "flowy-timers") -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._condition:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay),
                                        next(self._sequence), callback))
            self._condition.notify()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            with self._condition:
                while not self._closed and (
                        not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._condition.wait(timeout)
                if self._closed:
                    return
                _, _, callback = heapq.heappop(self._heap)
            try:
                callback()
            except Exception:  # a broken callback must not stop every other timer
                log.exception("timer callback %r failed", callback)
