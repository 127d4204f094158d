"""Deciding for one run: its inbox in, a committed batch and its messages out.

The :class:`Committer` reads a run's inbox, takes the facts the history
vouches for (:mod:`flowy.core.admission`; the others are set aside), gives
the new ones to the core, commits the facts and decisions as the next
history batch with a conditional write, then sends what the decisions ask
for (activity tasks, after opening their attempts for workers to claim;
timers; sub-workflow starts; the parent's result) and only then records the
batch as sent.  It keeps the histories of recent runs, so that a decision
for a cached run reads only the inbox, never the history.  The loops that
feed it notifications are :mod:`flowy.worker.decider`'s.
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

from ..backends.base import Backend, Outgoing, task_queue
from ..core.admission import needs_beat, refusal, timer_again
from ..core.errors import ServiceError
from ..core.events import (
    CLOSING_TYPES,
    Decision,
    Event,
    Fact,
    SignalReceived,
    TaskScheduled,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    is_decision,
    stamped,
)
from ..core.protocol import (
    OpenWork,
    Timer,
    attempt_id,
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
from ..core.runs import COMPLETED, FAILED, OPEN, RESTARTED, RunRecord
from ..declaration import Registry, Workflow
from .inbox import notify, report, start_run, tell
from .messages import TaskMessage, TimerMessage, timer_message
from .timers import TimerKeeper, arm

log = logging.getLogger("flowy.decider")

COMMIT_ATTEMPTS = 5
# What Committer._decide returns when its copy of a history may be behind.
_UNSURE = -1


def _issued(decision: Decision, at: float) -> Decision:
    """A decision as committed: stamped, and, if it schedules an attempt, with
    the attempt's token, drawn here (the core is deterministic; a token must
    not be guessable)."""
    issued = stamped(decision, at)
    if isinstance(issued, TaskScheduled):
        object.__setattr__(issued, "token", secrets.token_hex(16))  # a fresh copy: not shared
    return issued


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
    work: OpenWork = field(default_factory=OpenWork)

    def append(self, events: list[Event], committed_at: float) -> None:
        self.version += 1
        self.committed_at.append(committed_at)
        self.history.extend(events)
        self.work.extend(events)
        self.seen.update(fact_id(e) for e in events if not is_decision(e))  # type: ignore[arg-type]
        self.last_batch = events


@dataclass
class Outbox:
    """The messages one batch of decisions sends, gathered so they go out in batches."""

    tasks: dict[str, list[Outgoing]] = field(default_factory=dict)  # by queue
    timers: list[TimerMessage] = field(default_factory=list)
    notifications: list[Outgoing] = field(default_factory=list)
    attempts: list[str] = field(default_factory=list)  # activity attempts to open


class Committer:
    """Decides for runs, commits and carries out; shared by a decider's threads."""

    def __init__(self, registry: Registry, backend: Backend, cache_size: int = 1000) -> None:
        self.registry = registry
        self.backend = backend
        self.store = backend.store
        self.cache_size = cache_size
        self._states: OrderedDict[str, RunState] = OrderedDict()
        self._lock = threading.Lock()
        self.timers = TimerKeeper(backend, self._run_is_open)

    # -- one run --------------------------------------------------------------

    def handle(self, replayer: Replayer, run_id: str) -> None:
        """Bring ``run_id`` up to date with its inbox."""
        for _attempt in range(COMMIT_ATTEMPTS):
            state = self._state(run_id)
            if state is None:
                log.warning("notification for unknown run %r dropped", run_id)
                return
            began = self.backend.clock.now()
            try:
                decided = self._decide(replayer, state)
                if decided is not None and decided != _UNSURE:
                    return
            except BaseException:
                self._forget(replayer, run_id)
                raise
            self._forget(replayer, run_id)
            if decided is None:
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
        """Decide on the waiting facts: how many were new, None if another
        decider committed this version first, or :data:`_UNSURE` if a fact
        would be refused on a history that may have moved on without this
        decider.  (A fact is refused only on a history known to be the
        latest after the inbox was read: a commit after it, or a look at the
        latest version.  An outcome can't exist before the batch that
        scheduled its attempt, so then the history has that batch.)"""
        run_id = state.record.run_id
        inbox = self.store.read_inbox(run_id)
        refused, again = self._refusals(state, inbox)
        if refused:
            inbox = [item for item in inbox if item[0] not in refused]
        fresh = new_facts((fact for _, fact in inbox), state.seen)
        if fresh:
            decisions = replayer.decide(run_id, state.definition, state.history, fresh)
            if replayer.warning:
                log.warning("run %r: %s", run_id, replayer.warning)
            now = self.backend.clock.now()
            committed: list[Decision] = [_issued(d, now) for d in decisions]
            events: list[Event] = [*fresh, *committed]
            if not self.store.commit(run_id, state.version + 1, events, now):
                return None
            self.backend.checkpoint("decider.committed")
            state.append(events, now)
            self._carry_out(state, events)
            self.backend.checkpoint("decider.sent")
        elif refused and self.store.latest_version(run_id) != state.version:
            return _UNSURE
        if refused:
            arm(self.backend, again)  # first: the fact refused may have been the real one
            self.store.set_aside(run_id, list(refused.items()))
        if inbox:
            if fresh:
                self.store.consume(run_id, inbox, state.version, state.work.wake_at())
            else:  # this decider may be behind: it must not record its view of the history
                self.store.consume(run_id, inbox, None)
            self.backend.checkpoint("decider.consumed")
        return len(fresh)

    def _refusals(self, state: RunState, inbox: list[tuple[str, Fact]]
                  ) -> tuple[dict[str, str], list[TimerMessage]]:
        """The inbox items the run must not take (see :mod:`flowy.core.admission`),
        with why, and the timers that bring a fired timer or a timeout
        refused as early again when it is due."""
        run_id, work, now = state.record.run_id, state.work, self.backend.clock.now()
        refused: dict[str, str] = {}
        again: list[TimerMessage] = []
        signals = 0
        for item_key, fact in inbox:
            if fact_id(fact) in state.seen:
                continue  # in the history already: consumed as a duplicate
            beat = None
            if needs_beat(fact, work):
                beat = self.store.get_beat(
                    run_id, attempt_id(fact.key, fact.token))  # type: ignore[union-attr]
            reason = refusal(fact, work, now, beat, signals)
            if reason is None:
                signals += isinstance(fact, SignalReceived)
                continue
            refused[item_key] = reason
            log.warning("run %r: %s %r refused and set aside: %s", run_id,
                        type(fact).__name__, getattr(fact, "key", item_key), reason)
            timer = timer_again(fact, work, beat)
            if timer is not None:
                again.append(self._timer_message(state, timer))
        return refused, again

    def _run_is_open(self, run_id: str) -> bool:
        """Whether ``run_id`` is a run that is open (as far as this decider knows)."""
        with self._lock:
            state = self._states.get(run_id)
        if state is not None:
            return not state.work.closed
        record = self.store.get_run(run_id)
        return record is not None and record.status == OPEN

    @staticmethod
    def _timer_message(state: RunState, timer: Timer) -> TimerMessage:
        task = state.work.open_attempt(timer.key)
        limit = task.heartbeat if task is not None and timer.kind == "heartbeat" else None
        return timer_message(state.record.run_id, timer, limit)

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
            # again; a worker's claim keeps any other from running twice (F5).
            ended = {key for _, fact in self.store.read_inbox(run_id)
                     if (key := outcome_key(fact)) is not None
                     and fact.token == state.work.token(key)}  # type: ignore[union-attr]
            log.info("run %s: batch %d was committed but maybe not sent; sending it again "
                     "(without the %d attempts that have ended)", run_id, state.version,
                     len(ended))
            self._carry_out(state, state.last_batch, ended)
            self.store.consume(run_id, [], state.version, state.work.wake_at())
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
        if state is None:  # items of no run: they go, and with them its index entries
            log.warning("run %r is unknown: its %d items are deleted", run_id,
                        self.store.delete_orphan(run_id))
            return
        now = self.backend.clock.now()
        overdue = [timer for timer in state.work.pending() if timer.fire_at <= now]
        for timer in overdue:
            log.warning("run %s: timer %s (%s) was due at %.3f and had not come: firing it",
                        run_id, timer.key, timer.kind, timer.fire_at)
            self.timers.handle(timer_message(run_id, timer))
        self.store.set_wake(run_id, state.version,
                            now + recheck if overdue else state.work.wake_at())

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
                self._schedule(state, event, outbox)
            elif isinstance(event, CLOSING_TYPES):
                closing = event  # type: ignore[assignment]
            outbox.timers += [timer_message(run_id, timer) for timer in timers_of(event)]
        for target, fact in passed_on(run_id, state.history, batch):
            outbox.notifications.append(tell(self.backend, target, fact))
        if outbox.attempts:  # before their tasks go: a worker claims one before running it
            self.store.open_attempts(run_id, outbox.attempts, again=ended is not None)
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
            binding = state.workflow.activities[task.dependency]
            message = TaskMessage(
                run=run_id, key=task.key, workflow=state.record.workflow,
                dependency=task.dependency, input=task.input, token=task.token,
                start_to_close=task.start_to_close, heartbeat=task.heartbeat,
                schedule_to_start=task.schedule_to_start)
            outbox.tasks.setdefault(task_queue(binding.task_list), []).append(
                Outgoing(message.model_dump_json(exclude_defaults=True)))
            outbox.attempts.append(attempt_id(task.key, task.token))
            return
        child = state.workflow.children[task.dependency]
        outbox.notifications.append(start_run(self.backend, RunRecord(
            child_run_id(run_id, task.key), self.registry.ref_of(child), started_at=task.at,
            input=task.input,
            parent_run=run_id, parent_key=task.key, parent_token=task.token)))

    def _close(self, state: RunState, closing: Decision, outbox: Outbox) -> None:
        record = state.record
        ignored = getattr(closing, "ignored_errors", ())
        if ignored:
            log.warning("workflow %s (run %s) closed, but never read the errors of %s; "
                        "see the trace or the history for details",
                        record.workflow, record.run_id, ", ".join(ignored))
        store = self.store
        left_open = [attempt_id(task.key, task.token) for task in state.work.open_attempts()
                     if task.kind == "activity"]
        if left_open:  # their messages, still queued or coming back, must not run
            store.close_attempts(record.run_id, left_open)
        if isinstance(closing, WorkflowRestarted):
            next_id = restarted_run_id(record.run_id)
            outbox.notifications.append(start_run(self.backend, RunRecord(
                next_id, record.workflow, started_at=closing.at, input=closing.input,
                workflow_id=record.workflow_id, parent_run=record.parent_run,
                parent_key=record.parent_key, parent_token=record.parent_token,
                prev_run=record.run_id)))
            store.close_run(record.run_id, RESTARTED, closing.at, next_run=next_id)
            return
        assert isinstance(closing, (WorkflowCompleted, WorkflowFailed))
        if record.parent_run is not None and record.parent_key is not None:
            # Notified even if the outcome was there: this may be the re-send of
            # a batch whose decider died between writing it and notifying.
            outbox.notifications.append(report(self.backend, record.parent_run, parent_outcome(
                closing, record.parent_key, record.started_at, record.parent_token)))
        if isinstance(closing, WorkflowCompleted):
            store.close_run(record.run_id, COMPLETED, closing.at, result=closing.result)
        else:
            store.close_run(record.run_id, FAILED, closing.at, error=closing.error)
