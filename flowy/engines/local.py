"""``LocalWorkflow``: a workflow declaration that runs in this process.

It is the distributed engine, not a copy of it: the same decider, timer
keeper and activity worker (:mod:`flowy.worker`) run in threads of this
process, over the in-memory backend (:mod:`flowy.backends.memory`), whose
queues and store keep the promises of SQS and DynamoDB that the protocol
relies on.  So a workflow behaves the same here as on AWS, and the API is
the original Flowy's: ``LocalWorkflow(Cls).conf_activity(...).run(...)``.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..backends.base import Backend
from ..backends.memory import memory_backend
from ..client import FlowyClient, RunHandle
from ..codec import DEFAULT_CODEC
from ..core.codec import Codec
from ..core.errors import ConfigurationError, ErrorInfo, LoopDied
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.runs import FAILED, OPEN
from ..declaration import Registry, Workflow
from ..tracing import Trace
from ..worker.decider import Decider
from ..worker.run_threads import guarded
from ..worker.worker import ActivityWorker

log = logging.getLogger("flowy.local")

# Seconds a loop waits for a message; sends wake it at once, and closing the
# backend ends the wait, so this only bounds an idle loop's wake-ups.
POLL_WAIT = 20.0


class LocalWorkflow(Workflow):
    """A workflow with its dependencies, run on this machine.

    ``factory`` is the workflow class (or any callable taking the dependencies
    as keyword arguments and returning the workflow callable).  Activities run
    on ``executor`` (a class, called with ``max_workers=activity_workers``, or
    an executor instance); with a :class:`~concurrent.futures.ProcessPoolExecutor`
    activities must be module-level functions.  ``workflow_workers`` is the
    original API's number of decision threads; in this process the decider's
    polling thread makes every decision itself, since with the GIL more
    threads would not decide faster, only hand each decision over once more.
    A live run is kept between decisions (``cache_size`` runs);
    ``cache_size=0`` replays the history for every decision, which is slower
    but checks that the workflow is deterministic.
    Sub-workflows run on this workflow's threads and executor.  ``backend``
    is an in-memory backend to run on (``flowy.testing`` passes one with a
    manual clock); by default each LocalWorkflow makes its own.  ``limits``
    bound each run's history and decisions (see :class:`flowy.Limits`).
    """

    def __init__(self, factory: Callable[..., Any], activity_workers: int = 8,
                 workflow_workers: int = 2,
                 executor: type[Executor] | Executor = ThreadPoolExecutor, *,
                 codec: Codec = DEFAULT_CODEC, cache_size: int = 1000,
                 name: str | None = None, version: str = "1",
                 backend: Backend | None = None, limits: Limits = DEFAULT_LIMITS) -> None:
        if activity_workers < 1 or workflow_workers < 1:
            raise ConfigurationError("activity_workers and workflow_workers must be >= 1")
        super().__init__(factory, name=name, version=version, codec=codec, limits=limits)
        self.activity_workers = activity_workers
        self.workflow_workers = workflow_workers
        self.cache_size = cache_size
        self.last_trace: Trace | None = None
        self._executor_choice = executor
        self._backend = backend
        self._engine: InProcessEngine | None = None
        self._engine_lock = threading.Lock()

    def run(self, *args: Any, _wait: bool = False, _trace: bool = False,
            **kwargs: Any) -> Any:
        """Run the workflow to its end and return its result.

        Raises :class:`flowy.TaskError` (or a subclass) if the workflow fails.
        With ``_wait=True``, also wait for tasks still running after the
        result is known (tasks whose results the workflow never needed).  With
        ``_trace=True``, the execution is kept in :attr:`last_trace`.
        """
        handle = self.start(*args, **kwargs)
        try:
            return handle.result(wait_for_tasks=_wait)
        finally:
            if _trace:
                self.last_trace = handle.trace()

    def start(self, *args: Any, **kwargs: Any) -> RunHandle:
        """Start a run and return at once; many runs can go at the same time."""
        return self._get_engine().start(self, *args, **kwargs)

    def _get_engine(self) -> InProcessEngine:
        with self._engine_lock:
            if self._engine is None:
                self._engine = InProcessEngine(
                    Registry([self], repr(self), rename_clashes=True),
                    executor=self._executor_choice, activity_workers=self.activity_workers,
                    cache_size=self.cache_size,
                    backend=self._backend, name=self.name)
            return self._engine

    def close(self) -> None:
        """Stop this workflow's threads, and the pool it made (not one passed in).

        Runs still going are abandoned; activities already running are waited for.
        """
        with self._engine_lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()

    def __enter__(self) -> LocalWorkflow:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessEngine:
    """A decider and an activity worker for ``registry``, in threads of this
    process, on one backend (a fresh in-memory one by default)."""

    def __init__(self, registry: Registry, *,
                 executor: type[Executor] | Executor = ThreadPoolExecutor,
                 activity_workers: int = 8, cache_size: int = 1000,
                 backend: Backend | None = None, name: str = "flowy") -> None:
        self.registry = registry
        self.backend = backend or memory_backend()
        self.client = FlowyClient(self.backend, registry=self.registry)
        # The worker's own threads run activities, unless they are to run elsewhere:
        # in a pool of processes, or in a pool passed in.
        self._owns_executor = isinstance(executor, type)
        pool: Executor | None = None
        if executor is not ThreadPoolExecutor:
            # Both pool classes take max_workers; Executor itself doesn't say so.
            pool = (executor(max_workers=activity_workers)  # type: ignore[call-arg]
                    if isinstance(executor, type) else executor)
        self._executor = pool
        self._broken: LoopDied | None = None
        self._stop = threading.Event()
        # On a backend in this process the decider decides in its polling thread.
        self._decider = Decider(self.registry, self.backend, cache_size=cache_size,
                                poll_wait=POLL_WAIT, name=name)
        self._threads = [threading.Thread(target=guarded(self._serve_decider,
                                                         lambda e: self._died("decider", e)),
                                          name=f"{name}-decider", daemon=True)]
        if self.registry.task_lists():
            worker = ActivityWorker(self.registry, self.backend, concurrency=activity_workers,
                                    poll_wait=POLL_WAIT, grace=math.inf, executor=pool)
            self._threads.append(threading.Thread(
                target=guarded(lambda: worker.serve(self._stop),
                               lambda e: self._died("worker", e)),
                name=f"{name}-worker", daemon=True))
        for thread in self._threads:
            thread.start()

    def start(self, workflow: Workflow, *args: Any, **kwargs: Any) -> RunHandle:
        if self._broken is not None:
            raise self._broken
        # Sub-workflows configured since the last start are registered by this one.
        return self.client.start(workflow, *args, **kwargs)

    def _serve_decider(self) -> None:
        self._decider.serve(self._stop)

    def _died(self, loop: str, exc: BaseException) -> None:
        """A loop of this engine died: its runs would wait for ever, so every
        open run fails now, and no new one starts."""
        if self._stop.is_set():
            return
        if isinstance(exc, LoopDied) and exc.__cause__ is not None:
            exc = exc.__cause__  # what killed the loop's thread, not the loop's report
        self._broken = LoopDied(f"a {loop} thread of this LocalWorkflow died "
                                f"({type(exc).__name__}: {exc}); close it and make a new one")
        error = ErrorInfo.from_exception(self._broken)
        store = self.backend.store
        for record in list(store.runs(status=OPEN)):
            store.close_run(record.run_id, FAILED, self.backend.clock.now(), error=error)

    def close(self) -> None:
        self._stop.set()
        self.backend.close()  # ends the loops' waits for messages
        for thread in self._threads:
            thread.join()
        if self._owns_executor and self._executor is not None:
            # Queued attempts are dropped; running ones are waited for, since a
            # thread can't be killed and a killed process would break the pool.
            self._executor.shutdown(wait=True, cancel_futures=True)
