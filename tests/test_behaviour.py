"""One behaviour suite, two backends: every case runs on the in-memory backend and on AWS.

The same declarations (``tests.scenarios``) run on the same engine: in
threads of this process over the in-memory backend (what ``LocalWorkflow``
runs on), and as decider and worker processes over a moto server.  All the
runs of a backend start at once, then each test checks its own run; so both
backends are held to the very same expectations, from one test body.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from flowy import TaskError
from tests import activities as A
from tests.engines import BACKENDS, EngineUnderTest

PATH = "<path>"  # replaced by a file of the case's own


@dataclass(frozen=True)
class Case:
    id: str
    scenario: str
    args: tuple[Any, ...]
    expect: Any = None
    error: tuple[str, str] | None = None  # (type name, message)
    not_called: bool = False  # the activity counting calls in PATH must never run


CASES = [
    Case("parallel_then_sum", "example", (2, 10), 104),
    Case("custom_codec", "reversed_codec", (2, 10), 104),
    Case("results_in_python_code", "branching", (5,), 20),
    Case("calls_in_init", "init_calls", (1,), 10),
    Case("activity_error", "single_fail", ("boom",), error=("builtins.ValueError", "boom")),
    Case("catch_around_access", "catch_and_continue", ("boom",),
         [["boom", "builtins.ValueError", True], 16]),
    Case("error_as_argument", "pass_error", (PATH, 0.0, False, True),
         ["bad input", "builtins.ValueError"], not_called=True),
    Case("workflow_code_raises", "workflow_raises", (),
         error=("builtins.RuntimeError", "workflow broke after 9")),
    Case("first_error_wins", "two_failures", ("list", 0.0, 2.0),
         error=("builtins.ValueError", "first called")),
    Case("wait_containers", "wait_forms", ("containers",), ([1, 4], {"k": 9}, (16, 7))),
    Case("first", "race", ("first", {"slow": 4.0, "fast": 0.0}), "fast"),
    Case("finish_order", "race", ("finish_order", {"slow": 4.0, "fast": 0.0}),
         ["fast", "slow"]),
    Case("reduce_with_task", "reduce", (4, "task"), 30),
    Case("reduce_with_python", "reduce", (4, "plain"), 30),
    Case("reduce_empty", "reduce", (0, "empty"),
         error=("builtins.ValueError",
                "parallel_reduce() of an empty iterable with no initializer")),
    Case("retry_then_succeed", "retry", (PATH, 2), 3),
    Case("retries_exhausted", "retry", (PATH, 5),
         error=("builtins.RuntimeError", "attempt 3 failed")),
    Case("start_to_close_timeout", "timeout", (PATH, 6.0),
         ["timed out", "task-0 timed out (start-to-close) on attempt 1"]),
    Case("heartbeats_keep_alive", "heartbeat", (5, 0.5), ["ok", 5]),
    Case("heartbeat_timeout", "heartbeat_quiet", (1, 0.1, 7.0),
         ["timed out", 'task-0 timed out (heartbeat) on attempt 1; last heartbeat details: '
                       '{"step": 0}']),
    Case("async_activity", "async", (6,), 36),
    Case("sub_workflow", "parent", (3,), 81),
    Case("sub_workflow_error", "parent_catch", ("boom",),
         ["builtins.ValueError", "boom", "TaskError"]),
    Case("continue_as_new", "countdown", (3,), 6),
    Case("timer_beats_task", "deadline", (6.0, 0.5), "timed out"),
    Case("task_beats_timer", "deadline", (0.0, 30.0), "work"),
    Case("timer_as_argument", "sleep_then_call", (0.5,), [None, "after"]),
    Case("ignored_error_then_restart", "ignore_then_restart", (1,), "done"),
]


def _args(case: Case, directory: Path) -> tuple[Any, ...]:
    return tuple(str(directory / case.id) if a == PATH else a for a in case.args)


def _check(case: Case, outcome: Any, directory: Path) -> None:
    if case.error is not None:
        assert isinstance(outcome, TaskError), outcome
        assert (outcome.type_name, str(outcome)) == case.error
        assert outcome.traceback
    else:
        assert outcome == case.expect
    if case.not_called:
        assert A.calls(directory / case.id) == 0


@pytest.fixture(scope="module", params=BACKENDS)
def outcomes(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Any, Path]]:
    """Every case started at once on one engine per backend; outcomes collected lazily."""
    directory = tmp_path_factory.mktemp(f"{request.param}-cases")
    endpoint = request.getfixturevalue("aws_endpoint") if request.param == "aws" else None
    engine = EngineUnderTest(request.param, endpoint, directory)
    handles = {case.id: engine.start(case.scenario, *_args(case, directory)) for case in CASES}
    results: dict[str, Any] = {}

    def outcome(case_id: str) -> Any:
        if case_id not in results:
            try:
                results[case_id] = handles[case_id].result(timeout=120)
            except TaskError as exc:
                results[case_id] = exc
            except TimeoutError as exc:
                raise AssertionError(f"{exc}\n{engine.logs()}") from None
        return results[case_id]

    yield outcome, directory
    engine.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case: Case, outcomes: Any) -> None:
    outcome, directory = outcomes
    _check(case, outcome(case.id), directory)
