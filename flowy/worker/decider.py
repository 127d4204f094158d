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
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    is_decision,
    stamped,
)
from ..core.protocol import (
    PendingTimers,
    child_run_id,
    fact_id,
    new_facts,
    outcome_key,
    parent_outcome,
    passed_on,
    restarted_run_id,
    timers_of,
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
    timer_message,
)
from .poison import PoisonCounter
from .run_threads import InlineRuns, RunThreads, guarded
from .timers import TimerKeeper, arm

log = logging.getLogger("flowy.decider")

COMMIT_ATTEMPTS = 5
# With a poll wait of 0 (short polling, for emulators), the pause after an
# empty receive.  moto holds back a FIFO group's new messages until a long
# poll that began while the group was busy ends, so long polls there add up
# to their whole wait to each step of a run; short polls don't.
SHORT_POLL_PAUSE = 0.05
# Notifications a decider thread has waiting at most: a decider receives only
# what its threads will decide soon, well within the lease it holds them for
# (a decision takes milliseconds to a few seconds for a large fan-out).
NOTIFICATIONS_PER_THREAD = 5
# The reconciler (Decider.reconcile): every lease, it wakes the runs that
# have waited this many leases for a decision, up to a batch of them per
# pass, and looks again this many leases later at a run whose timers it checked.
OVERDUE_LEASES = 2
RECONCILE_BATCH = 100
RECHECK_LEASES = 10


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
    committed_at: list[float] = field(default_factory=list)  # of each batch, in order
    timers: PendingTimers = field(default_factory=PendingTimers)

    def append(self, events: list[Event], committed_at: float) -> None:
        self.version += 1
        self.committed_at.append(committed_at)
        self.history.extend(events)
        self.timers.extend(events)
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
        self._timers = TimerKeeper(backend)

    # -- one run --------------------------------------------------------------

    def handle(self, replayer: Replayer, run_id: str) -> None:
        """Bring ``run_id`` up to date with its inbox."""
        for _attempt in range(COMMIT_ATTEMPTS):
            state = self._state(run_id)
            if state is None:
                log.warning("notification for unknown run %s dropped", run_id)
                return
            began = self.backend.clock.now()
            try:
                if self._decide(replayer, state) is not None:
                    return
            except BaseException:
                self._forget(replayer, run_id)
                raise
            self._forget(replayer, run_id)
            self._explain_lost_commit(run_id, state.version, began)
        raise ServiceError(f"run {run_id}: lost {COMMIT_ATTEMPTS} commits in a row to other "
                           "deciders; its notification will come back")

    def _explain_lost_commit(self, run_id: str, version: int, began: float) -> None:
        """Say why a commit of ``version + 1`` lost, from when the winner was
        written (the fresh history, loaded here, serves the next attempt)."""
        fresh = self._state(run_id)
        if fresh is not None and len(fresh.committed_at) > version \
                and fresh.committed_at[version] < began:
            # A run's notifications go to any decider, one at a time: this
            # decider's copy of the history was behind, not racing another.
            log.debug("run %s: decided by another decider since; deciding again on its "
                      "history", run_id)
        else:
            log.warning("run %s: another decider committed first; retrying on fresh history "
                        "(two deciders at once on a run: a lease was lost)", run_id)

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
            state.append(events, now)
            self._carry_out(state, events)
            self.backend.checkpoint("decider.sent")
        if inbox:
            if fresh:
                self.store.consume(run_id, inbox, state.version, state.timers.wake_at())
            else:  # this decider may be behind: it must not record its view of the history
                self.store.consume(run_id, inbox, None)
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
            state.append(batch.events, batch.committed_at)
        if state.version and self.store.sent_version(run_id) < state.version:
            # Its tasks may have gone out and ended since: those are not sent
            # again, and the others go marked, for workers to check (F5).
            ended = {key for _, fact in self.store.read_inbox(run_id)
                     if (key := outcome_key(fact)) is not None}
            log.info("run %s: batch %d was committed but maybe not sent; sending it again "
                     "(without the %d attempts that have ended)", run_id, state.version,
                     len(ended))
            self._carry_out(state, state.last_batch, ended)
            self.store.consume(run_id, [], state.version, state.timers.wake_at())
        with self._lock:
            self._states[run_id] = state
            while len(self._states) > self.cache_size:
                self._states.popitem(last=False)
        return state

    def _forget(self, replayer: Replayer, run_id: str) -> None:
        replayer.forget(run_id)
        with self._lock:
            self._states.pop(run_id, None)

    # -- waking runs ------------------------------------------------------------

    def wake(self, replayer: Replayer, run_id: str, recheck: float) -> None:
        """Look at a run that has waited too long (see :meth:`Decider.reconcile`):
        decide on its inbox, whose notification was lost, send its batch if
        unsent, and fire or check its overdue timers, whose messages were
        lost.  A run whose timers were checked and still waits is looked at
        again ``recheck`` seconds later (an attempt that started in time has
        nothing in the history to say so until it ends)."""
        self.handle(replayer, run_id)
        state = self._state(run_id)
        if state is None:  # facts for no run: they go, and with them its index entries
            self.store.consume(run_id, self.store.read_inbox(run_id), None)
            return
        now = self.backend.clock.now()
        overdue = [timer for timer in state.timers.pending() if timer.fire_at <= now]
        for timer in overdue:
            log.warning("run %s: timer %s (%s) was due at %.3f and had not come: firing it",
                        run_id, timer.key, timer.kind, timer.fire_at)
            self._timers.handle(timer_message(run_id, timer))
        self.store.set_wake(run_id, state.version,
                            now + recheck if overdue else state.timers.wake_at())

    # -- carrying decisions out -------------------------------------------------

    def _carry_out(self, state: RunState, batch: list[Event],
                   ended: set[str] | None = None) -> None:
        """Send what a committed batch asks for; safe to repeat (see ``sent``).
        ``ended``, on a re-send: the attempts whose outcomes are in, not sent again."""
        outbox = Outbox()
        closing: Decision | None = None
        run_id = state.record.run_id
        for event in batch:
            if ended is not None and getattr(event, "key", None) in ended:
                continue
            if isinstance(event, TaskScheduled):
                self._schedule(state, event, outbox, resent=ended is not None)
            elif isinstance(event, CLOSING_TYPES):
                closing = event  # type: ignore[assignment]
            outbox.timers += [timer_message(run_id, timer) for timer in timers_of(event)]
        for target, fact in passed_on(run_id, state.history, batch):
            outbox.notifications.append(tell(self.backend, target, fact))
        for queue, tasks in outbox.tasks.items():
            self.backend.queues.send(queue, tasks)
        self.backend.checkpoint("decider.sending")
        arm(self.backend, outbox.timers)
        if closing is not None:
            self._close(state, closing, outbox)
        notify(self.backend, outbox.notifications)

    def _schedule(self, state: RunState, task: TaskScheduled, outbox: Outbox, *,
                  resent: bool) -> None:
        run_id = state.record.run_id
        if task.kind == "activity":
            binding = state.workflow.activities[task.dependency]
            message = TaskMessage(
                run=run_id, key=task.key, workflow=state.record.workflow,
                dependency=task.dependency, input=task.input,
                start_to_close=task.start_to_close, heartbeat=task.heartbeat,
                schedule_to_start=task.schedule_to_start, resent=resent)
            outbox.tasks.setdefault(task_queue(binding.task_list), []).append(
                Outgoing(message.model_dump_json(exclude_defaults=True)))
            return
        child = state.workflow.children[task.dependency]
        outbox.notifications.append(start_run(self.backend, RunRecord(
            child_run_id(run_id, task.key), self.registry.ref_of(child), started_at=task.at,
            input=task.input,
            parent_run=run_id, parent_key=task.key)))

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
            RunThreads(threads, self._handle_run, cache_size, name, self._die,
                       per_thread=NOTIFICATIONS_PER_THREAD)
            if threads and backend.remote else InlineRuns(self._handle_run, cache_size))
        # Notifications received and not yet acknowledged: a long decision (a
        # large fan-out) must not let its notification reappear mid-way.
        self._held = HeldMessages(backend)
        self._poison = PoisonCounter(backend)
        self._next_reconcile = 0.0

    def _die(self, exc: BaseException) -> None:
        self._fatal = exc
        self._dying.set()

    def _handle_run(self, replayer: Replayer, run_id: str, messages: list[Received]) -> None:
        """Decide for ``run_id`` on its notifications, or with none, wake it."""
        try:
            if messages:
                self.committer.handle(replayer, run_id)
            else:
                self.committer.wake(replayer, run_id, recheck=self._lease * RECHECK_LEASES)
        except UNCONTAINED:
            raise
        except BaseException as exc:  # noqa: BLE001 - the run's trouble; the others go on
            if not messages:
                log.exception("waking run %s failed; a later pass tries again", run_id)
            for message in messages:
                self._poison.failed(DECISIONS, message, f"the decision for run {run_id}", exc)
        else:
            for message in messages:
                self._poison.succeeded(message)
            if messages:
                self._acknowledge(DECISIONS, [message.receipt for message in messages])
        finally:
            for message in messages:
                self._held.let_go(DECISIONS, message.receipt)

    def _acknowledge(self, queue: str, receipts: list[str]) -> None:
        for receipt in self.queues.acknowledge(queue, receipts):
            log.warning("could not acknowledge a message on %s (receipt %.20s...): its lease "
                        "was lost, and it will come back", queue, receipt)

    def renew_leases(self) -> None:
        """Extend the leases of held notifications that are a third through theirs."""
        self._held.renew()

    def poll_decisions(self) -> int:
        """One receive from the decision queue, after a pass of :meth:`reconcile`
        if one is due (every lease, and on the first poll); returns how many
        messages came."""
        now = self.backend.clock.now()
        if now >= self._next_reconcile:  # here, so that inline decisions stay in one thread
            self._next_reconcile = now + self._lease
            self.reconcile()
        room = self._threads.room(timeout=1.0)
        if not room:  # the threads have all they can decide soon
            return 0
        messages = self.queues.receive(DECISIONS, max_messages=min(10, room),
                                       wait=self.poll_wait, lease=self._lease)
        self._dispatch(messages)
        self._pause_if_short_polling(messages)
        return len(messages)

    def _pause_if_short_polling(self, messages: list[Received]) -> None:
        if not messages and self.poll_wait == 0:
            self._dying.wait(SHORT_POLL_PAUSE)

    def _dispatch(self, messages: list[Received]) -> None:
        # A receive may bring several notifications of a run (its FIFO group):
        # one decision takes in all their news.
        messages_by_run: dict[str, list[Received]] = {}
        for message in messages:
            try:
                note = _notification_of(message.body)
            except MalformedMessage as exc:
                self._dead_letter(DECISIONS, message, str(exc))
                continue
            self._held.hold(DECISIONS, message.receipt)
            messages_by_run.setdefault(note.run, []).append(message)
        for run, held in messages_by_run.items():
            self._threads.post(run, held)

    def _dead_letter(self, queue: str, message: Received, reason: str) -> None:
        log.error("message %s on %s is malformed, moved to the dead-letter queue: %s",
                  message.id, queue, reason)
        self.queues.dead_letter(queue, message, reason)

    def reconcile(self) -> int:
        """Wake every run that has waited longer than it should: a fact in its
        inbox for more than :data:`OVERDUE_LEASES` leases (its notification
        was lost, or dead-lettered), or a timer that long overdue (its message
        was lost); how many.  SWF re-issues a decision task after its timeout;
        this is that, read from the store's sparse index, so a pass costs a
        few requests whatever the number of runs, and nothing else when no
        run waits."""
        now = self.backend.clock.now()
        runs = self.backend.store.runs_to_wake(now - self._lease * OVERDUE_LEASES,
                                               RECONCILE_BATCH)
        for run_id, since in runs:
            log.info("run %s has waited for a decision since %.3f: waking it", run_id, since)
            self._threads.post(run_id, [])
        return len(runs)

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
            except BaseException as exc:  # noqa: BLE001 - the timer's trouble; the others go on
                self._poison.failed(TIMERS, message, f"timer message {message.id}", exc)
                continue
            self._poison.succeeded(message)
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
