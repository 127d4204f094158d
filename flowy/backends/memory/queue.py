"""One in-memory queue's messages, as :class:`~flowy.backends.memory.queues.MemoryQueues`
keeps them: visible (a deque, or for a FIFO queue a deque per group), delayed
(a heap by the time they show), in flight (by receipt, with a heap of lease
ends whose stale entries are skipped), and the receivers waiting for them.
Every method is called with the queues' lock held.
"""

from __future__ import annotations

import threading
from collections import deque

from .faults import Faults

DLQ_SUFFIX = "-dlq"


class Message:
    __slots__ = ("id", "body", "group", "order", "receive_count", "receipt", "lease_end",
                 "reason")

    def __init__(self, id: str, body: str, group: str | None, reason: str = "",
                 order: int = 0) -> None:
        self.id, self.body, self.group, self.reason = id, body, group, reason
        self.order = order  # FIFO: its place in its group, kept when a lease ends
        self.receive_count = 0
        self.receipt: str | None = None  # of the current delivery, while in flight
        self.lease_end = 0.0


class NewestFirst(threading.Condition):
    """A condition that wakes its newest waiters first.  A thread that has
    only just begun to wait is still warm (in the CPU's caches, and in the
    scheduler's favour); waking the one that waited longest, as a Condition
    does, would pass a run's steps from receiver thread to receiver thread,
    each of them cold, which costs a chain of steps a quarter of its speed."""

    def notify(self, n: int = 1) -> None:  # with the lock held, as every caller here has it
        waiters = self._waiters  # type: ignore[attr-defined]
        while waiters and n > 0:
            try:
                waiters.pop().release()
            except RuntimeError:  # released by a notify interrupted mid-way (gh-92530)
                continue
            n -= 1


class Queue:
    """One queue's messages.  Invariant for FIFO: a group is in ``ready``
    exactly when it has waiting messages and none in flight.  As on SQS, one
    receive may take several messages of a group, in order; then the group
    delivers no more until every one of them is gone or visible again."""

    __slots__ = ("name", "fifo", "is_dlq", "cond", "receivers", "visible", "groups", "ready",
                 "busy", "waiting", "delayed", "leases", "in_flight", "dedup", "dedup_order")

    def __init__(self, name: str, fifo: bool, lock: threading.RLock) -> None:
        self.name, self.fifo = name, fifo
        self.is_dlq = name.endswith(DLQ_SUFFIX)  # dead letters wait; they are not redriven
        self.cond = NewestFirst(lock)
        self.receivers = 0  # threads waiting on ``cond`` in receive
        self.visible: deque[Message] = deque()  # standard
        self.groups: dict[str, deque[Message]] = {}  # FIFO: waiting messages; none empty
        self.ready: deque[str] = deque()  # FIFO
        self.busy: dict[str, int] = {}  # FIFO: groups with messages in flight: how many
        self.waiting = 0  # FIFO: messages in groups
        self.delayed: list[tuple[float, int, Message]] = []
        self.leases: list[tuple[float, int, str]] = []  # (end, seq, receipt), maybe stale
        self.in_flight: dict[str, Message] = {}  # by receipt
        self.dedup: dict[str, float] = {}  # FIFO: dedup id -> when first sent
        self.dedup_order: deque[tuple[float, str]] = deque()

    def visible_count(self) -> int:
        return self.waiting if self.fifo else len(self.visible)

    def next_event(self) -> float | None:
        """When a delay or lease (perhaps a stale one) ends next."""
        delayed, leases = self.delayed, self.leases
        if delayed:
            return min(delayed[0][0], leases[0][0]) if leases else delayed[0][0]
        return leases[0][0] if leases else None

    def is_due(self, now: float) -> bool:
        """Whether a delay or lease (perhaps a stale one) has ended by ``now``."""
        return bool((self.delayed and self.delayed[0][0] <= now)
                    or (self.leases and self.leases[0][0] <= now))

    def wake(self, count: int) -> None:
        """``count`` messages became visible: wake as many waiting receivers
        (each one that wakes looks before it waits again, and takes what it
        finds).  The lock is held."""
        if self.receivers:
            self.cond.notify(count)

    def wake_all(self) -> None:
        """Wake every waiting receiver, to look again (and to see when to)."""
        if self.receivers:
            self.cond.notify_all()

    def push(self, message: Message) -> None:
        """Make ``message`` visible, behind the others."""
        if not self.fifo:
            self.visible.append(message)
            return
        group = message.group
        assert group is not None
        waiting = self.groups.get(group)
        if waiting is None:
            waiting = self.groups[group] = deque()
            if group not in self.busy:
                self.ready.append(group)
        waiting.append(message)
        self.waiting += 1

    def give_back(self, message: Message) -> None:
        """An in-flight message whose lease ended: visible again, and in a
        FIFO queue first of its group, whose order it keeps."""
        message.receipt = None
        if not self.fifo:
            self.visible.append(message)
            return
        group = message.group
        assert group is not None
        waiting = self.groups.setdefault(group, deque())
        place = 0  # before the group's later messages (those of a batch come back one by one)
        while place < len(waiting) and waiting[place].order < message.order:
            place += 1
        waiting.insert(place, message)
        self.waiting += 1
        if self._leaves_flight(group):
            self.ready.append(group)

    def release(self, message: Message) -> bool:
        """An in-flight message is gone: its FIFO group may deliver the next
        (True if it has one waiting)."""
        group = message.group
        if self.fifo and group is not None and self._leaves_flight(group):
            if group in self.groups:
                self.ready.append(group)
                return True
        return False

    def _leaves_flight(self, group: str) -> bool:
        """One of the group's messages is no longer in flight: whether none is."""
        count = self.busy[group] - 1
        if count:
            self.busy[group] = count
            return False
        del self.busy[group]
        return True

    def pop(self, faults: Faults | None) -> Message | None:
        """The next message to deliver, out of the visible ones."""
        if self.fifo:
            if not self.ready:
                return None
            group = self.ready.popleft()
            self.busy[group] = 0
            return self.pop_from(group)
        visible = self.visible
        if not visible:
            return None
        if faults is not None and len(visible) > 1 and faults.draw(faults.reorder):
            index = 1 + faults.choose(len(visible) - 1)
            message = visible[index]
            del visible[index]
            faults.record(f"reorder {self.name} {message.id}")
            return message
        return visible.popleft()

    def pop_from(self, group: str) -> Message | None:
        """The next message of FIFO ``group``, one of whose messages the
        same receive took: SQS gives a receive as many of a group's as it can."""
        waiting = self.groups.get(group)
        if waiting is None:
            return None
        message = waiting.popleft()
        if not waiting:
            del self.groups[group]  # a group per run: don't keep them all
        self.waiting -= 1
        self.busy[group] += 1
        return message
