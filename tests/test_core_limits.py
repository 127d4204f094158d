"""Limits on a run's history and on one decision: history in, decisions out.

Small limits, set on the definition, stand for the large defaults.
"""

from __future__ import annotations

from typing import Any

import pytest

import flowy
from flowy.core.errors import (
    ConfigurationError,
    DecisionLimitError,
    ErrorInfo,
    HistoryLimitError,
    LimitError,
    TaskError,
)
from flowy.core.events import Decision, Event, Fact, TaskScheduled, WorkflowRestarted
from flowy.core.limits import DEFAULT_LIMITS, Limits, payload_size
from flowy.core.replay import Replayer, replay
from flowy.core.spec import TaskSpec
from flowy.testing.history import (
    CODEC,
    RunFailed,
    auto_run,
    comparable,
    decide,
    definition,
    done,
    enc,
    inp,
    sched,
    timer,
)
from flowy.testing.history import HistoryBuilder as B

RESTART_HINT = ("continue as a new run, with a fresh history, by returning flowy.restart(...) "
                "from the workflow")


class Chain:
    """``n`` calls, each waiting for the one before: two events per decision."""

    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self, n: int) -> Any:
        return [flowy.wait(self.square(i)) for i in range(n)]


class FanOut:
    def __init__(self, square: Any, sleep: Any) -> None:
        self.square, self.sleep = square, sleep

    def __call__(self, tasks: int, timers: int = 0) -> Any:
        naps = [self.sleep(1) for _ in range(timers)]
        return sum([self.square(i) for i in range(tasks)]), naps


class Countdown:
    """Squares ``n`` numbers, ``per_run`` of them in each run, restarting for the rest."""

    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self, n: int, per_run: int, total: int = 0) -> Any:
        for i in range(min(n, per_run)):
            total = total + self.square(i)
        if n > per_run:
            return flowy.restart(n - per_run, per_run, total)
        return total


class Listens:
    def __init__(self, approve: Any) -> None:
        self.approve = approve

    def __call__(self) -> Any:
        return flowy.wait(self.approve())


def chain(limits: Limits) -> Any:
    return definition(Chain, "square", limits=limits)


def play_chain(defn: Any, n: int, replayer: Replayer | None = None,
               results: dict[int, Any] | None = None
               ) -> tuple[list[Event], list[list[Decision]], list[str | None]]:
    """Play Chain(n) decision by decision, square-k-1 finishing with ``results[k]``
    (``k * k`` by default): the history, each decision and its warning."""
    replayer = replayer or Replayer()
    results = results or {}
    history: list[Event] = []
    per_decision: list[list[Decision]] = []
    warnings: list[str | None] = []
    new: list[Fact] = B().started(n).build()
    while new:
        decisions = replayer.decide("run", defn, history, new)
        history += [*new, *decisions]
        per_decision.append(decisions)
        warnings.append(replayer.warning)
        batch = B()
        for d in decisions:
            if isinstance(d, TaskScheduled):
                k = int(d.call_id.rpartition("-")[2])
                batch.completed(d.key, results.get(k, k * k))
        new = batch.build()
    return history, per_decision, warnings


# -- history length -------------------------------------------------------------

def test_the_decision_that_passes_the_warning_threshold_warns_once() -> None:
    # Each decision adds two events: 2, 4, 6, 8, ... events after it.
    _, decisions, warnings = play_chain(chain(Limits(history_events=100,
                                                     history_events_warning=6)), 6)
    assert decisions[-1] == [done([i * i for i in range(6)])]
    assert warnings == [None, None, None, (
        f"the run's history has reached 8 events (it fails the run past 100): {RESTART_HINT} "
        "before then"), None, None, None]


