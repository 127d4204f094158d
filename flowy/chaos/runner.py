"""A chaos run: runs of every shape on real processes, which a seeded killer
SIGKILLs for a while; then the drain, and the checks of :mod:`.checks`.

The runs start spread evenly over the killing, so that work is in flight
whenever a process dies.  Once the killing stops, the runner waits for every
run to close (the drain) and times it from the last kill.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..backends.aws import connect
from ..backends.aws.emulator import EMULATOR_CREDENTIALS, LocalAWS, emulator_environment
from ..backends.aws.settings import AWSSettings
from ..client import FlowyClient
from ..core.errors import TaskError
from ..core.events import Event, TaskScheduled
from ..core.protocol import child_run_id
from ..core.runs import COMPLETED, OPEN
from ..declaration import load_registry
from . import checks
from .fleet import DEFINITIONS, Fleet
from .workflows import LOG_VARIABLE, SHAPES

DRAIN_POLL = 0.5  # seconds between looks at the open runs while draining


@dataclass(frozen=True)
class ChaosOptions:
    runs: int = 200
    deciders: int = 2
    workers: int = 3
    kill_every: tuple[float, float] = (0.5, 1.5)
    duration: float = 90.0
    visibility_timeout: int = 10
    seed: int = 0
    endpoint_url: str | None = None
    drain_timeout: float = 600.0
    poll_wait: int = 0


@dataclass(frozen=True)
class Started:
    run_id: str
    shape: str
    expected: Any


@contextmanager
def _endpoint(url: str | None) -> Iterator[str]:
    """``url``, or an embedded moto server for the run's length."""
    if url is not None:
        yield url
        return
    with LocalAWS() as server:
        yield server.endpoint_url


def run_chaos(options: ChaosOptions) -> dict[str, Any]:
    """Run the suite with ``options``; its summary (see :func:`checks.summarize`).

    The processes' logs and the execution log stay in the summary's ``logs``
    folder when a check failed (or the run broke off with an error), for the
    post-mortem; after a clean run or Ctrl-C there is nothing to look into.
    """
    work = Path(tempfile.mkdtemp(prefix="flowy-chaos-"))
    try:
        summary = _run(options, work)
    except KeyboardInterrupt:
        shutil.rmtree(work)
        raise
    if summary["ok"]:
        shutil.rmtree(work)
    else:
        summary["logs"] = str(work)
    return summary


def _run(options: ChaosOptions, work: Path) -> dict[str, Any]:
    began = time.monotonic()
    log = work / "executions.jsonl"
    with _endpoint(options.endpoint_url) as endpoint:
        namespace = "chaos" + uuid.uuid4().hex[:8]
        for name, value in EMULATOR_CREDENTIALS.items():  # for this process's clients
            os.environ.setdefault(name, value)
        settings = AWSSettings(namespace=namespace, endpoint_url=endpoint,
                               visibility_timeout=options.visibility_timeout)
        backend = connect(settings)
        backend.ensure_resources(load_registry(DEFINITIONS).task_lists())
        client = FlowyClient(backend)
        env = {**os.environ, **emulator_environment(endpoint), "FLOWY_NAMESPACE": namespace,
               "FLOWY_VISIBILITY_TIMEOUT": str(options.visibility_timeout),
               LOG_VARIABLE: str(log)}
        fleet = Fleet(env, work, deciders=options.deciders, workers=options.workers,
                      poll_wait=options.poll_wait)
        try:
            fleet.start()
            started, last_kill = _start_and_kill(client, fleet, options)
            drained = _drain(client, fleet, started, options.drain_timeout)
            drain_seconds = time.monotonic() - last_kill
            ends = [_end(client, run) for run in started]
        finally:
            fleet.stop()
    summary = checks.summarize(ends, _read_log(log))
    summary.update({
        "engine_log": _engine_log_counts(work),
        "drained": drained, "drain_seconds": round(drain_seconds, 2),
        "kills": dict(fleet.kills), "exits": dict(fleet.exits),
        "elapsed_seconds": round(time.monotonic() - began, 2),
        "options": {**asdict(options), "endpoint_url": options.endpoint_url or "embedded moto"},
        "ok": not checks.violated(summary)})
    return summary


