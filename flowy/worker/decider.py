"""The decider: notifications in, committed decisions and their messages out.

For each run with news, the decider has its :class:`~flowy.worker.committer.Committer`
decide, commit and send what the decisions ask for, and only then
acknowledges the notification.  A crash
anywhere leaves the notification to come back: before the commit nothing
happened; after it, the next decider finds the batch unsent and sends it.

Runs are spread over threads by a hash of their id, each thread with its
own :class:`~flowy.core.replay.Replayer` (live runs are greenlets, bound to a
thread); in memory the polling thread decides itself (see
:class:`Decider`).  It also fires due timers (the timer queue), and wakes
the runs whose notifications or timers were lost (the reconciler).

The same code serves every backend: ``flowy decider`` on AWS, and
``LocalWorkflow`` on the in-memory backend.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

from ..backends.base import DECISIONS, TIMERS, Backend, Received
from ..core.errors import UNCONTAINED, LoopDied, MalformedMessage
from ..core.replay import Replayer
from ..declaration import Registry
from .committer import Committer
from .leases import HeldMessages
from .messages import (
    Notification,
    TimerMessage,
    parse,
)
from .poison import PoisonCounter
from .run_threads import InlineRuns, RunThreads, guarded

log = logging.getLogger("flowy.decider")

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
        self.timers = self.committer.timers
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
