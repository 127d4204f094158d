"""The AWS backend (flowy.backends.aws) against a real moto server over HTTP.

The store and the queues talk to the emulator named by the ``aws_endpoint``
fixture, in a namespace of this module's own.  The retries of failed sends, and
the errors no emulator makes, are also tested on a scripted stand-in for the
boto3 client.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from flowy import FlowyClient
from flowy.backends.aws import AWSBackend, AWSSettings, connect, metrics, sqs
from flowy.backends.aws.emulator import EMULATOR_CREDENTIALS
from flowy.backends.aws.payloads import INLINE_LIMIT, Payloads
from flowy.backends.aws.sqs import (
    BLOB_ATTRIBUTE,
    MAX_DELAY,
    REASON_ATTRIBUTE,
    SQSQueues,
    batches,
    dedup_id,
    whole_seconds,
)
from flowy.backends.base import DECISIONS, TIMERS, Outgoing, Received, task_queue
from flowy.core.errors import ConfigurationError, ErrorInfo, PayloadError, ServiceError
from flowy.core.events import (
    Event,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    WorkflowCompleted,
    WorkflowStarted,
)
from flowy.core.replay import Replayer
from flowy.core.runs import COMPLETED, FAILED, IN_HISTORY, OPEN, RunRecord
from flowy.worker.committer import Committer
from tests.engines import REGISTRY
from tests.scenarios import aws_workflow

TASKS = task_queue("default")


@pytest.fixture(scope="module")
def backend(aws_endpoint: str) -> Iterator[AWSBackend]:
    for name, value in EMULATOR_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    settings = AWSSettings(namespace="t" + uuid.uuid4().hex[:12],
                           endpoint_url=None if aws_endpoint.startswith("https://")
                           else aws_endpoint,
                           visibility_timeout=10, max_receives=5)
    connected = connect(settings)
    connected.ensure_resources(["default"])
    yield connected
    connected.close()


def own_queue(backend: AWSBackend) -> str:
    """A new task queue, so that no test sees another's messages."""
    task_list = "q" + uuid.uuid4().hex[:8]
    backend.ensure_resources([task_list])
    return task_queue(task_list)


@pytest.fixture
def queue(backend: AWSBackend) -> str:
    """A task queue of this test's own."""
    return own_queue(backend)


Requests = Callable[[str], list[dict[str, Any]]]


@pytest.fixture
def requests(backend: AWSBackend) -> Iterator[Requests]:
    """``requests(api)``: the parameters of every request to that SQS API
    (``"ReceiveMessage"``) the client makes from then on, until the test ends."""
    handlers = []

    def record(api: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        def handler(params: dict[str, Any], **_: Any) -> None:
            seen.append(params)

        event = f"before-parameter-build.sqs.{api}"
        backend.sqs.meta.events.register(event, handler)
        handlers.append((event, handler))
        return seen

    yield record
    for event, handler in handlers:
        backend.sqs.meta.events.unregister(event, handler)


@pytest.fixture
def sent_batches(requests: Requests) -> list[dict[str, Any]]:
    """The parameters of every SendMessageBatch request the client makes."""
    return requests("SendMessageBatch")


def new_id() -> str:
    return uuid.uuid4().hex


def receive_all(backend: AWSBackend, queue: str, count: int, lease: float = 30
                ) -> list[Received]:
    """Receive until ``count`` messages came (or a receive came back empty)."""
    received: list[Received] = []
    while len(received) < count:
        batch = backend.queues.receive(queue, max_messages=10, wait=1, lease=lease)
        if not batch:
            break
        received += batch
    return received


def raw_receive(backend: AWSBackend, name: str) -> list[dict[str, Any]]:
    """Messages of SQS queue ``name`` with all their attributes, left visible."""
    url = backend.sqs.get_queue_url(QueueName=name)["QueueUrl"]
    response = backend.sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=0,
        MessageAttributeNames=["All"], MessageSystemAttributeNames=["All"])
    return response.get("Messages", [])  # type: ignore[no-any-return]


# -- the store ----------------------------------------------------------------------------


def test_a_run_is_created_once_and_read_back(backend: AWSBackend) -> None:
    store = backend.store
    run = RunRecord(new_id(), "wf@1", started_at=1000.5, input="in", workflow_id="w",
                    parent_run="p", parent_key="k", prev_run="r0")
    assert store.create_run(run) is True
    assert store.create_run(RunRecord(run.run_id, "wf@1", started_at=2000.0)) is False
    assert store.get_run(run.run_id) == run
    assert store.get_run(new_id()) is None


