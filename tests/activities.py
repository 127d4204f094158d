"""Module-level activities and workflows for the LocalWorkflow end-to-end tests.

Everything here must be importable as ``tests.activities`` so that a
ProcessPoolExecutor can pickle the activities by reference.  Activities that
tests count write one line per call to a file whose path they receive, so
that calls made in worker processes can be counted from the test.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import operator
import os
import sys
import time
from pathlib import Path
from typing import Any

import pydantic

import flowy
from flowy import RetryPolicy, TaskError, TaskTimedout, finish_order, first, first_n, wait

# -- call counting ---------------------------------------------------------------


def record(path: str, tag: str = "call") -> int:
    """Append ``tag`` to the file at ``path``; return how many ``tag`` lines it has now."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(tag + "\n")
    return calls(path, tag)


def calls(path: str | os.PathLike[str], tag: str = "call") -> int:
    """How many times ``tag`` was recorded in ``path`` (0 if the file doesn't exist)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    return text.splitlines().count(tag)


# -- plain activities ------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def add(a: Any, b: Any) -> Any:
    return a + b


def identity(x: Any) -> Any:
    return x


def sleepy(value: Any, delay: float) -> Any:
    time.sleep(delay)
    return value


def counted(path: str, value: Any = None) -> Any:
    record(path)
    return value


async def async_square(x: int) -> int:
    await asyncio.sleep(0.01)
    return x * x


def text_of(size: int) -> str:
    return "x" * size


def touch(path: str) -> bool:
    Path(path).touch()
    return True


def shape(value: Any) -> Any:
    """The exact type structure of ``value``, as plain data."""
    t = type(value)
    if t is list:
        return ["list", [shape(v) for v in value]]
    if t is tuple:
        return ["tuple", [shape(v) for v in value]]
    if t is dict:
        return ["dict", {k: shape(v) for k, v in value.items()}]
    return t.__name__


def describe(*args: Any, **kwargs: Any) -> list[Any]:
    """Report the exact types the activity received, and hand the values back."""
    return [[shape(a) for a in args], {k: shape(v) for k, v in kwargs.items()},
            list(args), kwargs]


# -- failing activities ----------------------------------------------------------


class CustomError(Exception):
    pass


class SubValueError(ValueError):
    pass


_ERRORS = {"RuntimeError": RuntimeError, "ValueError": ValueError,
           "SubValueError": SubValueError, "CustomError": CustomError}


def fail_with(message: str, delay: float = 0.0, error: str = "ValueError") -> None:
    time.sleep(delay)
    raise _ERRORS[error](message)


def flaky(path: str, fails: int, error: str = "RuntimeError") -> int:
    """Fail the first ``fails`` calls with ``error``, then return the attempt number."""
    n = record(path)
    if n <= fails:
        raise _ERRORS[error](f"attempt {n} failed")
    return n


def slow(path: str, delay: float, value: Any = "done") -> Any:
    record(path, "start")
    time.sleep(delay)
    record(path, "end")
    return value


def slow_first(path: str, delay: float) -> str:
    """The first call is slow (and returns 'late'), the next ones return 'fast' at once."""
    n = record(path, "start")
    if n == 1:
        time.sleep(delay)
        record(path, "end")
        return "late"
    record(path, "end")
    return "fast"


def heartbeating(beats: int, interval: float) -> int:
    for step in range(beats):
        flowy.heartbeat({"step": step})
        time.sleep(interval)
    return beats


def goes_quiet(beats: int, interval: float, silence: float) -> str:
    for step in range(beats):
        flowy.heartbeat({"step": step})
        time.sleep(interval)
    time.sleep(silence)
    return "woke up"


@flowy.activity(retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
def decorated_flaky(path: str, fails: int) -> int:
    return flaky(path, fails)


@flowy.activity(retry=RetryPolicy(max_attempts=2, initial_delay=0.01), timeout=0.3)
def decorated_slow(path: str, delay: float) -> str:
    return slow(path, delay)


@flowy.activity
def bare_decorated(x: int) -> int:
    return x + 1


def return_object() -> Any:
    return object()


def exit_process(code: int) -> None:
    """Kill the worker process outright (only ever used with a process pool)."""
    os._exit(code)


def system_exit(code: int) -> None:
    sys.exit(code)


# -- codec types -----------------------------------------------------------------


class Point(pydantic.BaseModel):
    x: int
    y: int
    label: str = ""


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


# echo_types takes Any, so the types it sees must be declared with the codec.
TYPED_CODEC = flowy.JSONCodec(types=[Point, Color])


def move(point: Point, color: Color) -> Point:
    """Its hints declare Point and Color: a workflow calling it needs no codec= for them."""
    return Point(x=point.x + 1, y=point.y, label=color.value)


def echo_types(value: Any) -> list[Any]:
    """The value back, with the exact type of each of its items (or of itself)."""
    if type(value) is dict:
        return [{k: type(v).__name__ for k, v in value.items()}, value]
    return [type(value).__name__, value]


class ReversedJSON:
    """A codec whose strings are not JSON: the default codec's, reversed."""

    def encode(self, value: Any) -> str:
        return flowy.DEFAULT_CODEC.encode(value)[::-1]

    def decode(self, data: str) -> Any:
        return flowy.DEFAULT_CODEC.decode(data[::-1])


