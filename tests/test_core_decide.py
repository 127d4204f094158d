"""Table-driven tests of the pure core: batches of facts in, exact decisions out.

Each case is a workflow definition, the batches of facts an engine would feed
(each committed with its decisions before the next) and the decisions expected
for every batch.
"""

from __future__ import annotations

import operator
from typing import Any

import pytest

from flowy.core.combinators import finish_order, first, first_n, parallel_reduce, restart, wait
from flowy.core.errors import ErrorInfo, TaskError, TaskTimedout
from flowy.core.events import TaskFailed, WorkflowCompleted, WorkflowFailed, WorkflowStarted
from flowy.core.replay import Replayer
from flowy.core.spec import RetryPolicy, TaskSpec
from flowy.testing.history import HistoryBuilder as B
from flowy.testing.history import (
    RunFailed,
    comparable,
    decide,
    definition,
    done,
    drive,
    restarted,
    sched,
    timer,
)

VALUE_ERROR_MRO = ("builtins.ValueError", "builtins.Exception", "builtins.BaseException")
TRACEBACK = 'Traceback (most recent call last):\n  File "w.py", line 3\nValueError: bad input\n'
BAD_INPUT = ErrorInfo("bad input", "builtins.ValueError", TRACEBACK, VALUE_ERROR_MRO)
ENCODE_REASON = ("the JSON codec supports None, bool, int, float, str, list, tuple, dict, set, "
                 "frozenset, bytes, bytearray, UUID, datetime, date, time, timedelta, Decimal, "
                 "and declared Enum and pydantic model types; pass a custom codec= to handle it")


# -- workflows ------------------------------------------------------------------

class Square:
    """One dependency, ``square``."""

    def __init__(self, square: Any) -> None:
        self.square = square


class Single(Square):
    def __call__(self, n: int) -> Any:
        return self.square(n)


class FanOut(Square):
    def __call__(self, n: int) -> Any:
        return sum([self.square(i) for i in range(n)])


class InInit(Square):
    def __init__(self, square: Any) -> None:
        super().__init__(square)
        self.early = square(10)

    def __call__(self) -> Any:
        return [self.early, self.square(self.early)]


class Nested:
    def __init__(self, square: Any, combine: Any) -> None:
        self.square, self.combine = square, combine

    def __call__(self) -> Any:
        a, b, c = self.square(1), self.square(2), self.square(3)
        return self.combine([a, {"b": b}], t=(c, 5))


class CatchFailure(Square):
    def __call__(self) -> Any:
        dependent = self.square(self.square(1))
        try:
            return dependent + 0
        except TaskError as e:
            return [str(e), e.type_name, e.traceback, type(e).__name__]


class Touch(Square):
    def __call__(self) -> Any:
        return self.square(1) + 1


class IgnoresError(Square):
    def __call__(self) -> Any:
        self.square(1)  # never looked at
        return self.square(2) * 10


class Oops(Exception):
    pass


class Raises(Square):
    def __call__(self, n: int) -> Any:
        if self.square(n) > 3:
            raise Oops(f"too big: {n}")
        return "small"


class TwoErrorsReturned(Square):
    def __call__(self) -> Any:
        return [self.square(1), self.square(2)]


class TwoErrorsPassed(Square):
    def __call__(self) -> Any:
        return self.square([self.square(1), {"k": self.square(2)}])


class Waits(Square):
    def __call__(self) -> Any:
        a, b, c = self.square(1), self.square(2), self.square(3)
        one = wait(a)
        pair = wait(a, b)
        nested = wait({"x": [a, (b, 7)], "y": c})
        return {"one": one, "pair": pair, "nested": nested,
                "types": [type(one).__name__, type(pair[1]).__name__, type(nested["y"]).__name__]}


class First(Square):
    def __call__(self, plain: Any = None) -> Any:
        a, b = self.square(1), self.square(2)
        winner = first(a, b) if plain is None else first(a, plain, b)
        return ["ok", winner]


class FirstFailed(Square):
    def __call__(self) -> Any:
        winner = first(self.square(1), self.square(2))
        try:
            return winner + 0
        except TaskError as e:
            return f"caught: {e}"


class FirstN(Square):
    def __call__(self, n: int) -> Any:
        return first_n(n, self.square(1), self.square(2), self.square(3), 10)


class FinishOrder(Square):
    def __call__(self) -> Any:
        a, b, c = self.square(1), self.square(2), self.square(3)
        return list(finish_order(a, 7, [b, c], {"k": 8}))