@pytest.mark.parametrize("cache_size", [1000, 0])
def test_past_the_limit_the_run_fails_saying_the_limit_and_restart(cache_size: int) -> None:
    defn = chain(Limits(history_events=20, history_events_warning=10))
    history, decisions, _ = play_chain(defn, 50, Replayer(cache_size))
    # Ten decisions make 20 events, at the limit; the eleventh would make 22.
    assert [len(d) for d in decisions[:10]] == [1] * 10
    assert comparable(decisions[10]) == [RunFailed(
        f"the run's history would reach 22 events, over its limit of 20 "
        f"(Limits.history_events): {RESTART_HINT}", "flowy.HistoryLimitError")]
    # Its fact and the failure are committed all the same: a run can always close.
    assert len(decisions) == 11 and len(history) == 22
    error = TaskError.from_info(decisions[10][0].error)  # what a client's result() raises
    assert isinstance(error, HistoryLimitError) and isinstance(error, LimitError)


def test_a_decision_that_closes_the_run_goes_through_past_the_limit() -> None:
    history, decisions, _ = play_chain(chain(Limits(history_events=3,
                                                    history_events_warning=1)), 1)
    assert decisions == [[sched("square-0-1", 0)], [done([0])]]  # 4 events: a run can close
    assert len(history) == 4


def test_facts_count_too_so_a_flood_of_signals_fails_the_run() -> None:
    defn = definition(Listens, approve=TaskSpec(kind="signal"),
                      limits=Limits(history_events=4, history_events_warning=1))
    history: list[Event] = []
    per_batch = []
    for batch in (B().started(), *(B().signaled("other", i) for i in range(4))):
        decisions = decide(defn, history, batch)
        history += [*batch.build(), *decisions]
        per_batch.append(decisions)
    assert per_batch[:4] == [[], [], [], []]
    assert comparable(per_batch[4]) == [RunFailed(
        "the run's history would reach 5 events, over its limit of 4 "
        f"(Limits.history_events): {RESTART_HINT}", "flowy.HistoryLimitError")]


def test_a_restart_starts_a_fresh_history() -> None:
    limits = Limits(history_events=10, history_events_warning=10)
    defn = definition(Countdown, "square", limits=limits)
    squares = {"square": lambda x: x * x}
    # Twelve steps in one run would be 26 events; four runs of three stay under 10.
    closing, _ = auto_run(defn, squares, 12, 12)
    assert comparable([closing])[0].type_name == "flowy.HistoryLimitError"
    runs, args = [], [12, 3]
    replayer = Replayer()
    while True:
        closing, history = auto_run(defn, squares, *args, replayer=replayer)
        runs.append(len(history))
        if not isinstance(closing, WorkflowRestarted):
            break
        args = CODEC.decode(closing.input)[0]
    assert runs == [8, 8, 8, 8]
    assert closing == done(4 * sum(i * i for i in range(3)))


# -- history size ---------------------------------------------------------------

def test_size_is_the_payloads_characters_kept_as_events_come() -> None:
    failure = ErrorInfo("boom", "builtins.ValueError", "Traceback: 12")
    history = [*B().started(7).build(), sched("square-0-1", 0),
               *B().failed("square-0-1", failure.message, traceback=failure.traceback)
               .timed_out("x-0-1", details="beat").signaled("s", "go").cancelled("bye").build()]
    sizes = [len(inp(7)), len(inp(0)), len("boom") + len("Traceback: 12"), len("beat"),
             len(enc("go")), len("bye")]
    assert [payload_size(e) for e in history] == sizes
    assert replay(chain(DEFAULT_LIMITS), history[:2]).size == sum(sizes[:2])


