"""SQS for the engine: :class:`SQSQueues`, the backend's
:class:`~flowy.backends.base.Queues`, on a boto3 client.

Messages go out in batch requests.  A body over
:data:`~flowy.backends.aws.payloads.INLINE_LIMIT` bytes travels in S3, with
its key in the message attribute ``flowy_blob``, so that the engine only ever
sees whole bodies.  One instance serves all of a process's threads: boto3
clients are thread-safe, and the queue URL cache is a plain dict (a race only
repeats a lookup).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ...core.errors import PayloadError, ServiceError
from ..base import Outgoing, Received
from .payloads import Payloads
from .settings import AWSSettings

log = logging.getLogger("flowy.backends.aws.sqs")

BLOB_ATTRIBUTE = "flowy_blob"
REASON_ATTRIBUTE = "flowy_reason"

MAX_DELAY = 900  # seconds: the longest per-message delay SQS allows
MAX_WAIT = 20  # seconds: the longest long poll
MAX_LEASE = 43_200  # seconds: the longest visibility timeout
BATCH_SIZE = 10  # entries per batch request
# Bytes per batch request: the limit of older SQS emulators (SQS itself takes
# 1 MiB), well above INLINE_LIMIT, so every message fits in a batch of its own.
BATCH_BYTES = 262_144
SEND_TRIES = 5
RETRY_PAUSE = 0.1  # seconds before the first retry of failed entries; doubles
REDRIVE_WAIT = 1
REDRIVE_LEASE = 30
POISON_GROUP = "poison"  # the FIFO group of messages nobody can attribute to a run
_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def whole_seconds(seconds: float, most: int = MAX_DELAY) -> int:
    """SQS's whole seconds (``DelaySeconds``, ...) for a time: rounded up, so
    that a timer never fires early, and at most ``most`` (a later timer is re-armed)."""
    return max(0, min(most, math.ceil(seconds)))


def dedup_id(*parts: str) -> str:
    """A FIFO deduplication id: SQS takes at most 128 characters of a limited
    alphabet, so whatever identifies a message is hashed."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _entry_bytes(entry: Mapping[str, Any]) -> int:
    """What SQS counts of an entry against a batch's size: body and attributes."""
    size = len(entry["MessageBody"].encode())
    for name, value in entry.get("MessageAttributes", {}).items():
        size += len(name.encode()) + len(value["DataType"]) + len(value["StringValue"].encode())
    return size