class Reduce:
    def __init__(self, square: Any, add: Any) -> None:
        self.square, self.add = square, add

    def __call__(self, n: int, reducer: str = "task", *init: Any) -> Any:
        function = {"task": self.add, "concat": lambda x, y: f"{x}+{y}",
                    "mul": operator.mul}[reducer]
        return parallel_reduce(function, [self.square(i) for i in range(1, n + 1)], *init)


class Restarts(Square):
    def __call__(self, n: int) -> Any:
        return restart(self.square(n), flag=True)


class CatchTimeout(Square):
    def __call__(self) -> Any:
        try:
            return self.square(1) + 0
        except TaskTimedout as e:
            return [type(e).__name__, e.type_name, str(e)]


class NeedsCube:
    def __init__(self, square: Any, cube: Any) -> None:
        pass

    def __call__(self) -> Any:
        return 1


class LambdaArg(Square):
    def __call__(self, pending_dep: bool = False, catch: bool = False) -> Any:
        result = (self.square(self.square(1), lambda: 1) if pending_dep
                  else self.square(lambda: 1))
        if not catch:
            return result
        try:
            return result + 0
        except TaskError as e:
            return e.type_name


# -- the table -----------------------------------------------------------------

RETRY = TaskSpec(retry=RetryPolicy(max_attempts=3, initial_delay=1, backoff=2, max_delay=60))
CAPPED = TaskSpec(retry=RetryPolicy(max_attempts=4, initial_delay=5, backoff=3, max_delay=10))
NO_DELAY = TaskSpec(retry=RetryPolicy(max_attempts=2, initial_delay=0))
KEY_ERRORS_FINAL = TaskSpec(retry=RetryPolicy(max_attempts=3, non_retryable=(KeyError,)))
TIMEOUTS_FINAL = TaskSpec(retry=RetryPolicy(max_attempts=3, non_retryable="flowy.TaskTimedout"))
SUB_MRO = ("mod.MissingKey", "builtins.KeyError", "builtins.LookupError")


def case(case_id: str, definition: Any, *steps: tuple[B, list[Any]]) -> Any:
    batches = [batch for batch, _ in steps]
    expected = [decisions for _, decisions in steps]
    return pytest.param(definition, batches, expected, id=case_id)


