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
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .errors import ErrorInfo, HistoryError

TaskKind = Literal["activity", "workflow"]
DependencyKind = Literal["activity", "workflow", "timer", "signal"]
TimeoutType = Literal["start_to_close", "schedule_to_start", "heartbeat"]


def _stamp() -> Any:
    return field(default=0.0, compare=False, kw_only=True)


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
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TaskFailed:
    key: str
    error: ErrorInfo
    started_at: float | None = None
    at: float = _stamp()


@dataclass(frozen=True, slots=True)
class TaskTimedOut:
    key: str
    timeout_type: TimeoutType
    details: str | None = None
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
    Timeouts are in seconds; ``None`` means no limit.
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
    """The inverse of :func:`event_to_dict`."""
    fields = dict(data)
    name = fields.pop("type", None)
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise HistoryError(f"not a history event: unknown type {name!r}; "
                           f"known types are {sorted(EVENT_TYPES)}")
    if isinstance(fields.get("error"), dict):
        error = dict(fields["error"])
        error["type_mro"] = tuple(error.get("type_mro", ()))
        fields["error"] = ErrorInfo(**error)
    for name in ("deps", "ignored_errors"):
        if name in fields:
            fields[name] = tuple(fields[name])
    event: Event = cls(**fields)
    return event
