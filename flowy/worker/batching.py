"""Gathering single requests from many threads into batches of up to ten.

Many attempts finish at about the same time; sending each one's
notification and acknowledging each one's message separately would cost a
request apiece.  The first thread to submit into an empty :class:`Batcher`
leads the batch: it waits at most ``max_delay`` seconds (or until the batch
has ``max_size`` items), then sends it in one request.  Every ``submit``
returns once the batch holding its item has gone (or raises what sending it
raised), so callers keep their order of effects: fact written, then
notified, then message acknowledged.  (On the in-memory backend, where a
request costs nothing, the worker sends each item at once instead.)
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.items: list[T] = []
        self.full = threading.Event()
        self.sent = threading.Event()
        self.error: BaseException | None = None


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], object], *, max_size: int = 10,
                 max_delay: float = 0.02) -> None:
        self._flush = flush
        self._max_size = max_size
        self._max_delay = max_delay
        self._open: _Batch[T] | None = None
        self._lock = threading.Lock()

    def submit(self, item: T) -> None:
        """Add ``item`` to the open batch; return once that batch has been sent."""
        with self._lock:
            batch, leads = self._open, self._open is None
            if batch is None:
                batch = self._open = _Batch()
            batch.items.append(item)
            if len(batch.items) >= self._max_size:
                self._open = None
                batch.full.set()
        if not leads:
            batch.sent.wait()
        else:
            batch.full.wait(self._max_delay)
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
    ``max_size``, at most ``max_delay`` seconds after the first, without
    making anyone wait: for requests whose effect nobody waits on, such as
    acknowledging messages already dealt with (one lost in a crash only
    comes back, to be found done).  A full batch goes from the thread that
    filled it, others from a timer thread; ``close`` sends what is left.
    ``flush`` must not raise: nobody would hear it."""

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