def test_closing_a_run_records_how_it_ended(backend: AWSBackend) -> None:
    store = backend.store
    done, failed = (RunRecord(new_id(), "wf@1", started_at=1.0) for _ in range(2))
    for run in (done, failed):
        store.create_run(run)
    store.close_run(done.run_id, COMPLETED, 5.0, result="", next_run="n")
    store.close_run(done.run_id, COMPLETED, 5.0, result="", next_run="n")  # a repeat
    error = ErrorInfo("boom", "builtins.ValueError", "tb", ("builtins.ValueError",))
    store.close_run(failed.run_id, FAILED, 6.0, error=error)
    closed = store.get_run(done.run_id)
    assert closed is not None
    assert (closed.status, closed.closed_at, closed.result, closed.next_run) == (
        COMPLETED, 5.0, "", "n")
    assert store.get_run(failed.run_id) == RunRecord(failed.run_id, "wf@1", started_at=1.0,
                                                     status=FAILED, closed_at=6.0, error=error)


def test_the_first_commit_of_a_version_wins(backend: AWSBackend) -> None:
    store, run_id = backend.store, new_id()
    first: list[Event] = [WorkflowStarted("in", at=1.0),
                          TaskScheduled("k", "c", "act@1", "activity", "x")]
    assert store.commit(run_id, 1, first, at=10.0) is True
    assert store.commit(run_id, 1, [WorkflowCompleted("other")], at=11.0) is False
    assert store.commit(run_id, 2, [WorkflowCompleted("r", at=12.0)], at=12.5) is True
    batches_ = store.read_batches(run_id)
    assert [(b.version, b.events, b.committed_at) for b in batches_] == [
        (1, first, 10.0), (2, [WorkflowCompleted("r")], 12.5)]
    assert batches_[0].events[0].at == 1.0


def test_a_workflow_id_is_claimed_by_its_first_run(backend: AWSBackend) -> None:
    workflow_id, first, second = new_id(), new_id(), new_id()
    assert backend.store.claim_workflow_id(workflow_id, first) == first
    assert backend.store.claim_workflow_id(workflow_id, second) == first


def test_facts_are_added_once_and_read_in_arrival_order(backend: AWSBackend) -> None:
    store, run_id = backend.store, new_id()
    assert store.add_fact(run_id, WorkflowStarted("in", at=3.0)) is True
    assert store.add_fact(run_id, WorkflowStarted("again", at=9.0)) is False
    assert store.add_fact(run_id, TimerFired("z", at=1.0)) is True
    assert store.add_fact(run_id, SignalReceived("go", "v", "s1", at=2.0)) is True
    assert store.add_fact(run_id, TimerFired("a", at=4.0)) is True
    inbox = store.read_inbox(run_id)
    assert [key for key, _ in inbox] == ["fact#timer:z", "fact#signal:s1", "fact#start",
                                         "fact#timer:a"]
    assert inbox[2][1] == WorkflowStarted("in")


def test_an_attempts_first_outcome_wins_and_a_later_kind_is_kept_late(
        backend: AWSBackend) -> None:
    store, run_id = backend.store, new_id()
    assert store.outcome_of(run_id, "k") is None
    assert store.add_outcome(run_id, TaskTimedOut("k", "start_to_close", at=1.0)) is True
    assert store.add_outcome(run_id, TaskTimedOut("k", "heartbeat", at=2.0)) is False
    assert store.add_outcome(run_id, TaskCompleted("k", "late", at=3.0)) is True
    assert store.add_outcome(run_id, TaskCompleted("k", "dup", at=4.0)) is False
    assert store.outcome_of(run_id, "k") == "TaskTimedOut"
    inbox = store.read_inbox(run_id)
    assert inbox == [("fact#k", TaskTimedOut("k", "start_to_close")),
                     ("fact#k#late#TaskCompleted", TaskCompleted("k", "late"))]
    with pytest.raises(ValueError):
        store.add_outcome(run_id, TimerFired("t"))


