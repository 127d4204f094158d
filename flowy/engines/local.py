"""``LocalWorkflow``: run a workflow on this machine, with threads or processes."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

from ..codec import DEFAULT_CODEC
from ..config import Declaration, check_dependency_name, make_spec, resolve, sub_workflow_spec
from ..core.codec import Codec
from ..core.errors import ConfigurationError, TaskError
from ..core.events import WorkflowCompleted
from ..core.replay import WorkflowDefinition
from ..core.spec import RetryPolicy
from ..core.workflow import WorkflowFactory
from ..tracing import Trace, build_run_trace
from .local_engine import Chain, LocalEngine, RunConfig


class LocalWorkflow(Declaration):
    """A workflow with its dependencies, run on this machine.

    ``factory`` is the workflow class (or any callable taking the dependencies
    as keyword arguments and returning the workflow callable).  Activities run
    on ``executor`` (a class, called with ``max_workers=activity_workers``, or
    an executor instance); with a :class:`~concurrent.futures.ProcessPoolExecutor`
    activities must be module-level functions.  ``workflow_workers`` threads
    make the decisions.  A live run is kept between decisions (``cache_size``
    runs per decider thread); ``cache_size=0`` replays the history for every
    decision, which is slower but checks that the workflow is deterministic.
    """

    def __init__(self, factory: WorkflowFactory, activity_workers: int = 8,
                 workflow_workers: int = 2,
                 executor: type[Executor] | Executor = ThreadPoolExecutor, *,
                 codec: Codec = DEFAULT_CODEC, cache_size: int = 1000,
                 name: str | None = None) -> None:
        if activity_workers < 1 or workflow_workers < 1:
            raise ConfigurationError("activity_workers and workflow_workers must be >= 1")
        super().__init__(factory, codec)
        self.name: str = name or getattr(factory, "__qualname__", None) or "workflow"
        self.activity_workers = activity_workers
        self.workflow_workers = workflow_workers
        self.cache_size = cache_size
        self.last_trace: Trace | None = None
        self._executor_choice = executor
        self._activities: dict[str, Callable[..., Any]] = {}
        self._children: dict[str, LocalWorkflow] = {}
        self._engine: LocalEngine | None = None
        self._engine_lock = threading.Lock()

    # -- configuration --------------------------------------------------------

    def conf_activity(self, name: str, function: Callable[..., Any] | str, *,
                      retry: RetryPolicy | None = None, timeout: float | None = None,
                      heartbeat: float | None = None,
                      schedule_to_start: float | None = None) -> LocalWorkflow:
        """Bind dependency ``name`` to an activity function (or ``"module:function"``).

        ``timeout`` is start-to-close in seconds; ``heartbeat`` the longest
        silence between two :func:`flowy.heartbeat` calls; ``schedule_to_start``
        the longest wait for a free worker.  Unset values fall back to the
        function's ``@flowy.activity`` defaults.
        """
        check_dependency_name(name, self._specs)
        target = resolve(function)
        spec = make_spec("activity", target, retry=retry, timeout=timeout,
                         heartbeat=heartbeat, schedule_to_start=schedule_to_start)
        self._activities[name] = target
        return self._configured(name, spec)

    def conf_workflow(self, name: str, workflow: LocalWorkflow, *,
                      retry: RetryPolicy | None = None,
                      timeout: float | None = None) -> LocalWorkflow:
        """Bind dependency ``name`` to a sub-workflow, called like an activity."""
        spec = sub_workflow_spec(self, name, workflow, self._specs, retry=retry, timeout=timeout)
        self._children[name] = workflow
        return self._configured(name, spec)

    def _activity_functions(self) -> Iterable[object]:
        return self._activities.values()

    def _sub_workflows(self) -> Iterable[LocalWorkflow]:
        return self._children.values()

    # -- running --------------------------------------------------------------

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

    def start(self, *args: Any, **kwargs: Any) -> LocalRun:
        """Start a run and return at once; many runs can go at the same time."""
        codec = self.codec
        encoded = codec.encode([list(args), kwargs])  # EncodeError names the culprit
        return LocalRun(self._start_encoded(encoded, None), codec)

    def _start_encoded(self, encoded: str, on_close: Callable[[Chain], None] | None) -> Chain:
        return self._get_engine().start(self._snapshot(), encoded, on_close)

    def _snapshot(self) -> RunConfig:
        children = {name: child._start_encoded for name, child in self._children.items()}
        return RunConfig(self.name, WorkflowDefinition(self.factory, dict(self._specs),
                                                       self.codec),
                         dict(self._activities), children)

    def _get_engine(self) -> LocalEngine:
        with self._engine_lock:
            if self._engine is None:
                executor = self._executor_choice
                owns_executor = isinstance(executor, type)
                if isinstance(executor, type):
                    # Both pool classes take max_workers; Executor itself doesn't say so.
                    executor = executor(max_workers=self.activity_workers)  # type: ignore[call-arg]
                self._engine = LocalEngine(name=self.name, executor=executor,
                                           owns_executor=owns_executor,
                                           workflow_workers=self.workflow_workers,
                                           cache_size=self.cache_size)
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

    def __repr__(self) -> str:
        return f"<LocalWorkflow {self.name} dependencies={sorted(self._specs)}>"


class LocalRun:
    """A started run (followed across restarts): wait for it, get its result or trace."""

    def __init__(self, chain: Chain, codec: Codec) -> None:
        self._chain = chain
        self._codec = codec

    @property
    def run_ids(self) -> list[str]:
        """The ids of this run and of the runs it restarted as, in order."""
        return [run.run_id for run in self._chain.runs]

    def done(self) -> bool:
        return self._chain.closed.is_set()

    def signal(self, name: str, value: Any = None) -> None:
        """Send the run (or the run it restarted as) a signal: the workflow's
        next call of its ``conf_signal(name)`` dependency finishes with ``value``."""
        self._chain.engine.signal(self._chain, name, self._codec.encode(value))

    def cancel(self, reason: str = "") -> None:
        """Ask the run to stop: it fails with :class:`flowy.RunCancelled`, and so
        do its open sub-workflows.  Activities already running finish, and
        their results are recorded as late; a run already closed is unchanged."""
        self._chain.engine.cancel(self._chain, reason)

    def result(self, timeout: float | None = None, *, wait_for_tasks: bool = False) -> Any:
        """The run's result; raises TaskError if it failed, TimeoutError if not done in time."""
        if not self._chain.closed.wait(timeout):
            raise TimeoutError(f"run {self.run_ids[-1]} did not finish in {timeout} s")
        if wait_for_tasks:
            self._chain.wait_settled()
        outcome = self._chain.outcome
        if isinstance(outcome, WorkflowCompleted):
            return self._codec.decode(outcome.result)
        assert outcome is not None
        raise TaskError.from_info(outcome.error)

    def trace(self) -> Trace:
        """The execution so far, as a :class:`flowy.tracing.Trace`."""
        return trace_of(self._chain)


def trace_of(chain: Chain) -> Trace:
    """The trace of a chain of runs, with its sub-workflows' traces nested."""
    return Trace(runs=tuple(
        build_run_trace(chain.config.name, run.run_id, list(run.history),
                        {key: trace_of(child) for key, child in run.children.items()})
        for run in chain.runs))
