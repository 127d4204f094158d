"""flowy.testing.WorkflowEnvironment: the real engine on a manual clock that skips idle time.

No test here bounds the wall-clock time or sleeps to synchronise: what shows
that time was skipped is the manual clock's reading, and every wait is on the
engine (the queues, the store), never on the wall clock.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import flowy
from flowy import LocalWorkflow, NondeterminismError, RetryPolicy, Workflow
from flowy.backends.base import TIMERS, task_queue
from flowy.core.events import TaskCompleted, TimerStarted
from flowy.core.runs import COMPLETED, OPEN
from flowy.testing import ManualClock, SkippingRunHandle, WorkflowEnvironment

HOUR = 3600.0


class NapThenCall:
    def __init__(self, nap: Any, call: Any) -> None:
        self.nap, self.call = nap, call

    def __call__(self, x: int) -> Any:
        flowy.wait(self.nap(HOUR))
        return self.call(x)


class FailsOnce:
    """An activity that fails on its first call, then doubles."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: int) -> int:
        self.calls += 1
        if self.calls == 1:
            raise RuntimeError("not yet")
        return 2 * x


class Approval:
    def __init__(self, approve: Any, expire: Any) -> None:
        self.approve, self.expire = approve, expire

    def __call__(self, seconds: float) -> Any:
        answer = flowy.wait(flowy.first(self.approve(), self.expire(seconds)))
        return "timed out" if answer is None else answer


def approval() -> Workflow:
    return Workflow(Approval).conf_signal("approve").conf_timer("expire")


def double(x: int) -> int:
    return 2 * x


@pytest.fixture
def env() -> Any:
    with WorkflowEnvironment() as environment:
        yield environment


def test_an_hour_long_timer_and_a_half_hour_back_off_take_no_real_time(env: Any) -> None:
    flaky = FailsOnce()
    retry = RetryPolicy(max_attempts=2, initial_delay=HOUR / 2, max_delay=HOUR)
    workflow = (Workflow(NapThenCall).conf_timer("nap")
                .conf_activity("call", flaky, retry=retry))
    start = env.clock.now()

    assert env.run(workflow, 21) == 42

    assert env.clock.now() - start >= HOUR + HOUR / 2  # the timer, then the back-off
    assert flaky.calls == 2


def test_a_timer_fires_at_its_time_on_the_clock(env: Any) -> None:
    workflow = Workflow(NapThenCall).conf_timer("nap").conf_activity("call", double)
    start = env.clock.now()
    handle = env.start(workflow, 1)

    assert handle.result() == 2

    timers = [e for e in env.client.history(handle.run_id) if isinstance(e, TimerStarted)]
    assert [t.delay for t in timers] == [HOUR]
    assert timers[0].at == start
    # Over SQS's 15-minute delay limit the timer is re-armed, and nothing is
    # late: the clock stopped exactly when the timer came due.
    assert env.clock.now() == start + HOUR


def test_a_signal_sent_before_the_wait_beats_the_timer(env: Any) -> None:
    """Time skips only while the test waits: the run's hour-long timer can't
    fire between the start and the signal the next line sends."""
    start = env.clock.now()
    handle = env.start(approval(), HOUR)
    handle.signal("approve", {"by": "ann"})

    assert handle.result() == {"by": "ann"}
    assert env.clock.now() < start + HOUR


def test_sleep_lives_through_the_time_it_skips(env: Any) -> None:
    start = env.clock.now()
    handle = env.start(approval(), HOUR)

    env.sleep(HOUR / 2)
    assert handle.status() == OPEN
    assert env.clock.now() == start + HOUR / 2
    env.sleep(HOUR / 2)

    assert handle.status() == COMPLETED
    assert handle.result() == "timed out"
    assert env.clock.now() == start + HOUR


def test_a_result_timeout_is_in_seconds_of_the_clock(env: Any) -> None:
    start = env.clock.now()
    handle = env.start(approval(), HOUR)

    with pytest.raises(TimeoutError, match="still open after 60 s of the environment's clock"):
        handle.result(timeout=60)
    assert env.clock.now() == start + 60
    assert handle.result() == "timed out"  # the timer still fires, at its time


