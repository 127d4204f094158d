"""The decider: notifications in, committed decisions and their messages out.

For each run with news, the decider reads the run's inbox, gives the new
facts to the core, commits the facts and decisions as the next history batch
with a conditional write, then sends what the decisions ask for (activity
tasks, timers, sub-workflow starts, the parent's result) and only then
records the batch as sent and acknowledges the notification.  A crash
anywhere leaves the notification to come back: before the commit nothing
happened; after it, the next decider finds the batch unsent and sends it.

Runs are spread over threads by a hash of their id, each thread with its
own :class:`~flowy.core.replay.Replayer` (live runs are greenlets, bound to a
thread); in memory the polling thread decides itself (see
:class:`Decider`).  The decider keeps the histories of recent runs, so
a decision for a cached run reads only the inbox, never the history.

The same code serves every backend: ``flowy decider`` on AWS, and
``LocalWorkflow`` on the in-memory backend.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import DECISIONS, TIMERS, Backend, Outgoing, Received, task_queue
from ..core.errors import UNCONTAINED, LoopDied, MalformedMessage, ServiceError
from ..core.events import (
    CLOSING_TYPES,
    Decision,
    Event,
    TaskScheduled,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    is_decision,
    stamped,
)
from ..core.protocol import (
    child_run_id,
    fact_id,
    new_facts,
    parent_outcome,
    passed_on,
    restarted_run_id,
)
from ..core.replay import Replayer, WorkflowDefinition
from ..core.runs import COMPLETED, FAILED, RESTARTED, RunRecord
from ..declaration import Registry, Workflow
from .inbox import notify, report, start_run, tell
from .leases import HeldMessages
from .messages import (
    Notification,
    TaskMessage,
    TimerMessage,
    parse,
)
from .run_threads import InlineRuns, RunThreads, guarded
from .timers import TimerKeeper, arm

log = logging.getLogger("flowy.decider")

COMMIT_ATTEMPTS = 5
# With a poll wait of 0 (short polling, for emulators), the pause after an
# empty receive.  moto holds back a FIFO group's new messages until a long
# poll that began while the group was busy ends, so long polls there add up
# to their whole wait to each step of a run; short polls don't.
SHORT_POLL_PAUSE = 0.05


@functools.lru_cache(maxsize=4096)
def _notification_of(body: str) -> Notification:
    """A run's notifications all have the same body: each one is parsed once
    (a body that does not parse raises, and is not kept)."""
    return parse(Notification, body)  # type: ignore[return-value]


@dataclass
class RunState:
    """A run's history as this decider last saw it."""

    record: RunRecord
    workflow: Workflow
    definition: WorkflowDefinition
    history: list[Event] = field(default_factory=list)
    version: int = 0
    seen: set[str] = field(default_factory=set)
    last_batch: list[Event] = field(default_factory=list)

    def append(self, events: list[Event]) -> None:
        self.version += 1
        self.history.extend(events)
        self.seen.update(fact_id(e) for e in events if not is_decision(e))  # type: ignore[arg-type]
        self.last_batch = events


@dataclass
class Outbox:
    """The messages one batch of decisions sends, gathered so they go out in batches."""

    tasks: dict[str, list[Outgoing]] = field(default_factory=dict)  # by queue
    timers: list[TimerMessage] = field(default_factory=list)
    notifications: list[Outgoing] = field(default_factory=list)


