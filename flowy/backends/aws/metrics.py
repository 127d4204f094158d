"""Counting AWS requests by API, with botocore event hooks.

Counting is opt-in: :func:`flowy.backends.aws.connect` registers
:func:`count_requests` on its clients only when asked (``count_requests=True``)
or when ``FLOWY_REQUEST_COUNTS`` names a directory, in which case each process
writes its counts there as ``<pid>.json`` when it exits, so a benchmark can
add up the requests of its decider and worker processes.  Without it, no hook
runs on the request path.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

_counts: Counter[str] = Counter()
_lock = threading.Lock()
_dump_registered = False


# DynamoDB bills on-demand requests by item: a batch of 25 writes is 25 write
# units.  Items here are small (under 1 KB written, 4 KB read), so one unit each.
_DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
_DYNAMODB_READS = {"GetItem", "Query", "Scan", "BatchGetItem"}


UNITS = "units."  # keys of derived figures, not requests


def _units(service: str, operation: str, params: dict[str, Any]) -> tuple[str, int] | None:
    if service == "sqs":
        fifo = str(params.get("QueueUrl", "")).endswith(".fifo")
        return (UNITS + "sqs_fifo_requests", 1) if fifo else None
    if service != "dynamodb":
        return None
    if operation == "BatchWriteItem":
        return UNITS + "dynamodb_write", sum(map(len, params["RequestItems"].values()))
    if operation == "BatchGetItem":
        return UNITS + "dynamodb_read", sum(len(t["Keys"]) for t in params["RequestItems"].values())
    if operation in _DYNAMODB_WRITES:
        return UNITS + "dynamodb_write", 1
    if operation in _DYNAMODB_READS:
        return UNITS + "dynamodb_read", 1
    return None


def _count(params: dict[str, Any], model: Any, **_kwargs: Any) -> None:
    service = model.service_model.service_name
    units = _units(service, model.name, params)
    with _lock:
        _counts[f"{service}.{model.name}"] += 1
        if units is not None:
            _counts[units[0]] += units[1]


def count_requests(client: Any) -> None:
    """Count every API call the boto3 ``client`` makes, by API."""
    global _dump_registered
    client.meta.events.register("before-parameter-build", _count)
    directory = os.environ.get("FLOWY_REQUEST_COUNTS")
    if directory and not _dump_registered:
        _dump_registered = True
        atexit.register(dump_counts, Path(directory))


def request_counts() -> dict[str, int]:
    with _lock:
        return dict(_counts)


def dump_counts(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{os.getpid()}.json").write_text(json.dumps(request_counts()))


def load_counts(directory: Path) -> dict[str, int]:
    """The sum of the counts that processes dumped in ``directory``."""
    total: Counter[str] = Counter()
    for path in directory.glob("*.json"):
        total.update(json.loads(path.read_text()))
    return dict(total)
