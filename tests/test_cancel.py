"""Cancelling a run: the core, LocalWorkflow and the AWS engine agree.

A cancelled run fails at once with ``flowy.RunCancelled`` (the reason in its
message); its open sub-workflows are cancelled too; an activity already
running finishes and its result is recorded as late; a cancel that reaches a
run after it restarted goes on to the run it restarted as (on AWS, with a
signal, in test_signals.py).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from flowy import LocalWorkflow, RunCancelled, RunNotFound
from flowy.core.events import (
    CancelRequested,
    WorkflowFailed,
)
from flowy.core.protocol import child_run_id
from flowy.core.replay import Replayer, replay
from flowy.testing.history import HistoryBuilder as B
from flowy.testing.history import definition, sched
from tests import activities as A
from tests.aws_support import wait_for
from tests.scenarios import aws_workflow

CANCELLED = "flowy.RunCancelled"


class Single:
    def __init__(self, square: Any) -> None:
        self.square = square

    def __call__(self, n: int) -> Any:
        return self.square(n)


def _types(events: Any) -> list[str]:
    return [type(e).__name__ for e in events]


# -- the core -------------------------------------------------------------------

def test_core_fails_the_run_at_once_and_replays_it() -> None:
    single = definition(Single, "square")
    replayer = Replayer()
    first = B().started(3).events
    assert replayer.decide("r", single, [], first) == [sched("square-0-1", 3)]
    history = [*first, sched("square-0-1", 3)]
    [failed] = replayer.decide("r", single, history, [CancelRequested("no longer needed")])
    assert isinstance(failed, WorkflowFailed)
    assert (failed.error.type_name, failed.error.message) == (
        CANCELLED, "the run was cancelled: no longer needed")
    history += [CancelRequested("no longer needed"), failed]
    replay(single, history)  # a replay makes the same decisions: no NondeterminismError
    assert Replayer().decide("r", single, history, B().completed("square-0-1", 9).events) == []


def test_core_cancel_in_the_same_batch_as_the_start() -> None:
    [failed] = Replayer().decide("r", definition(Single, "square"), [],
                                [*B().started(3).events, CancelRequested()])
    assert isinstance(failed, WorkflowFailed)
    assert failed.error.message == "the run was cancelled"


# -- the engine, on both backends -------------------------------------------------

def test_cancel_fails_the_run_and_its_sub_workflow(engine: Any) -> None:
    client = engine.client
    run = engine.start("cancel_tree", 5, 4.0)
    child_id = child_run_id(run.run_id, "sub-0-1")
    wait_for(lambda: "TaskScheduled" in _types(_history(client, child_id)), 30,
             "the child's activity to be scheduled")
    assert run.cancel("enough") is True
    with pytest.raises(RunCancelled, match="the run was cancelled: enough"):
        run.result(timeout=30)
    assert run.done()
    child = wait_for(lambda: client.status(child_id).status == "failed" and
                     client.status(child_id), 30, "the child to fail")
    assert child.error.type_name == CANCELLED
    assert "enough" in child.error.message
    wait_for(lambda: _types(client.history(child_id))[-1] == "TaskCompleted", 30,
             "the child's running activity to finish, late")
    assert _types(client.history(child_id)) == [
        "WorkflowStarted", "TaskScheduled", "CancelRequested", "WorkflowFailed",
        "TaskCompleted"]
    assert _types(client.history(run.run_id))[-3:] == ["CancelRequested", "WorkflowFailed",
                                                       "TaskFailed"]
    assert run.cancel() is False  # closed: nothing to cancel


def test_cancelling_a_closed_run_changes_nothing(engine: Any) -> None:
    done = engine.start("square", 3)
    assert done.result(timeout=30) == 9
    assert done.cancel() is False
    assert done.result() == 9


def test_local_cancel_withdraws_queued_attempts() -> None:
    """The attempt running when the run is cancelled ends, and its result is
    recorded as late; the two still queued are withdrawn, and never run."""
    workflow = LocalWorkflow(A.Race, activity_workers=1).conf_activity("sleepy", A.sleepy)
    with workflow:
        run = workflow.start("finish_order", {"a": 0.5, "b": 0.0, "c": 0.0})
        time.sleep(0.1)  # one attempt runs, two wait for the only worker
        run.cancel()
        with pytest.raises(RunCancelled):
            run.result(timeout=5, wait_for_tasks=True)
        history = run.client.history(run.run_id)
        assert _types(history).count("TaskCompleted") == 1
        assert _types(history).index("WorkflowFailed") < _types(history).index("TaskCompleted")


def test_cli_cancel_of_a_closed_run_says_so(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    run = stack.client.start(aws_workflow("square"), 2)
    assert run.result(timeout=60) == 4
    cli = stack.flowy("cancel", run.run_id)
    assert cli.returncode == 1 and "already closed" in cli.stderr


def _history(client: Any, run_id: str) -> list[Any]:
    try:
        return client.history(run_id)  # type: ignore[no-any-return]
    except RunNotFound:  # the child run does not exist yet
        return []
