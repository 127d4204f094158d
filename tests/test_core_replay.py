"""Replay: a full replay makes the same decisions as a live run, and catches nondeterminism."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from test_core_decide import (
    CASES,
    RETRY,
    CatchFailure,
    FanOut,
    FinishOrder,
    InInit,
    Nested,
    Reduce,
    Restarts,
    Single,
    Touch,
    Waits,
)

import flowy.core.replay as replay_module
from flowy.core.combinators import first, parallel_reduce
from flowy.core.errors import NondeterminismError, TaskError
from flowy.core.events import (
    CLOSING_TYPES,
    Decision,
    Event,
    Fact,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowStarted,
    is_decision,
    stamped,
)
from flowy.core.replay import Replayer, check_same_decisions, replay
from flowy.core.spec import TaskSpec
from flowy.testing.history import (
    CODEC,
    RunFailed,
    auto_run,
    comparable,
    decide,
    definition,
    done,
    drive,
    inp,
    restarted,
    sched,
    timer,
)
from flowy.testing.history import HistoryBuilder as B

# How a NondeterminismError shows a call's input: its length and a SHA-256
# prefix, never its content.
ARG = {n: f"an input of {len(inp(n))} characters, SHA-256 "
          f"{hashlib.sha256(inp(n).encode()).hexdigest()[:12]}" for n in range(6)}
NOT_DETERMINISTIC = "workflow is not deterministic: {}. Workflow code must make the same calls " \
                    "with the same arguments every time it runs (no clocks, random numbers or I/O)."


class CountingReplayer(Replayer):
    """A Decider that also counts its decide() calls."""

    def __init__(self, cache_size: int) -> None:
        super().__init__(cache_size)
        self.calls = 0

    def decide(self, run_id: str, definition: Any, history: Sequence[Event],
               new_facts: list[Fact]) -> list[Decision]:
        self.calls += 1
        return super().decide(run_id, definition, history, new_facts)


def square(x: int) -> int:
    return x * x


def failing(x: int) -> int:
    raise ValueError(f"no square for {x}")


def flaky(failures: int) -> Callable[[int], int]:
    """square() that fails its first ``failures`` calls."""
    calls = [0]

    def run(x: int) -> int:
        calls[0] += 1
        if calls[0] <= failures:
            raise RuntimeError(f"flaky call {calls[0]}")
        return x * x
    return run


class Chain:
    """Sequential calls: each waits for the one before."""

    def __init__(self, square: Any, cube: Any) -> None:
        self.square, self.cube = square, cube

    def __call__(self, *args: int) -> Any:
        total = 0
        for arg in args:
            total = total + self.square(arg)
        return total


# -- (a) full replay equals incremental -------------------------------------------

SQUARE_ADD = {"square": square, "add": lambda x, y: x + y}
AUTO_RUNS = [
    pytest.param(definition(FanOut, "square"), {"square": square}, (5,), done(30), id="fan-out"),
    pytest.param(definition(Nested, "square", "combine"),
                 {"square": square, "combine": lambda lst, t: [lst, t]}, (),
                 done([[1, {"b": 4}], (9, 5)]), id="nested"),
    pytest.param(definition(InInit, "square"), {"square": square}, (), done([100, 10000]),
                 id="in-init"),
    pytest.param(definition(Chain, "square", "cube"), {"square": square}, tuple(range(8)),
                 done(140), id="chain"),
    pytest.param(definition(Reduce, "square", "add"), SQUARE_ADD, (6,), done(91),
                 id="reduce-task"),
    pytest.param(definition(Reduce, "square", "add"), SQUARE_ADD, (5, "task", 100), done(155),
                 id="reduce-task-init"),
    pytest.param(definition(Reduce, "square", "add"), SQUARE_ADD, (5, "concat", "i"),
                 done("i+1+4+9+16+25"), id="reduce-python"),
    pytest.param(definition(Waits, "square"), {"square": square}, (),
                 done({"one": 1, "pair": (1, 4), "nested": {"x": [1, (4, 7)], "y": 9},
                       "types": ["int", "int", "int"]}), id="wait"),
    pytest.param(definition(FinishOrder, "square"), {"square": square}, (), done([7, 8, 1, 4, 9]),
                 id="finish-order"),
    pytest.param(definition(Restarts, "square"), {"square": square}, (3,),
                 restarted(9, flag=True), id="restart"),
    pytest.param(definition(Single, square=RETRY), {"square": "flaky"}, (2,), done(4),
                 id="retries"),
    pytest.param(definition(Touch, "square"), {"square": failing}, (),
                 RunFailed("no square for 1", "builtins.ValueError"), id="failure"),
    pytest.param(definition(CatchFailure, "square"), {"square": failing}, (), "caught",
                 id="caught-failure"),
]


@pytest.mark.parametrize(("defn", "functions", "args", "expected"), AUTO_RUNS)
def test_full_replay_equals_incremental(defn: Any, functions: dict[str, Any],
                                        args: tuple[Any, ...], expected: Any) -> None:
    runs = []
    for cache_size in (1000, 0):
        fns = {name: flaky(2) if fn == "flaky" else fn for name, fn in functions.items()}
        replayer = CountingReplayer(cache_size)
        closing, history = auto_run(defn, fns, *args, replayer=replayer)
        runs.append((closing, history, replayer))
    (closing, history, cached), (closing0, history0, replaying) = runs
    assert history0 == history
    assert closing0 == closing
    if expected == "caught":
        assert isinstance(closing, WorkflowCompleted) and closing.ignored_errors == ()
        message, type_name, traceback, error_class = CODEC.decode(closing.result)
        assert (message, type_name, error_class) == ("no square for 1", "builtins.ValueError",
                                                     "TaskError")
        assert traceback.startswith("Traceback (most recent call last):\n")
        assert traceback.endswith('raise ValueError(f"no square for {x}")\n'
                                  "ValueError: no square for 1\n")
    else:
        assert comparable([closing]) == [expected]
    assert cached.replays == 1
    assert replaying.replays == replaying.calls == cached.calls
    assert cached.calls == sum(1 for i, e in enumerate(history)
                               if not is_decision(e) and (i == 0 or is_decision(history[i - 1])))


def test_retries_history_has_its_timers() -> None:
    _, history = auto_run(definition(Single, square=RETRY), {"square": flaky(2)}, 2)
    decisions = [e for e in history if is_decision(e)]
    assert decisions == [sched("square-0-1", 2), timer("square-0-2.backoff", 1.0),
                         sched("square-0-2", 2), timer("square-0-3.backoff", 2.0),
                         sched("square-0-3", 2), done(4)]


@pytest.mark.parametrize(("defn", "batches", "expected"), CASES)
def test_decide_table_with_full_replay(defn: Any, batches: list[B], expected: Any) -> None:
    cached, replaying = CountingReplayer(1000), CountingReplayer(0)
    history, _ = drive(defn, batches, cached)
    history0, per_batch0 = drive(defn, batches, replaying)
    assert history0 == history
    assert [comparable(d) for d in per_batch0] == expected
    closed = [i for i, d in enumerate(per_batch0) if any(isinstance(e, CLOSING_TYPES) for e in d)]
    after_close = len(batches) - 1 - closed[0] if closed else 0
    # Facts for a closed run need no replay: they can't change anything.
    assert (cached.replays, replaying.replays) == (1, len(batches) - after_close)


def test_forget_and_eviction_cause_replays() -> None:
    defn = definition(Chain, "square", "cube")
    replayer = Replayer(cache_size=1)
    histories: dict[str, list[Event]] = {"one": [], "two": []}

    def step(run_id: str, new: B) -> list[Decision]:
        decisions = replayer.decide(run_id, defn, histories[run_id], new.build())
        histories[run_id] += new.build() + decisions
        return decisions

    assert step("one", B().started(1, 1)) == [sched("square-0-1", 1)]
    assert step("two", B().started(2)) == [sched("square-0-1", 2)]
    assert replayer.replays == 2
    assert step("one", B().completed("square-0-1", 1)) == [sched("square-1-1", 1)]
    assert replayer.replays == 3  # "two" had evicted "one"
    replayer.forget("one")
    assert step("one", B().completed("square-1-1", 1)) == [done(2)]
    assert replayer.replays == 4


# -- replay equals incremental: known bugs ----------------------------------------

class ReduceAfterResume:
    def __init__(self, square: Any, add: Any) -> None:
        self.square, self.add = square, add

    def __call__(self) -> Any:
        a, b, c = self.square(1), self.square(2), self.square(3)
        a + 0  # a resume that makes no decision, so replay merges its facts with the next
        return parallel_reduce(self.add, [b, c])


class EncodeErrorRace:
    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self) -> Any:
        a, b, c = self.square(1), self.square(2), self.square(3)
        a + 0
        unencodable = self.square(b, lambda: 0)  # fails when b finishes
        try:
            return self.square(first(unencodable, c) + 0)
        except TaskError:
            return self.square(100)


def test_parallel_reduce_replays_like_the_live_run() -> None:
    defn = definition(ReduceAfterResume, "square", "add")
    batches = [B().started(), B().completed("square-0-1", 1), B().completed("square-2-1", 9),
               B().completed("square-1-1", 4), B().completed("add-0-1", 13)]
    _, live = drive(defn, batches, Replayer())
    assert live[3] == [sched("add-0-1", 9, 4, deps=("square-2", "square-1"))]
    assert live[4] == [done(13)]
    _, replayed = drive(defn, batches, Replayer(cache_size=0))
    assert replayed == live


def test_encode_error_order_replays_like_the_live_run() -> None:
    defn = definition(EncodeErrorRace, "square")
    batches = [B().started(), B().completed("square-0-1", 1),
               B().completed("square-1-1", 4).completed("square-2-1", 9),
               B().completed("square-4-1", 10000)]
    _, live = drive(defn, batches, Replayer())
    assert live[2] == [sched("square-4-1", 100)]
    _, replayed = drive(defn, batches, Replayer(cache_size=0))
    assert replayed == live


# -- (b) nondeterminism ------------------------------------------------------------

def scripted(*calls: tuple[str, int]) -> Any:
    """A workflow factory that calls ``name(arg)`` for each pair, then sums the results."""
    def factory(square: Any, cube: Any) -> Any:
        def run() -> Any:
            deps = {"square": square, "cube": cube}
            return sum([deps[name](arg) for name, arg in calls])
        return run
    return factory


def recorded(defn: Any, *batches: B) -> list[Event]:
    history, _ = drive(defn, list(batches))
    return history


SQUARE_2 = recorded(definition(scripted(("square", 2)), "square", "cube"), B().started())
CHAIN_123 = recorded(definition(Chain, "square", "cube"), B().started(1, 2, 3),
                     B().completed("square-0-1", 1), B().completed("square-1-1", 4))
NONDETERMINISTIC = [
    pytest.param(scripted(("square", 3)), SQUARE_2, B().completed("square-0-1", 4),
                 f"on replay the workflow made square-0-1 (square with {ARG[3]}), but the "
                 f"history recorded square-0-1 (square with {ARG[2]})", id="other-argument"),
    pytest.param(scripted(("cube", 2)), SQUARE_2, B().completed("square-0-1", 4),
                 f"the history recorded square-0-1 (square with {ARG[2]}), but on replay "
                 f"the workflow did not make that call; it made cube-0-1 (cube with {ARG[2]}) "
                 "instead", id="other-dependency"),
    pytest.param(scripted(("square", 2), ("square", 5)), SQUARE_2, B().completed("square-0-1", 4),
                 f"on replay the workflow made square-1-1 (square with {ARG[5]}), which the "
                 "history does not have", id="extra-call"),
    pytest.param(scripted(), SQUARE_2, B().completed("square-0-1", 4),
                 f"the history recorded square-0-1 (square with {ARG[2]}), but on replay "
                 "the workflow did not make that call; it made WorkflowCompleted instead",
                 id="missing-call"),
    pytest.param(lambda square, cube: lambda *args: Chain(square, cube)(1, 2, 4), CHAIN_123,
                 B().completed("square-2-1", 9),
                 f"on replay the workflow made square-2-1 (square with {ARG[4]}), but the "
                 f"history recorded square-2-1 (square with {ARG[3]})", id="third-batch"),
]


@pytest.mark.parametrize(("factory", "history", "new", "problem"), NONDETERMINISTIC)
def test_a_changed_workflow_fails_the_run(factory: Any, history: list[Event], new: B,
                                          problem: str) -> None:
    defn = definition(factory, "square", "cube")
    replayer = Replayer(cache_size=0)
    decisions = decide(defn, history, new, replayer)
    # (c) one decision and nothing else: no half-made decisions reach the history
    assert len(decisions) == 1 and isinstance(decisions[0], WorkflowFailed)
    assert comparable(decisions) == [RunFailed(NOT_DETERMINISTIC.format(problem),
                                               "flowy.NondeterminismError")]
    assert decisions[0].error.type_mro[:3] == ("flowy.NondeterminismError", "flowy.TaskError",
                                               "flowy.FlowyError")
    with pytest.raises(NondeterminismError) as raised:
        replay(defn, history)
    assert str(raised.value) == NOT_DETERMINISTIC.format(problem)
    assert raised.value.type_name == "flowy.NondeterminismError"


def test_a_failed_replay_leaves_no_state_behind() -> None:
    replayer = Replayer(cache_size=1000)
    history = list(SQUARE_2)
    new = B().completed("square-0-1", 4).build()
    changed = definition(scripted(("square", 3)), "square", "cube")
    [failed] = replayer.decide("run", changed, history, new)
    assert isinstance(failed, WorkflowFailed)
    assert history == SQUARE_2  # the input history is untouched
    original = definition(scripted(("square", 2)), "square", "cube")
    assert replayer.decide("run", original, history, new) == [done(4)]
    assert replayer.replays == 2  # the broken run was not cached


def test_replay_positions_the_execution_at_the_end() -> None:
    defn = definition(FanOut, "square")
    history = recorded(defn, B().started(3), B().completed("square-0-1", 0))
    assert history[-1] == B().completed("square-0-1", 0).build()[0]  # it made no decision
    execution = replay(defn, history)
    assert execution.position == len(history)
    assert execution.closed is False
    new = B().completed("square-2-1", 4).completed("square-1-1", 1).build()
    assert execution.decide(new) == [done(5)]
    assert execution.closed is True


def undecodable_input() -> tuple[Any, list[Event]]:
    defn = definition(Single, "square")
    history, _ = drive(defn, [[WorkflowStarted("[1]")]])
    assert comparable(history[1:]) == [RunFailed(
        "the run's input can't be decoded: not enough values to unpack (expected 2, got 1)",
        "flowy.EncodeError")]
    return defn, history


def changed_code() -> tuple[Any, list[Event]]:
    history = recorded(definition(scripted(("square", 2)), "square", "cube"), B().started(),
                       B().completed("square-0-1", 4))
    assert history[-1] == done(4)
    return definition(scripted(("square", 3)), "square", "cube"), history


@pytest.mark.parametrize("closed_run", [undecodable_input, changed_code])
def test_facts_after_close_make_no_decision(closed_run: Callable[[], Any]) -> None:
    defn, history = closed_run()
    assert decide(defn, history, B().completed("square-0-1", 4)) == []


def test_nondeterminism_message_shows_what_differs() -> None:
    was = sched("square-0-1", 2)
    now = dataclasses.replace(was, kind="workflow")
    with pytest.raises(NondeterminismError) as raised:
        check_same_decisions([was], [now])
    assert "(with kind 'activity', not 'workflow')" in str(raised.value)


def test_configuration_changes_are_not_nondeterminism() -> None:
    """Timeouts, retry delays and results of closing decisions may change between deploys."""
    was = sched("square-0-1", 2)
    check_same_decisions([was], [sched("square-0-1", 2, spec=TaskSpec(start_to_close=30.0))])


# -- check_same_decisions -------------------------------------------------------------

S1 = sched("square-0-1", 2)
S2 = sched("square-1-1", 3)
CHECKS = [
    pytest.param([S1, S2], [S1, S2], None, id="same"),
    pytest.param([S1, S2], [S2, S1], None, id="order-is-free"),
    pytest.param([stamped(S1, 12.5)], [S1], None, id="stamps-ignored"),
    pytest.param([], [], None, id="empty"),
    pytest.param([S1], [sched("square-0-1", 5)],
                 f"on replay the workflow made square-0-1 (square with {ARG[5]}), but the "
                 f"history recorded square-0-1 (square with {ARG[2]})", id="input"),
    # deps follow from the input; timer delays and closing results are not compared
    # so that configuration changes don't fail runs in flight.
    pytest.param([S1], [sched("square-0-1", 2, deps=("x-0",))], None, id="deps"),
    pytest.param([S1, S2], [S1],
                 f"the history recorded square-1-1 (square with {ARG[3]}), but on replay "
                 "the workflow did not make that call", id="missing"),
    pytest.param([S1], [S1, S2],
                 f"on replay the workflow made square-1-1 (square with {ARG[3]}), which the "
                 "history does not have", id="extra"),
    pytest.param([timer("square-0-2.backoff", 1.0)], [timer("square-0-2.backoff", 2.0)], None,
                 id="timer-delay"),
    pytest.param([done(1)], [done(2)], None, id="result"),
    pytest.param([done(1)], [restarted(1)], "on replay the workflow made WorkflowRestarted, but "
                 "the history recorded WorkflowCompleted", id="closing-kind"),
]


@pytest.mark.parametrize(("recorded_decisions", "replayed", "problem"), CHECKS)
def test_check_same_decisions(recorded_decisions: list[Decision], replayed: list[Decision],
                              problem: str | None) -> None:
    if problem is None:
        assert check_same_decisions(recorded_decisions, replayed) is None
        return
    with pytest.raises(NondeterminismError) as raised:
        check_same_decisions(recorded_decisions, replayed)
    assert str(raised.value) == NOT_DETERMINISTIC.format(problem)


def test_a_nondeterminism_error_never_shows_an_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs may be secret or large, and the error is recorded and logged (review 7, 11)."""
    card = sched("charge-0-1", "card 4111111111111111")
    with pytest.raises(NondeterminismError) as raised:
        check_same_decisions([card], [sched("charge-0-1", "card 4000000000000002")])
    assert "4111" not in str(raised.value) and "4000" not in str(raised.value)
    # Two inputs with the same fingerprint are told apart without their content.
    monkeypatch.setattr(replay_module, "_fingerprint", lambda payload: "an input")
    with pytest.raises(NondeterminismError) as raised:
        check_same_decisions([card], [sched("charge-0-1", "card 4000000000000002")])
    assert str(raised.value) == NOT_DETERMINISTIC.format(
        "on replay the workflow made charge-0-1 (charge with an input), but the history "
        "recorded charge-0-1 (charge with an input) (another input of the same length and "
        "hash prefix)")