REVERSED_JSON = ReversedJSON()


# -- workflows -------------------------------------------------------------------


class ExampleWorkflow:
    """The README example."""

    def __init__(self, square: Any, sum: Any) -> None:  # noqa: A002 - README's names
        self.square = square
        self.sum = sum

    def __call__(self, a: int, b: int) -> Any:
        a_squared = self.square(a)
        b_squared = self.square(b)
        return self.sum(a_squared, b_squared)


class SingleCall:
    """Call dependency ``task`` once with the run's arguments and return its result."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.task(*args, **kwargs)


class CatchTimeout:
    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, *args: Any) -> Any:
        try:
            return ["ok", wait(self.task(*args))]
        except TaskTimedout as e:
            return ["timed out", str(e)]


class Nested:
    """Results nested in lists, dicts, tuples and keyword arguments."""

    def __init__(self, square: Any, describe: Any) -> None:
        self.square = square
        self.describe = describe

    def __call__(self) -> Any:
        a, b, c, d = (self.square(i) for i in (1, 2, 3, 4))
        return self.describe([a, {"k": b}], (c, 5), key=d, plain={"x": [a]})


class InitCalls:
    def __init__(self, square: Any, sum: Any) -> None:  # noqa: A002
        self.base = square(3)
        self.sum = sum

    def __call__(self, x: int) -> Any:
        return self.sum(self.base, x)


class Branching:
    """Uses results in ordinary Python: comparisons, arithmetic, loops."""

    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self, n: int) -> Any:
        total = 0
        for i in range(n):
            r = self.square(i)
            if r % 2 == 0:
                total += r
        return total


class CatchAndContinue:
    def __init__(self, fail: Any, square: Any) -> None:
        self.fail = fail
        self.square = square

    def __call__(self, message: str) -> Any:
        try:
            self.fail(message) + 1  # touching the failed result raises
            caught: Any = None
        except TaskError as e:
            caught = [str(e), e.type_name, "fail_with" in e.traceback]
        return [caught, self.square(4)]


class PassError:
    """Hand a failed (or failing) result to another call."""

    def __init__(self, fail: Any, counted: Any) -> None:
        self.fail = fail
        self.counted = counted

    def __call__(self, path: str, delay: float, wait_first: bool, catch: bool) -> Any:
        bad = self.fail("bad input", delay)
        if wait_first:
            try:
                wait(bad)
            except TaskError:
                pass
        dependent = self.counted(path, [1, {"k": bad}])
        if not catch:
            return dependent
        try:
            return ["no error", wait(dependent)]
        except TaskError as e:
            return [str(e), e.type_name]


class IgnoreError:
    def __init__(self, fail: Any, sleepy: Any) -> None:
        self.fail = fail
        self.sleepy = sleepy

    def __call__(self) -> Any:
        self.fail("nobody reads me")
        return self.sleepy(9, 0.3)


class IgnoreErrorThenRestart:
    """Like IgnoreError, but the run whose error goes unread restarts."""

    def __init__(self, fail: Any, sleepy: Any) -> None:
        self.fail = fail
        self.sleepy = sleepy

    def __call__(self, n: int) -> Any:
        if n == 0:
            return "done"
        self.fail("lost in a restart")
        return flowy.restart(self.sleepy(n - 1, 0.3))


class WorkflowRaises:
    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self) -> Any:
        value = self.square(3)
        if value == 9:
            raise RuntimeError(f"workflow broke after {value}")
        return value


class TwoFailures:
    def __init__(self, fail: Any, identity: Any) -> None:
        self.fail = fail
        self.identity = identity

    def __call__(self, mode: str, first_delay: float, second_delay: float) -> Any:
        a = self.fail("first called", first_delay)
        b = self.fail("second called", second_delay)
        if mode == "list":
            return [a, b]
        if mode == "dict":
            return {"a": a, "b": b}
        if mode == "wait":
            return wait(a, b)
        return self.identity([a, b])  # mode "call"


class WaitForms:
    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self, form: str) -> Any:
        sq = self.square
        if form == "single":
            value = wait(sq(3))
            return [type(value).__name__, value]
        if form == "several":
            return wait(sq(3), sq(4))
        if form == "containers":
            return wait([sq(1), sq(2)], {"k": sq(3)}, (sq(4), 7))
        if form == "plain":
            return wait(5)
        return wait()


class Race:
    """first / first_n / finish_order over ``sleepy(label, delay)`` calls."""

    def __init__(self, sleepy: Any) -> None:
        self.sleepy = sleepy

    def __call__(self, how: str, delays: dict[str, float], n: int = 1) -> Any:
        results = [self.sleepy(label, delay) for label, delay in delays.items()]
        if how == "first":
            return first(*results)
        if how == "first_n":
            return first_n(n, *results)
        if how == "finish_order":
            return list(finish_order(results))
        if how == "finish_order_plain":
            return list(finish_order("plain", {"r": results[0]}, results[1:], 7))
        raise ValueError(how)


class FirstFailure:
    def __init__(self, fail: Any, sleepy: Any) -> None:
        self.fail = fail
        self.sleepy = sleepy

    def __call__(self) -> Any:
        winner = first(self.sleepy("slow", 0.4), self.fail("fast failure", 0.1))
        try:
            return ["value", winner + ""]
        except TaskError as e:
            return ["error", str(e)]


class Reduce:
    def __init__(self, square: Any, add: Any) -> None:
        self.square = square
        self.add = add

    def __call__(self, n: int, how: str) -> Any:
        items = [self.square(i) for i in range(1, n + 1)]
        if how == "task":
            return flowy.parallel_reduce(self.add, items)
        if how == "plain":
            return flowy.parallel_reduce(operator.add, items)
        if how == "task_init":
            return flowy.parallel_reduce(self.add, items, 100)
        if how == "plain_init":
            return flowy.parallel_reduce(operator.add, items, 100)
        return flowy.parallel_reduce(operator.add, [])  # how == "empty"


class Countdown:
    """Restart (continue-as-new) ``n`` times, summing n + ... + 1 with tasks."""

    def __init__(self, add: Any) -> None:
        self.add = add

    def __call__(self, n: int, acc: int = 0) -> Any:
        if n == 0:
            return acc
        return flowy.restart(n - 1, acc=self.add(acc, n))


class CountdownPositional:
    def __init__(self, add: Any) -> None:
        self.add = add

    def __call__(self, n: int, acc: int) -> Any:
        if n == 0:
            return ["done", acc]
        return flowy.restart(self.add(n, -1), self.add(acc, n))


class Parent:
    def __init__(self, sub: Any, square: Any) -> None:
        self.sub = sub
        self.square = square

    def __call__(self, *args: Any) -> Any:
        return self.square(self.sub(*args))


class ParentCatch:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def __call__(self, *args: Any) -> Any:
        try:
            return ["ok", wait(self.sub(*args))]
        except TaskError as e:
            return [e.type_name, str(e), type(e).__name__]


class FirstOfSlow:
    """Return the faster of two ``slow`` calls; the slower one goes on running."""

    def __init__(self, slow: Any) -> None:
        self.slow = slow

    def __call__(self, path: str, fast: float, slow: float) -> Any:
        return first(self.slow(path, slow, "slow"), self.slow(path, fast, "fast"))


class ParentTwice:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    def __call__(self, *args: Any) -> Any:
        return [self.sub(*args), self.sub(*args)]


# -- determinism -------------------------------------------------------------------

COUNTER = itertools.count()


class ReadsCounter:
    """Not deterministic: its argument changes every time the code runs."""

    def __init__(self, identity: Any) -> None:
        self.identity = identity

    def __call__(self) -> Any:
        return self.identity(next(COUNTER))


class ReadsFile:
    """Not deterministic: what it calls depends on a file that its own activity creates."""

    def __init__(self, touch: Any, extra: Any) -> None:
        self.touch = touch
        self.extra = extra

    def __call__(self, path: str) -> Any:
        if os.path.exists(path):
            self.extra(1)
        return self.touch(path)


class Mixed:
    """Deterministic, but uses retries, errors, races, reductions and restarts."""

    def __init__(self, square: Any, add: Any, flaky: Any, fail: Any, sleepy: Any) -> None:
        self.square = square
        self.add = add
        self.flaky = flaky
        self.fail = fail
        self.sleepy = sleepy

    def __call__(self, path: str, rounds: int, acc: int = 0) -> Any:
        if rounds == 0:
            return acc
        squares = [self.square(i) for i in range(1, 4)]           # 1 + 4 + 9
        total = flowy.parallel_reduce(self.add, squares)            # 14
        attempt = self.flaky(path, 1)                                # retried: 2 on round 1
        try:
            wait(self.fail("expected"))
            caught = 0
        except TaskError:
            caught = 1
        winner = first(self.sleepy(100, 0.3), self.sleepy(1000, 0.05))
        step = self.add(total, winner + caught + attempt)
        return flowy.restart(path, rounds - 1, acc=self.add(acc, step))


class Deadline:
    """Race a task against a timer dependency."""

    def __init__(self, sleepy: Any, sleep: Any) -> None:
        self.sleepy = sleepy
        self.sleep = sleep

    def __call__(self, work_delay: float, limit: float) -> Any:
        answer = wait(first(self.sleepy("work", work_delay), self.sleep(limit)))
        return "timed out" if answer is None else answer


class SleepThenCall:
    """A timer's result as an argument: the call waits for the timer."""

    def __init__(self, sleep: Any, identity: Any) -> None:
        self.sleep = sleep
        self.identity = identity

    def __call__(self, seconds: float) -> Any:
        return self.identity([self.sleep(seconds), "after"])


