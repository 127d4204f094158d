"""The pure rules of the engine's protocol, written once for every backend.

* the identity of a fact, under which it enters a run's inbox, so that a
  duplicate delivery is a no-op, and which facts of an inbox are new;
* the ids of the runs a run starts (sub-workflows, its restart), derived
  from the run, so that a re-sent start makes the same run;
* where a cancel or a signal goes on to;
* how a sub-workflow's end becomes its parent's fact;
* whether a timeout timer that came due times its attempt out;
* which timers a decision arms, and when a run that hears nothing more
  must be looked at again (the reconciler's wake-up);
* the work a run has open: its attempts, with their tokens, and its timers
  (:class:`OpenWork`; what it admits is :mod:`flowy.core.admission`).
"""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Literal, NamedTuple

from .events import (
    CLOSING_TYPES,
    CancelRequested,
    Event,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimeoutType,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
)
from .runs import IN_HISTORY

# -- identities ---------------------------------------------------------------


_OUTCOMES = (TaskCompleted, TaskFailed, TaskTimedOut)


def fact_id(fact: Fact) -> str:
    """The identity of a fact: two deliveries of the same fact share it."""
    if isinstance(fact, _OUTCOMES):  # first: nearly every fact ends an attempt
        return outcome_id(type(fact).__name__, fact.key)
    if isinstance(fact, WorkflowStarted):
        return "start"
    if isinstance(fact, TimerFired):
        return f"timer:{fact.key}"
    if isinstance(fact, CancelRequested):
        return "cancel"  # the first request wins; later ones are no-ops
    return f"signal:{fact.id}"


def new_facts(facts: Iterable[Fact], seen: Set[str]) -> list[Fact]:
    """The facts whose identity is not in ``seen`` (a history's), each once.
    An inbox can hold one fact twice: an outcome that came after its attempt's
    first one was consumed takes the first's item again, while another copy
    may still wait as a late one."""
    new: dict[str, Fact] = {}
    for fact in facts:
        identity = fact_id(fact)
        if identity not in seen and identity not in new:
            new[identity] = fact
    return list(new.values())


def outcome_id(fact_type: str, key: str) -> str:
    """The identity of an attempt's outcome of type ``fact_type``."""
    return f"{fact_type}:{key}"


def outcome_key(fact: Fact) -> str | None:
    """The key of the attempt a fact ends, if it is an attempt's outcome."""
    if isinstance(fact, _OUTCOMES):
        return fact.key
    return None


def attempt_id(key: str, token: str) -> str:
    """Where the store keeps what concerns attempt ``key`` with ``token``: its
    claim and heartbeats, its outcome, the mark that it ended.  With the
    token in every such name, no one without the token can claim, end or
    mark the attempt.  (Attempts of runs begun before tokens have none.)"""
    return f"{key}@{token}" if token else key


def outcome_attempt(fact: Fact) -> str | None:
    """The :func:`attempt_id` of the attempt a fact ends, if it is an outcome."""
    if isinstance(fact, _OUTCOMES):
        return attempt_id(fact.key, fact.token)
    return None


def late_id(key: str, fact_type: str) -> str:
    """Where an attempt's second kind of outcome waits (a result after a timeout)."""
    return f"{key}#late#{fact_type}"


def child_run_id(run_id: str, key: str) -> str:
    """The id of the sub-workflow run that attempt ``key`` of ``run_id`` starts."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowy:{run_id}/{key}").hex


def restarted_run_id(run_id: str) -> str:
    """The id of the run that ``run_id`` restarts as (continue-as-new)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowy:{run_id}/restart").hex


# -- facts for other runs -----------------------------------------------------


def passed_on(run_id: str, history: Sequence[Event], batch: Sequence[Event]
              ) -> list[tuple[str, Fact]]:
    """The facts of ``batch`` (the last events of ``history``) meant for other
    runs, with their targets: a cancel goes on to the sub-workflows that have
    not reported back, and a cancel or a signal that came after a restart to
    the run this one restarted as."""
    passed = [e for e in batch if isinstance(e, (CancelRequested, SignalReceived))]
    if not passed:
        return []  # the common case: no scan of the history
    before = history[:len(history) - len(batch)]
    restarted = any(isinstance(e, WorkflowRestarted) for e in before)
    targets: list[tuple[str, Fact]] = []
    for fact in passed:
        if restarted:
            targets.append((restarted_run_id(run_id), fact))
        if isinstance(fact, CancelRequested):
            reported = {e.key for e in history if isinstance(e, (TaskCompleted, TaskFailed))}
            targets += [(child_run_id(run_id, e.key), fact) for e in history
                        if isinstance(e, TaskScheduled) and e.kind == "workflow"
                        and e.key not in reported]
    return targets


def parent_outcome(closing: WorkflowCompleted | WorkflowFailed, parent_key: str,
                   started_at: float, token: str) -> Fact:
    """A sub-workflow's end, as the outcome of the parent's attempt ``parent_key``
    (whose ``token`` the sub-workflow's run record carries)."""
    outcome: Fact
    if isinstance(closing, WorkflowCompleted):
        outcome = TaskCompleted(parent_key, closing.result, started_at, at=closing.at,
                                token=token)
    else:
        outcome = TaskFailed(parent_key, closing.error, started_at, at=closing.at, token=token)
    return outcome