@pytest.mark.parametrize("cache_size", [1000, 0])
def test_a_history_too_big_fails_the_run_and_one_past_the_threshold_warns(
        cache_size: int) -> None:
    # The run's input and each call's are 8 characters, a result of "x" * 90 is 92.
    limits = Limits(history_size=300, history_size_warning=150)
    big = {k: "x" * 90 for k in range(5)}
    _, decisions, warnings = play_chain(chain(limits), 5, Replayer(cache_size), big)
    # Sizes after each decision: 16, 116, 216, then 316 is over 300.
    assert warnings[:3] == [None, None, (
        "the run's history has reached 216 characters of payloads (it fails the run past "
        f"300): {RESTART_HINT} before then")]
    assert comparable(decisions[3]) == [RunFailed(
        "the run's history would reach 316 characters of payloads, over its limit of 300 "
        f"(Limits.history_size): {RESTART_HINT}", "flowy.HistoryLimitError")]


# -- tasks per decision -----------------------------------------------------------

FANOUT_SPECS = {"square": TaskSpec(), "sleep": TaskSpec(kind="timer")}


def fanout(tasks_per_decision: int) -> Any:
    return definition(FanOut, limits=Limits(tasks_per_decision=tasks_per_decision),
                      **FANOUT_SPECS)


def test_a_decision_at_the_task_limit_goes_through() -> None:
    assert decide(fanout(5), [], B().started(3, 2)) == [
        timer("sleep-0", 1.0), timer("sleep-1", 1.0),
        *(sched(f"square-{i}-1", i) for i in range(3))]


@pytest.mark.parametrize(("tasks", "timers"), [(6, 0), (4, 2)])
def test_a_decision_over_the_task_limit_fails_the_run(tasks: int, timers: int) -> None:
    decisions = decide(fanout(5), [], B().started(tasks, timers))
    assert comparable(decisions) == [RunFailed(
        "one decision started 6 tasks and timers, over the limit of 5 per decision "
        "(Limits.tasks_per_decision): start them in groups, waiting for one group before "
        "starting the next, or raise the limit", "flowy.DecisionLimitError")]
    assert isinstance(TaskError.from_info(decisions[0].error), DecisionLimitError)


# -- limits are configuration ---------------------------------------------------------

def test_a_run_failed_by_a_limit_replays_whatever_the_limits_are_now() -> None:
    history, _, _ = play_chain(chain(Limits(history_events=6, history_events_warning=6)), 9)
    for now in (Limits(history_events=6, history_events_warning=6), DEFAULT_LIMITS):
        execution = replay(chain(now), history)  # no NondeterminismError
        assert execution.closed and execution.position == len(history)
        assert Replayer().decide("run", chain(now), history, B().completed("x-0-1", 1)
                                 .build()) == []


def test_lowering_a_limit_fails_runs_in_flight_at_their_next_decision() -> None:
    history, _, _ = play_chain(chain(DEFAULT_LIMITS), 9)
    in_flight = history[:8]  # four decisions
    lower = chain(Limits(history_events=6, history_events_warning=6))
    assert replay(lower, in_flight).position == 8
    decisions = decide(lower, in_flight, B().completed("square-3-1", 9))
    assert comparable(decisions)[0].type_name == "flowy.HistoryLimitError"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"history_events": 0}, "Limits.history_events must be an integer >= 1, got 0"),
    ({"tasks_per_decision": 2.5}, "Limits.tasks_per_decision must be an integer >= 1, got 2.5"),
    ({"history_size": True}, "Limits.history_size must be an integer >= 1, got True"),
    ({"history_events": 100}, "Limits.history_events_warning (10,240) must not be over "
                              "Limits.history_events (100)"),
])
def test_limits_are_checked_when_made(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Limits(**kwargs)
    assert str(raised.value) == message


def test_a_declaration_carries_its_limits_to_the_core() -> None:
    limits = Limits(tasks_per_decision=3)
    declared = flowy.Workflow(Chain, limits=limits).conf_activity("square", abs)
    assert declared.definition.limits is limits
    assert flowy.Workflow(Chain).definition.limits == Limits() == DEFAULT_LIMITS
    with pytest.raises(ConfigurationError, match="limits must be a flowy.Limits"):
        flowy.Workflow(Chain, limits={"tasks_per_decision": 3})  # type: ignore[arg-type]