def test_consumed_outcomes_are_in_history(backend: AWSBackend) -> None:
    store, run_id = backend.store, new_id()
    error = ErrorInfo("no", "builtins.KeyError")
    store.add_outcome(run_id, TaskFailed("k1", error, at=1.0))
    store.add_outcome(run_id, TaskCompleted("k1", "late", at=2.0))
    store.add_outcome(run_id, TaskCompleted("k2", "r", at=3.0))
    store.add_fact(run_id, TimerFired("t", at=4.0))
    inbox = store.read_inbox(run_id)
    assert store.sent_version(run_id) == 0
    store.consume(run_id, inbox[:3], 7)
    assert store.read_inbox(run_id) == [("fact#timer:t", TimerFired("t"))]
    assert (store.outcome_of(run_id, "k1"), store.outcome_of(run_id, "k2")) == (
        IN_HISTORY, IN_HISTORY)
    assert store.outcome_of(run_id, "t") is None
    assert store.sent_version(run_id) == 7


def test_runs_are_listed_by_workflow_newest_first(backend: AWSBackend) -> None:
    store, name = backend.store, "w" + new_id()[:8]
    made = [RunRecord(new_id(), f"{name}@{version}", started_at=at)
            for version, at in (("1", 10.0), ("2", 30.0), ("1", 20.0))]
    for run in made:
        store.create_run(run)
    store.close_run(made[0].run_id, COMPLETED, 40.0, result="r")
    assert [r.started_at for r in store.runs(name)] == [30.0, 20.0, 10.0]
    assert [r.started_at for r in store.runs(f"{name}@1")] == [20.0, 10.0]
    assert [r.started_at for r in store.runs(name, OPEN)] == [30.0, 20.0]
    assert {r.run_id for r in made} <= {r.run_id for r in store.runs()}
    completed = {r.run_id for r in store.runs(status=COMPLETED)}
    assert made[0].run_id in completed and made[1].run_id not in completed


def test_a_closed_run_is_deleted_with_its_items(backend: AWSBackend) -> None:
    store = backend.store
    run = RunRecord(new_id(), "wf@1", started_at=1.0, workflow_id=new_id())
    store.create_run(run)
    store.claim_workflow_id(run.workflow_id or "", run.run_id)
    store.commit(run.run_id, 1, [WorkflowStarted("in")], at=2.0)
    store.add_fact(run.run_id, TimerFired("t"))
    with pytest.raises(ConfigurationError):
        store.delete_run(run)
    store.close_run(run.run_id, COMPLETED, 3.0, result="r")
    closed = store.get_run(run.run_id)
    assert closed is not None
    assert store.delete_run(closed) == 3  # the batch, the fact, the run
    assert store.get_run(run.run_id) is None
    assert store.read_batches(run.run_id) == []
    assert store.claim_workflow_id(run.workflow_id or "", "another") == "another"


def test_large_payloads_in_the_store_go_to_s3(backend: AWSBackend) -> None:
    store, big = backend.store, "x" * (INLINE_LIMIT + 1)
    run = RunRecord(new_id(), "wf@1", started_at=1.0, input=big)
    store.create_run(run)
    store.commit(run.run_id, 1, [WorkflowStarted(big)], at=2.0)
    assert store.get_run(run.run_id) == run
    assert store.read_batches(run.run_id)[0].events == [WorkflowStarted(big)]


def test_wait_closed_returns(backend: AWSBackend) -> None:
    backend.store.wait_closed(new_id(), 0.01)
    backend.store.wait_closed(new_id(), 0)


# -- the queues ------------------------------------------------------------------------------


def test_messages_are_sent_received_and_acknowledged(backend: AWSBackend, queue: str) -> None:
    queues = backend.queues
    queues.send(queue, [Outgoing("one"), Outgoing("two")])
    received = receive_all(backend, queue, 2)
    assert sorted(m.body for m in received) == ["one", "two"]
    assert {m.receive_count for m in received} == {1}
    assert queues.acknowledge(queue, [m.receipt for m in received]) == []
    assert queues.receive(queue, max_messages=10, wait=0, lease=30) == []


def test_more_than_ten_messages_go_in_batches(backend: AWSBackend, queue: str,
                                              sent_batches: list[dict[str, Any]]) -> None:
    bodies = [f"m{i}" for i in range(23)]
    backend.queues.send(queue, [Outgoing(b) for b in bodies])
    assert [len(p["Entries"]) for p in sent_batches] == [10, 10, 3]
    received = receive_all(backend, queue, 23)
    assert sorted(m.body for m in received) == sorted(bodies)
    assert backend.queues.acknowledge(queue, [m.receipt for m in received]) == []
    assert backend.queues.receive(queue, max_messages=10, wait=0, lease=30) == []


