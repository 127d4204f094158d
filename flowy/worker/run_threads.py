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

from ..core.errors import UNCONTAINED
from ..core.replay import Replayer

log = logging.getLogger("flowy.decider")

# Decides for a run on the notifications with these receipts.
Handler = Callable[[Replayer, str, list[str]], None]
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
    """``count`` daemon threads; ``post(run, receipts)`` queues notifications for ``run``.

    Whatever a handler raises for one run is logged, and the thread goes on
    with the others, except :data:`~flowy.core.errors.UNCONTAINED`.  A thread
    that ends that way, or by a fault in this loop itself, calls ``on_fatal`` with the exception:
    the runs posted to it would never be decided, so its owner must stop (a
    decider process exits non-zero, for its supervisor to restart it).
    """

    def __init__(self, count: int, handler: Handler, cache_size: int, name: str,
                 on_fatal: FatalHandler) -> None:
        self._handler = handler
        self._inboxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads = [
            threading.Thread(target=guarded(functools.partial(self._loop, inbox,
                                                              Replayer(cache_size)), on_fatal),
                             name=f"{name}-decider-{i}", daemon=True)
            for i, inbox in enumerate(self._inboxes)]
        for thread in self._threads:
            thread.start()

    def post(self, run: str, receipts: list[str]) -> None:
        self._inboxes[zlib.crc32(run.encode()) % len(self._inboxes)].put((run, receipts))

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
            receipts_by_run: dict[str, list[str]] = {}
            stopping = False
            for item in batch:
                if item is _STOP:
                    stopping = True  # after deciding on what came before it
                    break
                run, receipts = item
                receipts_by_run.setdefault(run, []).extend(receipts)
            for run, receipts in receipts_by_run.items():
                try:
                    self._handler(replayer, run, receipts)
                except UNCONTAINED:
                    raise
                except BaseException:  # noqa: BLE001 - one broken run must not stop the others
                    log.exception("decision for run %s failed", run)
            if stopping:
                return


class InlineRuns:
    """Decides in the thread that posts, with one Replayer: a decider on a
    backend in this process does so, and the deterministic simulation steps
    one so, a message at a time.  What a handler raises reaches the poster."""

    def __init__(self, handler: Handler, cache_size: int) -> None:
        self._handler = handler
        self._replayer = Replayer(cache_size)

    def post(self, run: str, receipts: list[str]) -> None:
        self._handler(self._replayer, run, receipts)

    def close(self) -> None:
        """Nothing runs on its own."""
