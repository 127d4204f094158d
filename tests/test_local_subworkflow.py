"""LocalWorkflow end to end: sub-workflows configured with conf_workflow."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flowy import RetryPolicy, TaskError, TaskTimedout
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def steps(make_workflow, tmp_path) -> Iterator[str]:
    """A log that A.step calls record their starts and ends in, in order.

    Overlap and "not waited for" are shown by the log, not by wall-clock
    bounds, which a slow machine would break.  Teardown releases held steps.
    """
    path = str(tmp_path / "steps.txt")
    yield path
    A.record(path, "release")  # torn down before make_workflow closes the pools


def example_child(make_workflow):
    return (make_workflow(A.ExampleWorkflow)
            .conf_activity("square", A.square)
            .conf_activity("sum", A.add))


def parent_of(make_workflow, child, factory=A.Parent, **conf):
    parent = make_workflow(factory).conf_workflow("sub", child, **conf)
    if factory is A.Parent:
        parent.conf_activity("square", A.square)
    return parent


def test_sub_workflow_result_returns_to_the_parent(make_workflow) -> None:
    child = example_child(make_workflow)
    parent = parent_of(make_workflow, child)
    assert parent.run(2, 10) == 104 * 104
    assert child.run(2, 10) == 104  # the child still runs on its own


def test_sub_workflow_error_reaches_the_parent(make_workflow) -> None:
    child = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    parent = parent_of(make_workflow, child)
    with pytest.raises(TaskError) as info:
        parent.run("child failed")
    assert type(info.value) is TaskError
    assert str(info.value) == "child failed"
    assert info.value.type_name == "builtins.ValueError"
    assert "fail_with" in info.value.traceback


def test_parent_catches_sub_workflow_error(make_workflow) -> None:
    child = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    parent = parent_of(make_workflow, child, A.ParentCatch)
    assert parent.run("custom", 0.0, "CustomError") == [
        "tests.activities.CustomError", "custom", "TaskError"]


def test_sub_workflow_code_error_reaches_the_parent(make_workflow) -> None:
    child = make_workflow(A.WorkflowRaises).conf_activity("square", A.square)
    parent = parent_of(make_workflow, child, A.ParentCatch)
    assert parent.run() == ["builtins.RuntimeError", "workflow broke after 9", "TaskError"]


def test_failed_sub_workflow_is_retried(make_workflow, calls_file) -> None:
    path = calls_file()
    child = make_workflow(A.SingleCall).conf_activity("task", A.flaky)  # no retry of its own
    parent = parent_of(make_workflow, child, A.ParentCatch,
                       retry=RetryPolicy(max_attempts=2, initial_delay=0.05))
    assert parent.run(path, 1, _trace=True) == ["ok", 2]
    assert A.calls(path) == 2
    task = parent.last_trace.runs[0].task("sub-0")
    assert task.kind == "workflow"
    assert [a.outcome for a in task.attempts] == ["failed", "completed"]
    assert [t.delay for t in task.timers] == [0.05]


def test_sub_workflow_retries_run_out(make_workflow, calls_file) -> None:
    path = calls_file()
    child = make_workflow(A.SingleCall).conf_activity("task", A.flaky)
    parent = parent_of(make_workflow, child, A.ParentCatch,
                       retry=RetryPolicy(max_attempts=2, initial_delay=0.01,
                                         non_retryable=(ValueError,)))
    assert parent.run(path, 5) == ["builtins.RuntimeError", "attempt 2 failed", "TaskError"]
    assert A.calls(path) == 2
    other = calls_file("other")
    assert parent.run(other, 5, "ValueError") == ["builtins.ValueError", "attempt 1 failed",
                                                  "TaskError"]
    assert A.calls(other) == 1


def test_restarting_sub_workflow_returns_its_final_result(make_workflow) -> None:
    child = make_workflow(A.Countdown).conf_activity("add", A.add)
    parent = parent_of(make_workflow, child)
    assert parent.run(3, _trace=True) == 36  # (3 + 2 + 1) ** 2
    sub = parent.last_trace.runs[0].task("sub-0")
    assert [r.status for r in sub.child.runs] == ["restarted"] * 3 + ["completed"]


def test_sub_workflow_timeout(make_workflow, steps) -> None:
    child = make_workflow(A.SingleCall).conf_activity("task", A.step)
    parent = parent_of(make_workflow, child, A.ParentCatch, timeout=0.3)
    # The child's step runs until the test releases it.
    assert parent.run(steps, "late", 0, "release") == [
        "flowy.TaskTimedout", "sub-0 timed out (start-to-close) on attempt 1", "TaskTimedout"]
    assert A.calls(steps, "end late") == 0  # the parent didn't wait for the child
    A.record(steps, "release")
    with pytest.raises(TaskTimedout):
        parent_of(make_workflow, child, timeout=0.2).run(steps, "late again", 0.5, _wait=True)


def test_timed_out_sub_workflow_is_retried_and_its_late_result_ignored(
        make_workflow, calls_file) -> None:
    path = calls_file()
    child = make_workflow(A.SingleCall).conf_activity("task", A.slow_first)
    parent = parent_of(make_workflow, child, A.ParentCatch, timeout=0.3,
                       retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    assert parent.run(path, 0.6, _wait=True, _trace=True) == ["ok", "fast"]
    assert A.calls(path, "start") == 2
    assert A.calls(path, "end") == 2  # _wait: the first child ran to its end
    task = parent.last_trace.runs[0].task("sub-0")
    assert [a.outcome for a in task.attempts] == ["timed_out", "completed"]
    assert task.child.runs[0].result == '"fast"'  # the trace shows the latest child


def test_sub_workflows_run_in_parallel(make_workflow, steps) -> None:
    child = make_workflow(A.SingleCall).conf_activity("task", A.step)
    parent = parent_of(make_workflow, child, A.ParentTwice)
    # Each child's step waits until both have started: one child after the
    # other, the first would wait in vain and end before the second started.
    assert parent.run(steps, "x", 0, None, 2) == ["x", "x"]
    assert A.log_of(steps) == ["start x", "start x", "end x", "end x"]


def test_nested_sub_workflows(make_workflow) -> None:
    grandchild = example_child(make_workflow)
    child = parent_of(make_workflow, grandchild)
    parent = parent_of(make_workflow, child)
    assert parent.run(1, 1, _trace=True) == 2 ** 4
    sub = parent.last_trace.runs[0].task("sub-0")
    assert sub.child.runs[0].task("sub-0").child.runs[0].result == "2"


def test_one_child_shared_by_two_parents(make_workflow) -> None:
    child = example_child(make_workflow)
    first = parent_of(make_workflow, child)
    second = parent_of(make_workflow, child, A.ParentTwice)
    assert first.run(1, 2) == 25
    assert second.run(1, 2) == [5, 5]


def test_wait_waits_for_the_workflows_own_stragglers(make_workflow, calls_file) -> None:
    path = calls_file()
    w = make_workflow(A.FirstOfSlow).conf_activity("slow", A.slow)
    start = time.monotonic()
    assert w.run(path, 0.05, 0.5, _wait=True) == "fast"
    assert time.monotonic() - start >= 0.5
    assert A.calls(path, "end") == 2


def test_wait_waits_for_sub_workflow_stragglers(make_workflow, calls_file) -> None:
    path = calls_file()
    child = make_workflow(A.FirstOfSlow).conf_activity("slow", A.slow)
    parent = make_workflow(A.SingleCall).conf_workflow("task", child)
    assert parent.run(path, 0.05, 0.5, _wait=True) == "fast"
    ended = A.calls(path, "end")
    time.sleep(0.6)  # let the straggler end before the fixture closes the pools
    assert ended == 2
