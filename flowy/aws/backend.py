"""Connecting to a namespace: boto3 clients, the store, the queues, payloads.

Nothing here runs at import time; :meth:`Backend.connect` makes the clients
when asked.  Clients retry throttling and transient errors with botocore's
"standard" mode, and every request can be counted by API for benchmarks
(:mod:`flowy.aws.metrics`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.config import Config

from .metrics import count_requests
from .payloads import Payloads
from .queues import Queues
from .resources import ensure_resources
from .settings import AWSSettings
from .store import HistoryStore


def client_config(pool: int = 50) -> Config:
    return Config(retries={"mode": "standard", "max_attempts": 8},
                  max_pool_connections=pool, connect_timeout=5, read_timeout=70)


@dataclass
class Backend:
    """Everything the synchronous side of the engine needs to reach a namespace."""

    settings: AWSSettings
    dynamodb: Any
    sqs: Any
    s3: Any
    store: HistoryStore
    queues: Queues
    payloads: Payloads

    @classmethod
    def connect(cls, settings: AWSSettings | None = None) -> Backend:
        settings = settings or AWSSettings.from_env()
        session = boto3.session.Session()
        config = client_config()
        clients = {name: session.client(name, config=config, **settings.client_kwargs())
                   for name in ("dynamodb", "sqs", "s3")}
        for client in clients.values():
            count_requests(client)
        payloads = Payloads(clients["s3"], settings.payload_bucket)
        return cls(settings, clients["dynamodb"], clients["sqs"], clients["s3"],
                   HistoryStore(clients["dynamodb"], settings.table, payloads),
                   Queues(clients["sqs"], settings), payloads)

    def ensure_resources(self, task_lists: Iterable[str]) -> None:
        ensure_resources(self.settings, task_lists, dynamodb=self.dynamodb, sqs=self.sqs,
                         s3=self.s3)
