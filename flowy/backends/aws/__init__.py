"""The AWS backend: runs in DynamoDB, queues in SQS, large payloads in S3.

Needs the ``aws`` extra (``pip install 'flowy[aws]'``).  :func:`connect`
makes the clients when asked, nothing runs at import time.  Clients retry
throttling and transient errors with botocore's "standard" mode; counting
requests by API (:mod:`flowy.backends.aws.metrics`) is opt-in, so that no
hook runs on the request path of a production process.
"""

from __future__ import annotations

try:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import EndpointConnectionError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(f"the AWS backend needs the aws extra ({exc}): "
                      "pip install 'flowy[aws]'") from None

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from ...core.errors import ServiceError
from ..base import Backend
from ..clocks import RealClock
from . import metrics
from .payloads import Payloads
from .resources import ensure_resources
from .settings import AWSSettings
from .sqs import SQSQueues
from .store import DynamoStore
from .transient import is_transient

__all__ = ["AWSBackend", "AWSSettings", "client_config", "connect"]

# A run id no run has (run ids are UUIDs): reading it only tells whether the table exists.
RESOURCE_PROBE = "flowy-resource-check"


def client_config(pool: int = 50) -> Config:
    """boto3 client settings: standard retries, a read timeout above the
    20-second long poll, and ``pool`` connections, enough for a worker's threads."""
    return Config(retries={"mode": "standard", "max_attempts": 8},
                  max_pool_connections=pool, connect_timeout=5, read_timeout=70)


@dataclass(kw_only=True)
class AWSBackend(Backend):
    """A namespace's backend, with the clients it was made of (for ``flowy
    setup``, purges and tests)."""

    settings: AWSSettings
    dynamodb: Any
    sqs: Any
    s3: Any

    def ensure_resources(self, task_lists: Iterable[str]) -> None:
        """Create the namespace's table, queues (those of ``task_lists`` too)
        and bucket, where they are missing."""
        ensure_resources(self.settings, task_lists, dynamodb=self.dynamodb, sqs=self.sqs,
                         s3=self.s3)

    def check_resources(self, queues: Iterable[str]) -> None:
        """Raise :class:`~flowy.core.errors.ServiceError`, saying how to create
        them, if the table or one of ``queues`` (logical names) is missing.

        Only with requests that the processes' IAM policies allow (a read of
        an item, queue URL lookups), so it checks nothing else.
        """
        try:
            self.store.get_run(RESOURCE_PROBE)
            for queue in queues:
                # SQSQueues' own lookup, which names a missing queue and how to
                # create it whenever the engine sends or receives: one rule.
                cast(SQSQueues, self.queues)._url(self.settings.queue_name(queue))
        except self.dynamodb.exceptions.ResourceNotFoundException:
            raise ServiceError(f"table {self.settings.table} does not exist: "
                               f"{self.settings.how_to_create}") from None
        except EndpointConnectionError as exc:
            raise ServiceError(f"{exc}: is the endpoint right, and is it up?") from None


def connect(settings: AWSSettings | None = None, *, count_requests: bool = False
            ) -> AWSBackend:
    """The backend of ``settings``' namespace (:meth:`AWSSettings.from_env` by
    default).  ``count_requests`` (or ``FLOWY_REQUEST_COUNTS`` in the
    environment) counts every request by API, for benchmarks."""
    settings = settings or AWSSettings.from_env()
    counting = count_requests or bool(os.environ.get("FLOWY_REQUEST_COUNTS"))
    session = boto3.session.Session()
    config = client_config(pool=50)  # shared by all of a worker's threads
    dynamodb, sqs, s3 = (session.client(name, config=config, **settings.client_kwargs())
                         for name in ("dynamodb", "sqs", "s3"))
    if counting:
        for client in (dynamodb, sqs, s3):
            metrics.count_requests(client)
    payloads = Payloads(s3, settings.payload_bucket)

    def close() -> None:
        for client in (dynamodb, sqs, s3):
            client.close()

    return AWSBackend(
        name=f"namespace {settings.namespace}",
        store=DynamoStore(dynamodb, settings.table, payloads),
        queues=SQSQueues(sqs, settings, payloads), clock=RealClock(),
        lease=float(settings.visibility_timeout),
        remote=True, close=close, transient=is_transient,
        settings=settings, dynamodb=dynamodb, sqs=sqs, s3=s3)
