"""Faults, in real processes on the emulator: crashes, duplicates, races, poison, limits."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowy import PayloadError, Registry, TaskError
from flowy.backends.aws.payloads import INLINE_LIMIT, Payloads
from flowy.backends.base import DECISIONS, task_queue
from flowy.core.events import Event, TaskCompleted, TaskScheduled, TaskTimedOut, stamped
from flowy.core.replay import Decider
from flowy.core.runs import RunRecord
from flowy.worker.decider import Committer
from flowy.worker.inbox import start_run
from flowy.worker.messages import notification
from tests import activities as A
from tests.aws_support import wait_for
from tests.scenarios import AWS_WORKFLOWS, aws_workflow


def _keys(history: list[Event], kind: type) -> Counter[str]:
    return Counter(e.key for e in history if isinstance(e, kind))  # type: ignore[attr-defined]


def test_sigkilled_worker_task_is_retried_on_another_worker(make_stack: Any,
                                                            tmp_path: Path) -> None:
    stack = make_stack(visibility_timeout=10)
    stack.decider()
    first = stack.worker("--task-list", "default")
    path = str(tmp_path / "calls")
    handle = stack.client.start(aws_workflow("worker_crash"), path, 60)
    wait_for(lambda: A.calls(path, "start") == 1, 30, "the first attempt to start")
    first.send_signal(signal.SIGKILL)
    first.wait()
    stack.worker("--task-list", "default")
    assert handle.result(timeout=60) == "fast"
    history = stack.client.history(handle.run_id)
    timed_out = [e for e in history if isinstance(e, TaskTimedOut)]
    assert [(e.key, e.timeout_type) for e in timed_out] == [("task-0-1", "start_to_close")]
    assert _keys(history, TaskCompleted) == Counter({"task-0-2": 1})
    # The killed attempt's message comes back after its lease and is dropped, not run.
    sqs = stack.backend.sqs
    url = sqs.get_queue_url(QueueName=stack.settings.task_queue("default"))["QueueUrl"]

    def drained() -> bool:
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return set(counts["Attributes"].values()) == {"0"}

    wait_for(drained, 40, "the killed attempt's message to come back and be dropped")
    assert A.calls(path, "start") == 2


def test_sigkilled_decider_between_commit_and_sends(make_stack: Any) -> None:
    """The decider commits, then dies before its messages go out (here: the
    task queue it sends to does not exist yet, and it is then SIGKILLed).
    Another decider sends them; nothing is lost or duplicated."""
    stack = make_stack(visibility_timeout=10, task_lists=("default",))
    doomed = stack.decider()
    handle = stack.client.start(aws_workflow("manual"), 7)
    store = stack.backend.store
    wait_for(lambda: store.read_batches(handle.run_id), 30, "the first commit")
    assert store.sent_version(handle.run_id) == 0  # committed, not sent
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    stack.backend.ensure_resources(["manual"])
    stack.decider()
    stack.worker("--task-list", "manual")
    assert handle.result(timeout=60) == 49
    history = stack.client.history(handle.run_id)
    assert _keys(history, TaskScheduled) == Counter({"task-0-1": 1})
    assert _keys(history, TaskCompleted) == Counter({"task-0-1": 1})


def test_same_result_delivered_twice_is_one_completion(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    handle = stack.client.start(aws_workflow("manual"), 5)
    queues, store = stack.backend.queues, stack.backend.store
    messages = wait_for(lambda: queues.receive(task_queue("manual"), max_messages=1, wait=1,
                                               lease=30), 30, "the task message")
    task = json.loads(messages[0].body)
    result = stamped(TaskCompleted(task["key"], "25"), 1.0)
    for _ in range(3):  # three deliveries of one result, each with its notification
        store.add_outcome(task["run"], result)
        queues.send(DECISIONS, [notification(task["run"], f"delivery-{_}")])
    assert handle.result(timeout=30) == 25
    assert _keys(stack.client.history(handle.run_id), TaskCompleted) == Counter(
        {task["key"]: 1})


def test_two_deciders_racing_on_one_run(make_stack: Any) -> None:
    """Decider B has the run cached at an old version: its commit loses to A's,
    and it decides again from fresh history; every fact is committed once."""
    stack = make_stack()
    backend = stack.backend
    handle = stack.client.start(aws_workflow("example"), 1, 2)
    registry = Registry(AWS_WORKFLOWS, "tests.scenarios")
    makers = [Committer(registry, backend) for _ in range(2)]
    deciders = [Decider(), Decider()]
    makers[0].handle(deciders[0], handle.run_id)  # commits version 1
    stale = makers[1]._state(handle.run_id)
    assert stale is not None and stale.version == 1
    backend.store.add_outcome(handle.run_id, stamped(TaskCompleted("square-0-1", "1"), 2.0))
    makers[0].handle(deciders[0], handle.run_id)  # version 2
    backend.store.add_outcome(handle.run_id, stamped(TaskCompleted("square-1-1", "4"), 3.0))
    assert makers[1]._decide(deciders[1], stale) is None  # version 2 is taken
    makers[1].handle(deciders[1], handle.run_id)  # reloads: version 3
    batches = backend.store.read_batches(handle.run_id)
    assert [b.version for b in batches] == [1, 2, 3]
    history = [e for b in batches for e in b.events]
    assert _keys(history, TaskCompleted) == Counter({"square-0-1": 1, "square-1-1": 1})
    assert _keys(history, TaskScheduled)["sum-0-1"] == 1


def test_deciders_in_two_processes_share_the_work(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.decider()
    stack.worker()
    handles = [stack.client.start(aws_workflow("example"), i, 1) for i in range(8)]
    assert [h.result(timeout=60) for h in handles] == [i * i + 1 for i in range(8)]
    for h in handles:
        history = stack.client.history(h.run_id)
        assert all(n == 1 for n in _keys(history, TaskCompleted).values())
        assert all(n == 1 for n in _keys(history, TaskScheduled).values())


def test_malformed_messages_go_to_dead_letter_queues(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker("--task-list", "default")
    sqs, settings = stack.backend.sqs, stack.settings
    queues = {settings.decision_queue: {"MessageGroupId": "x", "MessageDeduplicationId": "x"},
              settings.timer_queue: {}, settings.task_queue("default"): {}}
    for queue, extra in queues.items():
        sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=queue)["QueueUrl"],
                         MessageBody="{not json", **extra)
    assert stack.client.start(aws_workflow("example"), 2, 3).result(timeout=60) == 13
    for queue in queues:
        dlq = sqs.get_queue_url(QueueName=settings.dead_letter_queue(queue))["QueueUrl"]
        received = wait_for(lambda u=dlq: sqs.receive_message(
            QueueUrl=u, MessageAttributeNames=["All"], WaitTimeSeconds=1).get("Messages"),
            20, f"the poison message in the dead-letter queue of {queue}")
        assert received[0]["Body"] == "{not json"
        reason = received[0]["MessageAttributes"]["flowy_reason"]["StringValue"]
        assert reason.startswith("not a ")
    assert all(p.poll() is None for p in stack.processes)  # everyone kept going
    assert "moved to the dead-letter queue" in stack.logs()


def test_dead_letters_are_redriven_once_fixed(make_stack: Any) -> None:
    stack = make_stack()
    sqs, settings = stack.backend.sqs, stack.settings
    workflow = aws_workflow("example")
    # A run whose notification SQS gave up on (say its deciders did not know
    # the workflow yet): it waits in the dead-letter queue, the run stays open.
    stuck = RunRecord("stuck", workflow.ref, started_at=1.0, input="[[3,4],{}]")
    note = start_run(stack.backend, stuck)
    dlq = settings.dead_letter_queue(settings.decision_queue)
    sqs.send_message(QueueUrl=sqs.get_queue_url(QueueName=dlq)["QueueUrl"],
                     MessageBody=note.body, MessageGroupId="stuck",
                     MessageDeduplicationId="stuck")
    stack.decider()
    stack.worker()
    moved = stack.flowy("redrive", "decisions")
    assert moved.stdout.strip() == (f"moved 1 message(s) from {dlq} back to "
                                    f"{settings.decision_queue}"), moved.stderr
    assert stack.client.wait("stuck", timeout=60) == 25
    nothing = stack.flowy("redrive", "tasks", "--task-list", "default")
    assert nothing.stdout.startswith("moved 0 message(s)"), nothing.stderr


def test_unknown_activity_fails_the_task_naming_it(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker(definitions="tests.scenarios:WORKER_WORKFLOWS")
    with pytest.raises(TaskError) as info:
        stack.client.start(aws_workflow("ghost"), 3).result(timeout=60)
    assert info.value.type_name == "flowy.ConfigurationError"
    assert "activity task of workflow ghost@1 is not known to this worker" in str(info.value)


def test_large_payloads_go_through_s3(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    size = 3 * INLINE_LIMIT
    assert stack.client.start(aws_workflow("text"), size).result(timeout=60) == "x" * size


def test_payload_over_the_limit_without_a_bucket_names_the_limit(make_stack: Any) -> None:
    stack = make_stack()
    payloads = Payloads(stack.backend.s3, "no-such-bucket-for-flowy")
    assert payloads.pack("small") == {"data": "small"}
    with pytest.raises(PayloadError, match=f"over the {INLINE_LIMIT}-byte inline limit"):
        payloads.pack("x" * (INLINE_LIMIT + 1))


def test_sigterm_lets_the_running_attempt_finish(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack()
    stack.decider()
    worker = stack.worker()
    path = str(tmp_path / "calls")
    handle = stack.client.start(aws_workflow("slow"), path, 3.0)
    wait_for(lambda: A.calls(path, "start") == 1, 30, "the attempt to start")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0
    assert A.calls(path, "end") == 1
    assert handle.result(timeout=30) == "done"


def test_sigterm_past_the_grace_period_releases_the_attempt(make_stack: Any,
                                                             tmp_path: Path) -> None:
    stack = make_stack()
    stack.decider()
    impatient = stack.worker("--grace", "0.5")
    path = str(tmp_path / "calls")
    handle = stack.client.start(aws_workflow("slow"), path, 4.0)
    wait_for(lambda: A.calls(path, "start") == 1, 30, "the attempt to start")
    impatient.send_signal(signal.SIGTERM)
    assert impatient.wait(timeout=30) == 0
    stack.worker()  # gets the released message at once, not after its lease
    assert handle.result(timeout=30) == "done"
    assert A.calls(path, "start") == 2


def test_a_cached_run_reads_only_its_inbox(make_stack: Any, monkeypatch: Any) -> None:
    stack = make_stack()
    backend = stack.backend
    handle = stack.client.start(aws_workflow("example"), 1, 2)
    maker = Committer(Registry(AWS_WORKFLOWS), backend)
    decider = Decider()
    history_reads = []
    read_batches = backend.store.read_batches
    monkeypatch.setattr(backend.store, "read_batches",
                        lambda *a, **k: history_reads.append(a) or read_batches(*a, **k))
    maker.handle(decider, handle.run_id)  # loads the run: its one history read
    for key, result in (("square-0-1", "1"), ("square-1-1", "4"), ("sum-0-1", "5")):
        backend.store.add_outcome(handle.run_id, stamped(TaskCompleted(key, result), 9.0))
        maker.handle(decider, handle.run_id)
    assert len(history_reads) == 1
    assert decider.replays == 1  # the first decision starts from the empty history
    assert stack.client.status(handle.run_id).status == "completed"


def test_outcome_written_but_never_notified_is_notified_on_redelivery(make_stack: Any) -> None:
    """A worker wrote the outcome and died before notifying: the next worker to
    get the message notifies instead of running the attempt again."""
    stack = make_stack()
    stack.decider()
    handle = stack.client.start(aws_workflow("manual"), 7)
    queues, store = stack.backend.queues, stack.backend.store
    queue = task_queue("manual")
    message = wait_for(lambda: queues.receive(queue, max_messages=1, wait=1, lease=30), 30,
                       "the task message")[0]
    task = json.loads(message.body)
    store.add_outcome(task["run"], stamped(TaskCompleted(task["key"], "49"), 1.0))
    queues.extend(queue, [message.receipt], 0)  # it dies: the message comes back
    stack.worker("--task-list", "manual")
    assert handle.result(timeout=30) == 49
    assert _keys(stack.client.history(handle.run_id), TaskCompleted) == Counter(
        {task["key"]: 1})
