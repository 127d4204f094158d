"""Synchronous SQS access for deciders and clients: notify, schedule, arm timers.

Sends go out in batches of ten, the SQS maximum, to keep the request count
per activity low.  SQS delays stop at 15 minutes, so a timer further out is
sent with the longest delay and re-armed when it arrives early.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..core.errors import ServiceError
from .messages import Notification, TaskMessage, TimerMessage, dedup_id
from .settings import AWSSettings

log = logging.getLogger("flowy.aws.queues")

MAX_DELAY = 900  # seconds; the SQS limit
# With a poll wait of 0 (short polling, for emulators), the pause after an
# empty receive.  moto holds back a FIFO group's new messages until a long
# poll that began while the group was busy ends, so long polls there add up
# to their whole wait to each step of a run; short polls don't.
SHORT_POLL_PAUSE = 0.05


def timer_delay(fire_at: float, now: float) -> int:
    """Whole seconds to delay a timer message (rounded up, so it never fires early)."""
    remaining = fire_at - now
    return 0 if remaining <= 0 else min(MAX_DELAY, int(remaining) + (remaining % 1 > 0))


def notification_entry(run: str, why: str) -> dict[str, Any]:
    """A decision-queue message saying that run ``run`` has news; ``why``
    identifies the news, so that a re-sent notification is deduplicated."""
    return {"MessageBody": Notification(run=run).model_dump_json(), "MessageGroupId": run,
            "MessageDeduplicationId": dedup_id(run, why)}


def numbered(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Batch entries with the ``Id`` that SQS batch requests need."""
    return [{"Id": str(i), **entry} for i, entry in enumerate(entries)]