def test_decisions_are_grouped_and_deduplicated(backend: AWSBackend) -> None:
    queues = backend.queues
    queues.send(DECISIONS, [Outgoing("a1", group="ra", dedup="a1"),
                            Outgoing("a1 again", group="ra", dedup="a1"),  # dropped
                            Outgoing("a2", group="ra", dedup="a2"),
                            Outgoing("b1", group="rb")])
    queues.send(DECISIONS, [Outgoing("b1", group="rb")])  # the same body: dropped
    first = queues.receive(DECISIONS, max_messages=1, wait=0, lease=30)
    assert [m.body for m in first] == ["a1"]
    # While a1 is in flight its group is held back: only b1 comes.
    second = queues.receive(DECISIONS, max_messages=10, wait=0, lease=30)
    assert [m.body for m in second] == ["b1"]
    assert queues.acknowledge(DECISIONS, [m.receipt for m in first + second]) == []
    third = queues.receive(DECISIONS, max_messages=10, wait=0, lease=30)
    assert [m.body for m in third] == ["a2"]
    assert queues.acknowledge(DECISIONS, [third[0].receipt]) == []
    assert queues.receive(DECISIONS, max_messages=10, wait=0, lease=30) == []


def test_fifo_messages_need_a_group_and_no_delay(backend: AWSBackend) -> None:
    with pytest.raises(ServiceError, match="group"):
        backend.queues.send(DECISIONS, [Outgoing("x")])
    with pytest.raises(ServiceError, match="delay"):
        backend.queues.send(DECISIONS, [Outgoing("x", group="g", delay=5)])


def test_a_lost_lease_is_reported_not_raised(backend: AWSBackend, queue: str) -> None:
    queues = backend.queues
    queues.send(queue, [Outgoing("m")])
    [first] = receive_all(backend, queue, 1, lease=0)  # visible again at once
    [second] = receive_all(backend, queue, 1, lease=30)
    assert (second.id, second.receive_count) == (first.id, 2)
    assert queues.extend(queue, [second.receipt], 30) == []
    # Another receiver took the message and acknowledged it: the first lease
    # is lost, and extending it is reported.
    queues.send(TASKS, [Outgoing("elsewhere")])
    [foreign] = receive_all(backend, TASKS, 1)
    assert queues.acknowledge(queue, [second.receipt]) == []
    assert queues.extend(queue, [first.receipt, second.receipt], 30) == [
        first.receipt, second.receipt]
    # moto takes a receipt of a message that is gone as done; one it never
    # issued for this queue it refuses, and that is reported, not raised.
    assert queues.acknowledge(queue, [foreign.receipt, first.receipt]) == [foreign.receipt]
    assert queues.acknowledge(TASKS, [foreign.receipt]) == []
    assert queues.receive(queue, max_messages=10, wait=0, lease=30) == []


def test_extending_with_lease_zero_makes_a_message_visible(backend: AWSBackend,
                                                           queue: str) -> None:
    backend.queues.send(queue, [Outgoing("m")])
    [message] = receive_all(backend, queue, 1)
    assert backend.queues.extend(queue, [message.receipt], 0) == []
    [again] = receive_all(backend, queue, 1)
    assert (again.body, again.receive_count) == ("m", 2)
    backend.queues.acknowledge(queue, [again.receipt])


def test_delays_are_whole_seconds_rounded_up_and_capped(
        backend: AWSBackend, sent_batches: list[dict[str, Any]]) -> None:
    assert backend.queues.max_delay == MAX_DELAY == 900
    backend.queues.send(TIMERS, [Outgoing("a", delay=1.2), Outgoing("b", delay=5000),
                                 Outgoing("c"), Outgoing("d", delay=3.0)])
    [params] = sent_batches
    assert [e.get("DelaySeconds") for e in params["Entries"]] == [2, 900, None, 3]


