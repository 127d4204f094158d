"""What a simulated world runs: workflows of every shape the protocol has,
each with the result it must end with.

The shapes cover what can go wrong differently: a chain (one task in flight
at a time), a fan-out (many at once), sub-workflows (a child's outcome
becomes its parent's fact), a retry after a failure, an attempt whose worker
dies in it, so that only its timeout ends it, a durable timer, and a run that restarts itself
(continue-as-new).  Activities are closures over an :class:`Executions`
recorder, so that a simulation counts every time an attempt really ran, and
so that the flaky and fatal ones misbehave on their first run only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ...core.combinators import restart, wait
from ...core.errors import SimulatedCrash, TaskError
from ...core.spec import RetryPolicy
from ...declaration import Workflow

ATTEMPT_TIMEOUT = 10.0  # shorter than the simulation's lease: the timeout comes first
TIMER_SECONDS = 3600.0
RETRY = RetryPolicy(max_attempts=6, initial_delay=5.0, backoff=2.0)


class FirstRunFails(Exception):
    """What a flaky activity raises on its first run for an input."""


@dataclass
class Executions:
    """Every run of an activity, by (activity, input): at-least-once delivery
    may run an attempt twice, and that is counted, not hidden."""

    runs: Counter[tuple[str, Any]] = field(default_factory=Counter)

    def ran(self, activity: str, value: Any) -> int:
        """Count a run of ``activity`` on ``value``; how many there have been."""
        key = (activity, repr(value))
        self.runs[key] += 1
        return self.runs[key]


class Chain:
    def __init__(self, increment: Any) -> None:
        self.increment = increment

    def __call__(self, start: int, length: int) -> Any:
        value: Any = start
        for _ in range(length):
            value = self.increment(value)
        return value


class Fanout:
    def __init__(self, square: Any, total: Any) -> None:
        self.square, self.total = square, total

    def __call__(self, width: int) -> Any:
        return self.total([self.square(i) for i in range(width)])


class Family:
    """Two sub-workflows in parallel, and a task on their results."""

    def __init__(self, chain: Any, fanout: Any, total: Any) -> None:
        self.chain, self.fanout, self.total = chain, fanout, total

    def __call__(self, start: int) -> Any:
        return self.total([self.chain(start, 3), self.fanout(4)])


class Retried:
    """A task that fails on its first run and succeeds when retried, and one
    whose first run kills its worker, so that it times out and is retried."""

    def __init__(self, flaky: Any, fatal: Any) -> None:
        self.flaky, self.fatal = flaky, fatal

    def __call__(self, value: int) -> Any:
        flaky, fatal = self.flaky(value), self.fatal(value)
        try:
            wait(flaky, fatal)
        except TaskError as exc:  # the retry policy is generous: this is a failure to report
            return ["failed", str(exc)]
        return [flaky, fatal]


class Sleeper:
    """A durable timer of an hour, then a task."""

    def __init__(self, sleep: Any, increment: Any) -> None:
        self.sleep, self.increment = sleep, increment

    def __call__(self, value: int) -> Any:
        wait(self.sleep(TIMER_SECONDS))
        return self.increment(value)


class Countdown:
    """Restart (continue-as-new) ``n`` times, adding as it goes."""

    def __init__(self, increment: Any) -> None:
        self.increment = increment

    def __call__(self, n: int, acc: int = 0) -> Any:
        if n == 0:
            return acc
        return restart(n - 1, acc=self.increment(acc))


@dataclass(frozen=True)
class Start:
    """A run to start, and the result it must end with."""

    workflow: Workflow
    args: tuple[Any, ...]
    expected: Any


def declare(executions: Executions) -> list[Start]:
    """The workflows of one simulated world, over ``executions``, with the
    runs to start in it."""
    def activity(name: str, body: Callable[..., Any]) -> Callable[..., Any]:
        def run(value: Any) -> Any:
            executions.ran(name, value)
            return body(value)
        run.__name__ = name
        return run

    def flaky(value: int) -> int:
        if executions.ran("flaky", value) == 1:
            raise FirstRunFails(f"the first run for {value} fails")
        return value * 10

    def fatal(value: int) -> int:
        if executions.ran("fatal", value) == 1:
            raise SimulatedCrash("the worker died in the attempt")
        return value + 1000

    increment = activity("increment", lambda x: x + 1)
    square = activity("square", lambda x: x * x)
    total = activity("total", sum)

    chain = Workflow(Chain, name="chain").conf_activity("increment", increment)
    fanout = (Workflow(Fanout, name="fanout").conf_activity("square", square)
              .conf_activity("total", total))
    family = (Workflow(Family, name="family").conf_workflow("chain", chain)
              .conf_workflow("fanout", fanout).conf_activity("total", total))
    retried = (Workflow(Retried, name="retried").conf_activity("flaky", flaky, retry=RETRY)
               .conf_activity("fatal", fatal, retry=RETRY, timeout=ATTEMPT_TIMEOUT))
    sleeper = (Workflow(Sleeper, name="sleeper").conf_timer("sleep")
               .conf_activity("increment", increment))
    countdown = Workflow(Countdown, name="countdown").conf_activity("increment", increment)
    return [
        Start(chain, (0, 6), 6),
        Start(chain, (100, 4), 104),
        Start(fanout, (8,), sum(i * i for i in range(8))),
        Start(family, (10,), 13 + sum(i * i for i in range(4))),
        Start(retried, (7,), [70, 1007]),
        Start(sleeper, (41,), 42),
        Start(countdown, (3,), 3),
    ]