def test_a_run_waiting_for_what_never_comes_fails_fast(env: Any) -> None:
    class WaitsForSignal:
        def __init__(self, approve: Any) -> None:
            self.approve = approve

        def __call__(self) -> Any:
            return flowy.wait(self.approve())

    handle = env.start(Workflow(WaitsForSignal).conf_signal("approve"))
    with pytest.raises(TimeoutError, match="nothing is left to happen"):
        handle.result()
    handle.signal("approve", "yes")
    assert handle.result() == "yes"


def test_join_waits_for_the_engine_without_moving_the_clock(env: Any) -> None:
    start = env.clock.now()
    handle = env.start(Workflow(NapThenCall).conf_timer("nap").conf_activity("call", double), 1)

    env.join()

    assert env.clock.now() == start
    assert handle.status() == OPEN
    assert env.backend.queues.depth(TIMERS) == (0, 0, 1)  # only the delayed timer
    assert any(isinstance(e, TimerStarted) for e in env.client.history(handle.run_id))
    env.clock.advance(HOUR)  # by hand: the engine takes it from there
    env.join()
    assert handle.status() == COMPLETED
    assert env.backend.queues.depth(task_queue("default")) == (0, 0, 0)


def test_every_decision_replays_so_nondeterminism_shows(env: Any) -> None:
    class Drifts:
        runs = 0

        def __init__(self, call: Any) -> None:
            self.call = call

        def __call__(self, x: int) -> Any:
            Drifts.runs += 1  # different calls each time the code runs
            return self.call(x + Drifts.runs)

    with pytest.raises(NondeterminismError, match="call-0-1"):
        env.run(Workflow(Drifts).conf_activity("call", double), 1)


def test_local_workflows_and_sub_workflows_run_in_it(env: Any) -> None:
    class Parent:
        def __init__(self, child: Any) -> None:
            self.child = child

        def __call__(self, x: int) -> Any:
            return self.child(x) + 1

    child = LocalWorkflow(NapThenCall).conf_timer("nap").conf_activity("call", double)
    parent = LocalWorkflow(Parent).conf_workflow("child", child)
    start = env.clock.now()

    assert env.run(parent, 5) == 11
    assert env.clock.now() == start + HOUR


def test_workflows_on_other_task_lists_are_served_when_known_at_the_start() -> None:
    elsewhere = Workflow(NapThenCall, name="elsewhere").conf_timer("nap").conf_activity(
        "call", double, task_list="other")
    with WorkflowEnvironment() as env:
        env.run(approval(), 0)
        with pytest.raises(flowy.ConfigurationError, match="task list other"):
            env.start(elsewhere, 1)
    with WorkflowEnvironment(elsewhere, clock=ManualClock(start=0.0)) as env:
        assert env.run(approval(), 0) == "timed out"
        assert env.run(elsewhere, 1) == 2
        assert env.clock.now() == HOUR


def test_a_result_comes_with_the_engine_settled(env: Any) -> None:
    """Even a task still running when the run closed has reported by then."""
    class FastAndSlow:
        def __init__(self, fast: Any, slow: Any) -> None:
            self.fast, self.slow = fast, slow

        def __call__(self, x: int) -> Any:
            self.slow(x)  # never waited for
            return flowy.wait(self.fast(x))

    handle = env.start(Workflow(FastAndSlow).conf_activity("fast", double)
                       .conf_activity("slow", double), 3)
    assert isinstance(handle, SkippingRunHandle)

    assert handle.result() == 6

    history = env.client.history(handle.run_id)
    assert {e.key for e in history if isinstance(e, TaskCompleted)} == {"fast-0-1", "slow-0-1"}
    assert env.backend.queues.depth(task_queue("default")) == (0, 0, 0)


def test_closing_stops_the_engine_threads() -> None:
    with WorkflowEnvironment() as env:
        env.run(Workflow(NapThenCall).conf_timer("nap").conf_activity("call", double), 1)
        assert any(t.name.startswith(env.name + "-") for t in threading.enumerate())
    assert [t.name for t in threading.enumerate() if t.name.startswith(env.name + "-")] == []
    env.close()  # again: nothing to do
    with pytest.raises(flowy.ConfigurationError, match="closed: make a new one"):
        env.start(approval(), 1)