def test_a_large_body_goes_through_s3(backend: AWSBackend, queue: str,
                                      sent_batches: list[dict[str, Any]]) -> None:
    big = "é" * (INLINE_LIMIT // 2 + 1)  # over the limit in UTF-8 bytes
    backend.queues.send(queue, [Outgoing(big), Outgoing("small")])
    entries = [e for p in sent_batches for e in p["Entries"]]
    [blob] = [e for e in entries if "MessageAttributes" in e]
    key = blob["MessageAttributes"][BLOB_ATTRIBUTE]["StringValue"]
    assert json.loads(blob["MessageBody"]) == {BLOB_ATTRIBUTE: key}  # for people reading
    backend.s3.head_object(Bucket=backend.settings.payload_bucket, Key=key)
    received = receive_all(backend, queue, 2)
    assert sorted(m.body for m in received) == sorted([big, "small"])
    backend.queues.acknowledge(queue, [m.receipt for m in received])


def test_payloads_read_back_from_s3_are_checked(backend: AWSBackend) -> None:
    """Finding 5 of the security review: a reference names a payload key, the
    object is no larger than the limit (not read otherwise), and its content
    hashes to its key."""
    bucket = backend.settings.payload_bucket
    payloads = Payloads(backend.s3, bucket)
    text = "x" * (INLINE_LIMIT + 1)
    key = payloads.pack(text)["blob"]
    assert payloads.unpack({"blob": key}) == text
    with pytest.raises(PayloadError, match="over the 100-byte limit: it was not read"):
        Payloads(backend.s3, bucket, max_payload=100).unpack({"blob": key})
    backend.s3.put_object(Bucket=bucket, Key="secret/notes.txt", Body=b"not yours")
    for reference in ("secret/notes.txt", "payloads/../secret/notes.txt", ["a"]):
        with pytest.raises(PayloadError, match="not a packed payload"):
            payloads.unpack({"blob": reference})  # type: ignore[dict-item]
    backend.s3.put_object(Bucket=bucket, Key=key, Body=b"tampered")
    with pytest.raises(PayloadError, match="is corrupt: its content does not match its hash"):
        payloads.unpack({"blob": key})


def test_a_message_whose_payload_is_corrupt_is_set_aside_at_once(backend: AWSBackend,
                                                                 queue: str) -> None:
    """Not skipped at every delivery until SQS gives up on it: moved to the
    dead-letter queue with the reason and its reference, for a redrive once
    the object is restored."""
    big = "y" * (INLINE_LIMIT + 1)
    backend.queues.send(queue, [Outgoing(big)])
    key = Payloads(backend.s3, backend.settings.payload_bucket).pack(big)["blob"]
    backend.s3.put_object(Bucket=backend.settings.payload_bucket, Key=key, Body=b"tampered")
    assert backend.queues.receive(queue, max_messages=10, wait=1, lease=30) == []
    dlq = AWSSettings.dead_letter_queue(backend.settings.queue_name(queue))
    [parked] = raw_receive(backend, dlq)
    attributes = parked["MessageAttributes"]
    assert "is corrupt" in attributes[REASON_ATTRIBUTE]["StringValue"]
    assert attributes[BLOB_ATTRIBUTE]["StringValue"] == key


def test_dead_letter_and_redrive(backend: AWSBackend, queue: str) -> None:
    queues = backend.queues
    queues.send(queue, [Outgoing("poison")])
    [message] = receive_all(backend, queue, 1)
    queues.dead_letter(queue, message, "not a task")
    assert queues.receive(queue, max_messages=10, wait=0, lease=30) == []
    dlq = AWSSettings.dead_letter_queue(backend.settings.queue_name(queue))
    [parked] = raw_receive(backend, dlq)
    assert parked["Body"] == "poison"
    assert parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == "not a task"
    assert queues.redrive(queue) == 1
    [back] = receive_all(backend, queue, 1)
    assert back.body == "poison"
    assert raw_receive(backend, dlq) == []
    queues.acknowledge(queue, [back.receipt])


def test_fifo_redrive_keeps_the_group_sqs_dead_lettered_with(backend: AWSBackend) -> None:
    queues, run = backend.queues, new_id()
    queues.send(DECISIONS, [Outgoing("news", group=run, dedup=new_id())])
    for _ in range(backend.settings.max_receives + 1):  # SQS moves it after these
        assert [m.body for m in queues.receive(DECISIONS, max_messages=1, wait=0,
                                               lease=0)] == ["news"]
    assert queues.receive(DECISIONS, max_messages=1, wait=0, lease=30) == []
    queues.send(DECISIONS, [Outgoing("bad", group="x", dedup=new_id())])
    [bad] = queues.receive(DECISIONS, max_messages=1, wait=0, lease=30)
    queues.dead_letter(DECISIONS, bad, "malformed")
    assert queues.redrive(DECISIONS) == 2
    back = raw_receive(backend, backend.settings.decision_queue)
    assert {m["Body"]: m["Attributes"]["MessageGroupId"] for m in back} == {
        "news": run, "bad": "poison"}
    received = receive_all(backend, DECISIONS, 2)
    assert queues.acknowledge(DECISIONS, [m.receipt for m in received]) == []


def test_a_missing_queue_says_how_to_create_it(aws_endpoint: str,
                                               backend: AWSBackend) -> None:
    settings = AWSSettings(namespace="missing" + new_id()[:8],
                           endpoint_url=backend.settings.endpoint_url)
    lonely = connect(settings)
    try:
        with pytest.raises(ServiceError, match=f"flowy setup --namespace {settings.namespace}"):
            lonely.queues.send(TASKS, [Outgoing("x")])
    finally:
        lonely.close()


def test_receive_asks_for_the_receive_count_and_the_blob_attribute(
        backend: AWSBackend, queue: str, requests: Requests) -> None:
    receives = requests("ReceiveMessage")
    backend.queues.send(queue, [Outgoing("m")])
    assert backend.queues.receive(queue, max_messages=0, wait=1, lease=1) == []
    assert receives == []  # asked for nothing: no request
    [message] = backend.queues.receive(queue, max_messages=25, wait=30, lease=0.5)
    [params] = receives
    assert (params["MaxNumberOfMessages"], params["WaitTimeSeconds"],
            params["VisibilityTimeout"]) == (10, 20, 1)
    assert "ApproximateReceiveCount" in params["MessageSystemAttributeNames"]
    assert params["MessageAttributeNames"] == [BLOB_ATTRIBUTE]
    assert (message.body, message.receive_count) == ("m", 1)
    assert backend.queues.acknowledge(queue, [message.receipt]) == []


def test_a_message_whose_blob_is_gone_is_set_aside(backend: AWSBackend, queue: str,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    big = new_id() + "x" * INLINE_LIMIT  # a blob of this test's own
    backend.queues.send(queue, [Outgoing(big), Outgoing("small")])
    [key] = [m["MessageAttributes"][BLOB_ATTRIBUTE]["StringValue"]
             for m in raw_receive(backend, backend.settings.queue_name(queue))
             if "MessageAttributes" in m]
    backend.s3.delete_object(Bucket=backend.settings.payload_bucket, Key=key)
    with caplog.at_level(logging.ERROR, logger="flowy.backends.aws.sqs"):
        received = receive_all(backend, queue, 1)
    assert [m.body for m in received] == ["small"]
    assert "is moved to the dead-letter queue" in caplog.text
    backend.queues.acknowledge(queue, [received[0].receipt])
    [parked] = raw_receive(backend, AWSSettings.dead_letter_queue(
        backend.settings.queue_name(queue)))
    assert "is missing from S3" in parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]


def test_fifo_deduplication_ids_are_hashed(backend: AWSBackend,
                                           sent_batches: list[dict[str, Any]]) -> None:
    why, body = new_id(), new_id()
    backend.queues.send(DECISIONS, [Outgoing("n", group=new_id(), dedup=why),
                                    Outgoing(body, group=new_id())])
    [params] = sent_batches
    assert [(e["MessageBody"], e["MessageDeduplicationId"]) for e in params["Entries"]] == [
        ("n", dedup_id("id", why)), (body, dedup_id("body", body))]
    received = receive_all(backend, DECISIONS, 2)
    assert backend.queues.acknowledge(DECISIONS, [m.receipt for m in received]) == []


def test_failed_receipts_are_reported_batch_by_batch(backend: AWSBackend, queue: str,
                                                     requests: Requests) -> None:
    queues, other = backend.queues, own_queue(backend)
    queues.send(queue, [Outgoing(f"m{i}") for i in range(9)])
    queues.send(other, [Outgoing(f"f{i}") for i in range(3)])
    mine = [m.receipt for m in receive_all(backend, queue, 9)]
    foreign = [m.receipt for m in receive_all(backend, other, 3)]
    receipts = [*mine[:3], foreign[0], *mine[3:], *foreign[1:]]  # foreign: 3, 10, 11
    extends, deletes = requests("ChangeMessageVisibilityBatch"), requests("DeleteMessageBatch")
    assert queues.extend(queue, receipts, 12.5) == foreign
    assert [len(p["Entries"]) for p in extends] == [10, 2]
    assert {e["VisibilityTimeout"] for p in extends for e in p["Entries"]} == {13}
    assert queues.acknowledge(queue, receipts) == foreign
    assert [len(p["Entries"]) for p in deletes] == [10, 2]
    assert queues.extend(queue, [], 30) == queues.acknowledge(queue, []) == []
    assert len(deletes) == 2 and len(extends) == 2  # nothing to do: no request
    assert queues.acknowledge(other, foreign) == []


def test_queue_urls_are_looked_up_once(backend: AWSBackend, queue: str,
                                       requests: Requests) -> None:
    lookups = requests("GetQueueUrl")
    queues = SQSQueues(backend.sqs, backend.settings,
                       Payloads(backend.s3, backend.settings.payload_bucket))
    queues.send(queue, [Outgoing("a")])
    queues.send(queue, [Outgoing("b")])
    received = queues.receive(queue, max_messages=10, wait=1, lease=30)
    assert queues.acknowledge(queue, [m.receipt for m in received]) == []
    assert [p["QueueName"] for p in lookups] == [backend.settings.queue_name(queue)]


# -- connecting -------------------------------------------------------------------------------


def test_request_counting_is_opt_in(backend: AWSBackend) -> None:
    before = metrics.request_counts().get("sqs.GetQueueUrl", 0)
    backend.sqs.get_queue_url(QueueName=backend.settings.timer_queue)
    if not os.environ.get("FLOWY_REQUEST_COUNTS"):
        assert metrics.request_counts().get("sqs.GetQueueUrl", 0) == before
    counted = connect(backend.settings, count_requests=True)
    try:
        counted.sqs.get_queue_url(QueueName=backend.settings.timer_queue)
    finally:
        counted.close()
    assert metrics.request_counts()["sqs.GetQueueUrl"] > before


def test_the_backend_describes_its_namespace(backend: AWSBackend) -> None:
    assert backend.name == f"namespace {backend.settings.namespace}"
    assert (backend.lease, backend.remote) == (10.0, True)
    assert backend.clock.now() > 0


def test_importing_without_the_extra_says_what_to_install() -> None:
    code = ("import sys\nsys.modules['boto3'] = None\n"
            "try:\n    import flowy.backends.aws\nexcept ImportError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert "pip install 'flowy[aws]'" in result.stdout


# -- settings -----------------------------------------------------------------------------


def test_logical_queue_names_map_to_the_namespaces_queues() -> None:
    settings = AWSSettings(namespace="ns")
    assert settings.queue_name(DECISIONS) == settings.decision_queue == "flowy-ns-decisions.fifo"
    assert settings.queue_name(TIMERS) == "flowy-ns-timers"
    assert settings.queue_name(task_queue("gpu")) == settings.task_queue("gpu")
    with pytest.raises(ConfigurationError):
        settings.queue_name("elsewhere")
    with pytest.raises(ConfigurationError):
        settings.queue_name(task_queue("no spaces"))


# -- send retries and client errors, on a scripted client ----------------------------------


class ScriptedSQS:
    """Stands in for a boto3 SQS client: each call records its name and
    arguments and gets the next scripted response (an exception is raised)."""

    def __init__(self, *responses: Any) -> None:
        self.responses = list(responses)
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def __getattr__(self, api: str) -> Callable[..., Any]:
        def call(**kwargs: Any) -> Any:
            self.calls.append((api, kwargs))
            response = self.responses.pop(0)
            if isinstance(response, BaseException):
                raise response
            return response
        return call


URL = {"QueueUrl": "https://sqs/x/flowy-x--tasks-default"}
OK: dict[str, Any] = {"Successful": [], "Failed": []}


def scripted(*responses: Any) -> tuple[SQSQueues, ScriptedSQS]:
    client = ScriptedSQS(URL, *responses)  # every operation starts with a URL lookup
    return SQSQueues(client, AWSSettings(namespace="x"), Payloads(None, "bucket")), client


@pytest.fixture(autouse=True)
def no_retry_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqs, "RETRY_PAUSE", 0.0)


def client_error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "Operation")


