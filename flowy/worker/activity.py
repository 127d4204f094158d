"""Running one attempt of an activity, in a worker thread or process.

:func:`execute_activity` decodes the input, calls the function, and encodes
the result or the error, so that whatever happens the engine gets back a
small picklable :class:`AttemptOutcome`, never an exception.  While it runs,
the activity can call :func:`heartbeat`; each beat goes to a *reporter*: any
object with ``put((token, details))``, such as a queue shared with the
engine's process.  Times are the engine's to take, on its clock (a test's may
be a manual one): nothing here reads a clock.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.codec import Codec, decode_arguments, encode_error, encode_text
from ..core.errors import UNCONTAINED, EncodeError, ErrorInfo

HEARTBEAT_DETAILS_LIMIT = 2048  # characters, as in SWF


# A heartbeat: the token of the attempt that beats, and its details.
Beat = tuple[str, "str | None"]


class Reporter(Protocol):
    def put(self, message: Beat) -> None: ...


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """What became of an attempt: ``error`` is None when it succeeded."""

    key: str
    result: str | None
    error: ErrorInfo | None


# The running attempt's token, where its heartbeats go, and the codec that
# encodes their details.
_current: contextvars.ContextVar[tuple[str, Reporter, Codec] | None] = contextvars.ContextVar(
    "flowy_current_activity", default=None)


def current_attempt() -> str | None:
    """The attempt the running activity is, as ``RUN_ID/KEY`` (the key ends
    with the attempt's number: ``square-0-2``), or None outside a worker.
    For an activity's own records, say of what it did and for which attempt:
    the engine runs an attempt at least once."""
    current = _current.get()
    return None if current is None else current[0]


def heartbeat(details: Any = None) -> None:
    """Tell the engine that the running activity is alive, with optional progress details.

    Resets the activity's heartbeat timeout.  ``details`` (a string, or a value
    that is turned into JSON) is kept, up to 2,048 characters once encoded by
    the workflow's codec (see :class:`flowy.PayloadCodec`), and shown when
    the activity later times out.  Outside an activity this does nothing, so
    activity functions stay callable by hand in unit tests.
    """
    current = _current.get()
    if current is None:
        return
    token, reporter, codec = current
    if details is not None:
        text = details if isinstance(details, str) else json.dumps(details, default=repr)
        try:
            details = encode_text(codec, text, HEARTBEAT_DETAILS_LIMIT)
        except UNCONTAINED:
            raise
        except BaseException as exc:  # noqa: BLE001 - the beat counts, without its details
            details = f"[the details could not be encoded: {type(exc).__name__}]"
    reporter.put((token, details))


def execute_activity(function: Callable[..., Any], token: str, key: str, encoded_input: str,
                     codec: Codec, reporter: Reporter) -> AttemptOutcome:
    """Run one attempt of task ``key``, its heartbeats going to ``reporter``
    under ``token``; return its outcome."""
    context = _current.set((token, reporter, codec))
    try:
        args, kwargs = decode_arguments(codec, encoded_input, f"the input of {key}")
        value = function(*args, **kwargs)
        if asyncio.iscoroutine(value):  # a coroutine function, run where no loop is
            value = asyncio.run(value)
        return _succeeded(codec, key, value)
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the task's error
        return _failed(codec, key, exc, on_loop=False)
    finally:
        _current.reset(context)


async def execute_activity_async(function: Callable[..., Awaitable[Any]], token: str, key: str,
                                 encoded_input: str, codec: Codec,
                                 reporter: Reporter) -> AttemptOutcome:
    """:func:`execute_activity` for a coroutine function, on the running event loop."""
    context = _current.set((token, reporter, codec))
    try:
        args, kwargs = decode_arguments(codec, encoded_input, f"the input of {key}")
        return _succeeded(codec, key, await function(*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - every failure becomes the task's error
        return _failed(codec, key, exc, on_loop=True)
    finally:
        _current.reset(context)


def _succeeded(codec: Codec, key: str, value: Any) -> AttemptOutcome:
    try:
        result = codec.encode(value)
    except EncodeError as exc:
        raise EncodeError(f"the result of {key} can't be encoded: {exc}") from exc
    return AttemptOutcome(key, result, None)


def _failed(codec: Codec, key: str, exc: BaseException, *, on_loop: bool) -> AttemptOutcome:
    """The outcome of an attempt that raised ``exc``, its error encoded by the
    workflow's codec.  Whatever user code raises fails the attempt,
    ``SystemExit`` included: it must not end the worker.  Only
    :data:`~flowy.core.errors.UNCONTAINED` passes, and the cancellation of
    the task that runs an async activity (the worker's own shutdown)."""
    if isinstance(exc, UNCONTAINED) or (on_loop and _being_cancelled(exc)):
        raise exc
    return AttemptOutcome(key, None, encode_error(codec, ErrorInfo.from_exception(exc)))


def _being_cancelled(exc: BaseException) -> bool:
    """Whether ``exc`` comes from cancelling the running task, rather than from
    an activity raising ``CancelledError`` itself."""
    task = asyncio.current_task()
    if not isinstance(exc, asyncio.CancelledError) or task is None:
        return False
    cancelling = getattr(task, "cancelling", None)  # Python 3.11+; before, assume it is
    return cancelling is None or cancelling() > 0
