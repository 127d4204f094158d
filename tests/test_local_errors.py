"""LocalWorkflow end to end: how task and workflow errors travel and surface."""

from __future__ import annotations

import logging
import time

import pytest

from flowy import FlowyError, TaskError, TaskTimedout
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


def test_task_error_keeps_message_type_and_traceback(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    with pytest.raises(TaskError) as info:
        w.run("bad things happened")
    error = info.value
    assert type(error) is TaskError
    assert isinstance(error, FlowyError)
    assert str(error) == "bad things happened"
    assert error.type_name == "builtins.ValueError"
    assert "fail_with" in error.traceback
    assert "ValueError: bad things happened" in error.traceback


def test_custom_exception_type_name(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    with pytest.raises(TaskError, match="^custom$") as info:
        w.run("custom", error="CustomError")
    assert info.value.type_name == "tests.activities.CustomError"
    assert info.value.info.type_mro == ("tests.activities.CustomError", "builtins.Exception",
                                        "builtins.BaseException")


def test_exception_without_message_uses_its_type_name(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    with pytest.raises(TaskError) as info:
        w.run("")
    assert str(info.value) == "ValueError"


def test_workflow_catches_task_error_and_continues(make_workflow) -> None:
    w = (make_workflow(A.CatchAndContinue)
         .conf_activity("fail", A.fail_with)
         .conf_activity("square", A.square))
    assert w.run("boom") == [["boom", "builtins.ValueError", True], 16]


@pytest.mark.parametrize("delay, wait_first", [(0.0, True), (0.2, False)],
                         ids=["already-failed", "still-running"])
def test_error_passed_to_another_call_fails_it_without_running_it(
        make_workflow, calls_file, delay: float, wait_first: bool) -> None:
    path = calls_file()
    w = (make_workflow(A.PassError)
         .conf_activity("fail", A.fail_with)
         .conf_activity("counted", A.counted))
    with pytest.raises(TaskError) as info:
        w.run(path, delay, wait_first, False)
    assert str(info.value) == "bad input"
    assert info.value.type_name == "builtins.ValueError"
    assert w.run(path, delay, wait_first, True) == ["bad input", "builtins.ValueError"]
    time.sleep(0.1)  # a wrongly scheduled call would have recorded itself by now
    assert A.calls(path) == 0


def test_untouched_error_does_not_fail_the_run_but_warns(make_workflow, caplog) -> None:
    w = (make_workflow(A.IgnoreError)
         .conf_activity("fail", A.fail_with)
         .conf_activity("sleepy", A.sleepy))
    with caplog.at_level(logging.WARNING, logger="flowy.decider"):
        assert w.run(_trace=True) == 9
    warnings = [r for r in caplog.records if r.name == "flowy.decider"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "fail-0" in warnings[0].getMessage()
    assert "never read the errors" in warnings[0].getMessage()
    assert w.last_trace.runs[0].ignored_errors == ("fail-0",)


def test_untouched_error_in_a_restarted_run_warns(make_workflow, caplog) -> None:
    w = (make_workflow(A.IgnoreErrorThenRestart)
         .conf_activity("fail", A.fail_with)
         .conf_activity("sleepy", A.sleepy))
    with caplog.at_level(logging.WARNING, logger="flowy.decider"):
        assert w.run(1, _trace=True) == "done"
    # The error really was never read: the trace shows it failed, in the first run.
    assert w.last_trace.runs[0].task("fail-0").status == "failed"
    warnings = [r.getMessage() for r in caplog.records if r.name == "flowy.decider"]
    assert len(warnings) == 1
    assert "fail-0" in warnings[0]


def test_read_errors_are_not_reported_as_ignored(make_workflow, caplog) -> None:
    w = (make_workflow(A.CatchAndContinue)
         .conf_activity("fail", A.fail_with)
         .conf_activity("square", A.square))
    with caplog.at_level(logging.WARNING, logger="flowy.decider"):
        w.run("boom", _trace=True)
    assert [r for r in caplog.records if r.name == "flowy.decider"] == []
    assert w.last_trace.runs[0].ignored_errors == ()


def test_exception_in_workflow_code_fails_the_run(make_workflow) -> None:
    w = make_workflow(A.WorkflowRaises).conf_activity("square", A.square)
    with pytest.raises(TaskError) as info:
        w.run()
    assert str(info.value) == "workflow broke after 9"
    assert info.value.type_name == "builtins.RuntimeError"
    assert "raise RuntimeError(f\"workflow broke after" in info.value.traceback


def test_exception_in_workflow_factory_fails_the_run(make_workflow) -> None:
    def factory(task):
        raise KeyError("no factory today")

    w = make_workflow(factory).conf_activity("task", A.square)
    with pytest.raises(TaskError) as info:
        w.run()
    assert info.value.type_name == "builtins.KeyError"
    assert "no factory today" in str(info.value)


@pytest.mark.parametrize("mode", ["list", "dict", "wait", "call"])
@pytest.mark.parametrize("first_delay, second_delay, winner", [
    (0.4, 0.1, "second called"), (0.1, 0.4, "first called")])
def test_first_error_to_finish_wins(make_workflow, mode: str, first_delay: float,
                                    second_delay: float, winner: str) -> None:
    w = (make_workflow(A.TwoFailures)
         .conf_activity("fail", A.fail_with)
         .conf_activity("identity", A.identity))
    with pytest.raises(TaskError) as info:
        w.run(mode, first_delay, second_delay)
    assert str(info.value) == winner


def test_timeout_error_reaches_workflow_code_as_task_timedout(make_workflow) -> None:
    w = make_workflow(A.CatchTimeout).conf_activity("task", A.sleepy, timeout=0.2)
    status, message = w.run("x", 0.6, _wait=True)
    assert status == "timed out"
    assert message == "task-0 timed out (start-to-close) on attempt 1"
    assert issubclass(TaskTimedout, TaskError)


def test_unpicklable_activity(make_workflow, executor) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", lambda x: x + 1)
    if executor.__name__ == "ThreadPoolExecutor":
        assert w.run(1) == 2
        return
    # A lambda can't be sent to a worker process: the task fails, the run doesn't hang.
    with pytest.raises(TaskError) as info:
        w.run(1)
    assert "pickle" in (str(info.value) + info.value.type_name).lower()


def test_system_exit_in_an_activity_fails_only_that_task(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.system_exit)
    with pytest.raises(TaskError) as info:
        w.run(3)
    assert info.value.type_name == "builtins.SystemExit"
    assert str(info.value) == "3"
    # The pool survives it: the same workflow runs again.
    with pytest.raises(TaskError, match="^4$"):
        w.run(4)


def test_shut_down_pool_fails_the_task_instead_of_hanging(make_workflow, executor) -> None:
    pool = executor(max_workers=1)
    pool.shutdown()
    w = make_workflow(A.SingleCall, executor=pool).conf_activity("task", A.square)
    with pytest.raises(TaskError, match="task-0-1 could not be started") as info:
        w.start(3).result(timeout=5)
    assert info.value.type_name == "flowy.FlowyError"


def test_dead_worker_process_fails_the_task_and_later_runs(make_workflow, executor) -> None:
    if executor.__name__ != "ProcessPoolExecutor":
        pytest.skip("os._exit in a pool thread would end the test process")
    w = make_workflow(A.SingleCall).conf_activity("task", A.exit_process)
    with pytest.raises(TaskError, match="terminated abruptly"):
        w.start(1).result(timeout=10)
    # The pool is broken for good: later runs fail at once instead of hanging.
    with pytest.raises(TaskError, match="could not be started"):
        w.start(1).result(timeout=5)
