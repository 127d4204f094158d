"""How long a run's history and how big one decision may grow: the rules, written once.

A history that grows without bound makes every replay slower and, on AWS,
every load of the run; one decision that schedules without bound is one
commit and one burst of messages without bound.  So each run has
:class:`Limits`: past a warning threshold the engine logs a warning (the
decision that crosses it says so, :attr:`Replayer.warning
<flowy.core.replay.Replayer.warning>`), and a decision that would take the
history past its limit, or that schedules too many tasks, fails the run
instead, with an error that says the limit, the figure and what to do.

The defaults are Temporal's (warn at 10,240 events or 10 MiB, fail at 51,200
or 50 MiB), more generous than SWF's hard 25,000 events.  A history's size
is the sum of the lengths of its payloads, in characters: inputs, results,
signal values, heartbeat details and recorded errors (message and
traceback); the JSON codec writes mostly ASCII, so that is about its bytes.
An execution keeps the count as it consumes events (``Execution.size``),
so a decision costs what its new events cost, not the whole history.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

from .errors import ConfigurationError, DecisionLimitError, ErrorInfo, HistoryLimitError
from .events import (
    CLOSING_TYPES,
    CancelRequested,
    Decision,
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

MiB = 1024 * 1024

_RESTART_HINT = ("continue as a new run, with a fresh history, by returning "
                 "flowy.restart(...) from the workflow")


@dataclass(frozen=True, slots=True)
class Limits:
    """A workflow's limits (``Workflow(..., limits=Limits(...))``).

    ``history_events`` and ``history_size`` (characters of payloads) are the
    most a run's history may reach while the run stays open: a decision that
    would take it further fails the run with :class:`flowy.HistoryLimitError`
    (a decision that closes the run, a restart's included, always goes
    through, so that a run can always end).  The ``*_warning`` thresholds
    make the one decision that crosses them report a warning.
    ``tasks_per_decision`` bounds the tasks and timers one decision starts:
    more fail the run with :class:`flowy.DecisionLimitError`.
    """

    history_events: int = 51_200
    history_events_warning: int = 10_240
    history_size: int = 50 * MiB
    history_size_warning: int = 10 * MiB
    # 10 times SWF's 1,000 open activities and 5 times Temporal's 2,000
    # pending: it lets the benchmark's 10,000-task fan-out go in one decision,
    # while one batch stays about 2.3 MB (an S3 object on AWS, and 1,000
    # SendMessageBatch calls).  A decision of N tasks adds at least 2N events,
    # so past 25,600 the history limit would stop the run anyway.
    tasks_per_decision: int = 10_000

    def __post_init__(self) -> None:
        for item in fields(self):
            value = getattr(self, item.name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigurationError(
                    f"Limits.{item.name} must be an integer >= 1, got {value!r}")
        for name in ("history_events", "history_size"):
            if getattr(self, f"{name}_warning") > getattr(self, name):
                raise ConfigurationError(
                    f"Limits.{name}_warning ({getattr(self, f'{name}_warning'):,}) must not be "
                    f"over Limits.{name} ({getattr(self, name):,})")


DEFAULT_LIMITS = Limits()


def _error_size(error: ErrorInfo) -> int:
    return len(error.message) + len(error.traceback)


# What each event adds to a history's size: one lookup and one len() per
# event, so that counting costs nothing next to deciding.
_SIZES: dict[type, Callable[[Any], int]] = {
    WorkflowStarted: lambda e: len(e.input),
    TaskCompleted: lambda e: len(e.result),
    TaskFailed: lambda e: _error_size(e.error),
    TaskTimedOut: lambda e: len(e.details) if e.details else 0,
    TimerFired: lambda e: 0,
    SignalReceived: lambda e: len(e.value),
    CancelRequested: lambda e: len(e.reason),
    TaskScheduled: lambda e: len(e.input),
    TimerStarted: lambda e: 0,
    WorkflowCompleted: lambda e: len(e.result),
    WorkflowFailed: lambda e: _error_size(e.error),
    WorkflowRestarted: lambda e: len(e.input),
}


def payload_size(event: Event) -> int:
    """The characters of payload ``event`` adds to its history's size."""
    return _SIZES[type(event)](event)


def limit_error(limits: Limits, events: int, size: int,
                decisions: Sequence[Decision]) -> ErrorInfo | None:
    """Why a decision must fail the run instead of being committed, or None.

    ``events`` and ``size`` are the history's figures with the decision
    committed (its new facts and ``decisions``).
    """
    started = 0
    if len(decisions) > limits.tasks_per_decision:  # else it can't be over: no count
        started = sum(1 for d in decisions if isinstance(d, (TaskScheduled, TimerStarted)))
    if started > limits.tasks_per_decision:
        return DecisionLimitError(
            f"one decision started {started:,} tasks and timers, over the limit of "
            f"{limits.tasks_per_decision:,} per decision (Limits.tasks_per_decision): start "
            "them in groups, waiting for one group before starting the next, or raise "
            "the limit").info
    if decisions and isinstance(decisions[-1], CLOSING_TYPES):
        return None  # a run can always close
    if events > limits.history_events:
        return HistoryLimitError(
            f"the run's history would reach {events:,} events, over its limit of "
            f"{limits.history_events:,} (Limits.history_events): {_RESTART_HINT}").info
    if size > limits.history_size:
        return HistoryLimitError(
            f"the run's history would reach {size:,} characters of payloads, over its limit "
            f"of {limits.history_size:,} (Limits.history_size): {_RESTART_HINT}").info
    return None


def history_warning(limits: Limits, before: tuple[int, int], after: tuple[int, int],
                    decisions: Sequence[Decision]) -> str | None:
    """A warning if this decision takes the history, as ``(events, size)``,
    from ``before`` past a warning threshold, else None: only the decision
    that crosses a threshold reports it, so a long run warns once, not on
    every decision after."""
    if decisions and isinstance(decisions[-1], CLOSING_TYPES):
        return None  # the run ends: nothing to do about its history
    passed = []
    if before[0] <= limits.history_events_warning < after[0]:
        passed.append(f"{after[0]:,} events (it fails the run past {limits.history_events:,})")
    if before[1] <= limits.history_size_warning < after[1]:
        passed.append(f"{after[1]:,} characters of payloads (it fails the run past "
                      f"{limits.history_size:,})")
    if not passed:
        return None
    return (f"the run's history has reached {' and '.join(passed)}: {_RESTART_HINT} "
            "before then")
