"""History events: the only input and output of the replay core.

A run's history is an append-only list of events.  *Facts* come from outside
(the run was started, a task completed, failed or timed out, a timer fired, a
signal came, someone asked to cancel the run);
*decisions* are the events the core emits and the engine commits, then carries
out (schedule a task, start a timer, close the run).

Payloads (inputs and results) are strings produced by the run's codec.  The
``at`` field is the engine's wall-clock stamp, in seconds since the epoch; the
core never reads it, and it takes no part in equality, so that replayed
decisions compare equal to recorded ones.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .errors import ErrorInfo, HistoryError

TaskKind = Literal["activity", "workflow"]
DependencyKind = Literal["activity", "workflow", "timer", "signal"]
TimeoutType = Literal["start_to_close", "schedule_to_start", "heartbeat"]


def _stamp() -> Any:
    return field(default=0.0, compare=False, kw_only=True)


def _token() -> Any:
    # The attempt's token (see TaskScheduled), set by the engine and echoed
    # by the attempt's outcome; like the stamp, it takes no part in equality.
    return field(default="", compare=False, kw_only=True)


# -- facts ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class WorkflowStarted:
    input: str
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    key: str
    result: str
    started_at: float | None = None
    token: str = _token()
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TaskFailed:
    key: str
    error: ErrorInfo
    started_at: float | None = None
    token: str = _token()
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TaskTimedOut:
    key: str
    timeout_type: TimeoutType
    details: str | None = None
    token: str = _token()
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TimerFired:
    key: str
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class SignalReceived:
    """A signal sent to the run from outside; ``id`` makes a re-sent one a no-op.

    The n-th call of a signal dependency named ``name`` gets the n-th signal of
    that name, in history order.
    """

    name: str
    value: str
    id: str
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Someone asked to cancel the run: it fails at once with ``flowy.RunCancelled``.

    The engines pass it on to the run's open sub-workflows, and to the run it
    restarted as if it came after a restart.
    """

    reason: str = ""
    at: float = _stamp()


# -- decisions --------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class TaskScheduled:
    """Run attempt ``attempt`` of call ``call_id``; the attempt's key is ``key``.

    ``deps`` are the call ids whose results were passed in the arguments.
    Timeouts are in seconds; ``None`` means no limit.  ``token`` is the
    attempt's unguessable token, drawn by the engine when it commits the
    decision (the core leaves it empty): an outcome counts only if it
    carries it, as SWF's task token.
    """

    key: str
    call_id: str
    dependency: str
    kind: TaskKind
    input: str
    attempt: int = 1
    deps: tuple[str, ...] = ()
    start_to_close: float | None = None
    schedule_to_start: float | None = None
    heartbeat: float | None = None
    token: str = _token()
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TimerStarted:
    """A durable timer: the delay before a retry, or a timer dependency's call."""

    key: str
    delay: float
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class WorkflowCompleted:
    """The run finished with ``result``; ``ignored_errors`` lists the call ids
    of failed tasks whose errors the workflow never looked at."""

    result: str
    ignored_errors: tuple[str, ...] = ()
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class WorkflowFailed:
    error: ErrorInfo
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class WorkflowRestarted:
    """Continue as new: the run closed and a new run starts with ``input``.

    ``ignored_errors`` is as for :class:`WorkflowCompleted`: errors of this run
    that the workflow never looked at.
    """

    input: str
    ignored_errors: tuple[str, ...] = ()
    at: float = _stamp()


Fact = (WorkflowStarted | TaskCompleted | TaskFailed | TaskTimedOut | TimerFired
        | SignalReceived | CancelRequested)
Decision = (TaskScheduled | TimerStarted | WorkflowCompleted | WorkflowFailed
            | WorkflowRestarted)
Event = Fact | Decision
E = TypeVar("E", bound=Event)
T = TypeVar("T")

FACT_TYPES: tuple[type, ...] = (WorkflowStarted, TaskCompleted, TaskFailed, TaskTimedOut,
                                TimerFired, SignalReceived, CancelRequested)
