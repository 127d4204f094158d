"""Durable timers past the SQS delay limit, and decisions that batch completions."""

from __future__ import annotations

import json
import time
from typing import Any

from flowy.aws.messages import TimerMessage
from flowy.aws.queues import MAX_DELAY, timer_delay
from flowy.aws.timers import TimerKeeper
from flowy.core.events import TaskCompleted
from tests.scenarios import aws_workflow


def test_timer_delay_is_capped_and_rounded_up() -> None:
    assert timer_delay(100.0 + 3600, 100.0) == MAX_DELAY == 900
    assert timer_delay(100.0 + 1.2, 100.0) == 2
    assert timer_delay(99.0, 100.0) == 0


def test_timer_past_fifteen_minutes_is_re_armed_not_fired(make_stack: Any) -> None:
    stack = make_stack()
    backend = stack.backend
    keeper = TimerKeeper(backend.store, backend.queues)
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=time.time() + 3600))
    url = backend.queues.url(stack.settings.timer_queue)
    attributes = backend.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesDelayed"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert backend.store.read_inbox("r1") == []  # nothing fired yet
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=time.time() - 1))
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r1")] == ["TimerFired"]


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
    from flowy.aws import Registry
    from flowy.aws.decider import DeciderService
    from tests.scenarios import AWS_WORKFLOWS

    stack = make_stack(visibility_timeout=10)
    backend = stack.backend
    service = DeciderService(Registry(AWS_WORKFLOWS), backend.store, backend.queues,
                             backend.payloads, poll_wait=0)
    service._threads.close()  # hold the notification: nobody handles it
    queue = stack.settings.decision_queue
    backend.queues.notify([("run-1", "news")])
    assert service.poll_decisions() == 1
    time.sleep(4)
    service.renew_leases()  # a third through its 10 s lease: extended by 10 s
    time.sleep(7.5)  # past the first lease, inside the renewed one
    assert backend.queues.receive(queue, wait=0) == []


def test_a_repeated_timeout_notifies_again(make_stack: Any) -> None:
    """The first handler of a timeout recorded it and died before notifying."""
    from flowy.core.events import TaskTimedOut, stamped

    stack = make_stack()
    backend = stack.backend
    keeper = TimerKeeper(backend.store, backend.queues)
    backend.store.add_outcome("r2", stamped(TaskTimedOut("t-0-1", "start_to_close"), 1.0))
    keeper.handle(TimerMessage(run="r2", key="t-0-1", kind="start_to_close", fire_at=0.0))
    notes = backend.queues.receive(stack.settings.decision_queue, wait=1)
    assert [json.loads(m["Body"])["run"] for m in notes] == ["r2"]
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r2")] == ["TaskTimedOut"]
