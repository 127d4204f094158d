"""Which facts from outside the engine takes into a run's history.

Anyone who can write a run's inbox (a worker, a client, whoever holds their
credentials) could otherwise end another run's attempts, fire its timers or
time out its activities.  So the decider takes a fact only if the history
vouches for it:

* an attempt's outcome must carry the token the engine drew for the attempt
  when it scheduled it (as SWF's task token), which only the messages and
  items of that attempt hold;
* a fired timer must be a timer the run started and has not fired, due by
  the history's own reckoning (its start plus its delay), not by a time
  carried in a message;
* a timeout must be due from the recorded start (or schedule) plus the
  limit the history configured, for an attempt that has no outcome yet;
* a run takes at most :data:`MAX_SIGNALS` signals.

A refused fact is set aside with its reason, and never fails the run.
"""

from __future__ import annotations

from .events import (
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimeoutType,
    TimerFired,
)
from .protocol import Beat, OpenWork, Timer

# Signals one run takes at most: SWF bounds them only by its 25,000-event
# history; past this, a signal is refused and the run goes on.
MAX_SIGNALS = 25_000
# How far the clocks of the process that fired a timer and of the decider
# may disagree: a timer that fired up to this early still counts (a forged
# one can end a wait no earlier than this).
CLOCK_SKEW = 1.0


def refusal(fact: Fact, work: OpenWork, now: float, beat: Beat | None = None,
            signals: int = 0) -> str | None:
    """Why the decider must not take ``fact`` into the history of a run that
    has ``work`` open, at ``now`` (None: take it).  For a timeout, ``beat``
    is the attempt's record of its start (see :func:`needs_beat`); ``signals``
    counts the signals taken in this decision before this fact."""
    if isinstance(fact, (TaskCompleted, TaskFailed, TaskTimedOut)):
        token = work.token(fact.key)
        if token is None:
            return f"the run scheduled no attempt {fact.key}"
        if fact.token != token:
            return f"it does not carry the token of attempt {fact.key}"
        task = work.open_attempt(fact.key)
        if isinstance(fact, TaskTimedOut) and task is not None:
            return _early_timeout(task, fact.timeout_type, beat, now)
        return None
    if isinstance(fact, TimerFired):
        due = work.timer_due(fact.key)
        if due is None:
            return f"the run has no timer {fact.key} waiting to fire"
        if due > now + CLOCK_SKEW:
            return f"timer {fact.key} is not due until {due:.3f}"
        return None
    if isinstance(fact, SignalReceived) and work.signals + signals >= MAX_SIGNALS:
        return (f"the run has taken {MAX_SIGNALS} signals, the most a run takes: "
                "restart() it to take more")
    return None


def needs_beat(fact: Fact, work: OpenWork) -> bool:
    """Whether :func:`refusal` needs the attempt's beat to judge ``fact``."""
    return isinstance(fact, TaskTimedOut) and work.open_attempt(fact.key) is not None


def timer_again(fact: Fact, work: OpenWork, beat: Beat | None = None) -> Timer | None:
    """For a fired timer or a timeout refused as early, the timer that will
    bring it again when it is due (a refused fact may have taken the place
    of the real one, which its writer then dropped as a duplicate)."""
    if isinstance(fact, TimerFired):
        due = work.timer_due(fact.key)
        return None if due is None else Timer(fact.key, "timer", due)
    if isinstance(fact, TaskTimedOut) and (task := work.open_attempt(fact.key)) is not None:
        due = timeout_due(task, fact.timeout_type, beat)
        return None if due is None else Timer(task.key, fact.timeout_type, due, task.token)
    return None


def timeout_due(task: TaskScheduled, kind: TimeoutType, beat: Beat | None) -> float | None:
    """When attempt ``task`` times out (``kind``) by the engine's reckoning: the
    limit its decision configured, from when it was scheduled (schedule to
    start, and a sub-workflow's start to close), started, or last
    heartbeated, never before it was scheduled.  None if it can't time out
    that way: no such limit, started already (schedule to start), or not
    started yet (an activity's start to close or heartbeat)."""
    if kind == "schedule_to_start":
        if task.schedule_to_start is None or beat is not None:
            return None
        return task.at + task.schedule_to_start
    if kind == "start_to_close":
        if task.start_to_close is None:
            return None
        if task.kind == "workflow":
            return task.at + task.start_to_close
        return None if beat is None else max(beat.started_at, task.at) + task.start_to_close
    if task.heartbeat is None or beat is None:
        return None
    return max(beat.last_beat, task.at) + task.heartbeat


def _early_timeout(task: TaskScheduled, kind: TimeoutType, beat: Beat | None,
                   now: float) -> str | None:
    due = timeout_due(task, kind, beat)
    if due is None:
        return f"attempt {task.key} can't time out ({kind.replace('_', '-')}) now"
    if due > now + CLOCK_SKEW:
        return f"attempt {task.key} does not time out ({kind.replace('_', '-')}) until {due:.3f}"
    return None
