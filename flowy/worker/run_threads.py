"""Run threads: each run decided on one thread, its facts batched, then handed on.

Each run belongs to one thread (its live workflow is a greenlet, which can't
change threads), chosen by hashing its id.  A thread takes every fact that is
waiting in its inbox at once and gives each run all of its new facts in one
decision, the way SWF batches events that arrive during a decision.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import zlib
from collections.abc import Callable
from typing import Any

from ..backends.base import Received
from ..core.errors import UNCONTAINED
from ..core.replay import Replayer

log = logging.getLogger("flowy.decider")

# Decides for a run on these notifications of it.
Handler = Callable[[Replayer, str, list[Received]], None]
FatalHandler = Callable[[BaseException], None]
_STOP = object()


def guarded(loop: Callable[[], None], on_fatal: FatalHandler) -> Callable[[], None]:
    """``loop``, made to report its thread's death: if it ends by an exception,
    that is logged and handed to ``on_fatal``, since whatever the thread served
    would otherwise stop without a word (``threading.excepthook`` even ignores
    ``SystemExit``)."""
    def run() -> None:
        try:
            loop()
        except BaseException as exc:  # noqa: BLE001 - a dead thread must never go unnoticed
            log.critical("thread %s died", threading.current_thread().name, exc_info=exc)
            on_fatal(exc)
    return run


class RunThreads:
    """``count`` daemon threads; ``post(run, messages)`` queues notifications for ``run``.

    :meth:`room` says how many more notifications the threads should take:
    a decider receives no more than that, so that what it holds is what its
    threads decide soon, not a backlog whose leases run out while it waits.

    Whatever a handler raises for one run is logged, and the thread goes on
    with the others, except :data:`~flowy.core.errors.UNCONTAINED`.  A thread
    that ends that way, or by a fault in this loop itself, calls ``on_fatal`` with the exception:
    the runs posted to it would never be decided, so its owner must stop (a
    decider process exits non-zero, for its supervisor to restart it).
    """

    def __init__(self, count: int, handler: Handler, cache_size: int, name: str,
                 on_fatal: FatalHandler, per_thread: int) -> None:
        self._handler = handler
        self._capacity = count * per_thread
        self._waiting = 0  # notifications posted and not yet decided on
        self._changed = threading.Condition()
        self._inboxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads = [
            threading.Thread(target=guarded(functools.partial(self._loop, inbox,
                                                              Replayer(cache_size)), on_fatal),
                             name=f"{name}-decider-{i}", daemon=True)
            for i, inbox in enumerate(self._inboxes)]
        for thread in self._threads:
            thread.start()

    def post(self, run: str, messages: list[Received]) -> None:
        with self._changed:
            self._waiting += len(messages)
        self._inboxes[zlib.crc32(run.encode()) % len(self._inboxes)].put((run, messages))

    def room(self, timeout: float) -> int:
        """How many more notifications to take, waiting up to ``timeout``
        seconds for some room if there is none."""
        with self._changed:
            self._changed.wait_for(lambda: self._waiting < self._capacity, timeout)
            return max(0, self._capacity - self._waiting)

    def _decided(self, count: int) -> None:
        with self._changed:
            self._waiting -= count
            self._changed.notify_all()

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(_STOP)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _loop(self, inbox: queue.SimpleQueue[Any], replayer: Replayer) -> None:
        while True:
            batch = [inbox.get()]
            while True:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            messages_by_run: dict[str, list[Received]] = {}
            stopping = False
            for item in batch:
                if item is _STOP:
                    stopping = True  # after deciding on what came before it
                    break
                run, messages = item
                messages_by_run.setdefault(run, []).extend(messages)
            for run, messages in messages_by_run.items():
                try:
                    self._handler(replayer, run, messages)
                except UNCONTAINED:
                    raise
                except BaseException:  # noqa: BLE001 - one broken run must not stop the others
                    log.exception("decision for run %s failed", run)
                finally:
                    self._decided(len(messages))
            if stopping:
                return


class InlineRuns:
    """Decides in the thread that posts, with one Replayer: a decider on a
    backend in this process does so, and the deterministic simulation steps
    one so, a message at a time.  What a handler raises reaches the poster."""

    def __init__(self, handler: Handler, cache_size: int) -> None:
        self._handler = handler
        self._replayer = Replayer(cache_size)

    def post(self, run: str, messages: list[Received]) -> None:
        self._handler(self._replayer, run, messages)

    def room(self, timeout: float) -> int:
        """A receive's worth: each is decided before the next receive."""
        return 10

    def close(self) -> None:
        """Nothing runs on its own."""