class Committer:
    """Decides for runs, commits and carries out; shared by a decider's threads."""

    def __init__(self, registry: Registry, backend: Backend, cache_size: int = 1000) -> None:
        self.registry = registry
        self.backend = backend
        self.store = backend.store
        self.cache_size = cache_size
        self._states: OrderedDict[str, RunState] = OrderedDict()
        self._lock = threading.Lock()

    # -- one run --------------------------------------------------------------

    def handle(self, replayer: Replayer, run_id: str) -> None:
        """Bring ``run_id`` up to date with its inbox."""
        for _attempt in range(COMMIT_ATTEMPTS):
            state = self._state(run_id)
            if state is None:
                log.warning("notification for unknown run %s dropped", run_id)
                return
            try:
                if self._decide(replayer, state) is not None:
                    return
            except BaseException:
                self._forget(replayer, run_id)
                raise
            log.info("run %s: another decider committed first; retrying on fresh history",
                     run_id)
            self._forget(replayer, run_id)
        raise ServiceError(f"run {run_id}: lost {COMMIT_ATTEMPTS} commits in a row to other "
                           "deciders; its notification will come back")

    def _decide(self, replayer: Replayer, state: RunState) -> int | None:
        """Decide on the waiting facts: how many were new, or None if another
        decider committed this version first."""
        run_id = state.record.run_id
        inbox = self.store.read_inbox(run_id)
        fresh = new_facts((fact for _, fact in inbox), state.seen)
        if fresh:
            decisions = replayer.decide(run_id, state.definition, state.history, fresh)
            now = self.backend.clock.now()
            committed: list[Decision] = [stamped(d, now) for d in decisions]
            events: list[Event] = [*fresh, *committed]
            if not self.store.commit(run_id, state.version + 1, events, now):
                return None
            self.backend.checkpoint("decider.committed")
            state.append(events)
            self._carry_out(state, events)
            self.backend.checkpoint("decider.sent")
        if inbox:
            self.store.consume(run_id, inbox, state.version)
            self.backend.checkpoint("decider.consumed")
        return len(fresh)

    def _state(self, run_id: str) -> RunState | None:
        with self._lock:
            state = self._states.pop(run_id, None)
            if state is not None:
                self._states[run_id] = state
                return state
        record = self.store.get_run(run_id)
        if record is None:
            return None
        workflow = self.registry.workflow(record.workflow)
        state = RunState(record, workflow, workflow.definition)
        for batch in self.store.read_batches(run_id):
            state.append(batch.events)
        if state.version and self.store.sent_version(run_id) < state.version:
            log.info("run %s: batch %d was committed but maybe not sent; sending it again",
                     run_id, state.version)
            self._carry_out(state, state.last_batch)
            self.store.consume(run_id, [], state.version)
        with self._lock:
            self._states[run_id] = state
            while len(self._states) > self.cache_size:
                self._states.popitem(last=False)
        return state

    def _forget(self, replayer: Replayer, run_id: str) -> None:
        replayer.forget(run_id)
        with self._lock:
            self._states.pop(run_id, None)

    # -- carrying decisions out -------------------------------------------------

    def _carry_out(self, state: RunState, batch: list[Event]) -> None:
        """Send what a committed batch asks for; safe to repeat (see ``sent``)."""
        outbox = Outbox()
        closing: Decision | None = None
        for event in batch:
            if isinstance(event, TaskScheduled):
                self._schedule(state, event, outbox)
            elif isinstance(event, TimerStarted):
                outbox.timers.append(TimerMessage(run=state.record.run_id, key=event.key,
                                                  kind="timer", fire_at=event.at + event.delay))
            elif isinstance(event, CLOSING_TYPES):
                closing = event  # type: ignore[assignment]
        for target, fact in passed_on(state.record.run_id, state.history, batch):
            outbox.notifications.append(tell(self.backend, target, fact))
        for queue, tasks in outbox.tasks.items():
            self.backend.queues.send(queue, tasks)
        self.backend.checkpoint("decider.sending")
        arm(self.backend, outbox.timers)
        if closing is not None:
            self._close(state, closing, outbox)
        notify(self.backend, outbox.notifications)

    def _schedule(self, state: RunState, task: TaskScheduled, outbox: Outbox) -> None:
        run_id = state.record.run_id
        if task.kind == "activity":
            if task.schedule_to_start is not None:
                outbox.timers.append(TimerMessage(run=run_id, key=task.key,
                                                  kind="schedule_to_start",
                                                  fire_at=task.at + task.schedule_to_start))
            binding = state.workflow.activities[task.dependency]
            message = TaskMessage(
                run=run_id, key=task.key, workflow=state.record.workflow,
                dependency=task.dependency, input=task.input,
                start_to_close=task.start_to_close, heartbeat=task.heartbeat,
                schedule_to_start=task.schedule_to_start)
            outbox.tasks.setdefault(task_queue(binding.task_list), []).append(
                Outgoing(message.model_dump_json()))
            return
        child = state.workflow.children[task.dependency]
        outbox.notifications.append(start_run(self.backend, RunRecord(
            child_run_id(run_id, task.key), self.registry.ref_of(child), started_at=task.at,
            input=task.input,
            parent_run=run_id, parent_key=task.key)))
        if task.start_to_close is not None:
            outbox.timers.append(TimerMessage(run=run_id, key=task.key, kind="start_to_close",
                                              fire_at=task.at + task.start_to_close))

    def _close(self, state: RunState, closing: Decision, outbox: Outbox) -> None:
        record = state.record
        ignored = getattr(closing, "ignored_errors", ())
        if ignored:
            log.warning("workflow %s (run %s) closed, but never read the errors of %s; "
                        "see the trace or the history for details",
                        record.workflow, record.run_id, ", ".join(ignored))
        store = self.store
        if isinstance(closing, WorkflowRestarted):
            next_id = restarted_run_id(record.run_id)
            outbox.notifications.append(start_run(self.backend, RunRecord(
                next_id, record.workflow, started_at=closing.at, input=closing.input,
                workflow_id=record.workflow_id, parent_run=record.parent_run,
                parent_key=record.parent_key, prev_run=record.run_id)))
            store.close_run(record.run_id, RESTARTED, closing.at, next_run=next_id)
            return
        assert isinstance(closing, (WorkflowCompleted, WorkflowFailed))
        if record.parent_run is not None and record.parent_key is not None:
            # Notified even if the outcome was there: this may be the re-send of
            # a batch whose decider died between writing it and notifying.
            outbox.notifications.append(report(self.backend, record.parent_run, parent_outcome(
                closing, record.parent_key, record.started_at)))
        if isinstance(closing, WorkflowCompleted):
            store.close_run(record.run_id, COMPLETED, closing.at, result=closing.result)
        else:
            store.close_run(record.run_id, FAILED, closing.at, error=closing.error)


