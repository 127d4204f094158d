"""The activity worker: poll task queues, run attempts, report outcomes.

One poller thread per task list receives as many messages as there are free
slots (at most ``concurrency`` attempts run at once) and hands each to a
handler thread.  In memory, where a receive costs nothing, each of the
``concurrency`` handler threads receives its own messages instead, one at a
time, which saves a hand-off between threads per attempt (with one task
list: a thread waiting on one queue would hold a slot another queue's
message may need).  The handler runs the attempt: a plain function in its own
thread, or on ``executor`` if one is given (a process pool, say); a
coroutine function on the worker's event loop.  While an attempt runs, its
message is held (:mod:`flowy.worker.leases`), so the queue redelivers it
only if this worker dies.  An outcome is written to the run's inbox
(idempotently) and the deciders are notified *before* the message is
acknowledged: a crash in between repeats the report, never loses it.  A
redelivered message whose attempt already has an outcome is dropped without
running it again.

On ``stop`` the worker stops polling, lets running attempts finish for
``grace`` seconds (and a long poll in progress end), then releases the
messages of those still running (they become visible at once, for another
worker) and returns, abandoning them in their daemon threads.

The same code serves every backend: ``flowy worker`` on AWS, and
``LocalWorkflow`` on the in-memory backend.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from queue import SimpleQueue
from typing import Any

from ..backends.base import DECISIONS, Backend, Outgoing, Received, task_queue
from ..core.errors import (
    UNCONTAINED,
    ConfigurationError,
    ErrorInfo,
    FlowyError,
    LoopDied,
    MalformedMessage,
    ServiceError,
)
from ..core.events import Fact, TaskCompleted, TaskFailed
from ..core.protocol import attempt_id, fact_id, outcome_id
from ..core.runs import IN_HISTORY, OPEN
from ..declaration import ActivityBinding, Registry
from .activity import AttemptOutcome, execute_activity, execute_activity_async
from .batching import Batcher, Deferred
from .heartbeats import HeartbeatRecorder, Reports
from .leases import HeldMessages
from .messages import TaskMessage, TimerMessage, notification, parse
from .run_threads import guarded
from .timers import arm

log = logging.getLogger("flowy.worker")

# With a poll wait of 0 (short polling, for emulators), the pause after an empty receive.
SHORT_POLL_PAUSE = 0.05
# With attempts running and fewer slots free than this, a poller of a remote
# backend waits a moment for more before it receives.
RECEIVE_BATCH = 4
# An attempt that has started again this many times after its worker died in
# it fails the next time, rather than take down every worker it reaches.
MAX_RESTARTS = 4


class ActivityWorker:
    """Runs the activities of ``registry`` that live on ``task_lists``."""

    def __init__(self, registry: Registry, backend: Backend, *,
                 task_lists: list[str] | None = None, concurrency: int = 8,
                 poll_wait: float = 20, grace: float = 30.0,
                 executor: Executor | None = None) -> None:
        self.registry = registry
        self.task_lists = task_lists or registry.task_lists()
        if not self.task_lists:
            raise ConfigurationError(f"{registry.source} declares no activities: nothing to run")
        self.backend = backend
        self.store = backend.store
        self.concurrency = concurrency
        self.poll_wait = poll_wait
        self.grace = grace
        self.completed = 0
        self._executor = executor
        self._slots = _Slots(concurrency)
        self._held = HeldMessages(backend)
        self._reports = Reports(executor)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._fatal: BaseException | None = None
        self._dying = threading.Event()
        self._stopping = threading.Event()
        self._notify: Callable[[Outgoing], None]
        self._acknowledge: Callable[[tuple[str, str]], None]  # (queue, receipt)
        self._acknowledgements: Deferred[tuple[str, str]] | None = None
        if backend.remote:  # many attempts' requests go in one (see .batching)
            notifications: Batcher[Outgoing] = Batcher(
                lambda batch: backend.queues.send(DECISIONS, batch))
            # Nobody waits on an acknowledgement: they go up to 2 s late (a
            # lease is far longer), ten at a time, even from one attempt after
            # another.
            self._acknowledgements = Deferred(self._acknowledge_all, max_delay=2.0)
            self._notify, self._acknowledge = (notifications.submit,
                                               self._acknowledgements.submit)
        else:  # in memory a request costs nothing, and waiting would only add latency
            self._notify = lambda note: backend.queues.send(DECISIONS, [note])
            self._acknowledge = lambda message: self._acknowledge_all([message])

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._dying.set()

    # -- the loops ------------------------------------------------------------

    def serve(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set, then let running attempts finish (see above).

        Raises :class:`~flowy.core.errors.LoopDied` if a thread of this worker
        died: its task lists would go unserved, so the process must exit and be
        restarted, not go on half alive.
        """
        stopping = self._stopping
        self._reports.start()
        loop_thread = self._start_loop()
        handlers: _Handlers | None = None
        if self.backend.remote or len(self.task_lists) > 1:
            handlers = _Handlers(self.concurrency, self._die)
            pollers = [(task_list, task_list) for task_list in self.task_lists]
        else:  # in memory, one task list: handler threads receive (see the module)
            pollers = [(self.task_lists[0], str(i)) for i in range(self.concurrency)]
        poll_threads = [threading.Thread(target=guarded(functools.partial(
                            self._poll, task_queue(task_list), stopping, handlers), self._die),
                            name=f"flowy-poll-{name}", daemon=True)
                        for task_list, name in pollers]
        lease_done = threading.Event()
        lease_thread = threading.Thread(target=guarded(lambda: self._held.keep(lease_done),
                                                       self._die),
                                        name="flowy-worker-leases", daemon=True)
        for thread in (*poll_threads, lease_thread):
            thread.start()
        log.info("worker polling %s on %s", ", ".join(self.task_lists), self.backend.name)
        while not (stop.wait(0.5) or self._dying.is_set()):
            pass
        stopping.set()
        # Pollers that only poll; in memory without handlers, they run attempts too.
        self._drain(poll_threads if handlers is not None else [])
        if handlers is not None:
            handlers.close()
        lease_done.set()
        self._reports.close()
        if self._loop is not None and loop_thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            loop_thread.join()
        if self._fatal is not None:
            raise LoopDied(f"a thread of this worker died ({type(self._fatal).__name__}: "
                           f"{self._fatal}); the process stops so that its supervisor "
                           "restarts it") from self._fatal

    def _start_loop(self) -> threading.Thread | None:
        """An event loop for coroutine activities, if the registry has any."""
        if not any(binding.is_async for workflow in self.registry.workflows.values()
                   for binding in workflow.activities.values()):
            return None
        loop = self._loop = asyncio.new_event_loop()
        thread = threading.Thread(target=guarded(loop.run_forever, self._die),
                                  name="flowy-async-activities", daemon=True)
        thread.start()
        return thread

    def _drain(self, pollers: list[threading.Thread]) -> None:
        """Give running attempts up to ``grace`` seconds, then hand back the
        messages of those still running.  Pollers in a long poll hand back
        what it brings (see :meth:`_poll`); they are waited for first, or the
        service could give them a message handed back, which nobody would
        take until its lease ended."""
        running = self._held.held()
        if running:
            log.info("stopping: waiting up to %.0f s for %d running attempts", self.grace,
                     len(running))
            self._slots.wait_all_free(None if math.isinf(self.grace) else self.grace)
        for poller in pollers:
            poller.join(self.poll_wait + 5)
        for queue, receipt in self._held.held():
            self._release(queue, receipt)
        if self._acknowledgements is not None:
            self._acknowledgements.close()

    def _release(self, queue: str, receipt: str) -> None:
        """Make a held message visible again at once, for another worker."""
        self._held.let_go(queue, receipt)
        try:
            if self.backend.queues.extend(queue, [receipt], 0):
                raise ServiceError("the receipt is stale")
        except Exception as exc:  # noqa: BLE001 - it comes back after its lease anyway
            log.warning("could not release a message (%s); it comes back after its "
                        "lease", exc)

    def _poll(self, queue: str, stopping: threading.Event, handlers: _Handlers | None) -> None:
        """Receive from ``queue`` for ``handlers``, or without them one message
        at a time, handled in this thread."""
        # A poller holds the slots it took for the whole of its long poll, even
        # on an idle task list: with several lists each takes at most its share,
        # so that pollers on idle lists can't hold every slot between them.
        share = max(1, self.concurrency // len(self.task_lists))
        most = 1 if handlers is None else min(10, share)
        while not stopping.is_set():
            # Over the network, wait for enough free slots to make a receive worth
            # its request; in memory a receive costs nothing.
            free = self._slots.take(most, RECEIVE_BATCH if self.backend.remote else 1, stopping)
            if not free:
                continue
            try:
                messages = self._receive(queue, free, self.poll_wait)
            except Exception:
                log.exception("receiving from %s failed; retrying in 1 s", queue)
                messages = []
                stopping.wait(1)
            self._hold(queue, messages)  # a fault here is this loop's own: it dies of it
            self._slots.give(free - len(messages))
            if stopping.is_set():  # received during the stop: not ours to run
                for message in messages:
                    self._release(queue, message.receipt)
                self._slots.give(len(messages))
                return
            if not messages and self.poll_wait == 0:
                stopping.wait(SHORT_POLL_PAUSE)
            for message in messages:
                if handlers is None:
                    self._handle(queue, message)
                else:
                    handlers.submit(functools.partial(self._handle, queue, message))

    def _receive(self, queue: str, most: int, wait: float) -> list[Received]:
        return self.backend.queues.receive(queue, max_messages=most, wait=wait,
                                           lease=self.backend.lease)

    def _hold(self, queue: str, messages: list[Received]) -> None:
        for message in messages:
            self._held.hold(queue, message.receipt)

    def run_waiting(self, queue: str, most: int = 10) -> int:
        """Receive what waits on ``queue`` and handle it in this thread, one
        message after another; how many came.  The deterministic simulation
        steps a worker so (plain activities only: no event loop runs)."""
        messages = self._receive(queue, most, 0)
        self._hold(queue, messages)
        for message in messages:
            self._handle_message(queue, message)
        return len(messages)

    # -- one message ----------------------------------------------------------

    def _handle(self, queue: str, message: Received) -> None:
        try:
            if self._stopping.is_set():  # not started before the stop: the drain releases it
                return
            self._handle_message(queue, message)
        except UNCONTAINED as exc:  # a pool thread can't pass it on: the worker stops
            self._die(exc)
        finally:
            self._slots.give(1)

    def _handle_message(self, queue: str, message: Received) -> None:
        try:
            task: TaskMessage = parse(TaskMessage, message.body)  # type: ignore[assignment]
        except MalformedMessage as exc:
            self._dead_letter(queue, message, exc)
            return
        try:
            news = self._attempt(task, message.receive_count)
            if news is not None:
                # Also when the outcome was there already: whoever wrote it may
                # have died before notifying (a repeat is deduplicated).
                self._notify(notification(task.run, news))
            self.backend.checkpoint("worker.notified")
            self._held.let_go(queue, message.receipt)  # no extension of what is acknowledged
            self._acknowledge((queue, message.receipt))
        except MalformedMessage as exc:  # it parses, but names no attempt to run
            self._dead_letter(queue, message, exc)
        except UNCONTAINED:
            raise
        except BaseException:  # noqa: BLE001 - one attempt's trouble must not end the worker
            log.exception("attempt %s of run %s could not be reported; its message will "
                          "come back", task.key, task.run)
        finally:
            self._held.let_go(queue, message.receipt)

    def _dead_letter(self, queue: str, message: Received, exc: MalformedMessage) -> None:
        log.error("message %s on %s moved to the dead-letter queue: %s", message.id, queue, exc)
        self._held.let_go(queue, message.receipt)
        self.backend.queues.dead_letter(queue, message, str(exc))

    def _attempt(self, task: TaskMessage, deliveries: int) -> str | None:
        """Claim the attempt, run it and record its outcome; the news to notify, if any."""
        attempt = attempt_id(task.key, task.token)
        again = deliveries > 1  # came back: its worker may have died, or finished it
        if again and (ended := self.store.outcome_of(task.run, attempt)) is not None:
            return self._news(task, ended)
        starts = self.store.claim(task.run, attempt, self.backend.clock.now(), again=again)
        if starts is None:
            self._not_open(task)
            return None
        if starts == 0:  # a second message of the attempt (sent again, or a duplicate)
            ended = self.store.outcome_of(task.run, attempt)
            if ended is None:
                log.info("attempt %r of run %r runs already; a second message of it is "
                         "dropped", task.key, task.run)
                return None
            return self._news(task, ended)
        fact = self._run(task, attempt, starts)
        self.backend.checkpoint("worker.ran")
        self.store.add_outcome(task.run, fact)
        self.backend.checkpoint("worker.reported")
        return fact_id(fact)

    def _not_open(self, task: TaskMessage) -> None:
        """A task whose attempt is not open is not run.  If its run closed (the
        usual case: tasks still queued when it did), it is dropped; if not,
        it names no attempt the engine scheduled (stale, forged, or of
        another deployment's table), and goes to the dead-letter queue."""
        record = self.store.get_run(task.run)
        if record is not None and record.status != OPEN:
            log.info("task %r of run %r dropped: the run is %s", task.key, task.run,
                     record.status)
            return
        raise MalformedMessage(
            f"task {task.key!r} of run {task.run!r} ({task.workflow} {task.dependency}) names "
            "no open attempt: " + ("no such run" if record is None else
                                   "the run scheduled no such attempt, or not with this token")
            + "; not run")

    @staticmethod
    def _news(task: TaskMessage, ended: str) -> str | None:
        """For an attempt that ended (see ``RunStore.outcome_of``), the news of
        its outcome to notify again (whoever wrote it may have died before
        notifying), or None if a decider took it."""
        return None if ended == IN_HISTORY else outcome_id(ended, task.key)

    def _binding(self, task: TaskMessage) -> ActivityBinding | Exception:
        workflow = self.registry.workflows.get(task.workflow)
        binding = None if workflow is None else workflow.activities.get(task.dependency)
        if binding is None or binding.task_list not in self.task_lists:
            return ConfigurationError(
                f"activity {task.dependency} of workflow {task.workflow} is not known to this "
                f"worker (definitions {self.registry.source}, task lists "
                f"{', '.join(self.task_lists)}): run a worker that has it")
        return binding

    def _run(self, task: TaskMessage, attempt: str, starts: int) -> Fact:
        binding = self._binding(task)
        if isinstance(binding, Exception):
            return self._failure(task, binding)
        # A delivery is no sign that the attempt ran: its receiver may have died
        # before starting it (or never started it: it was stopping).  What
        # counts is starts, which the claim records.
        if starts > MAX_RESTARTS + 1:
            return self._failure(task, ServiceError(
                f"attempt {task.key} was started {starts} times, and each time the "
                "worker running it died before it ended: it seems to kill its worker. "
                "Fix the activity, or run it where it can't take the worker down"))
        recorder = None
        if task.watched:
            self._arm_watch(task)
            recorder = HeartbeatRecorder(self.backend, task.run, attempt, task.heartbeat)
        handle = f"{task.run}/{task.key}"
        started_at = self.backend.clock.now()
        try:
            with self._reports.recording(handle, recorder) as reporter:
                outcome = self._execute(binding, handle, task, reporter)
        except Exception as exc:  # noqa: BLE001 - a pool shut down or broken, an unpicklable
            # function: the attempt can't run here, and saying so beats a message
            # that comes back for ever
            return self._failure(task, FlowyError(
                f"{task.key} could not be started: {type(exc).__name__}: {exc}"))
        self.completed += 1
        now = self.backend.clock.now()
        if outcome.error is not None:
            return TaskFailed(task.key, outcome.error, started_at, at=now, token=task.token)
        return TaskCompleted(task.key, outcome.result or "", started_at, at=now,
                             token=task.token)

    def _execute(self, binding: ActivityBinding, handle: str, task: TaskMessage,
                 reporter: Any) -> AttemptOutcome:
        arguments = (binding.function, handle, task.key, task.input, binding.codec, reporter)
        if binding.is_async:
            assert self._loop is not None
            future: Future[AttemptOutcome] = asyncio.run_coroutine_threadsafe(
                execute_activity_async(*arguments), self._loop)
            return future.result()
        if self._executor is None:
            return execute_activity(*arguments)
        return self._executor.submit(execute_activity, *arguments).result()

    def _failure(self, task: TaskMessage, error: Exception) -> Fact:
        log.error("attempt %s of run %s fails: %s", task.key, task.run, error)
        return TaskFailed(task.key, ErrorInfo.from_exception(error), at=self.backend.clock.now(),
                          token=task.token)

    def _arm_watch(self, task: TaskMessage) -> None:
        """Arm the timers that watch a running attempt (its claim recorded its start)."""
        now = self.backend.clock.now()
        timers = []
        if task.start_to_close is not None:
            timers.append(TimerMessage(run=task.run, key=task.key, kind="start_to_close",
                                       fire_at=now + task.start_to_close, token=task.token))
        if task.heartbeat is not None:
            timers.append(TimerMessage(run=task.run, key=task.key, kind="heartbeat",
                                       fire_at=now + task.heartbeat, limit=task.heartbeat,
                                       token=task.token))
        arm(self.backend, timers)

    def _acknowledge_all(self, messages: list[tuple[str, str]]) -> None:
        by_queue: dict[str, list[str]] = {}
        for queue, receipt in messages:
            by_queue.setdefault(queue, []).append(receipt)
        for queue, receipts in by_queue.items():
            try:
                failed = len(self.backend.queues.acknowledge(queue, receipts))
            except Exception as exc:  # noqa: BLE001 - sent from a timer: nobody to tell
                log.warning("could not acknowledge %d messages on %s (%s): they will come "
                            "back and be dropped as done", len(receipts), queue, exc)
                continue
            if failed:
                log.warning("could not acknowledge %d messages on %s: they will come back "
                            "and be dropped as done", failed, queue)


class _Handlers:
    """``count`` daemon threads that run handlers.  Daemons, so that a worker
    process exits when its grace period is over, even with an attempt still
    running: that attempt's message was handed back, and runs elsewhere."""

    def __init__(self, count: int, on_fatal: Callable[[BaseException], None]) -> None:
        self._jobs: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._count = count
        for i in range(count):
            threading.Thread(target=guarded(self._run, on_fatal), name=f"flowy-activity-{i}",
                             daemon=True).start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def close(self) -> None:
        """Each thread ends after the jobs before this (which may be running)."""
        for _ in range(self._count):
            self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class _Slots:
    """How many more attempts may start: at most ``concurrency`` run at once."""

    def __init__(self, concurrency: int) -> None:
        self._concurrency = concurrency
        self._free = concurrency
        self._changed = threading.Condition()
        self._waiting = 0  # threads waiting on _changed: mostly none, and then none to wake

    def take(self, most: int, enough: int, stopping: threading.Event) -> int:
        """Wait for a free slot, then take up to ``most``; if fewer than ``enough``
        are free while attempts run, wait a moment for more (0 when stopping)."""
        with self._changed:
            while self._free == 0:
                if stopping.is_set():
                    return 0
                self._wait(lambda: self._free > 0, 0.5)
            if self._free < enough < self._concurrency:
                before = self._free
                self._wait(lambda: self._free != before, 0.05)  # the next give, or a moment
            taken = min(most, self._free)
            self._free -= taken
            return taken

    def give(self, count: int) -> None:
        if count:
            with self._changed:
                self._free += count
                if self._waiting:
                    self._changed.notify_all()

    def wait_all_free(self, timeout: float | None) -> bool:
        with self._changed:
            return self._wait(lambda: self._free == self._concurrency, timeout)

    def _wait(self, done: Callable[[], bool], timeout: float | None) -> bool:
        self._waiting += 1
        try:
            return self._changed.wait_for(done, timeout)
        finally:
            self._waiting -= 1
