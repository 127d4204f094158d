"""Gathering single requests from many threads into batches of up to ten.

Many attempts finish at about the same time; sending each one's
notification and acknowledging each one's message separately would cost a
request apiece.  (On the in-memory backend, where a request costs nothing,
the worker sends each item at once instead.)

* :class:`Batcher`, for requests a caller must see done (notifications: a
  fact is written, then notified, then its message acknowledged): a group
  commit.  An item submitted while no batch is being sent goes at once;
  items submitted while one is being sent gather into the next, which goes
  as soon as that one has.  So an idle worker waits for nothing, and a busy
  one sends what finished meanwhile in one request.  ``submit`` returns once
  its item's batch has gone, or raises what sending it raised.
* :class:`Deferred`, for requests nobody waits on (acknowledgements: one
  lost in a crash only comes back, to be found done): sent up to
  ``max_delay`` seconds late, ten at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.sent = threading.Event()
        self.error: BaseException | None = None


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], object], *, max_size: int = 10) -> None:
        self._flush = flush
        self._max_size = max_size
        self._open: _Batch[T] | None = None  # the batch new items join
        self._lock = threading.Lock()
        self._sending = threading.Lock()  # held while a batch is being sent

    def submit(self, item: T) -> None:
        """Add ``item`` to the open batch; return once that batch has been sent."""
        with self._lock:
            batch, leads = self._open, self._open is None
            if batch is None:
                batch = self._open = _Batch()
            batch.items.append(item)
            if len(batch.items) >= self._max_size:
                self._open = None  # full: the next item starts another
        if not leads:
            batch.sent.wait()
        else:
            with self._sending:  # meanwhile, items gather into this batch
                with self._lock:
                    if self._open is batch:
                        self._open = None
                try:
                    self._flush(batch.items)
                except BaseException as exc:  # noqa: BLE001 - every submitter of the batch gets it
                    batch.error = exc
            batch.sent.set()
        if batch.error is not None:
            raise batch.error


class Deferred(Generic[T]):
    """Gathers items from many threads and sends them in batches of up to
    ``max_size``, at most ``max_delay`` seconds after the first, making
    nobody wait.  A full batch goes from the thread that filled it, others
    from a timer thread; ``close`` sends what is left.  ``flush`` must not
    raise: nobody would hear it."""

    def __init__(self, flush: Callable[[list[T]], object], *, max_size: int = 10,
                 max_delay: float = 0.5) -> None:
        self._flush = flush
        self._max_size = max_size
        self._max_delay = max_delay
        self._items: list[T] = []
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def submit(self, item: T) -> None:
        with self._lock:
            self._items.append(item)
            if len(self._items) < self._max_size:
                if self._timer is None:
                    self._timer = threading.Timer(self._max_delay, self.close)
                    self._timer.daemon = True
                    self._timer.start()
                return
        self.close()

    def close(self) -> None:
        """Send what waits, now."""
        with self._lock:
            items, self._items = self._items, []
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        for start in range(0, len(items), self._max_size):
            self._flush(items[start:start + self._max_size])