class Decider:
    """A decider's loops: decision notifications (to threads by run) and timers.

    ``serve`` runs them in threads; the simulation calls ``poll_decisions`` and
    ``poll_timers`` itself, with ``threads=0`` and ``poll_wait=0``.  With
    ``threads=0``, or on a backend in this process, the thread that receives
    the notifications decides itself: in memory a decision waits on nothing
    but the CPU, which the GIL gives one thread at a time anyway, so decider
    threads would only add a hand-off to every decision.
    """

    def __init__(self, registry: Registry, backend: Backend, *, threads: int = 2,
                 cache_size: int = 1000, poll_wait: float = 20, name: str = "flowy") -> None:
        self.committer = Committer(registry, backend, cache_size)
        self.timers = TimerKeeper(backend)
        self.backend = backend
        self.queues = backend.queues
        self.poll_wait = poll_wait
        self._lease = backend.lease
        # Set when a thread this process needs has died: the process must stop.
        self._fatal: BaseException | None = None
        self._dying = threading.Event()
        self._threads: RunThreads | InlineRuns = (
            RunThreads(threads, self._handle_run, cache_size, name, self._die)
            if threads and backend.remote else InlineRuns(self._handle_run, cache_size))
        # Notifications received and not yet acknowledged: a long decision (a
        # large fan-out) must not let its notification reappear mid-way.
        self._held = HeldMessages(backend)

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._dying.set()

    def _handle_run(self, replayer: Replayer, run_id: str, receipts: list[str]) -> None:
        try:
            self.committer.handle(replayer, run_id)
        except UNCONTAINED:
            raise
        except BaseException:  # noqa: BLE001 - the run's trouble; the others go on
            log.exception("decision for run %s failed; its notification will come back",
                          run_id)
        else:
            self._acknowledge(DECISIONS, receipts)
        finally:
            for receipt in receipts:
                self._held.let_go(DECISIONS, receipt)

    def _acknowledge(self, queue: str, receipts: list[str]) -> None:
        for receipt in self.queues.acknowledge(queue, receipts):
            log.warning("could not acknowledge a message on %s (receipt %.20s...): its lease "
                        "was lost, and it will come back", queue, receipt)

    def renew_leases(self) -> None:
        """Extend the leases of held notifications that are a third through theirs."""
        self._held.renew()

    def poll_decisions(self) -> int:
        """One receive from the decision queue; returns how many messages came."""
        messages = self.queues.receive(DECISIONS, max_messages=10, wait=self.poll_wait,
                                       lease=self._lease)
        self._dispatch(messages)
        self._pause_if_short_polling(messages)
        return len(messages)

    def _pause_if_short_polling(self, messages: list[Received]) -> None:
        if not messages and self.poll_wait == 0:
            self._dying.wait(SHORT_POLL_PAUSE)

    def _dispatch(self, messages: list[Received]) -> None:
        # A receive may bring several notifications of a run (its FIFO group):
        # one decision takes in all their news.
        receipts_by_run: dict[str, list[str]] = {}
        for message in messages:
            try:
                note = _notification_of(message.body)
            except MalformedMessage as exc:
                self._dead_letter(DECISIONS, message, str(exc))
                continue
            self._held.hold(DECISIONS, message.receipt)
            receipts_by_run.setdefault(note.run, []).append(message.receipt)
        for run, receipts in receipts_by_run.items():
            self._threads.post(run, receipts)

    def _dead_letter(self, queue: str, message: Received, reason: str) -> None:
        log.error("message %s on %s is malformed, moved to the dead-letter queue: %s",
                  message.id, queue, reason)
        self.queues.dead_letter(queue, message, reason)

    def poll_timers(self) -> int:
        messages = self.queues.receive(TIMERS, max_messages=10, wait=self.poll_wait,
                                       lease=self._lease)
        self._pause_if_short_polling(messages)
        done = []
        for message in messages:
            try:
                self.timers.handle(parse(TimerMessage, message.body))  # type: ignore[arg-type]
            except MalformedMessage as exc:
                self._dead_letter(TIMERS, message, str(exc))
                continue
            except UNCONTAINED:
                raise
            except BaseException:  # noqa: BLE001 - the timer's trouble; the others go on
                log.exception("timer message %s failed; it will come back", message.id)
                continue
            self.backend.checkpoint("timers.handled")
            done.append(message.receipt)
        if done:
            self._acknowledge(TIMERS, done)
        return len(messages)

    def serve(self, stop: threading.Event) -> None:
        """Poll both queues until ``stop`` is set, then finish the decisions in hand.

        Raises :class:`~flowy.core.errors.LoopDied` if a thread of this process died: the
        runs it served would wait for ever, so the process must exit and be
        restarted, not go on half alive.
        """
        def stopping() -> bool:
            return stop.is_set() or self._dying.is_set()

        def loop(poll: Any) -> None:
            while not stopping():
                try:
                    poll()
                except Exception:
                    log.exception("polling failed; retrying in 1 s")
                    self._dying.wait(1)

        timer_thread = threading.Thread(target=guarded(lambda: loop(self.poll_timers), self._die),
                                        name="flowy-timers", daemon=True)
        closed = threading.Event()
        lease_thread = threading.Thread(target=guarded(lambda: self._held.keep(closed), self._die),
                                        name="flowy-leases", daemon=True)
        timer_thread.start()
        lease_thread.start()
        if isinstance(self._threads, InlineRuns):
            # Decisions are made in this loop: one that raises what no loop
            # contains kills it as it would kill a decider thread.
            guarded(lambda: loop(self.poll_decisions), self._die)()
        else:
            loop(self.poll_decisions)
        timer_thread.join()
        self._threads.close()  # finishes the decisions in hand, whose leases go on
        closed.set()
        lease_thread.join()
        if self._fatal is not None:
            raise LoopDied(f"a thread of this decider died ({type(self._fatal).__name__}: "
                           f"{self._fatal}); the process stops so that its supervisor "
                           "restarts it") from self._fatal