class Approval:
    """Wait at most ``limit`` seconds for signal ``approve``, then for a second one."""

    def __init__(self, approve: Any, sleep: Any) -> None:
        self.approve = approve
        self.sleep = sleep

    def __call__(self, limit: float) -> Any:
        answer = wait(first(self.approve(), self.sleep(limit)))
        if answer is None:
            return "timed out"
        return [answer, wait(self.approve())]


# -- recorded steps: overlap and order shown by a log, not by the clock ------------


def log_of(path: str | os.PathLike[str]) -> list[str]:
    """The lines recorded in ``path``, in the order they were written ([] if none)."""
    try:
        return Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def step(path: str, label: Any, delay: float = 0.0, until: str | None = None,
         parties: int = 0, limit: float = 10.0) -> Any:
    """Record ``start <label>`` in ``path``; wait until ``parties`` starts and the
    line ``until`` are recorded there; sleep ``delay``; record ``end <label>``;
    return ``label``.

    Waiting for other calls' starts shows that calls overlap (run one after
    another, the first would wait in vain); waiting for ``end <other>`` fixes
    the finish order; waiting for a line the test writes (``until="release"``)
    keeps the call running for as long as the test needs, however slow the
    machine.  After ``limit`` seconds it stops waiting, so that a broken engine
    fails the test's assertions rather than hanging it.
    """
    record(path, f"start {label}")
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        lines = log_of(path)
        if (sum(line.startswith("start ") for line in lines) >= parties
                and (until is None or until in lines)):
            break
        time.sleep(0.01)
    time.sleep(delay)
    record(path, f"end {label}")
    return label


def quiet_until_released(path: str, beats: int, interval: float, limit: float = 10.0) -> str:
    """Like goes_quiet, but silent until the test records ``release`` in ``path``."""
    for n in range(beats):
        flowy.heartbeat({"step": n})
        time.sleep(interval)
    step(path, "quiet", until="release", limit=limit)
    return "woke up"