def failure(entry: str, *, sender: bool = False) -> dict[str, Any]:
    return {"Failed": [{"Id": entry, "SenderFault": sender, "Code": "SomeError"}]}


def test_partially_failed_sends_are_retried() -> None:
    queues, client = scripted(failure("1"), OK)
    queues.send(TASKS, [Outgoing("a"), Outgoing("b"), Outgoing("c")])
    assert [name for name, _ in client.calls] == ["get_queue_url", "send_message_batch",
                                                  "send_message_batch"]
    assert client.calls[0][1] == {"QueueName": "flowy-x--tasks-default"}
    assert [e["MessageBody"] for e in client.calls[1][1]["Entries"]] == ["a", "b", "c"]
    assert client.calls[2][1]["Entries"] == [{"Id": "1", "MessageBody": "b"}]


def test_a_sender_fault_is_not_retried() -> None:
    queues, client = scripted(failure("0", sender=True))
    with pytest.raises(ServiceError, match="SomeError"):
        queues.send(TASKS, [Outgoing("a")])
    assert len(client.calls) == 2


def test_sends_that_keep_failing_raise_after_five_tries() -> None:
    queues, client = scripted(*[failure("0")] * 5)
    with pytest.raises(ServiceError, match="5 tries"):
        queues.send(TASKS, [Outgoing("a")])
    assert client.responses == []


