"""The pure protocol rules: which timers a run has pending (the reconciler's),
and what an event from outside the process must be to be decoded."""

from __future__ import annotations

import re

import pytest

from flowy.core.errors import HistoryError
from flowy.core.events import (
    TaskCompleted,
    TaskScheduled,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    event_from_dict,
    event_to_dict,
)
from flowy.core.protocol import OpenWork, Timer, timers_of


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


def test_open_timers_follow_the_history() -> None:
    timers = OpenWork()
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


@pytest.mark.parametrize(("data", "why"), [
    ({"type": "TimerFired", "key": ["x"]}, "key must be str, not ['x']"),
    ({"type": "TimerFired"}, "missing 1 required positional argument: 'key'"),
    ({"type": "TimerFired", "key": "k", "extra": 1}, "unknown fields ['extra']"),
    ({"type": "TimerFired", "key": "k", "at": float("inf")}, "at must be float, not inf"),
    ({"type": "TimerFired", "key": "k", "at": True}, "at must be float, not True"),
    ({"type": "TaskScheduled", "key": "k", "call_id": "c", "dependency": "d", "kind": "robot",
      "input": "[]"}, "kind must be Literal['activity', 'workflow']"),
    ({"type": "TaskScheduled", "key": "k", "call_id": "c", "dependency": "d",
      "kind": "activity", "input": "[]", "deps": ["a", 2]}, "deps must be tuple[str, ...]"),
    ({"type": "TaskFailed", "key": "k", "error": {"message": 1, "type_name": "x"}},
     "TaskFailed.error: message must be str, not 1"),
    ({"type": "Nope"}, "unknown type 'Nope'"),
])
def test_a_malformed_event_is_refused_saying_why(data: dict[str, object], why: str) -> None:
    with pytest.raises(HistoryError, match=re.escape(why)):
        event_from_dict(data)


def test_every_event_type_round_trips_through_the_checks() -> None:
    task = _task("a-0-1", 100.0, schedule_to_start=7.0)
    for event in (task, TimerStarted("t", 1.5, at=3), TaskCompleted("a-0-1", "1", 2, at=3.0)):
        assert event_from_dict(event_to_dict(event)) == event
