"""Counting AWS requests by API, with botocore event hooks.

Every client the engine makes is registered with :func:`count_requests`.
When ``FLOWY_REQUEST_COUNTS`` names a directory, each process writes its
counts there as ``<pid>.json`` when it exits, so a benchmark can add up the
requests of its decider and worker processes.
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


def _count(model: Any, **_kwargs: Any) -> None:
    name = f"{model.service_model.service_name}.{model.name}"
    with _lock:
        _counts[name] += 1


def count_requests(client: Any) -> None:
    """Count every API call ``client`` (boto3 or aioboto3) makes."""
    global _dump_registered
    client.meta.events.register("before-call", _count)
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
