"""The seam between the engine and where its state lives: a run store, queues and a clock.

The decider, the timer keeper, the activity worker and the client are
written once against these protocols.  Two backends implement them: the
in-memory one (:mod:`flowy.backends.memory`), which ``LocalWorkflow`` and the
deterministic simulation run on, and AWS (:mod:`flowy.backends.aws`:
DynamoDB, SQS, S3).  Each method says what the engine relies on, so that a
backend that keeps these promises runs the protocol correctly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from ..core.errors import ErrorInfo, ServiceError
from ..core.events import Event, Fact
from ..core.protocol import Beat
from ..core.runs import Batch, RunRecord

# Logical queue names; a backend maps them to its own (an SQS queue per namespace).
DECISIONS = "decisions"  # FIFO, grouped by run: one receiver has a run's notifications
TIMERS = "timers"  # standard, with per-message delays up to ``Queues.max_delay``
TASKS = "tasks-"  # + task list: standard


def task_queue(task_list: str) -> str:
    return TASKS + task_list


# The steps of the protocol at which the engine calls ``Backend.checkpoint``,
# in the order each process reaches them: where a process may die between two
# effects.  The deterministic simulation crashes processes at each of them.
DECIDER_STEPS = ("decider.committed",  # the batch is written, nothing sent
                 "decider.sending",  # its tasks are sent, not its timers or notifications
                 "decider.sent",  # all sent, the batch not yet marked sent
                 "decider.consumed")  # the inbox consumed, the notification not acknowledged
TIMER_STEPS = ("timers.handled",)  # a timer's fact is in, its message not acknowledged
WORKER_STEPS = ("worker.ran",  # the attempt ran, its outcome not recorded
                "worker.reported",  # the outcome recorded, the deciders not notified
                "worker.notified")  # notified, the message not acknowledged
CHECKPOINTS = DECIDER_STEPS + TIMER_STEPS + WORKER_STEPS


class Clock(Protocol):
    """Wall-clock time for the engine: real, or manual in tests and the simulation."""

    def now(self) -> float:
        """Seconds since the epoch."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` of this clock's time."""
        ...


