"""``flowy dev`` and ``flowy demo``: the engine on an embedded local AWS.

Both start a moto server on loopback, create the namespace's resources, and
run a decider and an activity worker as separate OS processes, exactly as
they would run against AWS.  The children go when the stack goes: on
SIGINT, SIGTERM, a normal exit or an exception the stack stops them, and a
child whose parent was killed outright stops by itself (``FLOWY_PARENT_PID``,
see :mod:`flowy.worker.processes`).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..backends.aws import connect
from ..backends.aws.emulator import LocalAWS, emulator_environment
from ..backends.aws.settings import AWSSettings
from ..client import FlowyClient
from ..core.events import TaskCompleted, TaskFailed, TaskScheduled
from ..core.protocol import child_run_id
from ..core.runs import COMPLETED, FAILED, RunRecord
from ..declaration import Registry, load_registry
from ..worker.processes import PARENT_VARIABLE, stop_on_signals

DEMO_DEFINITIONS = "examples.aws_defs"
DEMO_INPUTS: dict[str, tuple[Any, ...]] = {"example": (2, 10), "two_halves": (40,)}
ROLES = ("decider", "worker")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass(frozen=True)
class LocalStack:
    """A running local stack: a client of its namespace, and its child processes."""

    client: FlowyClient
    registry: Registry
    settings: AWSSettings
    processes: dict[str, subprocess.Popen[bytes]]
    stop: threading.Event  # set by SIGINT and SIGTERM

    def must_stop(self, seconds: float) -> str | None:
        """Wait up to ``seconds``; why the stack must stop, if it must: a
        signal came, or a child ended (the stack can't serve without it)."""
        if self.stop.wait(seconds):
            return "stopped by a signal"
        for role, process in self.processes.items():
            code = process.poll()
            if code is not None:
                return f"its {role} exited with status {code}"
        return None


@contextmanager
def local_stack(definitions: str, namespace: str, port: int = 0, *, poll_wait: int = 0,
                quiet: bool = False) -> Iterator[LocalStack]:
    """A moto server, the namespace's resources, and decider and worker processes,
    all stopped when the block ends, however it ends."""
    # Handlers first: a signal from here on stops the children, once started.
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    stop = stop_on_signals("the local stack", "stopping its decider and worker")
    try:
        with LocalAWS(port) as server:
            # Settings before the emulator's variables enter the environment:
            # its default region must not hide the user's (a profile's, say).
            settings = AWSSettings(namespace=namespace, endpoint_url=server.endpoint_url)
            os.environ.update(emulator_environment(server.endpoint_url))
            registry = load_registry(definitions)
            backend = connect(settings)
            backend.ensure_resources(registry.task_lists())
            with _children(definitions, settings, poll_wait, quiet) as processes:
                yield LocalStack(FlowyClient(backend, registry=registry), registry, settings,
                                 processes, stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _children(definitions: str, settings: AWSSettings, poll_wait: int, quiet: bool
              ) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """A decider and a worker on ``settings``, given the stack's endpoint and
    region explicitly; stopped together (SIGTERM, then SIGKILL) at the end."""
    output = subprocess.DEVNULL if quiet else None
    # Popen from this (the main) thread: Linux's parent-death signal follows
    # the thread that started a child, and this one lasts as long as the stack.
    env = {**os.environ, PARENT_VARIABLE: str(os.getpid())}
    where = ["--namespace", settings.namespace, "--region", settings.region,
             "--endpoint-url", str(settings.endpoint_url), "--poll-wait", str(poll_wait)]
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for role in ROLES:
            processes[role] = subprocess.Popen(
                [sys.executable, "-m", "flowy", role, definitions, *where], env=env,
                stdout=output, stderr=output)
        yield processes
    finally:
        for process in processes.values():
            process.send_signal(signal.SIGTERM)
        for process in processes.values():
            try:
                process.wait(timeout=poll_wait + 35)  # the worker's grace, and a poll
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def dev(definitions: str, port: int, namespace: str) -> int:
    with local_stack(definitions, namespace, port) as stack:
        settings = stack.settings
        print(f"flowy dev: local AWS (moto) on {settings.endpoint_url}, region "
              f"{settings.region}, namespace {namespace}, a decider and a worker. "
              "In another shell:\n"
              f"  export AWS_ENDPOINT_URL={settings.endpoint_url} AWS_REGION={settings.region} "
              f"AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
              f"FLOWY_NAMESPACE={namespace}\n"
              f"  flowy start {definitions} WORKFLOW ARGS... --wait\n"
              "Ctrl-C stops everything.", file=sys.stderr, flush=True)
        reason = None
        while reason is None:
            reason = stack.must_stop(1.0)
        print(f"flowy dev: {reason}; stopping", file=sys.stderr, flush=True)
        return 0 if stack.stop.is_set() else 1


def demo(output: str, workflow: str) -> int:
    logging.getLogger("flowy").setLevel(logging.WARNING)
    print(f"starting a local AWS (moto), a decider and a worker for {DEMO_DEFINITIONS} ...")
    with local_stack(DEMO_DEFINITIONS, "demo", quiet=True) as stack:
        client, registry = stack.client, stack.registry
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
            reason = stack.must_stop(1.0)
            if reason is not None:
                print(f"demo {reason}: stopping before run {handle.run_id} ended")
                return 1
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
