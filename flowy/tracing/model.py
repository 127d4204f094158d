"""A run's trace as plain data: what was called, when, how often, and with what outcome.

The trace is rebuilt from a run's history (see :mod:`flowy.tracing.build`), so
it shows exactly what the engine acted on: an outcome that arrives for an
attempt that already has one is a late or duplicate delivery the engine ignored,
and the trace records it as such instead of as the attempt's result.

Payloads stay the codec strings of the history; they are only ever shortened for
display, never decoded, so that tracing works whatever the codec and can't fail
on a payload.

This module is the model only: it draws nothing and imports no renderer.  The
DOT builder (:mod:`flowy.tracing.dot`) reads it, the Graphviz rendering
(:mod:`flowy.tracing.render`) draws DOT source, and :class:`flowy.tracing.Trace`
(in :mod:`flowy.tracing.trace`) adds both to this data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..core.errors import ErrorInfo
from ..core.events import TaskKind, TimeoutType

__all__ = [
    "AttemptTrace", "Ignored", "Outcome", "RunStatus", "RunTrace", "SignalTrace", "TaskTrace",
    "TimerTrace", "TraceData", "describe_error", "format_seconds", "shorten",
]

Outcome = Literal["completed", "failed", "timed_out", "open"]
RunStatus = Literal["completed", "failed", "restarted", "open"]

#: How many characters of a payload or message a description shows.
SHORT = 60


def shorten(text: str, limit: int = SHORT) -> str:
    """``text`` on one line, cut to ``limit`` characters, marking the cut with an ellipsis.

    Line breaks show as ``\\n`` so that a summary stays one line of a label or
    timeline row.
    """
    text = text.replace("\r\n", "\n").replace("\n", "\\n")
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_seconds(seconds: float) -> str:
    """A duration for people: ``0.25s``, ``12.3s``, ``4m05s``, ``2h03m``."""
    if seconds < 10:
        return f"{seconds:.2f}s"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def describe_error(error: ErrorInfo) -> str:
    """``type: message``, the message shortened."""
    return f"{error.type_name}: {shorten(error.message)}"


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event the engine ignored (a late or duplicate outcome, an unknown key)."""

    at: float
    description: str

    def __str__(self) -> str:
        return self.description