CASES = [
    case("fan-out before the first blocking access", definition(FanOut, "square"),
         (B().started(3), [sched("square-0-1", 0), sched("square-1-1", 1), sched("square-2-1", 2)]),
         (B().completed("square-0-1", 0).completed("square-2-1", 4), []),
         (B().completed("square-1-1", 1), [done(5)])),
    case("nested results are deps, scheduled once all finished", definition(Nested, "square",
                                                                            "combine"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-0-1", 1).completed("square-2-1", 9), []),
         (B().completed("square-1-1", 4),
          [sched("combine-0-1", [1, {"b": 4}], t=(9, 5),
                 deps=("square-0", "square-1", "square-2"))]),
         (B().completed("combine-0-1", "ok"), [done("ok")])),
    case("calls in __init__; activities get plain values", definition(InInit, "square"),
         (B().started(), [sched("square-0-1", 10)]),
         (B().completed("square-0-1", 100), [sched("square-1-1", 100, deps=("square-0",))]),
         (B().completed("square-1-1", 10000), [done([100, 10000])])),
    case("a failed argument: dependent never scheduled, TaskError caught",
         definition(CatchFailure, "square"),
         (B().started(), [sched("square-0-1", 1)]),
         (B().failed("square-0-1", "bad input", traceback=TRACEBACK, type_mro=VALUE_ERROR_MRO),
          [done(["bad input", "builtins.ValueError", TRACEBACK, "TaskError"])])),
    case("a touched error fails the run", definition(Touch, "square"),
         (B().started(), [sched("square-0-1", 1)]),
         (B().failed("square-0-1", "bad input"), [RunFailed("bad input", "builtins.ValueError")])),
    case("an untouched error is reported as ignored", definition(IgnoresError, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().failed("square-0-1", "lost"), []),
         (B().completed("square-1-1", 4), [done(40, ignored=["square-0"])])),
    case("an exception in workflow code fails the run", definition(Raises, "square"),
         (B().started(5), [sched("square-0-1", 5)]),
         (B().completed("square-0-1", 25), [RunFailed("too big: 5", f"{__name__}.Oops")])),
    case("two errors returned: the first to finish wins", definition(TwoErrorsReturned, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().failed("square-1-1", "second call, first error"), []),
         (B().failed("square-0-1", "first call, second error"),
          [RunFailed("second call, first error", "builtins.ValueError")])),
    case("two errors in one batch: history order wins", definition(TwoErrorsReturned, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().failed("square-1-1", "one", "builtins.KeyError").failed("square-0-1", "two"),
          [RunFailed("one", "builtins.KeyError")])),
    case("two errors passed to a call: the first fails it at once",
         definition(TwoErrorsPassed, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().failed("square-1-1", "first"), [RunFailed("first", "builtins.ValueError")]),
         (B().failed("square-0-1", "second"), [])),
    case("wait: single, several, containers", definition(Waits, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-0-1", 1), []),
         (B().completed("square-2-1", 9).completed("square-1-1", 4),
          [done({"one": 1, "pair": (1, 4), "nested": {"x": [1, (4, 7)], "y": 9},
                 "types": ["int", "int", "int"]})])),
    case("first: the result that finished first", definition(First, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().completed("square-1-1", 4).completed("square-0-1", 1), [done(["ok", 4])])),
    case("first: a plain value wins at once", definition(First, "square"),
         (B().started(plain=5), [sched("square-0-1", 1), sched("square-1-1", 2), done(["ok", 5])])),
    case("first: a failed result can win", definition(FirstFailed, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().failed("square-0-1", "early"), [done("caught: early")])),
    case("first_n: plain values, then finish order", definition(FirstN, "square"),
         (B().started(3), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-2-1", 9), []),
         (B().completed("square-0-1", 1), [done([10, 9, 1])])),
    case("first_n(0) waits for nothing", definition(FirstN, "square"),
         (B().started(0), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3),
                           done([])])),
    case("finish_order: plain values first, then history order", definition(FinishOrder, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-2-1", 9).completed("square-0-1", 1), []),
         (B().completed("square-1-1", 4), [done([7, 8, 9, 1, 4])])),
    case("parallel_reduce with a task reducer", definition(Reduce, "square", "add"),
         (B().started(3), [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-1-1", 4).completed("square-0-1", 1),
          [sched("add-0-1", 4, 1, deps=("square-1", "square-0"))]),
         (B().completed("square-2-1", 9), []),
         (B().completed("add-0-1", 5), [sched("add-1-1", 9, 5, deps=("square-2", "add-0"))]),
         (B().completed("add-1-1", 14), [done(14)])),
    case("parallel_reduce with a task reducer and an initializer",
         definition(Reduce, "square", "add"),
         (B().started(2, "task", 100), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().completed("square-1-1", 4), [sched("add-0-1", 100, 4, deps=("square-1",))]),
         (B().completed("square-0-1", 1).completed("add-0-1", 104),
          [sched("add-1-1", 1, 104, deps=("square-0", "add-0"))]),
         (B().completed("add-1-1", 105), [done(105)])),
    case("parallel_reduce with a python reducer: finish order", definition(Reduce, "square", "add"),
         (B().started(3, "concat", "i"),
          [sched("square-0-1", 1), sched("square-1-1", 2), sched("square-2-1", 3)]),
         (B().completed("square-2-1", 9).completed("square-0-1", 1).completed("square-1-1", 4),
          [done("i+9+1+4")])),
    case("parallel_reduce with operator.mul on results", definition(Reduce, "square", "add"),
         (B().started(2, "mul"), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().completed("square-0-1", 3).completed("square-1-1", 4), [done(12)])),
    case("parallel_reduce of nothing without initializer", definition(Reduce, "square", "add"),
         (B().started(0), [RunFailed("parallel_reduce() of an empty iterable with no initializer",
                                     "builtins.ValueError")])),
    case("parallel_reduce of nothing with an initializer", definition(Reduce, "square", "add"),
         (B().started(0, "task", 7), [done(7)])),
    case("restart waits for its result arguments", definition(Restarts, "square"),
         (B().started(3), [sched("square-0-1", 3)]),
         (B().completed("square-0-1", 9), [restarted(9, flag=True)])),
    case("restart with a failed argument fails the run", definition(Restarts, "square"),
         (B().started(3), [sched("square-0-1", 3)]),
         (B().failed("square-0-1", "nope"), [RunFailed("nope", "builtins.ValueError")])),
    case("retry: backoff timers 1.0 then 2.0, then the error", definition(Single, square=RETRY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "e1"), [timer("square-0-2.backoff", 1.0)]),
         (B().fired("square-0-2.backoff"), [sched("square-0-2", 2)]),
         (B().failed("square-0-2", "e2"), [timer("square-0-3.backoff", 2.0)]),
         (B().fired("square-0-3.backoff"), [sched("square-0-3", 2)]),
         (B().failed("square-0-3", "e3"), [RunFailed("e3", "builtins.ValueError")])),
    case("retry: success on the second attempt", definition(Single, square=RETRY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "e1"), [timer("square-0-2.backoff", 1.0)]),
         (B().fired("square-0-2.backoff"), [sched("square-0-2", 2)]),
         (B().completed("square-0-2", 4), [done(4)])),
    case("retry: delays are capped by max_delay", definition(Single, square=CAPPED),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "e1"), [timer("square-0-2.backoff", 5.0)]),
         (B().fired("square-0-2.backoff"), [sched("square-0-2", 2)]),
         (B().failed("square-0-2", "e2"), [timer("square-0-3.backoff", 10.0)]),
         (B().fired("square-0-3.backoff"), [sched("square-0-3", 2)]),
         (B().failed("square-0-3", "e3"), [timer("square-0-4.backoff", 10.0)])),
    case("retry: a zero delay schedules the next attempt at once",
         definition(Single, square=NO_DELAY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "e1"), [sched("square-0-2", 2)]),
         (B().failed("square-0-2", "e2"), [RunFailed("e2", "builtins.ValueError")])),
    case("retry: non_retryable stops at the first failure",
         definition(Single, square=KEY_ERRORS_FINAL),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "'k'", "builtins.KeyError"),
          [RunFailed("'k'", "builtins.KeyError")])),
    case("retry: non_retryable matches subclasses by type_mro",
         definition(Single, square=KEY_ERRORS_FINAL),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "'k'", "mod.MissingKey", type_mro=SUB_MRO),
          [RunFailed("'k'", "mod.MissingKey")])),
    case("retry: other types are still retried", definition(Single, square=KEY_ERRORS_FINAL),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "v"), [timer("square-0-2.backoff", 1.0)])),
    case("timeout on the last attempt, caught as TaskTimedout",
         definition(CatchTimeout, square=NO_DELAY),
         (B().started(), [sched("square-0-1", 1)]),
         (B().timed_out("square-0-1"), [sched("square-0-2", 1)]),
         (B().timed_out("square-0-2", "schedule_to_start"),
          [done(["TaskTimedout", "flowy.TaskTimedout",
                 "square-0 timed out (schedule-to-start) on attempt 2"])])),
    case("timeout with heartbeat details fails the run", definition(Single, "square"),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().timed_out("square-0-1", "heartbeat", details="50%"),
          [RunFailed("square-0 timed out (heartbeat) on attempt 1; last heartbeat details: 50%",
                     "flowy.TaskTimedout")])),
    case("non_retryable TaskTimedout", definition(Single, square=TIMEOUTS_FINAL),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().timed_out("square-0-1"), [RunFailed(
             "square-0 timed out (start-to-close) on attempt 1", "flowy.TaskTimedout")])),
    case("a late completion after a timeout is ignored", definition(Single, square=NO_DELAY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().timed_out("square-0-1"), [sched("square-0-2", 2)]),
         (B().completed("square-0-1", 999), []),
         (B().completed("square-0-2", 4), [done(4)])),
    case("a duplicate completion is ignored", definition(TwoErrorsReturned, "square"),
         (B().started(), [sched("square-0-1", 1), sched("square-1-1", 2)]),
         (B().completed("square-0-1", 1).completed("square-0-1", 111), []),
         (B().completed("square-0-1", 222), []),
         (B().completed("square-1-1", 4), [done([1, 4])])),
    case("facts for unknown keys are ignored", definition(Single, "square"),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().completed("square-9-1", 1).fired("square-0-2.backoff").failed("x-0-1", "?"), [])),
    case("a dependency the factory does not take", definition(Single, "square", "cube"),
         (B().started(2), [RunFailed(
             "workflow Single does not take the configured dependency 'cube': add a parameter "
             "named 'cube' to it, or remove that configuration", "flowy.ConfigurationError")])),
    case("a dependency that is not configured", definition(NeedsCube, "square"),
         (B().started(), [RunFailed(
             "workflow NeedsCube needs dependency 'cube', which is not configured: add "
             "conf_activity('cube', ...) or conf_workflow('cube', ...)",
             "flowy.ConfigurationError")])),
    case("an unencodable argument gives an error result", definition(LambdaArg, "square"),
         (B().started(), [RunFailed("can't schedule square-0: can't encode value of type "
                                    f"'function' at value[0][0]: {ENCODE_REASON}",
                                    "flowy.EncodeError")])),
    case("an unencodable argument, caught", definition(LambdaArg, "square"),
         (B().started(catch=True), [done("flowy.EncodeError")])),
    case("an unencodable argument beside a pending result", definition(LambdaArg, "square"),
         (B().started(pending_dep=True), [sched("square-0-1", 1)]),
         (B().completed("square-0-1", 1), [RunFailed(
             "can't schedule square-1: can't encode value of type 'function' at value[0][1]: "
             f"{ENCODE_REASON}", "flowy.EncodeError")])),
    case("an input that is not [args, kwargs] fails the run", definition(Single, "square"),
         ([WorkflowStarted("[1]")], [RunFailed("the run's input can't be decoded: not enough "
                                               "values to unpack (expected 2, got 1)",
                                               "flowy.EncodeError")])),
    case("an input that is not JSON fails the run", definition(Single, "square"),
         ([WorkflowStarted("{oops")], [RunFailed(
             # The input is named by its length and hash, never quoted.
             "the run's input can't be decoded: can't decode a str of 5 characters (sha256 "
             "935aaf3a) as JSON (Expecting property name enclosed in double quotes at "
             "character 1); the history was not written by JSONCodec, or is corrupt",
             "flowy.EncodeError")])),
    case("a timer that fires twice schedules one attempt", definition(Single, square=RETRY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().failed("square-0-1", "e1"), [timer("square-0-2.backoff", 1.0)]),
         (B().fired("square-0-2.backoff").fired("square-0-2.backoff"), [sched("square-0-2", 2)]),
         (B().fired("square-0-2.backoff"), [])),
    case("a late failure of a replaced attempt is ignored", definition(Single, square=NO_DELAY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().timed_out("square-0-1"), [sched("square-0-2", 2)]),
         (B().failed("square-0-1", "late"), []),
         (B().completed("square-0-2", 4), [done(4)])),
    case("facts after the run closed produce nothing", definition(Single, square=NO_DELAY),
         (B().started(2), [sched("square-0-1", 2)]),
         (B().completed("square-0-1", 4), [done(4)]),
         (B().completed("square-0-1", 5).failed("square-0-1", "late").timed_out("square-0-2"),
          [])),
]


