"""Durable timers: retry delays, and the timeouts that watch running attempts.

Timer messages wait on an SQS queue (delays stop at 15 minutes, so a later
timer is re-armed when it comes back early).  When one is due, the keeper
turns it into a fact in the run's inbox: a fired timer, or a timed-out
attempt unless the attempt ended, started or heartbeated in time.
"""

from __future__ import annotations

import time

from ..core.events import TaskTimedOut, TimerFired, stamped
from .messages import TimerMessage
from .queues import Queues, timer_delay
from .store import IN_HISTORY, HistoryStore, fact_id, outcome_id


class TimerKeeper:
    """Fires durable timers and enforces attempt timeouts from the timer queue."""

    def __init__(self, store: HistoryStore, queues: Queues) -> None:
        self.store = store
        self.queues = queues

    def handle(self, timer: TimerMessage) -> None:
        now = time.time()
        if timer_delay(timer.fire_at, now) > 0:
            self.queues.send_timers([timer])  # SQS delays stop at 15 minutes: re-arm
            return
        news = self._fire(timer, now)
        if news is not None:
            self.queues.notify([(timer.run, news)])

    def _fire(self, timer: TimerMessage, now: float) -> str | None:
        """Record what the timer means; the news to notify, if any.  A timer
        message can come twice (its first handler died before deleting it, maybe
        before notifying), so news already recorded is notified again."""
        if timer.kind == "timer":
            fired = stamped(TimerFired(timer.key), now)
            self.store.add_fact(timer.run, fired)
            return fact_id(fired)
        ended = self.store.outcome_of(timer.run, timer.key)
        if ended is not None:  # the attempt ended (in time, or timed out before)
            return None if ended == IN_HISTORY else outcome_id(ended, timer.key)
        beat = self.store.get_beat(timer.run, timer.key)
        details = beat[1] if beat else None
        if timer.kind == "schedule_to_start" and beat is not None:
            return None  # it started in time
        if timer.kind == "heartbeat" and beat is not None and timer.limit is not None:
            due = beat[0] + timer.limit
            if due > now:
                self.queues.send_timers([timer.model_copy(update={"fire_at": due})])
                return None
        timeout = stamped(TaskTimedOut(timer.key, timer.kind, details), now)
        self.store.add_outcome(timer.run, timeout)
        return fact_id(timeout)
