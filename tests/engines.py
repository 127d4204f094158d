"""The engine under test, on either backend, for the behaviour suite.

``memory``: the decider and worker in threads of this process, over the
in-memory backend (what ``LocalWorkflow`` runs on).  ``aws``: a decider and
a worker as separate OS processes, over a fresh namespace on the moto
server (or ``FLOWY_TEST_ENDPOINT``).  Both serve the very same declarations,
``tests.scenarios:AWS_WORKFLOWS`` (or other ``definitions``), so one test
body holds both backends to the same expectations.

With ``serve=False`` only the backend and a client are made, and a test
starts the deciders and workers it needs (:meth:`EngineUnderTest.decider`,
:meth:`EngineUnderTest.worker`): two deciders, a worker that lacks a
workflow, none on a task list the test plays the worker of.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from flowy import FlowyClient, Registry, RunHandle, load_registry
from flowy.backends.memory import memory_backend
from flowy.engines.local import POLL_WAIT, InProcessEngine
from flowy.worker.decider import Decider
from flowy.worker.worker import ActivityWorker
from tests.aws_support import DEFINITIONS, Stack
from tests.scenarios import AWS_WORKFLOWS, aws_workflow

BACKENDS = ["memory", "aws"]
REGISTRY = Registry(AWS_WORKFLOWS, "tests.scenarios")


def _registry(definitions: str) -> Registry:
    return REGISTRY if definitions == DEFINITIONS else load_registry(definitions)


def keys(history: list[Any], kind: type[Any]) -> Counter[str]:
    """How many events of type ``kind`` (one with a key) ``history`` has of each key."""
    return Counter(e.key for e in history if isinstance(e, kind))


class _Recorder(logging.Handler):
    """Flowy's log records in this process: the memory engine's logs."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(threadName)s %(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class EngineUnderTest:
    def __init__(self, kind: str, endpoint: str | None, log_dir: Path, *,
                 serve: bool = True, definitions: str = DEFINITIONS) -> None:
        self.kind = kind
        self.registry = _registry(definitions)
        self._stack: Stack | None = None
        self._local: InProcessEngine | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._died: list[BaseException] = []
        if kind == "memory":
            self._log = _Recorder()
            logging.getLogger("flowy").addHandler(self._log)
            if serve:
                self._local = InProcessEngine(self.registry, executor=ThreadPoolExecutor,
                                              activity_workers=12)
                self.client: FlowyClient = self._local.client
            else:
                self.client = FlowyClient(memory_backend(), registry=self.registry)
        else:
            assert endpoint is not None
            self._stack = Stack(endpoint, log_dir, definitions=definitions)
            self.client = self._stack.client
            if serve:
                self.decider(threads=4)
                self.worker(concurrency=12)

    @property
    def backend(self) -> Any:
        return self.client.backend

    def start(self, scenario: str, *args: Any, **kwargs: Any) -> RunHandle:
        return self.client.start(aws_workflow(scenario), *args, **kwargs)

    # -- more deciders and workers ------------------------------------------------

    def decider(self, *, threads: int = 2, cache_size: int = 1000) -> None:
        """Start a decider for the definitions (``cache_size=0``: replay for every decision)."""
        if self._stack is not None:
            self._stack.decider("--threads", str(threads), "--cache-size", str(cache_size))
            return
        service = Decider(self.registry, self.backend, threads=threads,
                                 cache_size=cache_size, poll_wait=POLL_WAIT)
        self._serve(service.serve, "decider")

    def worker(self, *, task_lists: tuple[str, ...] = ("default",),
               definitions: str | None = None, concurrency: int = 8) -> None:
        """Start a worker for ``definitions`` (by default the engine's) on
        ``task_lists``: the scenarios' activities are on "default", and "manual"
        waits for a test to play its worker."""
        if self._stack is not None:
            options = [option for task_list in task_lists for option in ("--task-list", task_list)]
            self._stack.worker(*options, "--concurrency", str(concurrency),
                               definitions=definitions)
            return
        registry = self.registry if definitions is None else _registry(definitions)
        worker = ActivityWorker(registry, self.backend, task_lists=list(task_lists),
                                concurrency=concurrency, poll_wait=POLL_WAIT, grace=math.inf)
        self._serve(worker.serve, "worker")

    def _serve(self, serve: Callable[[threading.Event], None], role: str) -> None:
        def run() -> None:
            try:
                serve(self._stop)
            except BaseException as exc:  # noqa: BLE001 - reported by stop()
                self._died.append(exc)

        thread = threading.Thread(target=run, name=f"test-{role}-{len(self._threads)}",
                                  daemon=True)
        thread.start()
        self._threads.append(thread)

    # -- looking in -------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[tuple[str, str]]:
        """``(body, reason)`` of the messages waiting in the dead-letter queue of ``queue``."""
        if self._stack is not None:
            return self._stack.dead_letters(queue)
        return self.backend.queues.dead_letters(queue)  # type: ignore[no-any-return]

    def logs(self) -> str:
        if self._stack is not None:
            return self._stack.logs()
        return "\n".join(self._log.lines)

    def stop(self) -> None:
        self._stop.set()
        if self._local is not None:
            self._local.close()  # closes the backend, which ends every loop's wait
        elif self.kind == "memory":
            self.backend.close()
        for thread in self._threads:
            thread.join()
        if self.kind == "memory":
            logging.getLogger("flowy").removeHandler(self._log)
            assert not self._died, self._died
        if self._stack is not None:
            codes = self._stack.stop()
            assert all(code == 0 for code in codes.values()), (codes, self._stack.logs())
