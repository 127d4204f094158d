"""LocalWorkflow end to end: retry policies, timeouts, heartbeats, @flowy.activity defaults."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from flowy import RetryPolicy, TaskError, TaskTimedout
from tests import activities as A

pytestmark = pytest.mark.timeout(30)

POLICY = RetryPolicy(max_attempts=3, initial_delay=0.05, backoff=2, non_retryable=(ValueError,))


def single(make_workflow, function, **conf):
    return make_workflow(A.SingleCall).conf_activity("task", function, **conf)


@pytest.fixture
def steps(make_workflow, tmp_path) -> Iterator[str]:
    """A log for A.step (and A.quiet_until_released) calls.

    A call that waits for "release" can't end before the test writes it, so
    "the run didn't wait for it" is shown by its missing end line, not by a
    wall-clock bound, which a slow machine would break.  Teardown releases it.
    """
    path = str(tmp_path / "steps.txt")
    yield path
    A.record(path, "release")  # torn down before make_workflow closes the pools


def test_flaky_activity_succeeds_on_third_attempt(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.flaky, retry=POLICY)
    start = time.monotonic()
    assert w.run(path, 2, _trace=True) == 3
    assert time.monotonic() - start >= 0.05 + 0.1  # both backoff delays
    assert A.calls(path) == 3
    task = w.last_trace.runs[0].task("task-0")
    assert [a.outcome for a in task.attempts] == ["failed", "failed", "completed"]
    assert [a.error.message for a in task.attempts[:2]] == ["attempt 1 failed",
                                                           "attempt 2 failed"]
    assert [t.delay for t in task.timers] == [0.05, 0.1]


def test_retries_run_out(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.flaky, retry=POLICY)
    with pytest.raises(TaskError) as info:
        w.run(path, 10)
    assert str(info.value) == "attempt 3 failed"
    assert info.value.type_name == "builtins.RuntimeError"
    assert A.calls(path) == 3


@pytest.mark.parametrize("error", ["ValueError", "SubValueError"])
def test_non_retryable_error_is_not_retried(make_workflow, calls_file, error: str) -> None:
    path = calls_file()
    w = single(make_workflow, A.flaky, retry=POLICY)
    with pytest.raises(TaskError, match="^attempt 1 failed$") as info:
        w.run(path, 2, error)
    assert info.value.type_name.endswith(error)
    assert A.calls(path) == 1


def test_non_retryable_by_qualified_name(make_workflow, calls_file) -> None:
    path = calls_file()
    policy = RetryPolicy(max_attempts=3, initial_delay=0.01,
                         non_retryable=("tests.activities.CustomError",))
    w = single(make_workflow, A.flaky, retry=policy)
    with pytest.raises(TaskError):
        w.run(path, 2, "CustomError")
    assert A.calls(path) == 1
    other = calls_file("other")
    assert w.run(other, 2, "RuntimeError") == 3
    assert A.calls(other) == 3


def test_no_retry_by_default(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.flaky)
    with pytest.raises(TaskError, match="attempt 1 failed"):
        w.run(path, 1)
    assert A.calls(path) == 1


def test_timeout_is_retried_then_fails_with_task_timedout(make_workflow, steps) -> None:
    w = single(make_workflow, A.step, timeout=0.3,
               retry=RetryPolicy(max_attempts=2, initial_delay=0.05))
    start = time.monotonic()
    with pytest.raises(TaskTimedout) as info:
        w.run(steps, "slow", until="release")  # each attempt runs until released
    elapsed = time.monotonic() - start
    assert isinstance(info.value, TaskError)
    assert str(info.value) == "task-0 timed out (start-to-close) on attempt 2"
    assert info.value.type_name == "flowy.TaskTimedout"
    assert elapsed >= 0.3 + 0.05 + 0.3  # both attempts ran to their timeout
    # Neither attempt can end before the release: the stragglers aren't waited for.
    assert A.calls(steps, "end slow") == 0
    A.record(steps, "release")
    w.close()  # waits for the running attempts
    assert A.calls(steps, "start slow") == 2
    assert A.calls(steps, "end slow") == 2


@pytest.mark.parametrize("stop", [TaskTimedout, TaskError, "flowy.TaskTimedout"])
def test_timeouts_can_be_made_non_retryable(make_workflow, calls_file, stop) -> None:
    path = calls_file()
    w = single(make_workflow, A.slow, timeout=0.2,
               retry=RetryPolicy(max_attempts=3, initial_delay=0.01, non_retryable=(stop,)))
    with pytest.raises(TaskTimedout, match="on attempt 1$"):
        w.run(path, 0.4, _wait=True)
    assert A.calls(path, "start") == 1


def test_wait_waits_for_timed_out_stragglers(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.slow, timeout=0.3,
               retry=RetryPolicy(max_attempts=2, initial_delay=0.05))
    start = time.monotonic()
    with pytest.raises(TaskTimedout, match="on attempt 2"):
        w.run(path, 1.0, _wait=True)
    # The second attempt started at about 0.35 s and sleeps 1 s.
    assert time.monotonic() - start >= 1.3
    assert A.calls(path, "start") == 2
    assert A.calls(path, "end") == 2


def test_late_result_after_a_timeout_is_ignored(make_workflow, calls_file) -> None:
    path = calls_file()
    w = make_workflow(A.CatchTimeout).conf_activity("task", A.slow, timeout=0.2)
    assert w.run(path, 0.5, "too late", _wait=True) == [
        "timed out", "task-0 timed out (start-to-close) on attempt 1"]
    assert A.calls(path, "end") == 1


def test_retry_after_timeout_wins_over_the_late_first_attempt(make_workflow,
                                                              calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.slow_first, timeout=0.2,
               retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    assert w.run(path, 0.5, _wait=True, _trace=True) == "fast"
    assert A.calls(path, "start") == 2
    assert A.calls(path, "end") == 2
    attempts = w.last_trace.runs[0].task("task-0").attempts
    assert [a.outcome for a in attempts] == ["timed_out", "completed"]
    assert attempts[1].result == '"fast"'


def test_timeout_counts_from_the_start_not_from_scheduling(make_workflow) -> None:
    class Queued:
        def __init__(self, blocker, timed):
            self.blocker, self.timed = blocker, timed

        def __call__(self):
            return [self.blocker("blocker", 0.5), self.timed("timed", 0.1)]

    w = (make_workflow(Queued, activity_workers=1)
         .conf_activity("blocker", A.sleepy)
         .conf_activity("timed", A.sleepy, timeout=0.3))
    # "timed" waits 0.5 s for the only worker, then runs 0.1 s: within its timeout.
    assert w.run() == ["blocker", "timed"]


def test_retry_delays_back_off_up_to_max_delay(make_workflow, calls_file) -> None:
    policy = RetryPolicy(max_attempts=4, initial_delay=0.02, backoff=5, max_delay=0.05)
    w = single(make_workflow, A.flaky, retry=policy)
    assert w.run(calls_file(), 3, _trace=True) == 4
    assert [t.delay for t in w.last_trace.runs[0].timers] == [0.02, 0.05, 0.05]


def test_heartbeating_activity_outlives_its_heartbeat_timeout(make_workflow) -> None:
    w = single(make_workflow, A.heartbeating, heartbeat=0.3)
    start = time.monotonic()
    assert w.run(8, 0.1) == 8
    assert time.monotonic() - start >= 0.8


def test_silent_activity_times_out_with_last_heartbeat_details(make_workflow, steps) -> None:
    w = single(make_workflow, A.quiet_until_released, heartbeat=0.3)
    with pytest.raises(TaskTimedout) as info:
        w.run(steps, 3, 0.05, _trace=True)
    # It timed out while the activity was silent, without waiting for it to end.
    assert A.calls(steps, "end quiet") == 0
    assert str(info.value) == ('task-0 timed out (heartbeat) on attempt 1; '
                               'last heartbeat details: {"step": 2}')
    attempt = w.last_trace.runs[0].task("task-0").attempts[0]
    assert attempt.outcome == "timed_out"
    assert attempt.timeout_type == "heartbeat"
    assert attempt.details == '{"step": 2}'


def test_heartbeat_timeout_is_retried(make_workflow) -> None:
    w = single(make_workflow, A.goes_quiet, heartbeat=0.2,
               retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    with pytest.raises(TaskTimedout, match=r"\(heartbeat\) on attempt 2"):
        w.run(1, 0.01, 0.6)


def test_schedule_to_start_timeout(make_workflow) -> None:
    class Busy:
        def __init__(self, blocker, queued):
            self.blocker, self.queued = blocker, queued

        def __call__(self):
            return [self.blocker("blocker", 0.6), self.queued("queued", 0.0)]

    w = (make_workflow(Busy, activity_workers=1)
         .conf_activity("blocker", A.sleepy)
         .conf_activity("queued", A.sleepy, schedule_to_start=0.2))
    with pytest.raises(TaskTimedout) as info:
        w.run(_wait=True)
    assert str(info.value) == "queued-0 timed out (schedule-to-start) on attempt 1"


def test_schedule_to_start_not_exceeded(make_workflow) -> None:
    w = single(make_workflow, A.sleepy, schedule_to_start=1.0, timeout=1.0, heartbeat=1.0)
    assert w.run("ok", 0.1) == "ok"


def test_activity_decorator_defaults_apply(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.decorated_flaky)
    assert w.run(path, 2) == 3
    assert A.calls(path) == 3

    slow = calls_file("slow")
    w = single(make_workflow, A.decorated_slow)
    with pytest.raises(TaskTimedout, match=r"\(start-to-close\) on attempt 2"):
        w.run(slow, 0.5, _wait=True)
    assert A.calls(slow, "start") == 2


def test_conf_arguments_override_decorator_defaults(make_workflow, calls_file) -> None:
    path = calls_file()
    w = single(make_workflow, A.decorated_flaky, retry=RetryPolicy(max_attempts=1))
    with pytest.raises(TaskError, match="attempt 1 failed"):
        w.run(path, 2)
    assert A.calls(path) == 1

    # A longer timeout: the default retry policy still applies, but isn't needed.
    slow = calls_file("slow")
    w = single(make_workflow, A.decorated_slow, timeout=2.0)
    assert w.run(slow, 0.5) == "done"
    assert A.calls(slow, "start") == 1

    # More attempts: the default timeout still applies.
    slower = calls_file("slower")
    w = single(make_workflow, A.decorated_slow,
               retry=RetryPolicy(max_attempts=3, initial_delay=0.01))
    with pytest.raises(TaskTimedout, match=r"\(start-to-close\) on attempt 3"):
        w.run(slower, 0.4, _wait=True)
    assert A.calls(slower, "start") == 3


def test_bare_activity_decorator(make_workflow) -> None:
    assert single(make_workflow, A.bare_decorated).run(41) == 42


@pytest.mark.parametrize("kwargs", [dict(max_attempts=0), dict(max_attempts=1.5),
                                    dict(initial_delay=-1), dict(backoff=0.5),
                                    dict(non_retryable=(42,))])
def test_invalid_retry_policies(kwargs) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


@pytest.mark.parametrize("conf", [dict(timeout=0), dict(heartbeat=-1),
                                  dict(schedule_to_start=0), dict(retry=3)])
def test_invalid_task_options(make_workflow, conf) -> None:
    with pytest.raises(ValueError):
        single(make_workflow, A.square, **conf)