# -- timeouts -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimeoutCheck:
    """What a due timeout timer means: notify about the fact ``news`` (None:
    nothing), after recording ``timed_out`` if set, or check again at ``recheck_at``."""

    news: str | None = None
    timed_out: TaskTimedOut | None = None
    recheck_at: float | None = None


class Beat(NamedTuple):
    """What the store holds of a started attempt: when it started, its last
    heartbeat, and that heartbeat's details."""

    started_at: float
    last_beat: float
    details: str | None = None


def check_timeout(kind: TimeoutType, key: str, token: str, *, ended: str | None,
                  beat: Beat | None, limit: float | None, now: float) -> TimeoutCheck:
    """Whether attempt ``key`` timed out (``kind``), given how it ``ended``
    (see ``RunStore.outcome_of``) and its ``beat``: what a timer message says,
    to spare the decider facts it would refuse (it checks every timeout again
    against the history: :func:`flowy.core.admission.refusal`).  A timer
    message can come twice, so news already recorded is notified again."""
    if ended is not None:  # the attempt ended (in time, or timed out before)
        return TimeoutCheck(None if ended == IN_HISTORY else outcome_id(ended, key))
    if kind == "schedule_to_start" and beat is not None:
        return TimeoutCheck()  # it started in time
    if kind == "heartbeat" and beat is not None and limit is not None:
        due = beat.last_beat + limit
        if due > now:
            return TimeoutCheck(recheck_at=due)
    timed_out = TaskTimedOut(key, kind, beat.details if beat else None, at=now, token=token)
    return TimeoutCheck(fact_id(timed_out), timed_out)


# -- timers -------------------------------------------------------------------

TimerKind = Literal["timer", "schedule_to_start", "start_to_close", "heartbeat"]


@dataclass(frozen=True, slots=True)
class Timer:
    """A durable timer: at ``fire_at``, fire timer ``key`` (``kind`` "timer")
    or check whether attempt ``key`` (with ``token``) timed out (the other kinds)."""

    key: str
    kind: TimerKind
    fire_at: float
    token: str = ""


def timers_of(event: Event) -> list[Timer]:
    """The timers that carrying out decision ``event`` arms.  (A worker arms
    the start-to-close and heartbeat checks of an activity when it starts it:
    only it knows when that is.)"""
    if isinstance(event, TimerStarted):
        return [Timer(event.key, "timer", event.at + event.delay)]
    if not isinstance(event, TaskScheduled):
        return []
    if event.kind == "activity":
        if event.schedule_to_start is None:
            return []
        return [Timer(event.key, "schedule_to_start", event.at + event.schedule_to_start,
                      event.token)]
    if event.start_to_close is None:
        return []
    return [Timer(event.key, "start_to_close", event.at + event.start_to_close, event.token)]


class OpenWork:
    """What an open run has going, kept up as its history grows, so that a
    decision costs what its batch does, not what the history does: the
    attempts it scheduled (with their tokens) and which have no outcome
    yet, its timers whose keys have nothing in the history yet (no fired
    timer, no outcome), and how many signals it took.  Once the run has
    closed, no timer is pending, and the attempts it left open are still
    listed (their claims are withdrawn)."""

    def __init__(self) -> None:
        self._tokens: dict[str, str] = {}  # of every attempt scheduled
        self._open: dict[str, TaskScheduled] = {}
        self._armed: dict[str, list[Timer]] = {}
        self._due: list[tuple[float, str]] = []  # a heap; entries of disarmed keys linger
        self._closed = False
        self.signals = 0

    def extend(self, events: Iterable[Event]) -> None:
        for event in events:
            if self._closed:
                return
            if isinstance(event, CLOSING_TYPES):
                self._closed = True
                self._armed.clear()
                self._due.clear()
                continue
            if isinstance(event, (TimerFired, *_OUTCOMES)):
                self._armed.pop(event.key, None)
                self._open.pop(event.key, None)
            elif isinstance(event, SignalReceived):
                self.signals += 1
            elif isinstance(event, TaskScheduled):
                self._tokens[event.key] = event.token
                self._open[event.key] = event
            if timers := timers_of(event):
                self._armed[timers[0].key] = timers
                for timer in timers:
                    heapq.heappush(self._due, (timer.fire_at, timer.key))

    @property
    def closed(self) -> bool:
        return self._closed

    def token(self, key: str) -> str | None:
        """The token of attempt ``key``, if the run scheduled it."""
        return self._tokens.get(key)

    def open_attempt(self, key: str) -> TaskScheduled | None:
        """Attempt ``key``'s decision, if it has no outcome in the history yet."""
        return self._open.get(key)

    def open_attempts(self) -> list[TaskScheduled]:
        return list(self._open.values())

    def timer_due(self, key: str) -> float | None:
        """When timer ``key`` (a timer, not a timeout) is due, if it has not fired."""
        timers = self._armed.get(key)
        return timers[0].fire_at if timers and timers[0].kind == "timer" else None

    def pending(self) -> list[Timer]:
        """The timers whose keys have nothing in the history yet."""
        return [timer for timers in self._armed.values() for timer in timers]

    def wake_at(self) -> float | None:
        """When a run that hears nothing more must be looked at again: when
        its first pending timer is due (its timer message may have been
        lost), or None if nothing is timed."""
        due = self._due
        while due and due[0][1] not in self._armed:
            heapq.heappop(due)
        return due[0][0] if due else None