class RunStore(Protocol):
    """Runs, their histories and the inbox of outside facts; every write is atomic.

    Conditional writes carry the protocol: ``create_run``, ``commit``,
    ``add_fact`` and ``add_outcome`` never overwrite, so the first writer wins
    and a repeat is a no-op that returns False.
    """

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        """Create the run; False if it exists (a re-sent creation)."""
        ...

    def get_run(self, run_id: str) -> RunRecord | None:
        """The run as last written (a strongly consistent read)."""
        ...

    def close_run(self, run_id: str, status: str, at: float, *, result: str | None = None,
                  error: ErrorInfo | None = None, next_run: str | None = None) -> None:
        """Record how the run ended; repeating it with the same values changes nothing."""
        ...

    def claim_workflow_id(self, workflow_id: str, run_id: str) -> str:
        """Bind ``workflow_id`` to ``run_id`` unless it is bound; the run it is bound to."""
        ...

    def runs(self, workflow: str | None = None, status: str | None = None
             ) -> Iterator[RunRecord]:
        """Runs of one workflow (a name, or ``name@version``), newest first, or of
        every workflow, in no order; read as the iteration goes."""
        ...

    def delete_run(self, run: RunRecord) -> int:
        """Delete every item of a closed run, and free its workflow id unless a
        later run holds it; how many items went.  The run goes last, so that a
        purge cut short is finished by the next one."""
        ...

    def orphans(self) -> Iterator[str]:
        """The ids under which items lie with no run record: messages or facts
        for unknown runs, and the leftovers of a deletion cut short."""
        ...

    def delete_orphan(self, run_id: str) -> int:
        """Delete the items of ``run_id`` if it has no run record; how many."""
        ...

    def wait_closed(self, run_id: str, timeout: float) -> None:
        """Return when run ``run_id`` may have changed, or after ``timeout``
        seconds: a backend that can't watch sleeps a poll interval."""
        ...

    # -- history --------------------------------------------------------------

    def read_batches(self, run_id: str) -> list[Batch]:
        """The run's committed batches, in order: its whole history."""
        ...

    def commit(self, run_id: str, version: int, events: Sequence[Event], at: float) -> bool:
        """Write batch ``version``; False if another decider wrote it first."""
        ...

    def latest_version(self, run_id: str) -> int:
        """The version of the run's last committed batch (0 if none)."""
        ...

    def sent_version(self, run_id: str) -> int:
        """The last version whose messages have all gone out (0 if none)."""
        ...

    # -- the inbox ------------------------------------------------------------

    def add_fact(self, run_id: str, fact: Fact) -> bool:
        """Put a fact in the run's inbox under its identity
        (:func:`flowy.core.protocol.fact_id`); False if it is there already."""
        ...

    def add_outcome(self, run_id: str, fact: Fact) -> bool:
        """Put an attempt's outcome in the inbox; the first outcome of an attempt
        wins.  Another kind of outcome later (a result after a timeout) is kept
        as a late fact, which the workflow records and ignores; the same kind
        again (a duplicate) is dropped.  True if something was added."""
        ...

    def read_inbox(self, run_id: str) -> list[tuple[str, Fact]]:
        """Waiting facts as ``(item key, fact)``, in the order they arrived."""
        ...

    def consume(self, run_id: str, consumed: Sequence[tuple[str, Fact]],
                sent_version: int | None, wake: float | None = None) -> None:
        """After a commit and its sends: clear the consumed facts, remember which
        attempts have ended (see :meth:`outcome_of`), record ``sent_version``
        and when the run must be looked at if it hears nothing (``wake``, see
        :meth:`runs_to_wake`; None: not unless a fact comes).  With
        ``sent_version`` None (facts the history has already, cleared by a
        decider that may be behind), neither is recorded."""
        ...

    def set_aside(self, run_id: str, refused: Sequence[tuple[str, str]]) -> None:
        """Move inbox items ``(item key, reason)`` the run must not take to
        ``bad#...``, with the reason: out of the inbox, kept for an operator."""
        ...

    # -- the reconciler's index -------------------------------------------------

    def runs_to_wake(self, before: float, limit: int) -> list[tuple[str, float]]:
        """``(run id, since)`` of up to ``limit`` runs, oldest first, that have
        waited since before ``before``: a fact in their inbox since then (its
        stamp), or a ``wake`` time recorded by ``consume`` or ``set_wake``
        that has passed.  A sparse index: a run that waits for nothing is not
        in it, so that finding the runs whose notification or timer was lost
        costs the same however many runs there are."""
        ...

    def set_wake(self, run_id: str, version: int, wake: float | None) -> None:
        """Replace the run's ``wake`` time, unless a decision after ``version``
        has recorded its own."""
        ...

    # -- attempts -------------------------------------------------------------
    # An attempt is named by its attempt id (:func:`flowy.core.protocol.attempt_id`),
    # which holds its token: no one without the token can claim or end it.

    def open_attempts(self, run_id: str, attempts: Sequence[str], *, again: bool = False
                      ) -> None:
        """Let workers claim these attempts (before their tasks are sent).
        ``again``, for a batch sent again: an attempt open already, perhaps
        claimed, stays as it is."""
        ...

    def close_attempts(self, run_id: str, attempts: Sequence[str]) -> None:
        """Withdraw attempts (of a run that closed): their messages no longer run."""
        ...

    def claim(self, run_id: str, attempt: str, at: float, *, again: bool = False) -> int | None:
        """Record that ``attempt`` starts at ``at``, before a worker runs it: how
        many times it has started, this one included.  0 if it had started
        before (unless ``again``: a message that came back, whose worker
        died), so that a second message of one attempt does not run it
        twice; None if no such attempt is open (an unknown or closed run, a
        stale or forged message): it must not run."""
        ...

    def outcome_of(self, run_id: str, attempt: str) -> str | None:
        """How ``attempt`` ended: the type of its outcome while it waits in
        the inbox, :data:`~flowy.core.runs.IN_HISTORY` once a decider took it,
        or None."""
        ...

    def record_beat(self, run_id: str, attempt: str, at: float, details: str | None = None
                    ) -> None:
        """Record that a claimed attempt heartbeated at ``at`` (nothing if it is
        not open: its run closed)."""
        ...

    def get_beat(self, run_id: str, attempt: str) -> Beat | None:
        """When a claimed attempt started and last heartbeated, or None."""
        ...


