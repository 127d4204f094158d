"""Futures and the lazy result proxies that workflow code sees.

A call to a dependency returns a :class:`Result`: a transparent proxy that
behaves like the call's value once the task finished.  Behind each proxy is a
:class:`Future` that the replay core completes from history events.  Touching
an unfinished result suspends the workflow (see :mod:`flowy.core.workflow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import lazy_object_proxy

from .codec import Codec, decode_error
from .errors import ErrorInfo, FlowyError, TaskError

PENDING, SUCCEEDED, FAILED = 0, 1, 2
_NOT_DECODED = object()


class ResultOwner(Protocol):
    """The run a future belongs to, as far as the future and its result need it.

    The replay core's :class:`~flowy.core.workflow.Execution` is one; this
    protocol names what a future asks of it, so that this module doesn't
    depend on the module that creates futures.
    """

    @property
    def codec(self) -> Codec:
        """Decodes the future's value from its history string."""
        ...

    def in_workflow(self) -> bool:
        """Whether the caller is the run's workflow code, which may block."""
        ...

    def block_until(self, futures: tuple[Future, ...] | list[Future], count: int) -> None:
        """Suspend the workflow code until ``count`` of ``futures`` have finished."""
        ...

    def observe(self, finish_index: int) -> None:
        """Note that the workflow code saw a result that finished at ``finish_index``."""
        ...


class Future:
    """The state of one call: pending, then succeeded with a value or failed.

    ``finish_index`` orders finished futures: it is the history position of the
    event that finished it, so it is the same on every replay.  An error that a
    call inherits from a failed argument takes its cause's index.
    """

    __slots__ = ("call_id", "execution", "state", "_encoded", "_value", "error",
                 "finish_index", "observed", "_callbacks")

    def __init__(self, call_id: str, execution: ResultOwner | None) -> None:
        self.call_id = call_id
        self.execution = execution
        self.state = PENDING
        self._encoded = ""
        self._value: Any = _NOT_DECODED
        self.error: ErrorInfo | None = None
        self.finish_index = -1
        # Whether the workflow looked at this result (or handed it to another
        # call); unobserved errors are reported as ignored when the run closes.
        self.observed = False
        self._callbacks: list[Callable[[Future], None]] = []

    @property
    def done(self) -> bool:
        return self.state != PENDING

    @property
    def failed(self) -> bool:
        return self.state == FAILED

    def add_callback(self, callback: Callable[[Future], None]) -> None:
        """Call ``callback(self)`` once this future finishes (now, if it has)."""
        if self.state != PENDING:
            callback(self)
        else:
            self._callbacks.append(callback)

    def succeed(self, encoded: str, index: int) -> None:
        self._encoded = encoded
        self._finish(SUCCEEDED, index)

    def fail(self, error: ErrorInfo, index: int) -> None:
        self.error = error
        self._finish(FAILED, index)

    def _finish(self, state: int, index: int) -> None:
        self.state = state
        self.finish_index = index
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    @property
    def encoded(self) -> str:
        return self._encoded

    def value(self) -> Any:
        """The decoded value of a succeeded future (decoded once, on first use)."""
        if self._value is _NOT_DECODED:
            assert self.execution is not None
            self._value = self.execution.codec.decode(self._encoded)
        return self._value

    def get(self) -> Any:
        """The value, suspending the workflow until it is there; raises TaskError."""
        self.observed = True
        if self.state == PENDING:
            if self.execution is None or not self.execution.in_workflow():
                raise FlowyError(
                    f"the result of {self.call_id} is not finished and was read outside its "
                    "workflow; read results only from workflow code, or use the value "
                    "returned by the run")
            self.execution.block_until((self,), 1)
        elif self.execution is not None:
            self.execution.observe(self.finish_index)
        if self.state == FAILED:
            assert self.error is not None
            error = self.error
            if self.execution is not None:  # the workflow code sees the real message
                error = decode_error(self.execution.codec, error)
            raise TaskError.from_info(error)
        return self.value()


class Result(lazy_object_proxy.Proxy):  # type: ignore[misc]
    """A call's result: it stands for the value once the task has finished.

    Arithmetic, comparison, ``isinstance``, iteration and attribute access all
    act on the value.  Reading an unfinished result suspends the workflow;
    reading a failed one raises :class:`flowy.TaskError`.
    """

    def __flowy_value__(self) -> Any:
        return self.__factory__.__self__.get()


def make_result(future: Future) -> Result:
    return Result(future.get)


def future_of(obj: object) -> Future | None:
    """The future behind ``obj`` if it is a :class:`Result`, without touching it."""
    if type(obj) is Result:
        future: Future = obj.__factory__.__self__
        return future
    return None


_CONTAINERS = (list, tuple, set, frozenset, dict)


def iter_futures(obj: Any) -> Iterator[Future]:
    """Every future nested in ``obj`` (lists, tuples, sets and dict values)."""
    t = type(obj)
    if t is Result:
        yield obj.__factory__.__self__
    elif t in _CONTAINERS or isinstance(obj, _CONTAINERS):
        for item in (obj.values() if isinstance(obj, dict) else obj):
            yield from iter_futures(item)


def unwrap(obj: Any) -> Any:
    """``obj`` with every nested result replaced by its value.

    Every nested result must have succeeded.  This doesn't count as the
    workflow looking at them: the engine calls it, not the workflow code.
    """
    t = type(obj)
    if t is Result:
        future: Future = obj.__factory__.__self__
        assert future.state == SUCCEEDED, f"{future.call_id} has not succeeded"
        return future.value()
    if t is list:
        return [unwrap(x) for x in obj]
    if t is tuple:
        return tuple(unwrap(x) for x in obj)
    if t is dict:
        return {k: unwrap(v) for k, v in obj.items()}
    if t is set or t is frozenset:
        return t(unwrap(x) for x in obj)
    return obj
