"""``flowy dev`` and ``flowy demo``: the engine on an embedded local AWS.

Both start a moto server on loopback, create the namespace's resources, and
run a decider and an activity worker as separate OS processes, exactly as
they would run against AWS.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..backends.aws import connect
from ..backends.aws.emulator import LocalAWS, emulator_environment
from ..backends.aws.settings import AWSSettings
from ..client import FlowyClient
from ..core.events import TaskCompleted, TaskFailed, TaskScheduled
from ..core.protocol import child_run_id
from ..core.runs import COMPLETED, FAILED, RunRecord
from ..declaration import load_registry

DEMO_DEFINITIONS = "examples.aws_defs"
DEMO_INPUTS: dict[str, tuple[Any, ...]] = {"example": (2, 10), "two_halves": (40,)}


@contextmanager
def local_stack(definitions: str, namespace: str, port: int = 0, *, poll_wait: int = 0,
                quiet: bool = False) -> Iterator[tuple[FlowyClient, Any]]:
    """A moto server, the namespace's resources, and decider and worker processes."""
    server = LocalAWS(port)
    endpoint = server.start()
    env = {**os.environ, **emulator_environment(endpoint), "FLOWY_NAMESPACE": namespace}
    os.environ.update(emulator_environment(endpoint))
    settings = AWSSettings(namespace=namespace, endpoint_url=endpoint)
    registry = load_registry(definitions)
    backend = connect(settings)
    backend.ensure_resources(registry.task_lists())
    client = FlowyClient(backend, registry=registry)
    output = subprocess.DEVNULL if quiet else None
    common = ["--namespace", namespace, "--poll-wait", str(poll_wait)]
    processes = [subprocess.Popen([sys.executable, "-m", "flowy", role, definitions, *common],
                                  env=env, stdout=output, stderr=output)
                 for role in ("decider", "worker")]
    try:
        yield client, registry
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=poll_wait + 35)
            except subprocess.TimeoutExpired:
                process.kill()
        server.stop()


def dev(definitions: str, port: int, namespace: str) -> int:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with local_stack(definitions, namespace, port):
        print(f"flowy dev: local AWS (moto) on http://127.0.0.1:{port}, namespace {namespace}, "
              "a decider and a worker. In another shell:\n"
              f"  export AWS_ENDPOINT_URL=http://127.0.0.1:{port} AWS_ACCESS_KEY_ID=testing "
              f"AWS_SECRET_ACCESS_KEY=testing FLOWY_NAMESPACE={namespace}\n"
              f"  flowy start {definitions} WORKFLOW ARGS... --wait\n"
              "Ctrl-C stops everything.", file=sys.stderr, flush=True)
        stop.wait()
    return 0


def demo(output: str, workflow: str) -> int:
    logging.getLogger("flowy").setLevel(logging.WARNING)
    print(f"starting a local AWS (moto), a decider and a worker for {DEMO_DEFINITIONS} ...")
    with local_stack(DEMO_DEFINITIONS, "demo", quiet=True) as (client, registry):
        inputs = DEMO_INPUTS[workflow]
        handle = client.start(registry.workflow(f"{workflow}@1"), *inputs)
        print(f"started {workflow}{inputs}: run {handle.run_id}")
        shown = ""
        while True:
            record = client.last_run(handle.run_id)  # before the histories it summarizes
            line = _progress(client, handle.run_id)
            if line != shown:
                print(f"  {line}", flush=True)
                shown = line
            if record.status in (COMPLETED, FAILED):
                break
            time.sleep(1.0)
        try:
            print(f"result: {handle.result()}")
        except Exception as exc:  # noqa: BLE001 - show the failure, still write the trace
            print(f"failed: {exc}")
        written = client.trace(handle.run_id).render(output)
        print(f"trace: {written}" if written else "trace: not rendered (install graphviz)")
        return 0 if record.status == COMPLETED else 1


def _progress(client: FlowyClient, run_id: str) -> str:
    """Tasks scheduled and ended in the run, its restarts and its sub-workflows."""
    counts = {"runs": 0, "scheduled": 0, "ended": 0}
    _count_tasks(client, run_id, counts)
    last = client.last_run(run_id)
    return (f"{last.status}: {counts['ended']}/{counts['scheduled']} tasks done "
            f"in {counts['runs']} run(s), counting sub-workflows and restarts")


def _count_tasks(client: FlowyClient, run_id: str, counts: dict[str, int]) -> None:
    record: RunRecord | None = client.store.get_run(run_id)
    while record is not None:
        counts["runs"] += 1
        for event in client.history(record.run_id):
            if isinstance(event, TaskScheduled):
                counts["scheduled"] += 1
                if event.kind == "workflow":
                    _count_tasks(client, child_run_id(record.run_id, event.key), counts)
            counts["ended"] += isinstance(event, (TaskCompleted, TaskFailed))
        record = client.store.get_run(record.next_run) if record.next_run else None
