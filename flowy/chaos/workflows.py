"""The chaos suite's workloads, as the decider and worker processes serve them
(``python -m flowy decider flowy.chaos.workflows``).

Four shapes, each with the result it must end with: a fan-out (ten parallel
tasks, then their sum), a chain (five sequential steps), a parent running two
child workflows, and a retry (a task whose first attempt fails, every time).
Every activity appends a line to the execution log named by
:data:`LOG_VARIABLE` before it returns: that log is the suite's record of
what really ran, kept apart from the engine's own histories.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..core.spec import RetryPolicy
from ..declaration import Workflow
from ..worker.activity import current_attempt

LOG_VARIABLE = "FLOWY_CHAOS_LOG"
FANOUT_WIDTH = 10
CHAIN_LENGTH = 5
# Short delays: a retry must come back within the drain, not after it.
RETRY = RetryPolicy(max_attempts=3, initial_delay=1.0, backoff=1.0)


class FirstAttemptFails(Exception):
    """What the retried activity raises on the first attempt of every call."""


def attempt_number(token: str | None) -> int | None:
    """The attempt's number, from its key (``CALL_ID-N``)."""
    if token is None:
        return None
    return int(token.rpartition("-")[2])


def log_execution(activity: str, args: tuple[Any, ...]) -> None:
    """Append one line for this execution to the log, if one is named.

    The file is opened for each line with ``O_APPEND`` and written in one
    ``write`` (a line is far below ``PIPE_BUF``), so that concurrent workers
    never interleave and a SIGKILL loses nothing written before it.
    """
    path = os.environ.get(LOG_VARIABLE)
    if not path:
        return
    line = json.dumps({"attempt": current_attempt(), "activity": activity, "input": list(args),
                       "pid": os.getpid(), "at": time.time()}) + "\n"
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line.encode())
    finally:
        os.close(descriptor)


def square(n: int, i: int) -> int:
    log_execution("square", (n, i))
    return n + i * i


def step(value: int, index: int) -> int:
    log_execution("step", (value, index))
    return value + index + 1


def total(values: list[int]) -> int:
    log_execution("total", (values,))
    return sum(values)


def flaky(n: int) -> int:
    """Fails on the first attempt of each call, by the attempt's number, so the
    retry is deterministic whichever worker runs it, and however often."""
    log_execution("flaky", (n,))
    if attempt_number(current_attempt()) == 1:
        raise FirstAttemptFails(f"the first attempt for {n} fails")
    return n * 10


class Fanout:
    def __init__(self, square: Callable[..., Any], total: Callable[..., Any]) -> None:
        self.square, self.total = square, total

    def __call__(self, n: int) -> Any:
        return self.total([self.square(n, i) for i in range(FANOUT_WIDTH)])


class Chain:
    def __init__(self, step: Callable[..., Any]) -> None:
        self.step = step

    def __call__(self, n: int) -> Any:
        value: Any = n
        for index in range(CHAIN_LENGTH):
            value = self.step(value, index)
        return value


class Family:
    """A parent running a chain and a fan-out as child workflows, then summing."""

    def __init__(self, chain: Callable[..., Any], fanout: Callable[..., Any],
                 total: Callable[..., Any]) -> None:
        self.chain, self.fanout, self.total = chain, fanout, total

    def __call__(self, n: int) -> Any:
        return self.total([self.chain(n), self.fanout(n)])


class Retried:
    def __init__(self, flaky: Callable[..., Any]) -> None:
        self.flaky = flaky

    def __call__(self, n: int) -> Any:
        return self.flaky(n)


chaos_fanout = (Workflow(Fanout, name="chaos_fanout").conf_activity("square", square)
                .conf_activity("total", total))
chaos_chain = Workflow(Chain, name="chaos_chain").conf_activity("step", step)
chaos_family = (Workflow(Family, name="chaos_family").conf_workflow("chain", chaos_chain)
                .conf_workflow("fanout", chaos_fanout).conf_activity("total", total))
chaos_retry = Workflow(Retried, name="chaos_retry").conf_activity("flaky", flaky, retry=RETRY)


def fanout_result(n: int) -> int:
    return sum(n + i * i for i in range(FANOUT_WIDTH))


def chain_result(n: int) -> int:
    return n + sum(index + 1 for index in range(CHAIN_LENGTH))


@dataclass(frozen=True)
class Shape:
    """A workload: its workflow, and the result a run on input ``n`` must end with."""

    name: str
    workflow: Workflow
    expected: Callable[[int], Any]


SHAPES = (
    Shape("fanout", chaos_fanout, fanout_result),
    Shape("chain", chaos_chain, chain_result),
    Shape("subworkflow", chaos_family, lambda n: chain_result(n) + fanout_result(n)),
    Shape("retry", chaos_retry, lambda n: n * 10),
)
