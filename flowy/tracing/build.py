"""Building a run's trace from its history.

The trace shows what the engine acted on, so the builder follows the engine's
rules: the first outcome of an attempt counts, and a later one (a result that
arrives after the attempt timed out, a duplicate delivery) is recorded as
ignored; so are outcomes and timers with unknown keys and anything that arrives
after the run closed.  Nothing in a history makes the builder raise: a trace
must never fail a run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from ..core.events import (
    CancelRequested,
    Event,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
)
from .model import (
    AttemptTrace,
    Ignored,
    Outcome,
    RunStatus,
    RunTrace,
    SignalTrace,
    TaskTrace,
    TimerTrace,
    TraceData,
    describe_error,
    shorten,
)

__all__ = ["build_run_trace"]

OutcomeEvent = TaskCompleted | TaskFailed | TaskTimedOut

_NO_CHILDREN: Mapping[str, TraceData] = MappingProxyType({})


@dataclass
class _Call:
    """A call being assembled; attempts stay mutable until the history is read.

    ``decided_at`` is the history position of the outcome of the latest
    attempt, which the retry timer (if any) must follow.
    """

    first: TaskScheduled
    attempts: list[AttemptTrace] = field(default_factory=list)
    timers: list[str] = field(default_factory=list)
    decided_at: int | None = None

    def index(self, key: str) -> int:
        return next(i for i, attempt in enumerate(self.attempts) if attempt.key == key)


@dataclass
class _Builder:
    """The state of one pass over a history; positions are indexes into it."""

    calls: dict[str, _Call] = field(default_factory=dict)
    attempt_call: dict[str, _Call] = field(default_factory=dict)
    timers: dict[str, TimerTrace] = field(default_factory=dict)
    timer_started: dict[str, int] = field(default_factory=dict)
    claimed: set[str] = field(default_factory=set)
    ignored: list[Ignored] = field(default_factory=list)
    signals: list[SignalTrace] = field(default_factory=list)
    started: WorkflowStarted | None = None
    closing: WorkflowCompleted | WorkflowFailed | WorkflowRestarted | None = None

    def add(self, position: int, event: Event) -> None:
        if isinstance(event, (TaskCompleted, TaskFailed, TaskTimedOut)):
            self.outcome(position, event)
        elif self.closing is not None:
            self.ignore(event.at, f"{type(event).__name__} after the run closed")
        elif isinstance(event, SignalReceived):
            index = sum(1 for signal in self.signals if signal.name == event.name)
            self.signals.append(SignalTrace(event.name, index, event.value, event.at))
        elif isinstance(event, CancelRequested):
            pass  # its reason is in the WorkflowFailed that answers it
        elif isinstance(event, WorkflowStarted):
            if self.started is None:
                self.started = event
            else:
                self.ignore(event.at, "second WorkflowStarted")
        elif isinstance(event, TaskScheduled):
            self.schedule(event)
        elif isinstance(event, TimerStarted):
            if event.key in self.timers:
                self.ignore(event.at, f"duplicate TimerStarted {event.key!r}")
            else:
                self.timers[event.key] = TimerTrace(event.key, event.delay, event.at)
                self.timer_started[event.key] = position
        elif isinstance(event, TimerFired):
            timer = self.timers.get(event.key)
            if timer is None or timer.fired_at is not None:
                self.ignore(event.at, f"TimerFired {event.key!r} for an unknown or "
                                      "already fired timer")
            else:
                self.timers[event.key] = replace(timer, fired_at=event.at)
        else:
            self.closing = event

    def ignore(self, at: float, description: str) -> None:
        self.ignored.append(Ignored(at, f"{description} ignored"))

    def schedule(self, event: TaskScheduled) -> None:
        if event.key in self.attempt_call:
            self.ignore(event.at, f"duplicate TaskScheduled {event.key!r}")
            return
        call = self.calls.setdefault(event.call_id, _Call(event))
        if call.attempts:
            timer = self.retry_timer(call)
            if timer is not None:
                self.claimed.add(timer)
                call.timers.append(timer)
        call.attempts.append(AttemptTrace(event.key, event.attempt, event.at))
        self.attempt_call[event.key] = call

    def retry_timer(self, call: _Call) -> str | None:
        """The key of the timer that delayed the retry of ``call`` now being scheduled.

        The core starts a retry timer in answer to the previous attempt's outcome
        and schedules the retry once it fired, so the candidates are the timers
        started after that outcome that have fired and delay no other retry.
        Timer key formats are the core's business: a key naming the call only
        breaks ties, otherwise the earliest started wins, as the core answers
        outcomes in the order they arrive.
        """
        if call.decided_at is None:
            return None
        candidates = [key for key, timer in self.timers.items()
                      if key not in self.claimed and timer.fired_at is not None
                      and self.timer_started[key] > call.decided_at]
        if not candidates:
            return None
        return min(candidates, key=lambda key: (call.first.call_id not in key,
                                                self.timer_started[key]))

    def outcome(self, position: int, event: OutcomeEvent) -> None:
        call = self.attempt_call.get(event.key)
        if call is None:
            self.ignore(event.at, f"{_describe_event(event)} for unknown attempt "
                                  f"{event.key!r}")
            return
        index = call.index(event.key)
        attempt = call.attempts[index]
        if attempt.outcome == "open" and self.closing is None:
            call.attempts[index] = _apply_outcome(attempt, event)
            call.decided_at = position
            return
        # The engine keeps the first outcome of an attempt and stops listening
        # when the run closes; anything else lost a race (a result after a
        # timeout) or is a duplicate delivery.
        if attempt.outcome == "open":
            kind, why = "late", "run already closed"
        else:
            kind = "duplicate" if _outcome_name(event) == attempt.outcome else "late"
            why = f"attempt already {attempt.outcome}"
        note = Ignored(event.at, f"{kind} {_describe_event(event)} ignored: {why}")
        call.attempts[index] = replace(attempt, ignored=(*attempt.ignored, note))

    def run_trace(self, workflow: str, run_id: str,
                  children: Mapping[str, TraceData]) -> RunTrace:
        started, closing = self.started, self.closing
        return RunTrace(
            workflow=workflow, run_id=run_id,
            input=None if started is None else started.input,
            started_at=None if started is None else started.at,
            closed_at=None if closing is None else closing.at,
            status=_run_status(closing),
            tasks=tuple(self.task_trace(call, children) for call in self.calls.values()),
            timers=tuple(self.timers.values()),
            signals=tuple(self.signals),
            result=closing.result if isinstance(closing, WorkflowCompleted) else None,
            error=closing.error if isinstance(closing, WorkflowFailed) else None,
            next_input=closing.input if isinstance(closing, WorkflowRestarted) else None,
            ignored_errors=(closing.ignored_errors
                            if isinstance(closing, (WorkflowCompleted, WorkflowRestarted))
                            else ()),
            ignored=tuple(self.ignored),
        )

    def task_trace(self, call: _Call, children: Mapping[str, TraceData]) -> TaskTrace:
        first = call.first
        child_keys = [a.key for a in call.attempts if a.key in children]
        return TaskTrace(
            call_id=first.call_id, dependency=first.dependency, kind=first.kind,
            deps=first.deps, attempts=tuple(call.attempts),
            timers=tuple(self.timers[key] for key in call.timers),
            child=children[child_keys[-1]] if child_keys else None,
        )


def build_run_trace(workflow: str, run_id: str, history: Sequence[Event],
                    children: Mapping[str, TraceData] = _NO_CHILDREN) -> RunTrace:
    """The trace of one run from its ``history``.

    ``children`` maps the attempt key of a sub-workflow task (kind
    ``"workflow"``) to that child's trace, which the engine supplies.  Events the
    engine ignored (a second outcome for an attempt, outcomes or timers with
    unknown keys, anything after the run closed) are recorded as ignored
    instead of raising, so that any history can be traced.
    """
    builder = _Builder()
    for position, event in enumerate(history):
        builder.add(position, event)
    return builder.run_trace(workflow, run_id, children)


def _outcome_name(event: OutcomeEvent) -> Outcome:
    if isinstance(event, TaskCompleted):
        return "completed"
    return "failed" if isinstance(event, TaskFailed) else "timed_out"


def _apply_outcome(attempt: AttemptTrace, event: OutcomeEvent) -> AttemptTrace:
    if isinstance(event, TaskCompleted):
        return replace(attempt, outcome="completed", result=event.result,
                       started_at=event.started_at, finished_at=event.at)
    if isinstance(event, TaskFailed):
        return replace(attempt, outcome="failed", error=event.error,
                       started_at=event.started_at, finished_at=event.at)
    return replace(attempt, outcome="timed_out", timeout_type=event.timeout_type,
                   details=event.details, finished_at=event.at)


def _describe_event(event: OutcomeEvent) -> str:
    if isinstance(event, TaskCompleted):
        return f"TaskCompleted (result {shorten(event.result)})"
    if isinstance(event, TaskFailed):
        return f"TaskFailed ({describe_error(event.error)})"
    return f"TaskTimedOut ({event.timeout_type})"


def _run_status(closing: Event | None) -> RunStatus:
    if isinstance(closing, WorkflowCompleted):
        return "completed"
    if isinstance(closing, WorkflowFailed):
        return "failed"
    return "restarted" if isinstance(closing, WorkflowRestarted) else "open"
