"""The pure protocol rules the reconciler relies on: which timers a run has pending."""

from __future__ import annotations

from flowy.core.events import (
    TaskCompleted,
    TaskScheduled,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
)
from flowy.core.protocol import PendingTimers, Timer, timers_of


def _task(key: str, at: float, **timeouts: float) -> TaskScheduled:
    return TaskScheduled(key=key, call_id=key, dependency="d", kind="activity", input="[]",
                         at=at, **timeouts)


def test_the_timers_a_decision_arms() -> None:
    assert timers_of(TimerStarted("sleep", 5.0, at=100.0)) == [Timer("sleep", "timer", 105.0)]
    assert timers_of(_task("a-0-1", 100.0, schedule_to_start=7.0)) == [
        Timer("a-0-1", "schedule_to_start", 107.0)]
    # The start-to-close check of an activity is the worker's to arm, when it starts it.
    assert timers_of(_task("a-0-1", 100.0, start_to_close=3.0)) == []
    child = TaskScheduled(key="c-0-1", call_id="c-0", dependency="c", kind="workflow",
                          input="[]", start_to_close=30.0, at=100.0)
    assert timers_of(child) == [Timer("c-0-1", "start_to_close", 130.0)]


def test_pending_timers_follow_the_history() -> None:
    timers = PendingTimers()
    assert timers.wake_at() is None
    timers.extend([TimerStarted("late", 50.0, at=100.0), TimerStarted("soon", 5.0, at=100.0),
                   _task("a-0-1", 100.0, schedule_to_start=20.0)])
    assert timers.wake_at() == 105.0
    timers.extend([TimerFired("soon", at=105.0)])
    assert timers.wake_at() == 120.0
    timers.extend([TaskCompleted("a-0-1", "1", at=110.0)])
    assert timers.pending() == [Timer("late", "timer", 150.0)]
    assert timers.wake_at() == 150.0
    timers.extend([WorkflowCompleted("1", at=111.0), TimerStarted("after", 1.0, at=112.0)])
    assert timers.pending() == [] and timers.wake_at() is None
