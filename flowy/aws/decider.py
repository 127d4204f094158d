"""The AWS decider: notifications in, committed decisions and their messages out.

For each run with news, a decider reads the run's inbox, gives the new facts
to the core, commits the facts and decisions as the next history batch with
a conditional write, then sends what the decisions ask for (activity tasks,
timers, sub-workflow starts, the parent's result) and only then records the
batch as sent and deletes the notifications.  A crash anywhere leaves the
notification to come back: before the commit nothing happened; after it,
the next decider finds the batch unsent and sends it again.

Runs are spread over ``threads`` threads by run id, each thread with its own
:class:`~flowy.core.replay.Decider` (live runs are greenlets, bound to a
thread), and each keeps the histories of its recent runs, so a decision for
a cached run reads only the inbox, never the history.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import UNCONTAINED, LoopDied, ServiceError
from ..core.events import (
    CLOSING_TYPES,
    CancelRequested,
    Decision,
    Event,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    is_decision,
    stamped,
)
from ..core.replay import Decider
from ..worker.deciders import DeciderThreads, guarded
from .definitions import AWSWorkflow, Registry
from .messages import MalformedMessage, Notification, TaskMessage, TimerMessage, parse
from .payloads import Payloads
from .queues import SHORT_POLL_PAUSE, Queues
from .store import (
    COMPLETED,
    FAILED,
    RESTARTED,
    HistoryStore,
    RunRecord,
    fact_id,
)
from .timers import TimerKeeper

log = logging.getLogger("flowy.aws.decider")

COMMIT_ATTEMPTS = 5


def child_run_id(run_id: str, key: str) -> str:
    """The id of the sub-workflow run started by attempt ``key``: the same on a re-send."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowy:{run_id}/{key}").hex


def restarted_run_id(run_id: str) -> str:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"flowy:{run_id}/restart").hex


@dataclass
class RunState:
    """A run's history as this decider last saw it."""

    record: RunRecord
    workflow: AWSWorkflow
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

    tasks: list[tuple[str, TaskMessage]] = field(default_factory=list)
    timers: list[TimerMessage] = field(default_factory=list)
    notifications: list[tuple[str, str]] = field(default_factory=list)