def test_a_refused_batch_request_is_a_service_error() -> None:
    queues, _ = scripted(client_error("Throttling"))
    with pytest.raises(ServiceError, match="Throttling"):
        queues.send(TASKS, [Outgoing("a")])


def test_a_refused_receipt_batch_fails_its_receipts_only() -> None:
    receipts = [f"r{i}" for i in range(12)]
    queues, _ = scripted(client_error("InternalError"), OK)
    assert queues.acknowledge(TASKS, receipts) == receipts[:10]


def test_lookup_errors_other_than_a_missing_queue_are_not_explained() -> None:
    queues = SQSQueues(ScriptedSQS(client_error("AccessDenied")), AWSSettings(namespace="x"),
                       Payloads(None, "bucket"))
    with pytest.raises(ClientError, match="AccessDenied"):
        queues.send(TASKS, [Outgoing("a")])


# -- helpers ------------------------------------------------------------------------------


def test_batches_hold_ten_entries_and_fit_the_request_size() -> None:
    entries = [{"MessageBody": "x" * 150_000}, {"MessageBody": "y" * 100_000},
               *({"MessageBody": str(i)} for i in range(12))]
    sizes = [[len(e["MessageBody"]) for e in batch] for batch in batches(entries)]
    assert sizes == [[150_000, 100_000, 1, 1, 1, 1, 1, 1, 1, 1], [1, 1, 2, 2]]
    assert [[e["Id"] for e in batch] for batch in batches(entries)][1] == ["0", "1", "2", "3"]
    assert [len(b) for b in batches([{"MessageBody": "x" * 200_000}] * 2)] == [1, 1]


