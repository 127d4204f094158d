"""The local engine: runs, histories, attempts, timeouts and timers, in one process.

Histories live in memory.  Decisions come from the same core
(:class:`flowy.core.replay.Decider`) that the distributed engine uses;
activities run on a thread or process pool; timeouts and retry delays are
timers.  Every outside fact (a result, a failure, a timeout, a fired timer)
goes through the run's decider thread, which appends it to the history, so
the history is totally ordered, and a result that arrives after its attempt
timed out is recorded and ignored, as on AWS.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ErrorInfo, FlowyError, LoopDied
from ..core.events import (
    CancelRequested,
    Decision,
    Event,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimeoutType,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
    stamped,
)
from ..core.replay import Decider, WorkflowDefinition
from ..worker.activity import AttemptOutcome, execute_activity
from ..worker.deciders import DeciderThreads
from ..worker.timers import TimerService

log = logging.getLogger("flowy.local")

Closing = WorkflowCompleted | WorkflowFailed
ChildStarter = Callable[[str, Callable[["Chain"], None]], "Chain"]


@dataclass(frozen=True)
class RunConfig:
    """A snapshot of a LocalWorkflow's configuration, taken when a run starts."""

    name: str
    definition: WorkflowDefinition
    activities: Mapping[str, Callable[..., Any]]
    children: Mapping[str, ChildStarter]


@dataclass(eq=False)
class Run:
    run_id: str
    chain: Chain
    history: list[Event] = field(default_factory=list)
    children: dict[str, Chain] = field(default_factory=dict)
    closed: bool = False
    shard: int = 0