class DecisionMaker:
    """Decides for runs; shared by the decider threads of one process."""

    def __init__(self, registry: Registry, store: HistoryStore, queues: Queues,
                 payloads: Payloads, cache_size: int = 1000) -> None:
        self.registry = registry
        self.store = store
        self.queues = queues
        self.payloads = payloads
        self.cache_size = cache_size
        self._states: OrderedDict[str, RunState] = OrderedDict()
        self._lock = threading.Lock()

    # -- one run --------------------------------------------------------------

    def handle(self, decider: Decider, run_id: str) -> None:
        """Bring ``run_id`` up to date with its inbox."""
        for _attempt in range(COMMIT_ATTEMPTS):
            state = self._state(run_id)
            if state is None:
                log.warning("notification for unknown run %s dropped", run_id)
                return
            try:
                if self._decide(decider, state) is not None:
                    return
            except BaseException:
                self._forget(decider, run_id)
                raise
            log.info("run %s: another decider committed first; retrying on fresh history",
                     run_id)
            self._forget(decider, run_id)
        raise ServiceError(f"run {run_id}: lost {COMMIT_ATTEMPTS} commits in a row to other "
                           "deciders; its notification will come back")

    def _decide(self, decider: Decider, state: RunState) -> int | None:
        """Decide on the waiting facts: how many were new, or None if another
        decider committed this version first."""
        run_id = state.record.run_id
        inbox = self.store.read_inbox(run_id)
        fresh = [fact for _, fact in inbox if fact_id(fact) not in state.seen]
        if fresh:
            decisions = decider.decide(run_id, state.workflow.definition, state.history, fresh)
            now = time.time()
            committed: list[Decision] = [stamped(d, now) for d in decisions]
            events: list[Event] = [*fresh, *committed]
            if not self.store.commit(run_id, state.version + 1, events):
                return None
            state.append(events)
            self._carry_out(state, events)
        if inbox:
            self.store.consume(run_id, inbox, state.version)
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
        state = RunState(record, self.registry.workflow(record.workflow))
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

    def _forget(self, decider: Decider, run_id: str) -> None:
        decider.forget(run_id)
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
        self._pass_on(state, batch, outbox)
        if outbox.tasks:
            self.queues.send_tasks(outbox.tasks)
        if outbox.timers:
            self.queues.send_timers(outbox.timers)
        if closing is not None:
            self._close(state, closing, outbox)
        if outbox.notifications:
            self.queues.notify(outbox.notifications)

    def _pass_on(self, state: RunState, batch: list[Event], outbox: Outbox) -> None:
        """Facts of the batch meant for other runs: a cancel goes on to the
        sub-workflows that have not reported back, and a cancel or a signal
        that came after a restart to the run this one restarted as."""
        passed = [e for e in batch if isinstance(e, (CancelRequested, SignalReceived))]
        if not passed:
            return  # the common case: no scan of the history
        run_id = state.record.run_id
        before = state.history[:len(state.history) - len(batch)]
        restarted = any(isinstance(e, WorkflowRestarted) for e in before)
        for fact in passed:
            targets = [restarted_run_id(run_id)] if restarted else []
            if isinstance(fact, CancelRequested):
                reported = {e.key for e in state.history
                            if isinstance(e, (TaskCompleted, TaskFailed))}
                targets += [child_run_id(run_id, e.key) for e in state.history
                            if isinstance(e, TaskScheduled) and e.kind == "workflow"
                            and e.key not in reported]
            for target in targets:
                self.store.add_fact(target, fact)
                outbox.notifications.append((target, fact_id(fact)))

    def _schedule(self, state: RunState, task: TaskScheduled, outbox: Outbox) -> None:
        run_id = state.record.run_id
        if task.schedule_to_start is not None and task.kind == "activity":
            outbox.timers.append(TimerMessage(run=run_id, key=task.key,
                                              kind="schedule_to_start",
                                              fire_at=task.at + task.schedule_to_start))
        if task.kind == "activity":
            binding = state.workflow.activities[task.dependency]
            outbox.tasks.append((binding.task_list, TaskMessage(
                run=run_id, key=task.key, activity=binding.ref,
                input=self.payloads.pack(task.input), start_to_close=task.start_to_close,
                heartbeat=task.heartbeat, schedule_to_start=task.schedule_to_start)))
            return
        child = state.workflow.children[task.dependency]
        child_id = child_run_id(run_id, task.key)
        self._start_run(RunRecord(child_id, child.ref, input=task.input, started_at=task.at,
                                  parent_run=run_id, parent_key=task.key), outbox)
        if task.start_to_close is not None:
            outbox.timers.append(TimerMessage(run=run_id, key=task.key, kind="start_to_close",
                                              fire_at=task.at + task.start_to_close))

    def _start_run(self, record: RunRecord, outbox: Outbox) -> None:
        outbox.notifications.append(self.store.start_run(record))

    def _close(self, state: RunState, closing: Decision, outbox: Outbox) -> None:
        record = state.record
        ignored = getattr(closing, "ignored_errors", ())
        if ignored:
            log.warning("workflow %s (run %s) closed, but never read the errors of %s",
                        record.workflow, record.run_id, ", ".join(ignored))
        if isinstance(closing, WorkflowRestarted):
            next_id = restarted_run_id(record.run_id)
            self._start_run(RunRecord(
                next_id, record.workflow, input=closing.input, started_at=closing.at,
                workflow_id=record.workflow_id, parent_run=record.parent_run,
                parent_key=record.parent_key, prev_run=record.run_id), outbox)
            self.store.close_run(record.run_id, RESTARTED, closing.at, next_run=next_id)
            return
        if record.parent_run is not None and record.parent_key is not None:
            outcome: Fact
            if isinstance(closing, WorkflowCompleted):
                outcome = TaskCompleted(record.parent_key, closing.result, record.started_at)
            else:
                assert isinstance(closing, WorkflowFailed)
                outcome = TaskFailed(record.parent_key, closing.error, record.started_at)
            self.store.add_outcome(record.parent_run, stamped(outcome, closing.at))
            # Even if it was there: this may be the re-send of a batch whose
            # decider died between writing the outcome and notifying.
            outbox.notifications.append((record.parent_run, fact_id(outcome)))
        if isinstance(closing, WorkflowCompleted):
            self.store.close_run(record.run_id, COMPLETED, closing.at, result=closing.result)
        elif isinstance(closing, WorkflowFailed):
            self.store.close_run(record.run_id, FAILED, closing.at, error=closing.error)


