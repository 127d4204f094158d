"""Gathering single requests into SQS batches of up to ten, on an event loop.

Many attempts finish at about the same time; sending each one's
notification and deleting each one's message separately would cost a
request apiece.  A :class:`Batcher` holds items for at most ``max_delay``
seconds (or until it has ``max_size``) and sends them in one request; each
``submit`` returns when its batch has gone, so callers keep their order of
effects (fact written, then notified, then message deleted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], *, max_size: int = 10,
                 max_delay: float = 0.02) -> None:
        self._flush = flush
        self._max_size = max_size
        self._max_delay = max_delay
        self._items: list[tuple[T, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None

    async def submit(self, item: T) -> None:
        """Queue ``item``; return once the batch holding it has been sent."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._items.append((item, done))
        if len(self._items) >= self._max_size:
            self._send_now()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._max_delay, self._send_now)
        await done

    def _send_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._items = self._items[:self._max_size], self._items[self._max_size:]
        if self._items:
            self._timer = asyncio.get_running_loop().call_later(0, self._send_now)
        if batch:
            asyncio.ensure_future(self._send(batch))

    async def _send(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        try:
            await self._flush([item for item, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every submitter of the batch gets it
            for _, done in batch:
                if not done.done():
                    done.set_exception(exc)
            return
        for _, done in batch:
            if not done.done():
                done.set_result(None)
