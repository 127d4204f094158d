"""Running the AWS engine for tests: an emulator endpoint, namespaces, real processes.

The tests talk to a real server over HTTP on loopback: the one named by
``FLOWY_TEST_ENDPOINT`` (``.ci/run`` starts a moto server and sets it; point
it at ministack, or at ``https://...`` real AWS with credentials in the
environment), or else a moto server started in this process.  Every stack
gets its own namespace, so tests never see each other's runs.  Deciders and
workers run as separate OS processes (``python -m flowy decider|worker``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from flowy import FlowyClient
from flowy.backends.aws import connect
from flowy.backends.aws.emulator import EMULATOR_CREDENTIALS, emulator_environment
from flowy.backends.aws.settings import AWSSettings
from flowy.backends.aws.sqs import REASON_ATTRIBUTE

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = "tests.scenarios:AWS_WORKFLOWS"


def new_namespace() -> str:
    return "t" + uuid.uuid4().hex[:12]


class Stack:
    """A namespace with its resources, and decider and worker processes on it."""

    def __init__(self, endpoint: str, log_dir: Path, *, definitions: str = DEFINITIONS,
                 task_lists: tuple[str, ...] = ("default", "manual"), visibility_timeout: int = 60,
                 max_receives: int = 5) -> None:
        self.namespace = new_namespace()
        self.definitions = definitions
        self.log_dir = log_dir
        self.env = {**os.environ, **emulator_environment(endpoint),
                    "FLOWY_NAMESPACE": self.namespace, "PYTHONPATH": str(ROOT),
                    "FLOWY_VISIBILITY_TIMEOUT": str(visibility_timeout),
                    "FLOWY_MAX_RECEIVES": str(max_receives)}
        if endpoint.startswith("https://"):  # real AWS: keep the real credentials
            self.env.pop("AWS_ENDPOINT_URL")
        self.settings = AWSSettings(namespace=self.namespace,
                                    endpoint_url=self.env.get("AWS_ENDPOINT_URL"),
                                    visibility_timeout=visibility_timeout,
                                    max_receives=max_receives)
        for name, value in EMULATOR_CREDENTIALS.items():  # for this process's clients
            os.environ.setdefault(name, value)
        self.backend = connect(self.settings)
        self.backend.ensure_resources(task_lists)
        self.client = FlowyClient(self.backend)
        self.processes: list[subprocess.Popen[bytes]] = []

    def _spawn(self, role: str, args: list[str], env: dict[str, str] | None,
               definitions: str | None = None) -> Any:
        log = self.log_dir / f"{self.namespace}-{role}-{len(self.processes)}.log"
        process = subprocess.Popen(
            [sys.executable, "-m", "flowy", role, definitions or self.definitions, "--namespace",
             self.namespace, "--poll-wait", "0", *args],
            env={**self.env, **(env or {})}, cwd=ROOT, stdout=log.open("wb"),
            stderr=subprocess.STDOUT)
        process.log_path = log  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def decider(self, *args: str, env: dict[str, str] | None = None) -> Any:
        return self._spawn("decider", list(args), env)

    def worker(self, *args: str, env: dict[str, str] | None = None,
               definitions: str | None = None) -> Any:
        return self._spawn("worker", list(args), env, definitions)

    def flowy(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        """Run the ``flowy`` command against this stack's namespace."""
        return subprocess.run([sys.executable, "-m", "flowy", *args], env=self.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def dead_letters(self, queue: str) -> list[tuple[str, str]]:
        """``(body, reason)`` of the messages waiting in the dead-letter queue of
        logical queue ``queue``; they stay there (received with no lease)."""
        sqs = self.backend.sqs
        name = self.settings.dead_letter_queue(self.settings.queue_name(queue))
        received = sqs.receive_message(
            QueueUrl=sqs.get_queue_url(QueueName=name)["QueueUrl"], MaxNumberOfMessages=10,
            VisibilityTimeout=0, MessageAttributeNames=["All"]).get("Messages", [])
        return [(m["Body"], m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"])
                for m in received]

    def logs(self) -> str:
        return "\n".join(f"--- {p.log_path.name}\n{p.log_path.read_text()[-3000:]}"  # type: ignore
                         for p in self.processes)

    def stop(self, timeout: float = 40) -> dict[int, int | None]:
        """SIGTERM every process still running; their exit codes by pid."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes = {}
        for process in self.processes:
            try:
                codes[process.pid] = process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[process.pid] = None
        return codes


def stack_backend(endpoint: str, **settings: Any) -> Any:
    """A connected backend on a fresh namespace of ``endpoint``, with its resources."""
    for name, value in EMULATOR_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    backend = connect(AWSSettings(namespace=new_namespace(),
                                  endpoint_url=None if endpoint.startswith("https://")
                                  else endpoint, **settings))
    backend.ensure_resources(["default", "manual"])
    return backend


def wait_for(predicate: Any, timeout: float, message: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
