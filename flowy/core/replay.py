"""History in, decisions out: replay with a determinism check, and a decider cache.

:func:`replay` rebuilds a live :class:`Execution` from a recorded history.  It
feeds the facts of each decision batch to a fresh execution and checks that it
makes the decisions the history recorded; a workflow that makes different
calls raises :class:`NondeterminismError` naming the call, and nothing is
written.  :class:`Replayer` keeps live executions between decisions, so a
decision costs only its new events; it replays only on a cache miss.  It
holds each new decision to the run's :class:`~flowy.core.limits.Limits`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .codec import Codec
from .errors import UNCONTAINED, ErrorInfo, LimitError, NondeterminismError, qualified_name
from .events import (
    CLOSING_TYPES,
    Decision,
    Event,
    Fact,
    TaskScheduled,
    TimerStarted,
    WorkflowFailed,
    is_decision,
)
from .limits import DEFAULT_LIMITS, Limits, history_warning, limit_error
from .redaction import digest
from .spec import TaskSpec
from .workflow import Execution, WorkflowFactory


@dataclass(frozen=True)
class WorkflowDefinition:
    """Everything the core needs to run a workflow: code, dependencies, codec, limits."""

    factory: WorkflowFactory
    specs: Mapping[str, TaskSpec]
    codec: Codec
    limits: Limits = DEFAULT_LIMITS

    def new_execution(self) -> Execution:
        return Execution(self.factory, self.specs, self.codec)


def replay(definition: WorkflowDefinition, history: Sequence[Event]) -> Execution:
    """A live execution positioned at the end of ``history``."""
    execution = definition.new_execution()
    start, end = 0, len(history)
    while start < end:
        facts_end = start
        while facts_end < end and not is_decision(history[facts_end]):
            facts_end += 1
        batch_end = facts_end
        while batch_end < end and is_decision(history[batch_end]):
            batch_end += 1
        facts: list[Fact] = list(history[start:facts_end])  # type: ignore[arg-type]
        recorded: list[Decision] = list(history[facts_end:batch_end])  # type: ignore[arg-type]
        replayed = execution.decide(facts)
        if _failed_by_limit(recorded):
            # The limits in force then decided this batch.  Limits are
            # configuration, like timeouts: changing them breaks no replay
            # (and a new decision meets the new ones).  A run that failed
            # with a child's limit error is taken as recorded too: its
            # batch was that one failure either way.
            execution.overrule(replayed, recorded[0])
        else:
            check_same_decisions(recorded, replayed)
        start = batch_end
    return execution


_LIMIT_ERROR = qualified_name(LimitError)


def _failed_by_limit(recorded: Sequence[Decision]) -> bool:
    return (len(recorded) == 1 and isinstance(recorded[0], WorkflowFailed)
            and _LIMIT_ERROR in recorded[0].error.type_mro)


# What must be the same on replay.  Timeouts, retry delays and the recorded
# deps are configuration or follow from these, so changing an activity's
# timeout does not break the runs in flight.
_COMPARED_FIELDS = ("call_id", "dependency", "kind", "input", "attempt")


def _identity(decision: Decision) -> str:
    if isinstance(decision, (TaskScheduled, TimerStarted)):
        return decision.key
    return "the end of the run"


def _fingerprint(payload: str) -> str:
    """A payload as errors show it: its length and a hash prefix, never its
    content, which may be secret and can be large (an error is recorded)."""
    return f"an input of {len(payload):,} characters, SHA-256 {digest(payload, 12)}"


def _describe(decision: Decision) -> str:
    if isinstance(decision, TaskScheduled):
        return f"{decision.key} ({decision.dependency} with {_fingerprint(decision.input)})"
    if isinstance(decision, TimerStarted):
        return f"timer {decision.key}"
    return type(decision).__name__


def _difference(recorded: Decision, replayed: Decision) -> str | None:
    """How ``replayed`` differs from ``recorded`` where it matters, or None."""
    if type(recorded) is type(replayed):
        if not isinstance(recorded, TaskScheduled):
            return None
        changed = [name for name in _COMPARED_FIELDS
                   if getattr(recorded, name) != getattr(replayed, name)]
        if not changed:
            return None
    problem = (f"on replay the workflow made {_describe(replayed)}, but the history "
               f"recorded {_describe(recorded)}")
    if _describe(replayed) == _describe(recorded):
        name = changed[0]
        if name == "input":  # other content behind the same fingerprint: not shown either
            problem += " (another input of the same length and hash prefix)"
        else:
            problem += (f" (with {name} {getattr(recorded, name)!r}, "
                        f"not {getattr(replayed, name)!r})")
    return problem


def check_same_decisions(recorded: Sequence[Decision], replayed: Sequence[Decision]) -> None:
    """Raise NondeterminismError, naming the first difference, unless they match."""
    expected = {_identity(d): d for d in recorded}
    actual = {_identity(d): d for d in replayed}
    problem = None
    for identity, was in expected.items():
        now = actual.get(identity)
        if now is None:
            extra = [d for i, d in actual.items() if i not in expected]
            instead = f"; it made {_describe(extra[0])} instead" if extra else ""
            problem = (f"the history recorded {_describe(was)}, but on replay the workflow "
                       f"did not make that call{instead}")
        else:
            problem = _difference(was, now)
        if problem:
            break
    else:
        extra = [d for i, d in actual.items() if i not in expected]
        if extra:
            problem = (f"on replay the workflow made {_describe(extra[0])}, which the history "
                       "does not have")
    if problem:
        raise NondeterminismError(
            f"workflow is not deterministic: {problem}. Workflow code must make the same calls "
            "with the same arguments every time it runs (no clocks, random numbers or I/O).")


def is_closed(history: Sequence[Event]) -> bool:
    """Whether the run has closed: its last decision closes it (facts may follow)."""
    for event in reversed(history):
        if is_decision(event):
            return isinstance(event, CLOSING_TYPES)
    return False


class Replayer:
    """Turns each run's new facts into decisions, keeping live runs cached.

    A live run is a greenlet, which belongs to the thread that created it: use
    one Replayer per thread.  After a failed commit, call :meth:`forget`.

    A decision that would take the history past the definition's
    :class:`~flowy.core.limits.Limits`, or start too many tasks, fails the run
    instead.  After each :meth:`decide`, :attr:`warning` is what the engine
    should log about the run (its history passed a warning threshold in
    that decision), or None.
    """

    def __init__(self, cache_size: int = 1000) -> None:
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Execution] = OrderedDict()
        self.replays = 0  # full replays done, for tests and benchmarks
        self.warning: str | None = None

    def decide(self, run_id: str, definition: WorkflowDefinition, history: Sequence[Event],
               new_facts: list[Fact]) -> list[Decision]:
        """Decisions for ``new_facts``, which come after the committed ``history``."""
        self.warning = None
        execution = self._cache.pop(run_id, None)
        if execution is None and is_closed(history):
            return []  # late facts for a closed run change nothing
        try:
            if execution is None or execution.position != len(history):
                self.replays += 1
                execution = replay(definition, history)
            before = (execution.position, execution.size)
            decisions = execution.decide(new_facts)
        except NondeterminismError as exc:
            return [WorkflowFailed(exc.info)]
        except UNCONTAINED:
            raise
        except BaseException as exc:  # noqa: BLE001 - e.g. an undecodable input fails the run
            return [WorkflowFailed(ErrorInfo.from_exception(exc))]
        limits = definition.limits
        after = (execution.position, execution.size)
        error = limit_error(limits, *after, decisions)
        if error is not None:
            decisions = execution.overrule(decisions, WorkflowFailed(error))
        else:
            self.warning = history_warning(limits, before, after, decisions)
        if not execution.closed and self.cache_size > 0:
            self._cache[run_id] = execution
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return decisions

    def forget(self, run_id: str) -> None:
        self._cache.pop(run_id, None)
