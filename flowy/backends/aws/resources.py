"""Create a namespace's table, queues and bucket, for dev stacks and tests.

Production stacks come from ``infra/flowy.yaml``; this creates the same
resources with the same names, idempotently, so ``flowy setup`` and
``flowy dev`` work against an emulator or an empty account.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

from .settings import AWSSettings
from .store import RUN_INDEX, WAKE_INDEX

log = logging.getLogger("flowy.backends.aws.resources")

RETENTION = str(14 * 24 * 3600)
WAKE_ATTRIBUTES = [{"AttributeName": "wake", "AttributeType": "S"},
                   {"AttributeName": "due", "AttributeType": "N"}]
# Keys only: the reconciler needs the run ids and times, nothing else.
WAKE_INDEX_SPEC = {"IndexName": WAKE_INDEX,
                   "KeySchema": [{"AttributeName": "wake", "KeyType": "HASH"},
                                 {"AttributeName": "due", "KeyType": "RANGE"}],
                   "Projection": {"ProjectionType": "KEYS_ONLY"}}


def ensure_resources(settings: AWSSettings, task_lists: Iterable[str], *, dynamodb: Any,
                     sqs: Any, s3: Any) -> None:
    """Create whatever is missing; existing resources are left as they are."""
    _ensure_table(dynamodb, settings.table)
    for queue in [settings.decision_queue, settings.timer_queue,
                  *(settings.task_queue(t) for t in sorted(set(task_lists)))]:
        _ensure_queue(sqs, queue, settings)
    _ensure_bucket(s3, settings)


def _ensure_table(dynamodb: Any, table: str) -> None:
    try:
        dynamodb.create_table(
            TableName=table, BillingMode="PAY_PER_REQUEST",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                  {"AttributeName": "sk", "AttributeType": "S"},
                                  {"AttributeName": "workflow", "AttributeType": "S"},
                                  {"AttributeName": "started_at", "AttributeType": "N"},
                                  *WAKE_ATTRIBUTES],
            GlobalSecondaryIndexes=[{
                "IndexName": RUN_INDEX,
                "KeySchema": [{"AttributeName": "workflow", "KeyType": "HASH"},
                              {"AttributeName": "started_at", "KeyType": "RANGE"}],
                "Projection": {"ProjectionType": "ALL"}}, WAKE_INDEX_SPEC])
        log.info("created table %s", table)
    except dynamodb.exceptions.ResourceInUseException:
        _ensure_wake_index(dynamodb, table)
        return
    dynamodb.get_waiter("table_exists").wait(TableName=table,
                                             WaiterConfig={"Delay": 1, "MaxAttempts": 60})


def _ensure_wake_index(dynamodb: Any, table: str) -> None:
    """Add the wake index to a table made before it existed."""
    indexes = dynamodb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
    if any(index["IndexName"] == WAKE_INDEX for index in indexes):
        return
    dynamodb.update_table(TableName=table, AttributeDefinitions=WAKE_ATTRIBUTES,
                          GlobalSecondaryIndexUpdates=[{"Create": WAKE_INDEX_SPEC}])
    log.info("added the index %s to table %s", WAKE_INDEX, table)


def _ensure_queue(sqs: Any, name: str, settings: AWSSettings) -> None:
    fifo = name.endswith(".fifo")
    base = {"MessageRetentionPeriod": RETENTION, "ReceiveMessageWaitTimeSeconds": "20",
            **({"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {})}
    dlq_url = sqs.create_queue(QueueName=AWSSettings.dead_letter_queue(name),
                               Attributes=base)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn,
                          "maxReceiveCount": str(settings.max_receives + 1)})
    sqs.create_queue(QueueName=name, Attributes={
        **base, "VisibilityTimeout": str(settings.visibility_timeout), "RedrivePolicy": redrive})


def _ensure_bucket(s3: Any, settings: AWSSettings) -> None:
    bucket = settings.payload_bucket
    kwargs: dict[str, Any] = {}
    if settings.region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": settings.region}
    try:
        s3.create_bucket(Bucket=bucket, **kwargs)
    except (s3.exceptions.BucketAlreadyOwnedByYou, s3.exceptions.BucketAlreadyExists):
        pass

