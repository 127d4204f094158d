"""What the decider takes from a run's inbox: the history vouches for every fact
(review findings 2 and 3: forged outcomes and timers).  Pure: facts and open
work in, reasons out."""

from __future__ import annotations

from typing import Any

import pytest

from flowy.core import admission
from flowy.core.admission import CLOCK_SKEW, refusal, timeout_due, timer_again
from flowy.core.errors import ErrorInfo
from flowy.core.events import (
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
)
from flowy.core.protocol import Beat, OpenWork, Timer

TOKEN = "a1" * 16
T0 = 100.0


def _work(*events: Any) -> OpenWork:
    work = OpenWork()
    work.extend(events)
    return work


def _task(key: str = "slow-0-1", *, kind: str = "activity", **limits: float) -> TaskScheduled:
    return TaskScheduled(key=key, call_id=key.rsplit("-", 1)[0], dependency="slow",
                         kind=kind, input="[]", at=T0, token=TOKEN, **limits)  # type: ignore[arg-type]


def test_an_outcome_counts_only_with_its_attempts_token() -> None:
    work = _work(_task())
    assert refusal(TaskCompleted("slow-0-1", '"ok"', token=TOKEN), work, T0) is None
    assert refusal(TaskFailed("slow-0-1", ErrorInfo("E", "x"), token=TOKEN), work, T0) is None
    # The review's forgery: the live attempt's predictable key, no token.
    assert refusal(TaskCompleted("slow-0-1", '"slow FORGED done"'), work, T0) == (
        "it does not carry the token of attempt slow-0-1")
    assert "token" in str(refusal(TaskCompleted("slow-0-1", "1", token="b2" * 16), work, T0))
    assert refusal(TaskCompleted("bogus-1", "1", token=TOKEN), work, T0) == (
        "the run scheduled no attempt bogus-1")


def test_a_late_outcome_with_the_right_token_still_counts() -> None:
    """After a timeout, the real result is recorded (as late) by the core."""
    work = _work(_task(start_to_close=5.0),
                 TaskTimedOut("slow-0-1", "start_to_close", token=TOKEN, at=T0 + 6))
    assert work.open_attempt("slow-0-1") is None
    assert refusal(TaskCompleted("slow-0-1", "1", token=TOKEN), work, T0 + 9) is None


def test_a_timer_fires_only_if_the_history_has_it_due() -> None:
    work = _work(TimerStarted("expire-0", 300.0, at=T0))
    # The review's forgery: fire_at 0 for a 300 s wait, a minute in.
    assert refusal(TimerFired("expire-0"), work, T0 + 60) == (
        "timer expire-0 is not due until 400.000")
    assert refusal(TimerFired("expire-0"), work, T0 + 300 - CLOCK_SKEW) is None
    assert refusal(TimerFired("nope"), work, T0 + 999) == (
        "the run has no timer nope waiting to fire")
    work.extend([TimerFired("expire-0", at=T0 + 300)])
    assert refusal(TimerFired("expire-0"), work, T0 + 999) is not None  # fired already
    assert timer_again(TimerFired("nope"), work) is None


def test_a_refused_early_timer_comes_again_when_due() -> None:
    work = _work(TimerStarted("expire-0", 300.0, at=T0))
    assert timer_again(TimerFired("expire-0"), work) == Timer("expire-0", "timer", T0 + 300)


@pytest.mark.parametrize(("kind", "limits", "beat", "due"), [
    ("schedule_to_start", {"schedule_to_start": 10.0}, None, T0 + 10),
    ("schedule_to_start", {"schedule_to_start": 10.0}, Beat(T0 + 1, T0 + 1), None),  # started
    ("start_to_close", {"start_to_close": 30.0}, None, None),  # not started
    ("start_to_close", {"start_to_close": 30.0}, Beat(T0 + 5, T0 + 20), T0 + 35),
    ("start_to_close", {"start_to_close": 30.0}, Beat(T0 - 50, T0), T0 + 30),  # forged start
    ("heartbeat", {"heartbeat": 8.0}, Beat(T0 + 5, T0 + 20), T0 + 28),
    ("heartbeat", {"heartbeat": 8.0}, None, None),
    ("heartbeat", {}, Beat(T0, T0), None),  # no such limit
])
def test_a_timeout_is_due_by_the_history_and_the_recorded_start(
        kind: Any, limits: dict[str, float], beat: Beat | None, due: float | None) -> None:
    assert timeout_due(_task(**limits), kind, beat) == due


def test_a_child_workflow_times_out_from_its_schedule() -> None:
    child = _task("child-0-1", kind="workflow", start_to_close=60.0)
    assert timeout_due(child, "start_to_close", None) == T0 + 60


def test_a_forged_timeout_does_not_end_a_live_attempt() -> None:
    """The review's forgery: start_to_close with fire_at 0, 3 s into a 300 s limit."""
    work = _work(_task(start_to_close=300.0))
    started = Beat(T0 + 1, T0 + 1)
    forged = TaskTimedOut("slow-0-1", "start_to_close", token=TOKEN)
    assert refusal(forged, work, T0 + 4, started) == (
        "attempt slow-0-1 does not time out (start-to-close) until 401.000")
    assert refusal(TaskTimedOut("slow-0-1", "start_to_close"), work, T0 + 999, started) == (
        "it does not carry the token of attempt slow-0-1")
    assert refusal(forged, work, T0 + 301, started) is None  # really timed out
    assert refusal(TaskTimedOut("slow-0-1", "heartbeat", token=TOKEN), work, T0 + 999,
                   started) == "attempt slow-0-1 can't time out (heartbeat) now"
    assert timer_again(forged, work, started) == Timer("slow-0-1", "start_to_close", T0 + 301,
                                                       TOKEN)


def test_signals_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(admission, "MAX_SIGNALS", 2)
    work = _work(SignalReceived("go", "1", "id1"))
    signal = SignalReceived("go", "2", "id2")
    assert refusal(signal, work, T0) is None
    assert "2 signals" in str(refusal(signal, work, T0, signals=1))  # one more in this decision
    work.extend([signal])
    assert "restart()" in str(refusal(SignalReceived("go", "3", "id3"), work, T0))


def test_nothing_is_pending_once_the_run_closed_but_its_open_attempts_are_listed() -> None:
    work = _work(_task(), TimerStarted("t", 5.0, at=T0), WorkflowCompleted("1", at=T0 + 1))
    assert work.closed and work.pending() == [] and work.wake_at() is None
    assert [task.key for task in work.open_attempts()] == ["slow-0-1"]