# Messages are named tuples, not frozen dataclasses: as immutable, and several
# are made for every step of every run, where a tuple costs a third as much.
class Outgoing(NamedTuple):
    """A message to send.  ``group`` and ``dedup`` are for FIFO queues: a
    group's messages come in order, and while some are in flight (a receive
    may take several) no other receive gets the group's; a message whose
    ``dedup`` id was sent in the last five minutes is dropped.  ``delay``
    (seconds, at most ``Queues.max_delay``) is for standard queues."""

    body: str
    group: str | None = None
    dedup: str | None = None
    delay: float = 0.0


class Received(NamedTuple):
    """A received message, hidden from other receivers until its lease ends.

    ``receipt`` identifies this delivery.  Acknowledging or extending with an
    older delivery's receipt may fail (the in-memory backend always fails it;
    SQS may accept it), so the protocol never relies on either outcome.
    ``receive_count`` counts deliveries, this one included."""

    id: str
    body: str
    receipt: str
    receive_count: int


# Deliveries after which a queue moves a message to its dead-letter queue, by
# default: a last resort, and a high one.  A delivery to a process that died
# holding the message counts too, so a low limit would dead-letter the only
# notification of a run whose deciders crashed.  What the engine can't handle
# (a body that does not parse) it dead-letters itself, with the reason, and an
# attempt that keeps killing its workers fails by its restarts.
DEFAULT_MAX_RECEIVES = 100


class Queues(Protocol):
    """At-least-once queues with leases, as SQS: a received message comes back
    after its lease unless it is acknowledged; after ``max_receives``
    deliveries it goes to the queue's dead-letter queue."""

    max_delay: float  # the longest delay a message can have (SQS: 15 minutes)

    def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send every message (in batches, if the backend has them); raises
        :class:`~flowy.core.errors.ServiceError` if some could not be sent.
        Earlier batches may have gone out by then: a re-send relies on the
        messages' idempotence (and, on a FIFO queue, on ``dedup``)."""
        ...

    def receive(self, queue: str, *, max_messages: int, wait: float, lease: float
                ) -> list[Received]:
        """Up to ``max_messages`` visible messages, waiting up to ``wait``
        seconds for the first; each hidden for ``lease`` seconds."""
        ...

    def extend(self, queue: str, receipts: Sequence[str], lease: float) -> list[str]:
        """Hide these messages ``lease`` more seconds from now (0: visible at
        once); the receipts that failed (their lease was lost)."""
        ...

    def acknowledge(self, queue: str, receipts: Sequence[str]) -> list[str]:
        """Delete these received messages; the receipts that failed (logged,
        never raised: their message comes back)."""
        ...

    def dead_letter(self, queue: str, message: Received, reason: str) -> None:
        """Move ``message`` to the queue's dead-letter queue, recording ``reason``."""
        ...

    def redrive(self, queue: str) -> int:
        """Move the messages waiting in the dead-letter queue of ``queue`` back;
        how many.  Only those there at the start, so poison does not cycle."""
        ...


@dataclass
class Backend:
    """What a decider, worker or client needs: a store, queues, a clock, and
    the lease they hold received messages for.

    ``remote`` says whether the backend is reached over the network: each
    call then costs a request, so the worker gathers notifications and
    acknowledgements into batches.
    """

    name: str  # where it lives, for messages: "namespace dev", "memory"
    store: RunStore
    queues: Queues
    clock: Clock
    lease: float = 60.0
    remote: bool = True
    # Whether a failure is the service's, not the message's: transient ones
    # never count toward a message's poison (:mod:`flowy.worker.poison`).
    transient: Callable[[BaseException], bool] = lambda exc: isinstance(exc, ServiceError)
    # Called by the engine at each step of CHECKPOINTS: the in-memory
    # backend's fault injection crashes a process there by raising SimulatedCrash.
    checkpoint: Callable[[str], None] = lambda step: None
    # Wait until no message is waiting or held (True), or ``timeout`` passes
    # (False): only a backend that sees every queue at once can.
    join: Callable[[float | None], bool] | None = None
    close: Callable[[], None] = lambda: None

