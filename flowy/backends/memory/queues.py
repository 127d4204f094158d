"""Queues in memory with the semantics of SQS that the engine relies on.

* At-least-once with leases: a received message is hidden for its lease and
  comes back, with a new receipt, unless acknowledged first; after
  ``max_receives`` deliveries the next receive moves it to the queue's
  dead-letter queue instead (SQS's redrive policy).
* :data:`~flowy.backends.base.DECISIONS` is FIFO: every message has a group,
  and a group's messages come in order.  A receive takes as many of a
  group's waiting messages as it may, and the group delivers no more while
  any of them is in flight.  A message whose deduplication id was sent in
  the last five minutes is dropped.  Every other queue is standard, with
  per-message delays of up to 15 minutes, and (unless faults reorder it)
  delivers in the order messages became visible.

Everything is O(log n) per message, as fan-out benchmarks push tens of
thousands of messages through: visible messages are deques, delayed ones a
heap by the time they show, leases a heap by their end, and stale heap
entries (a message acknowledged or extended meanwhile) are skipped when they
come up rather than searched for.  Time-driven changes (a delay or lease
ending) are applied lazily, at the next operation on the queue.  One
queue's state is :class:`~flowy.backends.memory.queue.Queue`.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import threading
from collections.abc import Collection, Sequence

from ...core.errors import ServiceError
from ..base import DECISIONS, Outgoing, Received
from ..clocks import MemoryClock
from .faults import Faults
from .queue import DLQ_SUFFIX, Message, Queue

log = logging.getLogger("flowy.backends.memory")

MAX_DELAY = 900.0  # seconds: the SQS limit on a message's delay
DEDUP_WINDOW = 300.0  # seconds a FIFO deduplication id is remembered, as in SQS


def dead_letter_queue(queue: str) -> str:
    """The dead-letter queue of ``queue``: where its poison messages wait."""
    return queue + DLQ_SUFFIX


class MemoryQueues:
    """:class:`~flowy.backends.base.Queues` in memory, safe across threads.

    Queues are made on first use; those named in ``fifo`` are FIFO.  One lock
    guards them all: every operation is short, and ``join`` must see all
    queues at one instant.

    A receiver that waits is woken by what can give it a message: one waiting
    receiver per message that becomes visible (a sender does not wake them
    all to race for it), and every one when a delay that ends sooner than
    any before is sent, to look again when it ends.
    """

    max_delay: float = MAX_DELAY

    def __init__(self, clock: MemoryClock, *, max_receives: int | None = 5,
                 faults: Faults | None = None, fifo: Collection[str] = (DECISIONS,)) -> None:
        self.clock = clock
        self.max_receives = max_receives
        self.faults = faults
        self._fifo = frozenset(fifo)
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)  # notified when work goes: for join
        self._joiners = 0  # threads waiting on _idle in join
        self._queues: dict[str, Queue] = {}
        self._closed = False
        self._ids = itertools.count(1)  # message ids and receipts: deterministic per run
        self._seq = itertools.count()  # heap tie-breaks
        if faults is not None:
            faults.attach(self)

    def _queue(self, name: str) -> Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = Queue(name, name in self._fifo, self._lock)
        return queue

    def _due(self, queue: Queue, now: float) -> None:
        """Apply the delays and leases that have ended by ``now``."""
        shown = 0
        delayed, leases = queue.delayed, queue.leases
        while delayed and delayed[0][0] <= now:
            queue.push(heapq.heappop(delayed)[2])
            shown += 1
        while leases and leases[0][0] <= now:
            end, _, receipt = heapq.heappop(leases)
            message = queue.in_flight.get(receipt)
            if message is not None and message.lease_end == end:  # else acked or extended
                del queue.in_flight[receipt]
                queue.give_back(message)
                shown += 1
        if shown:
            queue.wake(shown)

    def _work_went(self) -> None:
        """A message is done (or parked): a join may be over."""
        if self._joiners:
            self._idle.notify_all()

    # -- sending --------------------------------------------------------------

    def send(self, queue: str, messages: Sequence[Outgoing]) -> None:
        """Send every message, or none if one is invalid (ServiceError), as
        SQS refuses a bad batch entry as the sender's fault."""
        with self._lock:
            q = self._queues.get(queue) or self._queue(queue)
            fifo, max_delay = q.fifo, self.max_delay
            for out in messages:
                if fifo:
                    if out.group is None:
                        raise ServiceError(f"a message for the FIFO queue {q.name} needs a group")
                    if out.delay:
                        raise ServiceError(f"the FIFO queue {q.name} has no per-message delays")
                elif not 0 <= out.delay <= max_delay:
                    raise ServiceError(f"a delay of {out.delay} s for {q.name}: SQS allows 0 "
                                       f"to {max_delay:g} s")
            if not messages:
                return
            delayed = q.delayed
            soonest = delayed[0] if delayed else None
            if fifo or self.faults is not None:
                now, shown = self.clock.now(), 0
                for out in messages:
                    shown += self._enqueue(q, out, now)
            else:  # the common case, inline: standard, no faults
                shown, ids, visible = 0, self._ids, q.visible
                at: float | None = None  # the time, read only if a delay needs it
                for out in messages:
                    message = Message(f"m{next(ids)}", out.body, None)
                    if out.delay > 0:
                        if at is None:
                            at = self.clock.now()
                        heapq.heappush(delayed, (at + out.delay, next(self._seq), message))
                    else:
                        visible.append(message)
                        shown += 1
            if delayed and delayed[0] is not soonest:
                q.wake_all()  # a delay ends sooner than waiting receivers look again
            elif shown:
                q.wake(shown)

    def _enqueue(self, q: Queue, out: Outgoing, now: float) -> int:
        """Enqueue one message; how many copies became visible at once."""
        number = next(self._ids)
        ident = f"m{number}"
        faults = self.faults
        if faults is not None and faults.drops(q.name):
            faults.record(f"drop {q.name} {ident}")
            return 0
        if q.fifo and out.dedup is not None:
            dedup_order, dedup = q.dedup_order, q.dedup
            while dedup_order and dedup_order[0][0] <= now - DEDUP_WINDOW:
                sent, old = dedup_order.popleft()
                if dedup.get(old) == sent:
                    del dedup[old]
            if out.dedup in dedup:
                return 0  # sent in the last five minutes: SQS accepts it and drops it
            dedup[out.dedup] = now
            dedup_order.append((now, out.dedup))
        copies = 1
        if faults is not None and faults.draw(faults.duplicate):
            faults.record(f"duplicate {q.name} {ident}")
            copies = 2
        delay = out.delay
        if not q.fifo and faults is not None and faults.draw(faults.delay):
            extra = faults.uniform(0.0, faults.max_extra_delay)
            faults.record(f"delay {q.name} {ident} +{extra:.3f}s")
            delay += extra
        group = out.group if q.fifo else None
        for _ in range(copies):  # a duplicate has the same id, as an SQS one does
            message = Message(ident, out.body, group, order=number)
            if delay > 0:
                heapq.heappush(q.delayed, (now + delay, next(self._seq), message))
            else:
                q.push(message)
        return 0 if delay > 0 else copies

    # -- receiving ------------------------------------------------------------

    def receive(self, queue: str, *, max_messages: int, wait: float, lease: float
                ) -> list[Received]:
        if max_messages < 1:
            raise ValueError(f"max_messages must be at least 1, not {max_messages}")
        clock = self.clock
        with self._lock:
            q = self._queues.get(queue) or self._queue(queue)
            now = clock.now()
            deadline = now + wait if wait > 0 else now
            while True:
                if self._closed:
                    return []
                got = self._take(q, now, max_messages, lease)
                if got or now >= deadline:
                    return got
                # Look again when the wait ends, or a delay or lease might.
                event = q.next_event()
                q.receivers += 1
                try:
                    clock.wait_until(q.cond, deadline if event is None or event > deadline
                                     else event)
                finally:
                    q.receivers -= 1
                now = clock.now()

    def _take(self, q: Queue, now: float, max_messages: int, lease: float) -> list[Received]:
        delayed, leases = q.delayed, q.leases
        if (delayed and delayed[0][0] <= now) or (leases and leases[0][0] <= now):  # is_due
            self._due(q, now)
        source = q.ready if q.fifo else q.visible  # not empty exactly when pop has a message
        if not source:  # a waiting receiver looks before and after it waits
            return []
        taken: list[Received] = []
        faults, in_flight, ids, seq = self.faults, q.in_flight, self._ids, self._seq
        limit = None if q.is_dlq else self.max_receives
        end = now + lease
        group = None  # FIFO: the group this receive takes from
        while len(taken) < max_messages:
            message = None if group is None else q.pop_from(group)
            if message is None:
                message = q.pop(faults) if source else None
                if message is None:
                    break
                group = message.group
            count = message.receive_count
            if limit is not None and count >= limit:
                q.release(message)
                self._to_dlq(q, message, f"received {count} times (max_receives={limit})")
                group = None  # released: the group may be ready again, to pop afresh
                continue
            message.receive_count = count = count + 1
            message.receipt = receipt = f"{message.id}.{next(ids)}"
            message.lease_end = end
            in_flight[receipt] = message
            heapq.heappush(leases, (end, next(seq), receipt))
            taken.append(Received(message.id, message.body, receipt, count))
        if len(leases) > 2 * len(in_flight) + 1024:  # mostly stale: rebuild, O(1) amortised
            q.leases = [(m.lease_end, next(seq), r) for r, m in in_flight.items()]
            heapq.heapify(q.leases)
        return taken

    def _to_dlq(self, q: Queue, message: Message, reason: str) -> None:
        dlq = self._queue(dead_letter_queue(q.name))
        message.reason, message.receive_count, message.receipt = reason, 0, None
        dlq.push(message)
        dlq.wake(1)
        self._work_went()
        log.warning("message %s on %s moved to %s: %s", message.id, q.name, dlq.name, reason)

    def extend(self, queue: str, receipts: Sequence[str], lease: float) -> list[str]:
        if lease < 0:
            raise ValueError(f"a lease can't be negative ({lease})")
        with self._lock:
            q = self._queues.get(queue) or self._queue(queue)
            now = self.clock.now()
            if q.is_due(now):
                self._due(q, now)  # a lease that ended can't be extended
            in_flight = q.in_flight
            failed: list[str] = []
            if lease == 0:
                shown = 0
                for receipt in receipts:
                    message = in_flight.pop(receipt, None)
                    if message is None:
                        failed.append(receipt)
                    else:
                        q.give_back(message)
                        shown += 1
                if shown:
                    q.wake(shown)
                return failed
            end, leases, seq = now + lease, q.leases, self._seq
            for receipt in receipts:
                message = in_flight.get(receipt)
                if message is None:
                    failed.append(receipt)
                else:
                    message.lease_end = end
                    heapq.heappush(leases, (end, next(seq), receipt))
            return failed

    def acknowledge(self, queue: str, receipts: Sequence[str]) -> list[str]:
        with self._lock:
            q = self._queues.get(queue) or self._queue(queue)
            now = self.clock.now()
            delayed, leases = q.delayed, q.leases
            if (delayed and delayed[0][0] <= now) or (leases and leases[0][0] <= now):  # is_due
                self._due(q, now)  # a receipt whose lease ended fails
            in_flight = q.in_flight
            failed: list[str] = []
            if q.fifo:
                shown = 0
                for receipt in receipts:
                    message = in_flight.pop(receipt, None)
                    if message is None:
                        failed.append(receipt)
                    elif q.release(message):
                        shown += 1
                if shown:
                    q.wake(shown)  # a group's next message may go now
            else:
                for receipt in receipts:
                    if in_flight.pop(receipt, None) is None:
                        failed.append(receipt)
            if len(failed) < len(receipts):
                self._work_went()
            return failed

    def dead_letter(self, queue: str, message: Received, reason: str) -> None:
        """As on SQS: a copy goes to the dead-letter queue, then the message
        is deleted; if its lease was lost, the delete fails and it comes back."""
        with self._lock:
            q = self._queue(queue)
            self._due(q, self.clock.now())
            held = q.in_flight.pop(message.receipt, None)
            if held is not None and q.release(held):
                q.wake(1)
            self._to_dlq(q, Message(message.id, message.body,
                                     None if held is None else held.group), reason)

    def redrive(self, queue: str) -> int:
        """Move the dead letters of ``queue`` back, as new messages (past the
        deduplication window: a redrive is meant to deliver them again)."""
        with self._lock:
            q = self._queue(queue)
            dlq = self._queue(dead_letter_queue(queue))
            self._due(dlq, self.clock.now())
            count = len(dlq.visible)  # only those waiting now: poison must not cycle
            for _ in range(count):
                dead = dlq.visible.popleft()
                # A message dead-lettered after its lease was lost has no
                # known group; SQS's redrive would need one too.
                group = (dead.group or "dead-letter") if q.fifo else None
                number = next(self._ids)
                q.push(Message(f"m{number}", dead.body, group, order=number))
            if count:
                q.wake(count)
            return count

    # -- shutdown, faults and introspection -----------------------------------

    def close(self) -> None:
        """Wake every waiting receiver; from now on receives return [] at once."""
        with self._lock:
            self._closed = True
            for q in self._queues.values():
                q.wake_all()
            self._idle.notify_all()

    def expire_leases(self, queue: str | None = None) -> int:
        """Make every in-flight message (of ``queue``, or of all) visible now,
        as if its holder had stalled past its lease; how many.  (Faults
        logs it: see :meth:`Faults.expire_leases`.)"""
        with self._lock:
            count = 0
            for q in [self._queue(queue)] if queue is not None else self._queues.values():
                for message in q.in_flight.values():
                    q.give_back(message)
                count += len(q.in_flight)
                if q.in_flight:
                    q.wake(len(q.in_flight))
                    q.in_flight.clear()  # their lease heap entries are stale now
            return count

    def depth(self, queue: str) -> tuple[int, int, int]:
        """``(visible, in flight, delayed)`` messages of ``queue``; a FIFO
        queue's visible ones include those behind a group's message in flight."""
        with self._lock:
            q = self._queue(queue)
            self._due(q, self.clock.now())
            return q.visible_count(), len(q.in_flight), len(q.delayed)

    def receivable(self, queue: str) -> bool:
        """Whether a receive from ``queue`` now would get a message (a FIFO
        queue's waiting messages may all be behind messages in flight)."""
        with self._lock:
            q = self._queue(queue)
            self._due(q, self.clock.now())
            return bool(q.ready if q.fifo else q.visible)

    def next_event(self) -> float | None:
        """When a delay or a lease ends next on any queue (dead-letter queues
        aside), perhaps making a message visible: when a simulation that has
        nothing to do moves its clock to."""
        with self._lock:
            events = [event for q in self._queues.values()
                      if not q.is_dlq and (event := q.next_event()) is not None]
            return min(events, default=None)

    def dead_letters(self, queue: str) -> list[tuple[str, str]]:
        """``(body, reason)`` of every message in the dead-letter queue of ``queue``."""
        with self._lock:
            dlq = self._queue(dead_letter_queue(queue))
            self._due(dlq, self.clock.now())
            held = (list(dlq.visible) + list(dlq.in_flight.values())
                    + [m for _, _, m in sorted(dlq.delayed)])
            return [(m.body, m.reason) for m in held]

    def join(self, timeout: float | None = None, *, delayed: bool = True) -> bool:
        """Block until no queue (dead-letter queues aside: nobody works on
        them) has visible or in-flight messages, nor, with ``delayed``,
        delayed ones; False after ``timeout`` seconds of the clock, or if the
        queues close first."""
        with self._lock:
            deadline = math.inf if timeout is None else self.clock.now() + timeout
            while True:
                now = self.clock.now()
                busy, wake_at = False, deadline
                for q in list(self._queues.values()):
                    if q.is_dlq:
                        continue
                    self._due(q, now)
                    busy = busy or bool(q.visible_count() or q.in_flight
                                        or (delayed and q.delayed))
                    event = q.next_event()
                    if event is not None:
                        wake_at = min(wake_at, event)
                if not busy:
                    return True
                if now >= deadline or self._closed:
                    return False
                self._joiners += 1
                try:
                    self.clock.wait_until(self._idle, wake_at)
                finally:
                    self._joiners -= 1
