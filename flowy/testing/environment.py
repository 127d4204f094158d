"""Workflows on the real engine, on a clock that skips the time nobody works through.

A :class:`WorkflowEnvironment` runs the engine that ``LocalWorkflow`` runs
(the decider, the timer keeper and the activity worker, in threads of this
process) over the in-memory backend, on a :class:`ManualClock`.  A one-hour
timer, a retry's back-off or a timeout check is a delayed message on a queue;
when the engine has nothing else to do, the environment moves the clock
straight to the moment the next one comes due, so a test of a workflow that
waits for days takes no real time, and always sees the same times.

When time skips.  Only while the test waits through the environment
(:meth:`SkippingRunHandle.result`, :meth:`WorkflowEnvironment.run`,
:meth:`WorkflowEnvironment.sleep`), as Temporal's test environment does: a
clock that also jumped between two lines of the test would let a run's timer
fire before the signal the next line sends.  Between those calls the clock
stands still, unless the test moves it (``env.clock.advance(seconds)``).

When the engine is idle.  When no queue has a visible message nor one in
flight.  The protocol keeps a message visible or in flight for as long as
any part of the engine has work to do: a worker acknowledges a task only
after its outcome is recorded and the deciders are notified, a decider
acknowledges a notification only after its decisions' messages are sent,
and the timer keeper a timer only after its fact is in.  So once the queues
are idle, nothing in the engine will send another message before the next
delayed one (or a lease) comes due, and the queues say when that is
(``MemoryQueues.next_event``).  The environment reads the time to skip to
from the queues rather than from the clock's registry of sleepers: a waiter
that has just been notified keeps its old deadline there until its thread
runs, so a deadline read from the registry may be later than a message that
was just delayed, and skipping to it would deliver that message late.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Callable
from typing import Any

from ..backends.base import DEFAULT_MAX_RECEIVES
from ..backends.clocks import ManualClock
from ..backends.memory import MemoryBackend, memory_backend
from ..client import FlowyClient, RunHandle
from ..core.errors import ConfigurationError
from ..declaration import Registry, Workflow
from ..engines.local import InProcessEngine

_names = itertools.count(1)


class SkippingRunHandle(RunHandle):
    """A :class:`flowy.RunHandle` whose :meth:`result` skips time while it waits."""

    def __init__(self, env: WorkflowEnvironment, run_id: str) -> None:
        super().__init__(env.client, run_id)
        self.env = env

    def result(self, timeout: float | None = None, *, wait_for_tasks: bool = False) -> Any:
        """The run's result, once the engine has worked it out, skipping time
        through every wait on the way; raises :class:`flowy.TaskError` if it failed.

        ``timeout`` is in seconds of the environment's clock: TimeoutError if
        the run is still open when the clock has moved that far (an exact,
        repeatable limit, since the clock only moves when nothing else can
        happen).  TimeoutError too, at once, if the run is open and nothing is
        left to happen (no message waiting, held or delayed: it waits for a
        signal that nobody sends, say).

        It returns with the engine idle: tasks still running when the run closed
        have ended, and their late results are recorded (so ``wait_for_tasks``
        changes nothing here).  While an activity runs the clock stands still,
        and this waits for it as long as it takes: to let an attempt overrun its
        timeout, move the clock by hand (``env.clock.advance``) while it runs.
        """
        until = math.inf if timeout is None else self.env.clock.now() + timeout
        if not self.env.skip_until(self.done, until, f"run {self.run_id}"):
            raise TimeoutError(f"run {self.run_id} is still {self.status()} after "
                               f"{timeout} s of the environment's clock")
        return self.client.wait(self.run_id, 0)  # closed: its result, or its error


class WorkflowEnvironment:
    """The in-process engine on a manual clock, for tests; a context manager.

    Start runs with :meth:`start` (or :meth:`run`), and wait for them with
    the handle's ``result()``: time skips while it waits (see the module's
    docstring).  ``clock`` is the :class:`ManualClock`, to read or to move
    by hand; ``backend`` the in-memory backend (its ``queues`` show depths
    and dead letters); ``client`` a :class:`flowy.FlowyClient` on it, for
    histories, traces, signals and cancels.

    The engine starts with the first run, serving the task lists of the
    workflows known by then: those passed here or to :meth:`register`, and
    the one started.  ``cache_size`` is 0 by default, so that every decision
    replays the run's history: a workflow that is not deterministic fails
    here, in its tests, with :class:`flowy.NondeterminismError`.
    ``activity_workers`` are the threads that run activities;
    ``lease`` and ``max_receives`` the backend's (see ``memory_backend``):
    moving the clock by hand past the lease while an activity runs delivers
    its task again, as SQS would to a worker that stalled.

    Closing it (or leaving the ``with`` block) stops the engine's threads;
    runs still open are abandoned.
    """

    def __init__(self, *workflows: Workflow, clock: ManualClock | None = None,
                 activity_workers: int = 4, cache_size: int = 0,
                 lease: float = 60.0, max_receives: int = DEFAULT_MAX_RECEIVES) -> None:
        self.clock = clock if clock is not None else ManualClock()
        self.backend: MemoryBackend = memory_backend(clock=self.clock, lease=lease,
                                                     max_receives=max_receives)
        self.name = f"flowy-testing-{next(_names)}"  # its threads' names start with it
        self._workflows = list(workflows)
        self._options: dict[str, Any] = {"activity_workers": activity_workers,
                                         "cache_size": cache_size}
        self._engine: InProcessEngine | None = None
        self._served: frozenset[str] = frozenset()
        self._engine_lock = threading.Lock()
        self._skipping = threading.Lock()  # one thread moves the clock at a time
        self._closed = False

    # -- the engine -----------------------------------------------------------

    def register(self, *workflows: Workflow) -> WorkflowEnvironment:
        """Make these workflows known, so that the engine serves their task lists
        (any workflow can also just be started)."""
        with self._engine_lock:
            if self._engine is None:
                self._workflows.extend(workflows)
                return self
            for workflow in workflows:
                self._check_served(workflow)
                self._engine.registry.add(workflow)
        return self

    def _get_engine(self, first: Workflow | None = None) -> InProcessEngine:
        """The engine, started now if it is not yet, knowing ``first`` too."""
        with self._engine_lock:
            if self._closed:
                raise ConfigurationError("this WorkflowEnvironment is closed: make a new one")
            if self._engine is None:
                workflows = self._workflows + ([first] if first is not None else [])
                registry = Registry(workflows, self.name, rename_clashes=True)
                self._served = frozenset(registry.task_lists())
                self._engine = InProcessEngine(registry, backend=self.backend, name=self.name,
                                               **self._options)
            elif first is not None:
                self._check_served(first)
            return self._engine

    def _check_served(self, workflow: Workflow) -> None:
        needed = {binding.task_list for declared in workflow.tree()
                  for binding in declared.activities.values()}
        missing = sorted(needed - self._served)
        if missing:
            raise ConfigurationError(
                f"{workflow!r} has activities on task list {', '.join(missing)}, which this "
                f"environment's worker does not serve: it started serving "
                f"{', '.join(sorted(self._served)) or 'no task list'}. Pass every workflow to "
                "WorkflowEnvironment(...), or register() it, before the first run starts")

    @property
    def client(self) -> FlowyClient:
        return self._get_engine().client

    def start(self, workflow: Workflow, *args: Any, **kwargs: Any) -> SkippingRunHandle:
        """Start a run of ``workflow`` (a :class:`flowy.Workflow`, a
        ``LocalWorkflow`` too) and return at once; ``workflow_id=`` as for
        :meth:`flowy.FlowyClient.start`, other arguments go to the run."""
        engine = self._get_engine(first=workflow)
        return SkippingRunHandle(self, engine.start(workflow, *args, **kwargs).run_id)

    def run(self, workflow: Workflow, *args: Any, **kwargs: Any) -> Any:
        """Start a run and return its result, skipping time on the way."""
        return self.start(workflow, *args, **kwargs).result()

    # -- time -----------------------------------------------------------------

    def join(self) -> None:
        """Wait until no queue has a message waiting or in flight: every run has
        gone as far as it can without the clock moving, and tasks that were
        running have reported.  Delayed messages (timers) don't count.  The
        clock does not move."""
        if not self.backend.queues.join(None, delayed=False):
            raise ConfigurationError("this WorkflowEnvironment was closed while it was joined")

    def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of the environment's clock pass, as the engine would
        live them: it handles every timer and timeout that comes due on the way,
        at its time, and stops when the queues are idle at the end."""
        if seconds < 0:
            raise ConfigurationError(f"time does not go backwards (sleep {seconds}): sleep a "
                                     "number of seconds >= 0")
        self.skip_until(lambda: False, self.clock.now() + seconds, "the sleep")

    def skip_until(self, finished: Callable[[], bool], until: float = math.inf,
                   waiting_for: str = "the wait") -> bool:
        """Let the engine work, and whenever it is idle move the clock to when
        the next delayed message or lease comes due (never past ``until``),
        until ``finished()`` holds with the engine idle, or the clock has
        reached ``until``; whether ``finished()``.  If nothing is left to
        happen, the clock moves straight to ``until``; with ``until`` infinite,
        the wait would never end, and TimeoutError says so."""
        queues, clock = self.backend.queues, self.clock
        while True:
            self.join()  # first, so that what the caller sees next is settled
            if finished():
                return True
            with self._skipping:
                if not queues.join(0, delayed=False):
                    continue  # another thread of the test sent work meanwhile
                if clock.now() >= until:
                    return False
                due = queues.next_event()
                if due is None and until == math.inf:
                    raise TimeoutError(
                        f"{waiting_for} would never end: nothing is left to happen (no "
                        "message waits, is held or is delayed). Does it wait for a signal, "
                        "or for a task whose messages went to a dead-letter queue?")
                clock.advance_to(until if due is None else min(due, until))

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        """Stop the engine's threads (waiting for running activities); closing
        again does nothing."""
        with self._engine_lock:
            engine, self._engine, self._closed = self._engine, None, True
        if engine is not None:
            engine.close()  # closes the backend too
        else:
            self.backend.close()

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