def batches(entries: Sequence[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Entries in batch requests of at most :data:`BATCH_SIZE` entries and
    :data:`BATCH_BYTES`, each entry with the ``Id`` batch requests need."""
    batch: list[dict[str, Any]] = []
    size = 0
    for entry in entries:
        entry_size = _entry_bytes(entry)
        if batch and (len(batch) == BATCH_SIZE or size + entry_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append({"Id": str(len(batch)), **entry})
        size += entry_size
    if batch:
        yield batch


class SQSQueues:
    """:class:`~flowy.backends.base.Queues` on a boto3 SQS client, for one namespace."""

    max_delay: float = MAX_DELAY

    def __init__(self, sqs: Any, settings: AWSSettings, payloads: Payloads) -> None:
        self._sqs = sqs
        self._settings = settings
        self._payloads = payloads
        self._urls: dict[str, str] = {}

    # -- the Queues protocol, on logical names ---------------------------------

    def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        self._send(self._settings.queue_name(queue), messages)

    def receive(self, queue: str, *, max_messages: int, wait: float, lease: float
                ) -> list[Received]:
        received = self._receive(self._settings.queue_name(queue), max_messages, wait, lease)
        return [message for message, _ in received]

    def extend(self, queue: str, receipts: Sequence[str], lease: float) -> list[str]:
        return self._per_receipt(
            self._settings.queue_name(queue), self._sqs.change_message_visibility_batch,
            receipts, {"VisibilityTimeout": whole_seconds(lease, MAX_LEASE)},
            "could not extend a message's lease on %s (%s)")

    def acknowledge(self, queue: str, receipts: Sequence[str]) -> list[str]:
        return self._acknowledge(self._settings.queue_name(queue), receipts)

    def dead_letter(self, queue: str, message: Received, reason: str) -> None:
        self._set_aside(self._settings.queue_name(queue), message.id, message.body,
                        message.receipt, reason)

    def _set_aside(self, name: str, message_id: str, body: str, receipt: str, reason: str,
                   attributes: Mapping[str, str] | None = None) -> None:
        """Move a received message to the dead-letter queue of ``name``, with its reason."""
        # Only messages the engine can't use are set aside here, whose run can't
        # be trusted: on a FIFO queue they share one group.
        poison = Outgoing(body, group=POISON_GROUP, dedup=f"{message_id}\x1f{reason}")
        self._send(AWSSettings.dead_letter_queue(name), [poison],
                   {**(attributes or {}), REASON_ATTRIBUTE: reason[:1000]})
        self._acknowledge(name, [receipt])

    def redrive(self, queue: str) -> int:
        """Move back only as many messages as were waiting at the start, so that
        one that is still poison, and returns to the dead-letter queue, is not
        moved round and round."""
        name = self._settings.queue_name(queue)
        dlq = AWSSettings.dead_letter_queue(name)
        response = self._sqs.get_queue_attributes(
            QueueUrl=self._url(dlq), AttributeNames=["ApproximateNumberOfMessages"])
        waiting = int(response["Attributes"]["ApproximateNumberOfMessages"])
        moved = 0
        while moved < waiting:
            received = self._receive(dlq, min(BATCH_SIZE, waiting - moved), REDRIVE_WAIT,
                                     REDRIVE_LEASE)
            if not received:
                break
            # A FIFO message keeps its group (the run, for one SQS moved after
            # too many deliveries); a fresh dedup id, or SQS could drop it.
            self._send(name, [
                Outgoing(message.body, group=attributes.get("MessageGroupId", POISON_GROUP),
                         dedup=f"redrive\x1f{message.id}")
                for message, attributes in received])
            self._acknowledge(dlq, [message.receipt for message, _ in received])
            moved += len(received)
        return moved

    # -- on SQS queue names ---------------------------------------------------

    def _url(self, name: str) -> str:
        url = self._urls.get(name)
        if url is None:
            try:
                url = str(self._sqs.get_queue_url(QueueName=name)["QueueUrl"])
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
                    raise
                raise ServiceError(f"queue {name} does not exist: "
                                   f"{self._settings.how_to_create}") from None
            self._urls[name] = url
        return url

    def _entry(self, name: str, message: Outgoing, attributes: Mapping[str, str]
               ) -> dict[str, Any]:
        """The send entry of ``message``; stores its body in S3 if it is large."""
        entry: dict[str, Any] = {}
        if name.endswith(".fifo"):
            if message.group is None:
                raise ServiceError(f"a message for the FIFO queue {name} needs a group")
            if message.delay > 0:  # SQS refuses it: said before anything is sent
                raise ServiceError(f"the FIFO queue {name} has no per-message delays")
            entry["MessageGroupId"] = message.group
            entry["MessageDeduplicationId"] = (dedup_id("id", message.dedup)
                                               if message.dedup is not None
                                               else dedup_id("body", message.body))
        elif message.delay > 0:
            entry["DelaySeconds"] = whole_seconds(message.delay)
        all_attributes = dict(attributes)
        body = message.body
        packed = self._payloads.pack(body)  # over INLINE_LIMIT: stored in S3
        if "blob" in packed:
            all_attributes[BLOB_ATTRIBUTE] = packed["blob"]
            body = json.dumps({BLOB_ATTRIBUTE: packed["blob"]})  # for people reading the queue
        entry["MessageBody"] = body
        if all_attributes:
            entry["MessageAttributes"] = {k: {"DataType": "String", "StringValue": v}
                                          for k, v in all_attributes.items()}
        return entry

    def _send(self, name: str, messages: Sequence[Outgoing],
              attributes: Mapping[str, str] | None = None) -> None:
        if not messages:
            return
        url = self._url(name)
        # Every entry is made (and checked) before the first batch goes out.
        entries = [self._entry(name, message, attributes or {}) for message in messages]
        for batch in batches(entries):
            self._send_batch(name, url, batch)

    def _send_batch(self, name: str, url: str, batch: list[dict[str, Any]]) -> None:
        """Send one batch; entries SQS failed on its side are retried, with back-off."""
        for attempt in range(SEND_TRIES):
            if attempt:
                time.sleep(RETRY_PAUSE * 2 ** (attempt - 1))
            try:
                response = self._sqs.send_message_batch(QueueUrl=url, Entries=batch)
            except ClientError as exc:  # the whole request, after botocore's retries
                raise ServiceError(f"SQS refused {len(batch)} messages for {name}: "
                                   f"{exc}") from exc
            failed = response.get("Failed") or []
            if not failed:
                return
            faults = [f for f in failed if f.get("SenderFault")]
            if faults:  # the same request would fail again
                raise ServiceError(f"SQS refused a message for {name}: {faults[0]}")
            retry = {f["Id"] for f in failed}
            batch = [entry for entry in batch if entry["Id"] in retry]
        raise ServiceError(f"SQS kept failing to accept {len(batch)} messages for {name} "
                           f"({SEND_TRIES} tries)")

    def _receive(self, name: str, max_messages: int, wait: float, lease: float
                 ) -> list[tuple[Received, dict[str, str]]]:
        """Messages with their system attributes (``MessageGroupId`` for redrive)."""
        if max_messages < 1:
            return []
        response = self._sqs.receive_message(
            QueueUrl=self._url(name), MaxNumberOfMessages=min(BATCH_SIZE, max_messages),
            WaitTimeSeconds=whole_seconds(wait, MAX_WAIT),
            VisibilityTimeout=whole_seconds(lease, MAX_LEASE),
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
            MessageAttributeNames=[BLOB_ATTRIBUTE])
        received = []
        for message in response.get("Messages", []):
            body = self._body(name, message)
            if body is None:
                continue
            attributes: dict[str, str] = message.get("Attributes", {})
            received.append((Received(message["MessageId"], body, message["ReceiptHandle"],
                                      int(attributes.get("ApproximateReceiveCount", "1"))),
                             attributes))
        return received

    def _body(self, name: str, message: Mapping[str, Any]) -> str | None:
        """A received message's whole body; None if its S3 blob can't be read."""
        blob = message.get("MessageAttributes", {}).get(BLOB_ATTRIBUTE)
        if blob is None:
            return str(message["Body"])
        try:
            return self._payloads.unpack({"blob": blob["StringValue"]})
        except PayloadError as exc:
            # Not handed out, and not left to come back: a missing or corrupt
            # blob stays so.  It keeps its reference, for a redrive once the
            # object is restored.
            log.error("message %s on %s is moved to the dead-letter queue: %s",
                      message.get("MessageId"), name, exc)
            self._set_aside(name, str(message["MessageId"]), str(message["Body"]),
                            message["ReceiptHandle"], str(exc),
                            {BLOB_ATTRIBUTE: blob["StringValue"]})
            return None

    def _acknowledge(self, name: str, receipts: Sequence[str]) -> list[str]:
        return self._per_receipt(name, self._sqs.delete_message_batch, receipts, {},
                                 "could not delete a message from %s (%s): it will come back")

    def _per_receipt(self, name: str, call: Callable[..., Any], receipts: Sequence[str],
                     fields: Mapping[str, Any], why: str) -> list[str]:
        """A batch operation (``call``) on received messages; the receipts that
        failed.  The engine warns about those; SQS's reasons are logged here, at debug."""
        if not receipts:
            return []
        url = self._url(name)
        failed: list[str] = []
        for start in range(0, len(receipts), BATCH_SIZE):
            chunk = list(receipts[start:start + BATCH_SIZE])
            entries = [{"Id": str(i), "ReceiptHandle": r, **fields} for i, r in enumerate(chunk)]
            try:
                response = call(QueueUrl=url, Entries=entries)
            except ClientError as exc:  # the whole batch: its messages come back
                log.debug(why, name, exc)
                failed += chunk
                continue
            for failure in response.get("Failed", []):
                log.debug(why, name, failure.get("Message", failure.get("Code")))
                failed.append(chunk[int(failure["Id"])])
        return failed