@dataclass(eq=False)
class Chain:
    """A started workflow, followed across its restarts (continue-as-new)."""

    config: RunConfig
    on_close: Callable[[Chain], None] | None
    engine: LocalEngine
    runs: list[Run] = field(default_factory=list)
    outcome: Closing | None = None
    closed: threading.Event = field(default_factory=threading.Event)
    # Running attempts plus facts posted but not yet in a history: the chain is
    # settled when both are done, so a waiter sees every late result recorded.
    unsettled: int = 0
    settled: threading.Condition = field(default_factory=threading.Condition)

    def add_work(self) -> None:
        with self.settled:
            self.unsettled += 1

    def end_work(self, count: int = 1) -> None:
        with self.settled:
            self.unsettled -= count
            self.settled.notify_all()

    def wait_settled(self, timeout: float | None = None) -> bool:
        """Wait until no attempt of this chain or of its sub-workflows runs, and
        every fact about them is in a history.  False if ``timeout`` ran out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.settled:
            if not self.settled.wait_for(lambda: self.unsettled == 0, timeout):
                return False
        # Sub-workflows have closed by now (their attempts have ended), but
        # their own stragglers may still run.
        children = [child for run in self.runs for child in run.children.values()]
        return all(child.wait_settled(None if deadline is None
                                      else max(0.0, deadline - time.monotonic()))
                   for child in children)


@dataclass(eq=False)
class Attempt:
    run: Run
    task: TaskScheduled
    started: float | None = None  # monotonic
    started_at: float | None = None  # wall clock, for sub-workflows' facts
    last_beat: float = 0.0
    details: str | None = None
    future: Future[AttemptOutcome] | None = None


class LocalEngine:
    """Threads, pools and timers shared by every run of one LocalWorkflow."""

    def __init__(self, *, name: str, executor: Executor, owns_executor: bool,
                 workflow_workers: int, cache_size: int) -> None:
        self._executor = executor
        self._owns_executor = owns_executor
        self._lock = threading.Lock()
        self._attempts: dict[str, Attempt] = {}
        self._shards = itertools.count()
        self._open_chains: set[Chain] = set()
        self._broken: LoopDied | None = None  # set when a decider thread died
        self._timers = TimerService(f"{name}-timers")
        self._deciders = DeciderThreads(workflow_workers, self._decide, cache_size, name,
                                        self._decider_died)
        self._reporter: Any = _DirectReporter(self)
        self._report_pump: threading.Thread | None = None
        if isinstance(executor, ProcessPoolExecutor):
            # Worker processes report starts and heartbeats through a managed queue.
            self._manager = multiprocessing.Manager()
            self._reporter = self._manager.Queue()
            self._report_pump = threading.Thread(target=self._pump_reports,
                                                 name=f"{name}-reports", daemon=True)
            self._report_pump.start()

    # -- runs -----------------------------------------------------------------

    def start(self, config: RunConfig, encoded_input: str,
              on_close: Callable[[Chain], None] | None = None) -> Chain:
        chain = Chain(config, on_close, self)
        with self._lock:
            if self._broken is not None:
                raise self._broken
            self._open_chains.add(chain)
        self._start_run(chain, encoded_input)
        return chain

    def _decider_died(self, exc: BaseException) -> None:
        """A decider thread died: its runs would wait for ever, so every open
        run fails now, and no new one starts."""
        broken = LoopDied(f"a decider thread of this LocalWorkflow died "
                          f"({type(exc).__name__}: {exc}); close it and make a new one")
        with self._lock:
            self._broken = broken
            chains = list(self._open_chains)
        for chain in chains:
            self._close_chain(chain, WorkflowFailed(ErrorInfo.from_exception(broken)))

    def cancel(self, chain: Chain, reason: str) -> None:
        """Ask the chain's newest run to cancel (see :class:`CancelRequested`)."""
        self._post(chain.runs[-1], CancelRequested(reason))

    def signal(self, chain: Chain, name: str, value: str) -> None:
        """Send an encoded signal to the chain's newest run."""
        self._post(chain.runs[-1], SignalReceived(name, value, uuid.uuid4().hex))

    def _start_run(self, chain: Chain, encoded_input: str) -> None:
        run = Run(uuid.uuid4().hex, chain, shard=next(self._shards))
        chain.runs.append(run)
        self._post(run, WorkflowStarted(encoded_input))

    def _post(self, run: Run, fact: Fact) -> None:
        run.chain.add_work()
        self._deciders.post(run, stamped(fact, time.time()), run.shard)

    def _decide(self, decider: Decider, run: Run, facts: list[Fact]) -> None:
        """On the run's decider thread: facts in, decisions committed and carried out."""
        try:
            restarted = run.closed and run is not run.chain.runs[-1]
            if run.closed:
                run.history.extend(facts)  # late facts are recorded, and ignored
            else:
                decisions = decider.decide(run.run_id, run.chain.config.definition,
                                           run.history, facts)
                now = time.time()
                run.history.extend(facts)
                committed = [stamped(d, now) for d in decisions]
                run.history.extend(committed)
                for decision in committed:
                    self._carry_out(run, decision)
            for fact in facts:
                if restarted and isinstance(fact, (CancelRequested, SignalReceived)):
                    # It raced with the restart: it is meant for the new run.
                    self._post(run.chain.runs[run.chain.runs.index(run) + 1], fact)
                if isinstance(fact, CancelRequested):
                    self._cancel_tasks(run, fact)
        finally:
            run.chain.end_work(len(facts))

    def _cancel_tasks(self, run: Run, cancel: CancelRequested) -> None:
        """Cancel the run's open sub-workflows; attempts still queued in the
        pool never start."""
        for child in run.children.values():
            if not child.closed.is_set():
                child.engine.cancel(child, cancel.reason)
        with self._lock:
            for token, attempt in list(self._attempts.items()):
                if attempt.run is run and attempt.future is not None and attempt.future.cancel():
                    del self._attempts[token]

    def _carry_out(self, run: Run, decision: Decision) -> None:
        if isinstance(decision, TaskScheduled):
            self._start_task(run, decision)
        elif isinstance(decision, TimerStarted):
            self._timers.call_later(decision.delay,
                                    lambda: self._post(run, TimerFired(decision.key)))
        elif isinstance(decision, WorkflowRestarted):
            run.closed = True
            _warn_ignored_errors(run, decision.ignored_errors)
            self._start_run(run.chain, decision.input)
        else:
            run.closed = True
            if isinstance(decision, WorkflowCompleted):
                _warn_ignored_errors(run, decision.ignored_errors)
            self._close_chain(run.chain, decision)

    def _close_chain(self, chain: Chain, outcome: Closing) -> None:
        with self._lock:
            if chain not in self._open_chains:
                return  # it failed already, when a decider thread died
            self._open_chains.remove(chain)
        chain.outcome = outcome
        chain.closed.set()
        if chain.on_close is not None:
            chain.on_close(chain)

    # -- tasks ----------------------------------------------------------------

    def _start_task(self, run: Run, task: TaskScheduled) -> None:
        attempt = Attempt(run, task)
        token = f"{run.run_id}/{task.key}"
        with self._lock:
            self._attempts[token] = attempt
        run.chain.add_work()
        if task.schedule_to_start is not None:
            self._timers.call_later(task.schedule_to_start,
                                    lambda: self._time_out(token, "schedule_to_start"))
        config = run.chain.config
        try:
            if task.kind == "workflow":
                attempt.started = time.monotonic()
                attempt.started_at = time.time()
                self._arm_running_timeouts(token, task)
                run.children[task.key] = config.children[task.dependency](
                    task.input, lambda child: self._child_closed(attempt, child))
                return
            attempt.future = self._executor.submit(
                execute_activity, config.activities[task.dependency], token, task.key,
                task.input, config.definition.codec, self._reporter)
        except Exception as exc:  # noqa: BLE001 - e.g. a pool that is shut down or broken
            self._finish_attempt(token, attempt, TaskFailed(task.key, ErrorInfo.from_exception(
                FlowyError(f"{task.key} could not be started: {exc}"))))
            return
        attempt.future.add_done_callback(lambda f: self._activity_done(token, attempt, f))

    def _activity_done(self, token: str, attempt: Attempt, future: Future[AttemptOutcome]
                       ) -> None:
        if future.cancelled():  # it timed out in the queue and never ran
            attempt.run.chain.end_work()
            return
        try:
            outcome = future.result()
            if outcome.error is not None:
                fact: Fact = TaskFailed(attempt.task.key, outcome.error, outcome.started_at)
            else:
                assert outcome.result is not None
                fact = TaskCompleted(attempt.task.key, outcome.result, outcome.started_at)
        except BaseException as exc:  # noqa: BLE001 - e.g. unpicklable function, dead pool
            fact = TaskFailed(attempt.task.key, ErrorInfo.from_exception(exc))
        self._finish_attempt(token, attempt, fact)

    def _child_closed(self, attempt: Attempt, child: Chain) -> None:
        outcome = child.outcome
        key, started_at = attempt.task.key, attempt.started_at
        fact: Fact = (TaskCompleted(key, outcome.result, started_at)
                      if isinstance(outcome, WorkflowCompleted) else
                      TaskFailed(key, outcome.error, started_at))  # type: ignore[union-attr]
        self._finish_attempt(f"{attempt.run.run_id}/{attempt.task.key}", attempt, fact)

    def _finish_attempt(self, token: str, attempt: Attempt, fact: Fact) -> None:
        with self._lock:
            self._attempts.pop(token, None)
        self._post(attempt.run, fact)
        attempt.run.chain.end_work()

    def _arm_running_timeouts(self, token: str, task: TaskScheduled) -> None:
        if task.start_to_close is not None:
            self._timers.call_later(task.start_to_close,
                                    lambda: self._time_out(token, "start_to_close"))
        if task.heartbeat is not None:
            self._timers.call_later(task.heartbeat, lambda: self._time_out(token, "heartbeat"))

    def _on_report(self, message: tuple[str, str, float, str | None]) -> None:
        kind, token, _at, details = message
        with self._lock:
            attempt = self._attempts.get(token)
            if attempt is None:
                return
            attempt.last_beat = time.monotonic()
            if kind == "heartbeat":
                attempt.details = details
                return
            attempt.started = attempt.last_beat
        self._arm_running_timeouts(token, attempt.task)

    def _time_out(self, token: str, timeout_type: TimeoutType) -> None:
        with self._lock:
            attempt = self._attempts.get(token)
            if attempt is None:
                return
            if timeout_type == "schedule_to_start":
                if attempt.started is not None:
                    return
                if attempt.future is not None:
                    attempt.future.cancel()
            if timeout_type == "heartbeat":
                assert attempt.task.heartbeat is not None
                quiet_for = time.monotonic() - attempt.last_beat
                if quiet_for < attempt.task.heartbeat:
                    remaining = attempt.task.heartbeat - quiet_for
                    self._timers.call_later(remaining, lambda: self._time_out(token, "heartbeat"))
                    return
            # The attempt stays counted as running until it really ends, but its
            # outcome, if it comes, will be a late one.
            self._attempts.pop(token)
        self._post(attempt.run, TaskTimedOut(attempt.task.key, timeout_type, attempt.details))

    def _pump_reports(self) -> None:
        while True:
            message = self._reporter.get()
            if message is None:
                return
            self._on_report(message)

    def close(self) -> None:
        self._deciders.close()
        self._timers.close()
        if self._report_pump is not None:
            self._reporter.put(None)
            self._report_pump.join()
            self._manager.shutdown()
        if self._owns_executor:
            # Queued attempts are dropped; running ones are waited for, since a
            # thread can't be killed and a killed process would break the pool.
            self._executor.shutdown(wait=True, cancel_futures=True)


def _warn_ignored_errors(run: Run, call_ids: tuple[str, ...]) -> None:
    if call_ids:
        log.warning("workflow %s (run %s) closed, but never read the errors of %s; "
                    "see the trace or the history for details",
                    run.chain.config.name, run.run_id, ", ".join(call_ids))


class _DirectReporter:
    """Starts and heartbeats from pool threads go straight to the engine."""

    def __init__(self, engine: LocalEngine) -> None:
        self._engine = engine

    def put(self, message: tuple[str, str, float, str | None]) -> None:
        self._engine._on_report(message)