@dataclass(frozen=True, slots=True)
class AttemptTrace:
    """One attempt of a call: one ``TaskScheduled`` and the outcome it got, if any.

    ``started_at`` is when a worker picked the attempt up (reported with the
    outcome, so ``None`` until then and for timeouts); ``finished_at`` is when the
    outcome was recorded.
    """

    key: str
    attempt: int
    scheduled_at: float
    started_at: float | None = None
    finished_at: float | None = None
    outcome: Outcome = "open"
    timeout_type: TimeoutType | None = None
    details: str | None = None
    error: ErrorInfo | None = None
    result: str | None = None
    ignored: tuple[Ignored, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from scheduling to the outcome, queueing included."""
        return None if self.finished_at is None else self.finished_at - self.scheduled_at

    def describe_outcome(self) -> str:
        """The outcome in a few words, with the shortened result or error."""
        if self.outcome == "completed":
            return f"completed: {shorten(self.result or '')}"
        if self.outcome == "failed" and self.error is not None:
            return f"failed: {describe_error(self.error)}"
        if self.outcome == "timed_out":
            return f"timed out ({self.timeout_type})"
        return self.outcome


@dataclass(frozen=True, slots=True)
class TimerTrace:
    """A durable timer, as recorded; the core starts them between retry attempts."""

    key: str
    delay: float
    started_at: float
    fired_at: float | None = None


@dataclass(frozen=True, slots=True)
class SignalTrace:
    """A signal the run received: the ``index``-th of its ``name`` (0 first),
    which the call ``NAME-INDEX`` of a signal dependency takes."""

    name: str
    index: int
    value: str
    received_at: float

    @property
    def call_id(self) -> str:
        return f"{self.name}-{self.index}"


@dataclass(frozen=True, slots=True)
class TaskTrace:
    """A call (``call_id``) and all its attempts, in order.

    ``timers`` are the retry timers that preceded attempts 2, 3, ...;
    ``child`` is the trace of the sub-workflow run by the latest attempt the
    engine supplied one for (kind ``"workflow"`` only).
    """

    call_id: str
    dependency: str
    kind: TaskKind
    deps: tuple[str, ...]
    attempts: tuple[AttemptTrace, ...]
    timers: tuple[TimerTrace, ...] = ()
    child: TraceData | None = None

    @property
    def status(self) -> Outcome:
        """The outcome of the last attempt: the one the workflow acted on."""
        return self.attempts[-1].outcome

    @property
    def retries(self) -> int:
        """How many attempts followed the first."""
        return len(self.attempts) - 1

    @property
    def result(self) -> str | None:
        """The last attempt's result (codec text), if it completed."""
        return self.attempts[-1].result

    @property
    def error(self) -> ErrorInfo | None:
        """The last attempt's error, if it failed."""
        return self.attempts[-1].error

    @property
    def duration(self) -> float | None:
        """Seconds from the first scheduling to the last outcome, retries included."""
        end = self.attempts[-1].finished_at
        return None if end is None else end - self.attempts[0].scheduled_at


@dataclass(frozen=True, slots=True)
class RunTrace:
    """One run of a workflow, from ``WorkflowStarted`` to its closing event.

    ``result`` is set when the run completed, ``error`` when it failed and
    ``next_input`` when it restarted (continue-as-new) with that input.
    ``ignored`` holds the events the engine ignored that belong to no attempt.
    """

    workflow: str
    run_id: str
    input: str | None
    started_at: float | None
    closed_at: float | None
    status: RunStatus
    tasks: tuple[TaskTrace, ...]
    timers: tuple[TimerTrace, ...] = ()
    signals: tuple[SignalTrace, ...] = ()
    result: str | None = None
    error: ErrorInfo | None = None
    next_input: str | None = None
    ignored_errors: tuple[str, ...] = ()
    ignored: tuple[Ignored, ...] = ()

    @property
    def duration(self) -> float | None:
        """Seconds from the start of the run to its close."""
        if self.started_at is None or self.closed_at is None:
            return None
        return self.closed_at - self.started_at

    def task(self, call_id: str) -> TaskTrace:
        """The task of ``call_id``; raises ``KeyError`` if the run never scheduled it."""
        for task in self.tasks:
            if task.call_id == call_id:
                return task
        raise KeyError(f"run {self.run_id} has no call {call_id!r}; "
                       f"its calls are {[t.call_id for t in self.tasks]}")

    def describe_close(self) -> str:
        """How the run closed in a few words, with the shortened result or error."""
        if self.status == "completed":
            return f"completed: {shorten(self.result or '')}"
        if self.status == "failed" and self.error is not None:
            return f"failed: {describe_error(self.error)}"
        if self.status == "restarted":
            return f"restarted with input {shorten(self.next_input or '')}"
        return "open"


@dataclass(frozen=True, slots=True, repr=False)
class TraceData:
    """The runs of one workflow execution: one per run of a continue-as-new chain.

    This is the data of a trace; :class:`flowy.tracing.Trace` adds drawing it.
    """

    runs: tuple[RunTrace, ...]

    def timeline(self) -> list[tuple[float, str]]:
        """``(seconds since the first run started, description)`` rows, by time.

        Rows with the same time keep the order runs, tasks and attempts were
        recorded in; a sub-workflow's rows are prefixed with its call id.
        """
        rows = _rows(self)
        starts = [run.started_at for run in self.runs if run.started_at is not None]
        origin = starts[0] if starts else min((at for at, _ in rows), default=0.0)
        # Rounded because differences of epoch stamps carry float noise (0.1000000002).
        return sorted(((round(at - origin, 6), text) for at, text in rows),
                      key=lambda row: row[0])

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}("]
        for number, run in enumerate(self.runs, 1):
            took = "" if run.duration is None else f" in {format_seconds(run.duration)}"
            lines.append(f"  {run.workflow} run {number} ({run.run_id}): "
                         f"{run.describe_close()}{took}")
            for task in run.tasks:
                tries = f", {len(task.attempts)} attempts" if task.retries else ""
                child = f", sub-workflow of {len(task.child.runs)} run(s)" if task.child else ""
                lines.append(f"    {task.call_id} ({task.dependency}): "
                             f"{task.attempts[-1].describe_outcome()}{tries}{child}")
            lines.extend(f"    ignored: {note}" for note in run.ignored)
        return "\n".join(lines) + ")"


def _rows(trace: TraceData) -> list[tuple[float, str]]:
    """Timeline rows with absolute times, in recording order."""
    rows: list[tuple[float, str]] = []
    for number, run in enumerate(trace.runs, 1):
        name = f"{run.workflow} run {number}"
        if run.started_at is not None:
            rows.append((run.started_at, f"{name} started ({run.run_id})"))
        for task in run.tasks:
            for attempt in task.attempts:
                what = f"{task.call_id} attempt {attempt.attempt}"
                rows.append((attempt.scheduled_at, f"{what} scheduled ({task.dependency})"))
                if attempt.started_at is not None:
                    rows.append((attempt.started_at, f"{what} started"))
                if attempt.finished_at is not None:
                    rows.append((attempt.finished_at, f"{what} {attempt.describe_outcome()}"))
                rows.extend((note.at, f"{what}: {note}") for note in attempt.ignored)
            if task.child is not None:
                rows.extend((at, f"{task.call_id} > {text}") for at, text in _rows(task.child))
        for timer in run.timers:
            rows.append((timer.started_at,
                         f"timer {timer.key} started ({format_seconds(timer.delay)})"))
            if timer.fired_at is not None:
                rows.append((timer.fired_at, f"timer {timer.key} fired"))
        rows.extend((signal.received_at,
                     f"signal {signal.call_id} received: {shorten(signal.value)}")
                    for signal in run.signals)
        rows.extend((note.at, f"{name}: {note}") for note in run.ignored)
        if run.closed_at is not None:
            rows.append((run.closed_at, f"{name} {run.describe_close()}"))
    return rows
