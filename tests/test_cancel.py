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
from history_builder import HistoryBuilder as B
from history_builder import definition, sched

from flowy import LocalWorkflow, RunCancelled
from flowy.aws import RunNotFound
from flowy.core.events import (
    CancelRequested,
    WorkflowFailed,
)
from flowy.core.replay import Decider, replay
from tests import activities as A
from tests.aws_support import wait_for
from tests.scenarios import aws_workflow, local_workflow

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
    decider = Decider()
    first = B().started(3).events
    assert decider.decide("r", single, [], first) == [sched("square-0-1", 3)]
    history = [*first, sched("square-0-1", 3)]
    [failed] = decider.decide("r", single, history, [CancelRequested("no longer needed")])
    assert isinstance(failed, WorkflowFailed)
    assert (failed.error.type_name, failed.error.message) == (
        CANCELLED, "the run was cancelled: no longer needed")
    history += [CancelRequested("no longer needed"), failed]
    replay(single, history)  # a replay makes the same decisions: no NondeterminismError
    assert Decider().decide("r", single, history, B().completed("square-0-1", 9).events) == []


def test_core_cancel_in_the_same_batch_as_the_start() -> None:
    [failed] = Decider().decide("r", definition(Single, "square"), [],
                                [*B().started(3).events, CancelRequested()])
    assert isinstance(failed, WorkflowFailed)
    assert failed.error.message == "the run was cancelled"


# -- LocalWorkflow --------------------------------------------------------------

def test_local_cancel_fails_the_run_and_its_sub_workflow() -> None:
    with local_workflow("cancel_tree") as workflow:
        run = workflow.start(5, 3.0)
        time.sleep(0.5)  # the child's activity is running
        run.cancel("enough")
        with pytest.raises(RunCancelled, match="the run was cancelled: enough"):
            run.result(timeout=5)
        assert run.done()
        [parent] = run._chain.runs
        [child] = parent.children.values()
        child.closed.wait(5)
        assert isinstance(child.outcome, WorkflowFailed)
        assert child.outcome.error.type_name == CANCELLED
        run._chain.wait_settled(10)  # the child's activity ends; its result is late
        child_history = _types(child.runs[0].history)
        assert child_history == ["WorkflowStarted", "TaskScheduled", "CancelRequested",
                                 "WorkflowFailed", "TaskCompleted"]
        assert _types(parent.history)[-3:] == ["CancelRequested", "WorkflowFailed",
                                               "TaskFailed"]


def test_local_cancel_drops_queued_attempts_and_ignores_closed_runs() -> None:
    workflow = LocalWorkflow(A.Race, activity_workers=1).conf_activity("sleepy", A.sleepy)
    with workflow:
        run = workflow.start("finish_order", {"a": 1.0, "b": 1.0, "c": 1.0})
        time.sleep(0.3)  # one attempt runs, two wait for the only worker
        run.cancel()
        with pytest.raises(RunCancelled):
            run.result(timeout=5)
        assert run._chain.wait_settled(5)
        history = run._chain.runs[0].history
        assert _types(history).count("TaskCompleted") == 1  # the queued two never ran
        done = workflow.start("first", {"x": 0.0})
        assert done.result(timeout=5) == "x"
        done.cancel()  # closed: nothing changes
        assert done.result() == "x"


# -- AWS --------------------------------------------------------------------------

def test_aws_cancel_fails_the_run_and_its_sub_workflow(make_stack: Any) -> None:
    from flowy.aws.decider import child_run_id

    stack = make_stack()
    stack.decider()
    stack.worker()
    client = stack.client
    run = client.start(aws_workflow("cancel_tree"), 5, 4.0)
    child_id = child_run_id(run.run_id, "sub-0-1")
    wait_for(lambda: "TaskScheduled" in _types(_history(client, child_id)), 30,
             "the child's activity to be scheduled")
    assert run.cancel("enough") is True
    with pytest.raises(RunCancelled, match="the run was cancelled: enough"):
        run.result(timeout=30)
    child = wait_for(lambda: client.status(child_id).status == "failed" and
                     client.status(child_id), 30, "the child to fail")
    assert child.error.type_name == CANCELLED
    assert "enough" in child.error.message
    wait_for(lambda: _types(client.history(child_id))[-1] == "TaskCompleted", 30,
             "the child's running activity to finish, late")
    assert _types(client.history(child_id)) == [
        "WorkflowStarted", "TaskScheduled", "CancelRequested", "WorkflowFailed",
        "TaskCompleted"]
    assert run.cancel() is False  # closed: nothing to cancel
    cli = stack.flowy("cancel", run.run_id)
    assert cli.returncode == 1 and "already closed" in cli.stderr


def _history(client: Any, run_id: str) -> list[Any]:
    try:
        return client.history(run_id)  # type: ignore[no-any-return]
    except RunNotFound:  # the child run does not exist yet
        return []