@pytest.mark.parametrize(("delay", "seconds"), [(0, 0), (-3, 0), (0.001, 1), (1.2, 2),
                                                (3.0, 3), (899.5, 900), (5000, 900)])
def test_delays_in_whole_seconds(delay: float, seconds: int) -> None:
    assert whole_seconds(delay) == seconds


def test_a_malformed_fact_is_set_aside_and_the_run_goes_on(backend: AWSBackend) -> None:
    """Item 3 of issue "Untrusting" (review finding 4): whoever may add facts
    may write bad ones, a timer key that is a list (which failed the run), a
    fact missing a field (which stalled it), a decision posing as a fact.
    Each is set aside with its reason, and the run is decided as if it were not there."""
    client = FlowyClient(backend)
    handle = client.start(aws_workflow("example"), 1, 2)
    bad = {"timer:list": {"type": "TimerFired", "key": ["x"], "at": 1.0},
           "timer:missing": {"type": "TimerFired", "at": 1.0},
           "closing": {"type": "WorkflowCompleted", "result": "99", "at": 1.0},
           "nan": {"type": "TimerFired", "key": "t", "at": float("nan")}}
    for ident, event in bad.items():
        backend.dynamodb.put_item(TableName=backend.settings.table, Item={
            "pk": {"S": handle.run_id}, "sk": {"S": f"fact#{ident}"},
            "type": {"S": event["type"]},
            "event": {"S": json.dumps({"data": json.dumps(event)})}})
    assert [type(f).__name__ for _, f in backend.store.read_inbox(handle.run_id)] == [
        "WorkflowStarted"]
    items = backend.dynamodb.query(
        TableName=backend.settings.table, KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
        ExpressionAttributeValues={":pk": {"S": handle.run_id}, ":b": {"S": "bad#"}})["Items"]
    reasons = {item["sk"]["S"]: item["reason"]["S"] for item in items}
    assert sorted(reasons) == sorted(f"bad#{ident}" for ident in bad)
    assert "key must be str, not ['x']" in reasons["bad#timer:list"]
    assert "missing 1 required positional argument: 'key'" in reasons["bad#timer:missing"]
    assert "a WorkflowCompleted is a decision, not a fact" in reasons["bad#closing"]
    assert "at must be float, not nan" in reasons["bad#nan"]
    Committer(REGISTRY, backend).handle(Replayer(), handle.run_id)
    assert [e.key for e in client.history(handle.run_id) if isinstance(e, TaskScheduled)] == [
        "square-0-1", "square-1-1"]
    assert client.status(handle.run_id).status == OPEN
