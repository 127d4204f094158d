"""Decider threads for the local engine: batch facts per run, decide, hand on.

Each run belongs to one thread (its live workflow is a greenlet, which can't
change threads), chosen by hashing its id.  A thread takes every fact that is
waiting in its inbox at once and gives each run all of its new facts in one
decision, the way SWF batches events that arrive during a decision.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Hashable
from typing import Any

from ..core.replay import Decider

log = logging.getLogger("flowy.decider")

Handler = Callable[[Decider, Any, list[Any]], None]
_STOP = object()


class DeciderThreads:
    """``count`` daemon threads; ``post(run, fact)`` queues a fact for ``run``."""

    def __init__(self, count: int, handler: Handler, cache_size: int, name: str) -> None:
        self._handler = handler
        self._inboxes: list[queue.SimpleQueue[Any]] = [queue.SimpleQueue() for _ in range(count)]
        self._threads = [
            threading.Thread(target=self._loop, args=(inbox, Decider(cache_size)),
                             name=f"{name}-decider-{i}", daemon=True)
            for i, inbox in enumerate(self._inboxes)]
        for thread in self._threads:
            thread.start()

    def post(self, run: Hashable, fact: Any, shard: int) -> None:
        self._inboxes[shard % len(self._inboxes)].put((run, fact))

    def close(self) -> None:
        for inbox in self._inboxes:
            inbox.put(_STOP)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _loop(self, inbox: queue.SimpleQueue[Any], decider: Decider) -> None:
        while True:
            batch = [inbox.get()]
            while True:
                try:
                    batch.append(inbox.get_nowait())
                except queue.Empty:
                    break
            facts_by_run: dict[Any, list[Any]] = {}
            stopping = False
            for item in batch:
                if item is _STOP:
                    stopping = True  # after deciding on what came before it
                    break
                run, fact = item
                facts_by_run.setdefault(run, []).append(fact)
            for run, facts in facts_by_run.items():
                try:
                    self._handler(decider, run, facts)
                except Exception:  # one broken run must not stop the others
                    log.exception("decision for run %s failed", run)
            if stopping:
                return
