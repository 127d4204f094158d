"""Building histories by hand and driving the pure core with them.

A workflow's code is a function of its history: the facts that came in
(started, completed, failed, timed out, fired, signalled, cancelled) decide
what it calls next.  These helpers let a test state a history and check the
decisions, with no engine, no threads and no clock, the way Flowy's own core
tests do:

.. code-block:: python

    from flowy.testing.history import HistoryBuilder, decide, done, sched

    decisions = decide(workflow, [], HistoryBuilder().started(2, 10))
    assert decisions == [sched("square-0-1", 2), sched("square-1-1", 10)]

* :class:`HistoryBuilder` builds a batch of facts by chained calls.
* :func:`sched`, :func:`timer`, :func:`done`, :func:`restarted` and
  :class:`RunFailed` build the decisions a test expects; :func:`comparable`
  turns actual decisions into the same shape (a failed run is compared on its
  message and type name, not on its traceback).
* :func:`decide` makes one decision; :func:`drive` feeds batches of facts in
  turn, committing each with its decisions as an engine does; :func:`auto_run`
  plays the whole engine synchronously with plain functions as activities.

Values are encoded with :data:`CODEC` (a plain :class:`flowy.JSONCodec`), and
the functions that take a workflow accept a :class:`flowy.Workflow` (a
``LocalWorkflow`` too) or a core :class:`~flowy.core.replay.WorkflowDefinition`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..codec import JSONCodec
from ..core.errors import ErrorInfo
from ..core.events import (
    CLOSING_TYPES,
    CancelRequested,
    Decision,
    Event,
    Fact,
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
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.replay import Replayer, WorkflowDefinition
from ..core.spec import TaskSpec
from ..core.workflow import WorkflowFactory
from ..declaration import Workflow

__all__ = ["CODEC", "HistoryBuilder", "RunFailed", "auto_run", "comparable", "decide",
           "definition", "done", "drive", "enc", "inp", "restarted", "sched", "timer"]

CODEC = JSONCodec()
_run_ids = itertools.count()

WorkflowLike = Workflow | WorkflowDefinition


def enc(value: Any) -> str:
    """``value`` encoded as a payload (a result, a signal's value)."""
    return CODEC.encode(value)


def inp(*args: Any, **kwargs: Any) -> str:
    """The encoded input of a task or run called with these arguments."""
    return CODEC.encode([list(args), kwargs])


def definition(factory: WorkflowFactory, *names: str, limits: Limits = DEFAULT_LIMITS,
               **specs: TaskSpec) -> WorkflowDefinition:
    """A core definition whose dependencies ``names`` are plain activities, plus
    ``specs``: a workflow to drive without declaring it (no functions needed),
    under ``limits``."""
    all_specs: dict[str, TaskSpec] = {name: TaskSpec() for name in names}
    all_specs.update(specs)
    return WorkflowDefinition(factory, all_specs, CODEC, limits)


def _definition(workflow: WorkflowLike) -> WorkflowDefinition:
    return workflow.definition if isinstance(workflow, Workflow) else workflow


class HistoryBuilder:
    """A list of facts, built by chained calls: ``HistoryBuilder().started(2)``,
    ``.completed("square-0-1", 4)``, ``.failed(...)``, ``.timed_out(...)``,
    ``.fired(...)``, ``.signaled(...)``, ``.cancelled(...)``.  Task keys are
    the attempt keys the core gives: ``'<dependency>-<call number>-<attempt>'``."""

    def __init__(self) -> None:
        self.events: list[Fact] = []

    def started(self, *args: Any, **kwargs: Any) -> HistoryBuilder:
        self.events.append(WorkflowStarted(inp(*args, **kwargs)))
        return self

    def completed(self, key: str, value: Any) -> HistoryBuilder:
        self.events.append(TaskCompleted(key, enc(value)))
        return self

    def failed(self, key: str, exc_or_message: BaseException | str,
               type_name: str = "builtins.ValueError", traceback: str = "",
               type_mro: tuple[str, ...] | None = None) -> HistoryBuilder:
        if isinstance(exc_or_message, BaseException):
            error = ErrorInfo.from_exception(exc_or_message)
        else:
            error = ErrorInfo(exc_or_message, type_name, traceback,
                              type_mro if type_mro is not None else (type_name,))
        self.events.append(TaskFailed(key, error))
        return self

    def timed_out(self, key: str, timeout_type: str = "start_to_close",
                  details: str | None = None) -> HistoryBuilder:
        self.events.append(TaskTimedOut(key, timeout_type, details))  # type: ignore[arg-type]
        return self

    def fired(self, key: str) -> HistoryBuilder:
        self.events.append(TimerFired(key))
        return self

    def signaled(self, name: str, value: Any = None, id: str | None = None) -> HistoryBuilder:
        """A ``name`` signal with ``value``; ``id`` (unique by default) is what
        makes a re-sent signal a no-op."""
        self.events.append(SignalReceived(name, enc(value), id or f"signal-{next(_run_ids)}"))
        return self

    def cancelled(self, reason: str = "") -> HistoryBuilder:
        self.events.append(CancelRequested(reason))
        return self

    def build(self) -> list[Fact]:
        return list(self.events)


def facts(batch: HistoryBuilder | Sequence[Fact]) -> list[Fact]:
    return batch.build() if isinstance(batch, HistoryBuilder) else list(batch)


# -- expected decisions -------------------------------------------------------

def sched(key: str, *args: Any, deps: Iterable[str] = (), kind: str = "activity",
          spec: TaskSpec | None = None, **kwargs: Any) -> TaskScheduled:
    """The TaskScheduled of attempt key ``'<dep>-<n>-<attempt>'`` with these arguments."""
    call_id, _, attempt = key.rpartition("-")
    spec = spec or TaskSpec(kind=kind)  # type: ignore[arg-type]
    if spec.kind != "activity" and spec.kind != "workflow":
        raise ValueError(f"sched is for activities and sub-workflows, not a {spec.kind}: "
                         "a timer's decision is timer(key, delay)")
    return TaskScheduled(key, call_id, call_id.rpartition("-")[0], spec.kind, inp(*args, **kwargs),
                         int(attempt), tuple(deps), spec.start_to_close,
                         spec.schedule_to_start, spec.heartbeat)


def timer(key: str, delay: float) -> TimerStarted:
    return TimerStarted(key, delay)


def done(value: Any, ignored: Iterable[str] = ()) -> WorkflowCompleted:
    return WorkflowCompleted(enc(value), tuple(ignored))


def restarted(*args: Any, **kwargs: Any) -> WorkflowRestarted:
    return WorkflowRestarted(inp(*args, **kwargs))


@dataclass(frozen=True)
class RunFailed:
    """A WorkflowFailed as tests compare it: message and type name (tracebacks vary)."""

    message: str
    type_name: str


def comparable(decisions: Sequence[Decision]) -> list[Any]:
    return [RunFailed(d.error.message, d.error.type_name) if isinstance(d, WorkflowFailed) else d
            for d in decisions]


# -- driving ------------------------------------------------------------------

def decide(workflow: WorkflowLike, history_so_far: Sequence[Event],
           new_facts: HistoryBuilder | Sequence[Fact], replayer: Replayer | None = None,
           run_id: str = "run") -> list[Decision]:
    """One decision; without a replayer, a fresh one that replays ``history_so_far``."""
    replayer = replayer if replayer is not None else Replayer(cache_size=0)
    return replayer.decide(run_id, _definition(workflow), list(history_so_far),
                           facts(new_facts))


def drive(workflow: WorkflowLike, batches: Sequence[HistoryBuilder | Sequence[Fact]],
          replayer: Replayer | None = None) -> tuple[list[Event], list[list[Decision]]]:
    """Feed each batch of facts in turn, committing it and its decisions like an engine.

    Returns the full history and the decisions of each batch.
    """
    replayer = replayer if replayer is not None else Replayer()
    definition = _definition(workflow)
    run_id = f"run-{next(_run_ids)}"
    history: list[Event] = []
    per_batch: list[list[Decision]] = []
    for batch in batches:
        new = facts(batch)
        decisions = replayer.decide(run_id, definition, history, new)
        history += [*new, *decisions]
        per_batch.append(decisions)
    return history, per_batch


def _execute(function: Callable[..., Any], decision: TaskScheduled) -> Fact:
    args, kwargs = CODEC.decode(decision.input)
    try:
        value = function(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - a failing activity is recorded, like a worker does
        return TaskFailed(decision.key, ErrorInfo.from_exception(exc))
    return TaskCompleted(decision.key, enc(value))


def auto_run(workflow: WorkflowLike, functions: Mapping[str, Callable[..., Any]],
             *args: Any, replayer: Replayer | None = None, max_decisions: int = 200,
             **kwargs: Any) -> tuple[Decision, list[Event]]:
    """Play the engine synchronously until the run closes.

    Every task scheduled in a decision runs (in order) before the next decision,
    through ``functions[dependency]``; every timer fires at once.  Returns the
    closing decision and the full history.
    """
    replayer = replayer if replayer is not None else Replayer()
    definition = _definition(workflow)
    run_id = f"auto-{next(_run_ids)}"
    history: list[Event] = []
    new: list[Fact] = [WorkflowStarted(inp(*args, **kwargs))]
    for _ in range(max_decisions):
        decisions = replayer.decide(run_id, definition, history, new)
        history += [*new, *decisions]
        new = []
        for decision in decisions:
            if isinstance(decision, CLOSING_TYPES):
                return decision, history
            if isinstance(decision, TaskScheduled):
                new.append(_execute(functions[decision.dependency], decision))
            elif isinstance(decision, TimerStarted):
                new.append(TimerFired(decision.key))
        if not new:
            raise AssertionError(f"the run is stuck: nothing to do after {history[-3:]}")
    raise AssertionError(f"the run did not close in {max_decisions} decisions")
