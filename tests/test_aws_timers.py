"""Durable timers past the queue's delay limit, decisions that batch completions,
and held notifications' leases: on both backends where the backend is the point."""

from __future__ import annotations

import json
import time
from typing import Any

from flowy import Registry
from flowy.backends.base import DECISIONS, TIMERS
from flowy.core.events import TaskCompleted, TaskTimedOut, stamped
from flowy.worker.decider import DeciderService
from flowy.worker.messages import TimerMessage, notification, timer_delay
from flowy.worker.timers import TimerKeeper
from tests.scenarios import AWS_WORKFLOWS, aws_workflow


def test_timer_delay_is_capped() -> None:
    assert timer_delay(100.0 + 3600, 100.0, 900) == 900
    assert timer_delay(100.0 + 1.2, 100.0, 900) == 1.2000000000000028
    assert timer_delay(99.0, 100.0, 900) == 0


def test_timer_past_the_longest_delay_is_re_armed_not_fired(backend: Any) -> None:
    keeper = TimerKeeper(backend)
    now = backend.clock.now()
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=now + 3600))
    assert backend.queues.receive(TIMERS, max_messages=10, wait=0, lease=30) == []  # delayed
    assert backend.store.read_inbox("r1") == []  # nothing fired yet
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=now - 1))
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r1")] == ["TimerFired"]


def test_a_repeated_timeout_notifies_again(backend: Any) -> None:
    """The first handler of a timeout recorded it and died before notifying."""
    keeper = TimerKeeper(backend)
    backend.store.add_outcome("r2", stamped(TaskTimedOut("t-0-1", "start_to_close"), 1.0))
    keeper.handle(TimerMessage(run="r2", key="t-0-1", kind="start_to_close", fire_at=0.0))
    notes = backend.queues.receive(DECISIONS, max_messages=10, wait=1, lease=30)
    assert [json.loads(m.body)["run"] for m in notes] == ["r2"]
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r2")] == ["TaskTimedOut"]


def test_completions_that_arrive_together_share_a_decision(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker("--concurrency", "10")
    n = 30
    handle = stack.client.start(aws_workflow("fanout"), n)
    assert handle.result(timeout=120) == n * (n + 1) // 2
    batches = stack.backend.store.read_batches(handle.run_id)
    completions = [sum(isinstance(e, TaskCompleted) for e in b.events) for b in batches]
    assert sum(completions) == n + 1
    assert len(batches) <= n // 2, completions  # one decision per completion would be n + 2


def test_held_notifications_keep_their_lease(make_stack: Any) -> None:
    """A notification held by a slow decision must not reappear to other deciders."""
    stack = make_stack(visibility_timeout=10)
    backend = stack.backend
    service = DeciderService(Registry(AWS_WORKFLOWS), backend, poll_wait=0)
    service._threads.close()  # hold the notification: nobody handles it
    backend.queues.send(DECISIONS, [notification("run-1", "news")])
    assert service.poll_decisions() == 1
    time.sleep(4)
    service.renew_leases()  # a third through its 10 s lease: extended by 10 s
    time.sleep(7.5)  # past the first lease, inside the renewed one
    assert backend.queues.receive(DECISIONS, max_messages=10, wait=0, lease=10) == []