@pytest.mark.parametrize(("definition", "batches", "expected"), CASES)
def test_decisions(definition: Any, batches: list[B], expected: list[list[Any]]) -> None:
    _, per_batch = drive(definition, batches)
    assert [comparable(decisions) for decisions in per_batch] == expected


# -- details the table does not show --------------------------------------------

def test_timeouts_and_kind_come_from_the_spec() -> None:
    spec = TaskSpec(kind="workflow", start_to_close=30.0, schedule_to_start=5.0, heartbeat=2.0)
    decisions = decide(definition(Single, square=spec), [], B().started(2))
    assert decisions == [sched("square-0-1", 2, spec=spec)]
    assert (decisions[0].kind, decisions[0].start_to_close, decisions[0].schedule_to_start,
            decisions[0].heartbeat) == ("workflow", 30.0, 5.0, 2.0)


def test_a_task_error_keeps_the_original_error_info() -> None:
    _, per_batch = drive(definition(Touch, "square"),
                         [B().started(), [TaskFailed("square-0-1", BAD_INPUT)]])
    assert per_batch[-1] == [WorkflowFailed(BAD_INPUT)]


def test_an_exception_in_workflow_code_keeps_its_traceback_and_mro() -> None:
    _, per_batch = drive(definition(Raises, "square"),
                         [B().started(5), B().completed("square-0-1", 25)])
    [failed] = per_batch[-1]
    assert isinstance(failed, WorkflowFailed)
    assert failed.error.type_mro == (f"{__name__}.Oops", "builtins.Exception",
                                     "builtins.BaseException")
    assert failed.error.traceback.startswith("Traceback (most recent call last):\n")
    assert 'raise Oops(f"too big: {n}")' in failed.error.traceback
    assert failed.error.traceback.endswith(f"{__name__}.Oops: too big: 5\n")


def test_decide_helper_replays_the_committed_history() -> None:
    defn = definition(TwoErrorsReturned, "square")
    history, _ = drive(defn, [B().started()])
    decider = Replayer(cache_size=0)
    assert decide(defn, history, B().completed("square-0-1", 1), decider) == []
    assert decider.replays == 1
    history += B().completed("square-0-1", 1).build()
    assert decide(defn, history, B().completed("square-1-1", 4), decider) == [
        WorkflowCompleted("[1,4]")]
    assert decider.replays == 2