class Queues:
    """Queue URLs by name, and the engine's sends."""

    def __init__(self, sqs: Any, settings: AWSSettings) -> None:
        self.sqs = sqs
        self.settings = settings
        self._urls: dict[str, str] = {}

    def url(self, name: str) -> str:
        if name not in self._urls:
            try:
                self._urls[name] = self.sqs.get_queue_url(QueueName=name)["QueueUrl"]
            except self.sqs.exceptions.QueueDoesNotExist:
                raise ServiceError(
                    f"queue {name} does not exist: create the namespace's resources with "
                    f"'flowy setup --namespace {self.settings.namespace}' (or deploy "
                    "infra/flowy.yaml)") from None
        return self._urls[name]

    def notify(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Tell the deciders that runs have news (see :func:`notification_entry`)."""
        self._send(self.settings.decision_queue, [notification_entry(*p) for p in pairs])

    def send_tasks(self, tasks: Sequence[tuple[str, TaskMessage]]) -> None:
        """Send ``(task_list, message)`` pairs to their activity queues."""
        by_queue: dict[str, list[dict[str, Any]]] = {}
        for task_list, task in tasks:
            by_queue.setdefault(self.settings.task_queue(task_list), []).append(
                {"MessageBody": task.model_dump_json()})
        for queue, entries in by_queue.items():
            self._send(queue, entries)

    def send_timers(self, timers: Sequence[TimerMessage]) -> None:
        now = time.time()
        self._send(self.settings.timer_queue, [
            {"MessageBody": t.model_dump_json(), "DelaySeconds": timer_delay(t.fire_at, now)}
            for t in timers])

    def _send(self, queue: str, entries: list[dict[str, Any]]) -> None:
        url = self.url(queue)
        for start in range(0, len(entries), 10):
            chunk = numbered(entries[start:start + 10])
            for _attempt in range(5):
                failed = self.sqs.send_message_batch(QueueUrl=url, Entries=chunk).get("Failed")
                if not failed:
                    break
                if any(f.get("SenderFault") for f in failed):
                    raise ServiceError(f"SQS refused messages for {queue}: {failed[0]}")
                retry = {f["Id"] for f in failed}
                chunk = [e for e in chunk if e["Id"] in retry]
                time.sleep(0.1)
            else:
                raise ServiceError(f"SQS kept failing to accept messages for {queue}")

    # -- receiving ------------------------------------------------------------

    def receive(self, queue: str, *, max_messages: int = 10, wait: int = 20,
                visibility: int | None = None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        if visibility is not None:
            kwargs["VisibilityTimeout"] = visibility
        response = self.sqs.receive_message(
            QueueUrl=self.url(queue), MaxNumberOfMessages=max_messages, WaitTimeSeconds=wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount"], **kwargs)
        return response.get("Messages", [])  # type: ignore[no-any-return]

    def delete(self, queue: str, receipts: Sequence[str]) -> None:
        """Delete received messages; a stale receipt (lease lost) is logged, not raised."""
        url = self.url(queue)
        for start in range(0, len(receipts), 10):
            entries = numbered([{"ReceiptHandle": r} for r in receipts[start:start + 10]])
            for failure in self.sqs.delete_message_batch(QueueUrl=url,
                                                         Entries=entries).get("Failed", []):
                log.warning("could not delete a message from %s (%s): it will come back",
                            queue, failure.get("Message", failure.get("Code")))

    def extend(self, queue: str, receipts: Sequence[str], seconds: int) -> None:
        """Keep received messages hidden ``seconds`` longer (their lease)."""
        url = self.url(queue)
        for start in range(0, len(receipts), 10):
            entries = numbered([{"ReceiptHandle": r, "VisibilityTimeout": seconds}
                                for r in receipts[start:start + 10]])
            for failure in self.sqs.change_message_visibility_batch(
                    QueueUrl=url, Entries=entries).get("Failed", []):
                log.warning("could not extend a message's lease on %s (%s)", queue,
                            failure.get("Message", failure.get("Code")))

    def redrive(self, queue: str) -> int:
        """Move the messages waiting in ``queue``'s dead-letter queue back to
        it, once their cause is fixed; returns how many.  Only as many as were
        waiting at the start, so a message that is still poison, and comes
        back to the dead-letter queue, is not moved round and round."""
        dlq = AWSSettings.dead_letter_queue(queue)
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url(dlq), AttributeNames=["ApproximateNumberOfMessages"])
        waiting = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
        moved = 0
        while moved < waiting:
            messages = self.receive(dlq, max_messages=min(10, waiting - moved), wait=1)
            if not messages:
                break
            self._send(queue, [redriven_entry(queue, m) for m in messages])
            self.delete(dlq, [m["ReceiptHandle"] for m in messages])
            moved += len(messages)
        return moved

    def dead_letter(self, queue: str, message: dict[str, Any], reason: str) -> None:
        """Move a poison message to the queue's dead-letter queue, with its reason."""
        log.error("message %s on %s is malformed, moved to the dead-letter queue: %s",
                  message.get("MessageId"), queue, reason)
        dlq = AWSSettings.dead_letter_queue(queue)
        entry: dict[str, Any] = {
            "MessageBody": message["Body"],
            "MessageAttributes": {"flowy_reason": {"DataType": "String",
                                                   "StringValue": reason[:1000]}}}
        if dlq.endswith(".fifo"):
            entry["MessageGroupId"] = "poison"
            entry["MessageDeduplicationId"] = dedup_id(message.get("MessageId", ""), reason)
        self._send(dlq, [entry])
        self.delete(queue, [message["ReceiptHandle"]])


def redriven_entry(queue: str, message: dict[str, Any]) -> dict[str, Any]:
    """A dead-lettered message, to be sent back to ``queue``."""
    entry: dict[str, Any] = {"MessageBody": message["Body"]}
    if queue.endswith(".fifo"):
        try:
            group = Notification.model_validate_json(message["Body"]).run
        except ValueError:  # still poison: it will come back to the dead-letter queue
            group = "poison"
        entry["MessageGroupId"] = group
        entry["MessageDeduplicationId"] = dedup_id(message["MessageId"], "redrive")
    return entry


def receive_count(message: dict[str, Any]) -> int:
    return int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
