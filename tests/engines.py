"""The engine under test, on either backend, for the behaviour suite.

``memory``: the decider and worker in threads of this process, over the
in-memory backend (what ``LocalWorkflow`` runs on).  ``aws``: a decider and
a worker as separate OS processes, over a fresh namespace on the moto
server (or ``FLOWY_TEST_ENDPOINT``).  Both serve the very same declarations,
``tests.scenarios:AWS_WORKFLOWS``, so one test body holds both backends to
the same expectations.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowy import FlowyClient, Registry, RunHandle
from flowy.engines.local import InProcessEngine
from tests.aws_support import Stack
from tests.scenarios import AWS_WORKFLOWS, aws_workflow

BACKENDS = ["memory", "aws"]


class EngineUnderTest:
    def __init__(self, kind: str, endpoint: str | None, log_dir: Path) -> None:
        self.kind = kind
        self._stack: Stack | None = None
        self._local: InProcessEngine | None = None
        if kind == "memory":
            self._local = InProcessEngine(Registry(AWS_WORKFLOWS, "tests.scenarios"),
                                          executor=ThreadPoolExecutor, activity_workers=12,
                                          workflow_workers=4)
            self.client: FlowyClient = self._local.client
        else:
            assert endpoint is not None
            self._stack = Stack(endpoint, log_dir)
            self._stack.decider("--threads", "4")
            self._stack.worker("--concurrency", "12")
            self.client = self._stack.client

    @property
    def backend(self) -> Any:
        return self.client.backend

    def start(self, scenario: str, *args: Any, **kwargs: Any) -> RunHandle:
        return self.client.start(aws_workflow(scenario), *args, **kwargs)

    def logs(self) -> str:
        return self._stack.logs() if self._stack is not None else "(in this process)"

    def stop(self) -> None:
        if self._local is not None:
            self._local.close()
        if self._stack is not None:
            codes = self._stack.stop()
            assert all(code == 0 for code in codes.values()), (codes, self._stack.logs())