class DeciderService:
    """A decider process's loops: decision notifications and timers."""

    def __init__(self, registry: Registry, store: HistoryStore, queues: Queues,
                 payloads: Payloads, *, threads: int = 2, cache_size: int = 1000,
                 poll_wait: int = 20) -> None:
        self.maker = DecisionMaker(registry, store, queues, payloads, cache_size)
        self.timers = TimerKeeper(store, queues)
        self.queues = queues
        self.poll_wait = poll_wait
        self._lease = queues.settings.visibility_timeout
        # Set when a thread this process needs has died: the process must stop.
        self._fatal: BaseException | None = None
        self._dying = threading.Event()
        self._threads = DeciderThreads(threads, self._handle_run, cache_size, "flowy-decider",
                                       self._die)
        # Notifications received and not yet deleted, with when their lease was
        # last extended: a long decision (a large fan-out) must not let its
        # notification reappear and reach another decider mid-way.
        self._held: dict[str, float] = {}
        self._held_lock = threading.Lock()

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._dying.set()

    def _handle_run(self, decider: Decider, run_id: str, receipts: list[str]) -> None:
        try:
            self.maker.handle(decider, run_id)
        except UNCONTAINED:
            raise
        except BaseException:  # noqa: BLE001 - the run's trouble; the others go on
            log.exception("decision for run %s failed; its notification will come back",
                          run_id)
        else:
            self.queues.delete(self.queues.settings.decision_queue, receipts)
        finally:
            with self._held_lock:
                for receipt in receipts:
                    self._held.pop(receipt, None)

    def renew_leases(self) -> None:
        """Extend the leases of held notifications that are a third through theirs."""
        now = time.monotonic()
        with self._held_lock:
            due = [r for r, since in self._held.items() if now - since > self._lease / 3]
        if due:
            self.queues.extend(self.queues.settings.decision_queue, due, self._lease)
            with self._held_lock:
                for receipt in due:
                    if receipt in self._held:
                        self._held[receipt] = now

    def poll_decisions(self) -> int:
        """One receive from the decision queue; returns how many messages came."""
        messages = self.queues.receive(self.queues.settings.decision_queue,
                                       wait=self.poll_wait, visibility=self._lease)
        self._dispatch(messages)
        self._pause_if_short_polling(messages)
        return len(messages)

    def _pause_if_short_polling(self, messages: list[dict[str, Any]]) -> None:
        if not messages and self.poll_wait == 0:
            time.sleep(SHORT_POLL_PAUSE)

    def _dispatch(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            try:
                note: Notification = parse(Notification, message["Body"])  # type: ignore
            except MalformedMessage as exc:
                self.queues.dead_letter(self.queues.settings.decision_queue, message, str(exc))
                continue
            with self._held_lock:
                self._held[message["ReceiptHandle"]] = time.monotonic()
            self._threads.post(note.run, message["ReceiptHandle"], zlib.crc32(note.run.encode()))

    def poll_timers(self) -> int:
        queue = self.queues.settings.timer_queue
        messages = self.queues.receive(queue, wait=self.poll_wait)
        self._pause_if_short_polling(messages)
        done = []
        for message in messages:
            try:
                self.timers.handle(parse(TimerMessage, message["Body"]))  # type: ignore[arg-type]
            except MalformedMessage as exc:
                self.queues.dead_letter(queue, message, str(exc))
                continue
            except UNCONTAINED:
                raise
            except BaseException:  # noqa: BLE001 - the timer's trouble; the others go on
                log.exception("timer message %s failed; it will come back",
                              message.get("MessageId"))
                continue
            done.append(message["ReceiptHandle"])
        if done:
            self.queues.delete(queue, done)
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

        def renew(done: threading.Event) -> None:
            while not done.wait(self._lease / 6):
                try:
                    self.renew_leases()
                except Exception:
                    log.exception("extending leases failed; retrying")

        timer_thread = threading.Thread(target=guarded(lambda: loop(self.poll_timers), self._die),
                                        name="flowy-timers", daemon=True)
        closed = threading.Event()
        lease_thread = threading.Thread(target=guarded(lambda: renew(closed), self._die),
                                        name="flowy-leases", daemon=True)
        timer_thread.start()
        lease_thread.start()
        loop(self.poll_decisions)
        timer_thread.join()
        self._threads.close()  # finishes the decisions in hand, whose leases go on
        closed.set()
        lease_thread.join()
        if self._fatal is not None:
            raise LoopDied(f"a thread of this decider died ({type(self._fatal).__name__}: "
                           f"{self._fatal}); the process stops so that its supervisor "
                           "restarts it") from self._fatal