def _start_and_kill(client: FlowyClient, fleet: Fleet, options: ChaosOptions
                    ) -> tuple[list[Started], float]:
    """Start the runs evenly over the killing, and kill every uniform(A, B)
    seconds until it ends; the runs and the time of the last kill."""
    rng = random.Random(options.seed)
    began = time.monotonic()
    started: list[Started] = []
    next_kill = began + rng.uniform(*options.kill_every)
    last_kill = began
    while True:
        now = time.monotonic()
        due = options.runs if now - began >= options.duration else int(
            options.runs * (now - began) / options.duration) + 1
        started += [_start(client, index) for index in range(len(started), due)]
        if now >= next_kill and now - began < options.duration:
            fleet.kill_one(rng)
            last_kill = time.monotonic()
            next_kill = last_kill + rng.uniform(*options.kill_every)
        fleet.replace_exited()
        if now - began >= options.duration and len(started) == options.runs:
            return started, last_kill
        next_start = began + len(started) * options.duration / options.runs
        wake = min(next_kill, next_start, began + options.duration)
        time.sleep(max(0.0, wake - time.monotonic()))


def _start(client: FlowyClient, index: int) -> Started:
    shape = SHAPES[index % len(SHAPES)]
    handle = client.start(shape.workflow, index)
    return Started(handle.run_id, shape.name, shape.expected(index))


def _drain(client: FlowyClient, fleet: Fleet, started: list[Started], timeout: float) -> bool:
    """Wait until every run has closed, or ``timeout`` seconds; whether all did.

    One run is looked at per poll while it is open (the oldest not known to
    be closed): the emulator is the bottleneck, and a look at every open run
    each time would compete with the processes for it.
    """
    deadline = time.monotonic() + timeout
    pending = deque(run.run_id for run in started)
    while pending:
        if client.last_run(pending[0]).status != OPEN:
            pending.popleft()
            continue
        if time.monotonic() >= deadline:
            return False
        fleet.replace_exited()
        time.sleep(DRAIN_POLL)
    return True


def _end(client: FlowyClient, run: Started) -> checks.RunEnd:
    record = client.last_run(run.run_id)
    result: Any = None
    if record.status == COMPLETED:
        try:
            result = client.wait(run.run_id, timeout=0)
        except TaskError as exc:  # a result that can't be decoded is a wrong one
            result = f"{exc.type_name}: {exc}"
    elif record.error is not None:
        result = f"{record.error.type_name}: {record.error.message}"
    histories: dict[str, list[Event]] = {}
    _collect(client, record.run_id, histories)
    return checks.RunEnd(run.run_id, run.shape, record.status, result, run.expected,
                         histories)


def _collect(client: FlowyClient, run_id: str, histories: dict[str, list[Event]]) -> None:
    """The histories of ``run_id`` and of the sub-workflows it started."""
    history = client.history(run_id)
    histories[run_id] = history
    for event in history:
        if isinstance(event, TaskScheduled) and event.kind == "workflow":
            child = child_run_id(run_id, event.key)
            if child not in histories and client.store.get_run(child) is not None:
                _collect(client, child, histories)


# What the processes' logs say that is worth counting (lines of each), by
# the start of the engine's own messages.
ENGINE_LOG_LINES = {
    "failed_lease_extensions": "could not extend the leases",
    "lost_commits": "another decider committed first",
    "failed_acknowledgements": "could not acknowledge",
    "runs_woken_by_the_reconciler": "has waited for a decision since",
    "dead_lettered": "moved to the dead-letter queue",
}


def _engine_log_counts(work: Path) -> dict[str, int]:
    counts = dict.fromkeys(ENGINE_LOG_LINES, 0)
    for path in work.glob("*-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            for name, text in ENGINE_LOG_LINES.items():
                counts[name] += text in line
    return counts


def _read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
