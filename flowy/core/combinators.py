"""Combinators over results: wait for them, race them, reduce them, restart.

Every combinator accepts results, plain values, and containers (lists,
tuples, sets, dict values) of either.  Plain values count as finished before
any result; results count in the order their tasks finished, which is the
order of their events in the history, so a replay gives the same answers.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .result import Future, future_of, iter_futures, unwrap
from .workflow import Restart

_MISSING: Any = object()


def wait(*values: Any) -> Any:
    """Wait until every result in ``values`` finished; return the value(s).

    One argument gives its value, several give a tuple.  Containers come
    back with their results replaced by values.  If some results failed,
    the error that finished first is raised as :class:`flowy.TaskError`.
    """
    futures = list(iter_futures(values))
    _block(futures, len(futures))
    failed = [f for f in futures if f.failed]
    if failed:
        first_error = min(failed, key=lambda f: f.finish_index)
        first_error.get()  # raises its TaskError
    plain = unwrap(values)
    return plain[0] if len(plain) == 1 else plain


def finish_order(*values: Any) -> Iterator[Any]:
    """Yield the items of ``values`` in the order they finish.

    Plain values come first, in the order given, then results as their
    tasks finish (failed ones too: reading them raises).
    """
    items = _flatten(values)
    pending: list[tuple[int, Any, Future]] = []
    for position, item in enumerate(items):
        future = future_of(item)
        if future is None:
            yield item
        else:
            pending.append((position, item, future))
    while pending:
        finished = [p for p in pending if p[2].done]
        if not finished:
            _block([p[2] for p in pending], 1)
            continue
        finished.sort(key=lambda p: (p[2].finish_index, p[0]))
        done_positions = {p[0] for p in finished}
        pending = [p for p in pending if p[0] not in done_positions]
        for _position, item, future in finished:
            future.observed = True
            yield item


def first(*values: Any) -> Any:
    """The item of ``values`` that finished first (it may be a failed result)."""
    for item in finish_order(*values):
        return item
    raise ValueError("first() needs at least one result or value")


def first_n(n: int, *values: Any) -> list[Any]:
    """The ``n`` items of ``values`` that finished first, in finish order."""
    if n < 0:
        raise ValueError(f"first_n() needs n >= 0, got {n}")
    return list(itertools.islice(finish_order(*values), n))


def parallel_reduce(function: Callable[[Any, Any], Any], iterable: Iterable[Any],
                    initializer: Any = _MISSING) -> Any:
    """Reduce ``iterable`` with ``function``, combining items as they finish.

    ``function`` may be a dependency proxy (each combination is a task, and
    independent combinations run in parallel) or plain Python.  Unlike
    :func:`functools.reduce`, the order of combination follows finish order,
    so ``function`` should be associative and commutative.
    """
    items = list(iterable)
    if initializer is not _MISSING:
        items.insert(0, initializer)
    if not items:
        raise ValueError("parallel_reduce() of an empty iterable with no initializer")
    pool = _FinishPool(items)
    while pool.size > 1:
        left, left_index, right, right_index = pool.take_two()
        pool.add(function(left, right), max(left_index, right_index))
    return pool.last()


class _FinishPool:
    """Items to reduce, handed out two at a time in finish order.

    Finished items wait in a heap keyed by finish index (plain values count
    as finished before everything), so the pairs are the same however the
    history's facts were batched; a replay pairs exactly like the live run.
    """

    def __init__(self, items: list[Any]) -> None:
        self._ready: list[tuple[int, int, Any]] = []
        self._pending: list[tuple[Any, Future]] = []
        self._sequence = itertools.count()
        for item in items:
            self.add(item, -1)

    @property
    def size(self) -> int:
        return len(self._ready) + len(self._pending)

    def add(self, item: Any, plain_index: int) -> None:
        """Add ``item``; if it is a plain value, it finished at ``plain_index``."""
        future = future_of(item)
        if future is not None and not future.done:
            self._pending.append((item, future))
        else:
            index = plain_index if future is None else future.finish_index
            heapq.heappush(self._ready, (index, next(self._sequence), item))

    def take_two(self) -> tuple[Any, int, Any, int]:
        while len(self._ready) < 2:
            _block([f for _, f in self._pending], 2 - len(self._ready))
            still_pending = []
            for item, future in self._pending:
                if future.done:
                    heapq.heappush(self._ready,
                                   (future.finish_index, next(self._sequence), item))
                else:
                    still_pending.append((item, future))
            self._pending = still_pending
        left_index, _, left = heapq.heappop(self._ready)
        right_index, _, right = heapq.heappop(self._ready)
        return left, left_index, right, right_index

    def last(self) -> Any:
        return self._ready[0][2] if self._ready else self._pending[0][0]


def restart(*args: Any, **kwargs: Any) -> Restart:
    """Return this from a workflow to continue as a new run with these arguments.

    The arguments may be results; the new run starts once they finished.
    """
    return Restart(args, kwargs)


def _flatten(values: tuple[Any, ...]) -> list[Any]:
    items: list[Any] = []
    for value in values:
        if future_of(value) is None and isinstance(value, (list, tuple, set, frozenset, dict)):
            items.extend(_flatten(tuple(value.values() if isinstance(value, dict) else value)))
        else:
            items.append(value)
    return items


def _block(futures: list[Future], count: int) -> None:
    if futures:
        execution = futures[0].execution
        assert execution is not None
        execution.block_until(futures, count)
