"""Faults of real processes on the emulator: SIGKILL and SIGTERM of deciders and
workers; and payloads over SQS's and DynamoDB's limits, which go through S3.

The faults that are not about OS processes or S3 (duplicates, races, poison,
redelivery) run on both backends, in test_engine_faults.py.
"""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flowy import PayloadError
from flowy.backends.aws.payloads import INLINE_LIMIT, Payloads
from flowy.core.events import TaskCompleted, TaskScheduled, TaskTimedOut
from tests import activities as A
from tests.aws_support import wait_for
from tests.engines import keys
from tests.scenarios import aws_workflow


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
    assert keys(history, TaskCompleted) == Counter({"task-0-2": 1})
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
    assert keys(history, TaskScheduled) == Counter({"task-0-1": 1})
    assert keys(history, TaskCompleted) == Counter({"task-0-1": 1})


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


@pytest.mark.parametrize("poll_wait", ["0", "20"])
def test_sigterm_past_the_grace_period_releases_the_attempt(make_stack: Any, tmp_path: Path,
                                                             poll_wait: str) -> None:
    """F6 of issue "Durable under crashes": the grace period bounds the shutdown,
    whatever the poll mode: the process exits with its attempt still running
    (abandoned in a daemon thread), and hands the message back, for the next
    worker at once (not after its lease, taken by a long poll left behind)."""
    stack = make_stack()
    stack.decider()
    impatient = stack.worker("--grace", "0.5", "--poll-wait", poll_wait)
    path = str(tmp_path / "calls")
    handle = stack.client.start(aws_workflow("slow"), path, 120.0)
    wait_for(lambda: A.calls(path, "start") == 1, 30, "the attempt to start")
    impatient.send_signal(signal.SIGTERM)
    # After the grace, and the long poll in progress: long before the attempt ends.
    assert impatient.wait(timeout=60) == 0
    assert A.calls(path, "end") == 0
    stack.worker("--grace", "0.5")  # gets the message at once, not after its 60 s lease
    wait_for(lambda: A.calls(path, "start") == 2, 20, "the attempt to start again")
    handle.cancel()