DECISION_TYPES: tuple[type, ...] = (TaskScheduled, TimerStarted, WorkflowCompleted,
                                    WorkflowFailed, WorkflowRestarted)
CLOSING_TYPES: tuple[type, ...] = (WorkflowCompleted, WorkflowFailed, WorkflowRestarted)
EVENT_TYPES: dict[str, type] = {cls.__name__: cls for cls in FACT_TYPES + DECISION_TYPES}


def is_decision(event: Event) -> bool:
    return isinstance(event, DECISION_TYPES)


_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in FACT_TYPES + DECISION_TYPES}


def stamped(event: E, at: float) -> E:
    """The same event with the engine's time stamp.  (A copy made slot by slot:
    ``dataclasses.replace`` checks every field each time, and every decision
    and fact is stamped.)"""
    copy = object.__new__(type(event))
    for name in _FIELD_NAMES[type(event)]:
        object.__setattr__(copy, name, getattr(event, name))
    object.__setattr__(copy, "at", at)
    return copy


def event_to_dict(event: Event) -> dict[str, Any]:
    """A JSON-ready dict of an event, tagged with its type name."""
    data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    error = data.get("error")
    if isinstance(error, ErrorInfo):
        data["error"] = dataclasses.asdict(error)
    if "deps" in data:
        data["deps"] = list(data["deps"])
    if "ignored_errors" in data:
        data["ignored_errors"] = list(data["ignored_errors"])
    return {"type": type(event).__name__, **data}


def event_from_dict(data: dict[str, Any]) -> Event:
    """The inverse of :func:`event_to_dict`, for data from outside the process:
    every field is checked against its type (a key that is a list, a time
    that is NaN, a field too many or missing), and a bad one raises
    :class:`~flowy.core.errors.HistoryError` saying which."""
    fields = dict(data)
    name = fields.pop("type", None)
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise HistoryError(f"not a history event: unknown type {str(name)[:100]!r}; "
                           f"known types are {sorted(EVENT_TYPES)}")
    if isinstance(fields.get("error"), dict):
        error = dict(fields["error"])
        if isinstance(error.get("type_mro"), list):
            error["type_mro"] = tuple(error["type_mro"])
        fields["error"] = _checked(ErrorInfo, error, f"{name}.error")
    for field_name in ("deps", "ignored_errors"):
        if isinstance(fields.get(field_name), list):
            fields[field_name] = tuple(fields[field_name])
    event: Event = _checked(cls, fields, name)
    return event


def _checked(cls: type[T], fields: dict[str, Any], what: str) -> T:
    hints = _HINTS[cls]
    unknown = sorted(set(fields) - set(hints))
    if unknown:
        raise HistoryError(f"not a valid {what}: unknown fields {unknown}")
    for field_name, value in fields.items():
        if not _accepts(hints[field_name], value):
            raise HistoryError(f"not a valid {what}: {field_name} must be "
                               f"{_describe(hints[field_name])}, not {repr(value)[:100]}")
    try:
        return cls(**fields)
    except TypeError as exc:  # a required field missing
        raise HistoryError(f"not a valid {what}: {exc}") from None


def _accepts(hint: Any, value: Any) -> bool:
    """Whether ``value`` is of type ``hint``, for the types events' fields have."""
    if hint is str:
        return isinstance(value, str)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:  # JSON has no float type for whole numbers; no NaN or infinity
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    if hint is type(None):
        return value is None
    if hint is ErrorInfo:
        return isinstance(value, ErrorInfo)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return isinstance(value, str) and value in args
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_accepts(args[0], item) for item in value)
    raise TypeError(f"no rule checks a field of type {hint}: add one")  # for a new field type


def _describe(hint: Any) -> str:
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


_HINTS: dict[type, dict[str, Any]] = {
    cls: typing.get_type_hints(cls) for cls in (ErrorInfo, *FACT_TYPES, *DECISION_TYPES)}
