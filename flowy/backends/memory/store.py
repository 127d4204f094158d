"""The run store in memory: the semantics of :mod:`flowy.backends.aws.store`, in dicts.

It keeps the DynamoDB table's items under the same names, so that the two
stores can be read side by side: per run, its record, its batches, ``sent``,
the inbox's ``fact#ID`` items, ``done#ATTEMPT`` marks and ``attempt#ATTEMPT`` items, and
per workflow id the run it is bound to.  Events are kept as the frozen
objects they are, never serialised: the simulation runs many thousands of
decisions.  One lock makes every method atomic, as every DynamoDB write is.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from ...core.errors import ConfigurationError, ErrorInfo
from ...core.events import Event, Fact
from ...core.protocol import Beat, fact_id, late_id, outcome_attempt
from ...core.runs import IN_HISTORY, OPEN, Batch, RunRecord
from ..clocks import MemoryClock

FACT = "fact#"  # the prefix of inbox item keys, as in the DynamoDB table


@dataclass
class _Attempt:
    """An ``attempt#ATTEMPT`` item: open for a worker to claim, then its starts and beats."""

    starts: int = 0
    beat: Beat | None = None


@dataclass
class _Run:
    """Every item of one run (the record itself is ``_RunStore._records``' value)."""

    order: int  # creation order: the tie-break of runs() started at the same time
    batches: list[Batch] = field(default_factory=list)
    sent: int | None = None  # None: no ``sent`` item yet
    # Inbox items by key; a dict keeps insertion order, which is arrival
    # order, since an item is only ever added once (a key freed by consume
    # and written again goes to the end, as a new arrival should).
    inbox: dict[str, Fact] = field(default_factory=dict)
    done: set[str] = field(default_factory=set)
    attempts: dict[str, _Attempt] = field(default_factory=dict)
    bad: dict[str, tuple[Fact, str]] = field(default_factory=dict)  # facts set aside, why
    wake: float | None = None  # the ``sent`` item's wake-up time, if it has one

    def count(self) -> int:
        """How many DynamoDB items these would be."""
        return (len(self.batches) + (self.sent is not None) + len(self.inbox) + len(self.done)
                + len(self.attempts) + len(self.bad))


class MemoryStore:
    """A :class:`~flowy.backends.base.RunStore` in memory, safe across threads."""

    def __init__(self, clock: MemoryClock) -> None:
        self._clock = clock
        # One lock for everything, taken directly (a Condition's ``with`` costs
        # two Python calls more); ``_changed`` on it wakes wait_closed.
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._records: dict[str, RunRecord] = {}
        self._items: dict[str, _Run] = {}
        self._workflow_ids: dict[str, str] = {}
        self._order = itertools.count()

    def _run(self, run_id: str) -> _Run:
        """The items of ``run_id``; as in DynamoDB, a run's history and inbox
        may be written before (or without) its record."""
        items = self._items.get(run_id)
        if items is None:
            items = self._items[run_id] = _Run(next(self._order))
        return items

    # -- runs -----------------------------------------------------------------

    def create_run(self, run: RunRecord) -> bool:
        with self._lock:
            if run.run_id in self._records:
                return False
            self._records[run.run_id] = dataclasses.replace(run)  # a copy: callers may mutate
            self._run(run.run_id)
            return True

    def get_run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            record = self._records.get(run_id)
            return None if record is None else dataclasses.replace(record)

    def close_run(self, run_id: str, status: str, at: float, *, result: str | None = None,
                  error: ErrorInfo | None = None, next_run: str | None = None) -> None:
        """As the DynamoDB update: set the status and time, and whichever of
        ``result``, ``error``, ``next_run`` are given.  A run that is not there
        (purged meanwhile) is left absent rather than written as a fragment."""
        with self._lock:
            record = self._records.get(run_id)
            if record is None:
                return
            record.status, record.closed_at = status, at
            if result is not None:
                record.result = result
            if error is not None:
                record.error = error
            if next_run is not None:
                record.next_run = next_run
            self._changed.notify_all()  # wakes wait_closed (each waits for its own run)

    def claim_workflow_id(self, workflow_id: str, run_id: str) -> str:
        with self._lock:
            return self._workflow_ids.setdefault(workflow_id, run_id)

    def runs(self, workflow: str | None = None, status: str | None = None
             ) -> Iterator[RunRecord]:
        """Runs of one workflow (``name`` or ``name@version``), newest first by
        ``started_at`` (then by creation), or of every workflow in creation
        order.  The selection is taken at the call; each record is read as
        the iteration reaches it, so a run closed meanwhile shows as closed."""
        with self._lock:
            chosen = [r for r in self._records.values()
                      if (status is None or r.status == status)
                      and (workflow is None or workflow in (r.workflow, r.name))]
            if workflow is not None:
                chosen.sort(key=lambda r: (r.started_at, self._items[r.run_id].order),
                            reverse=True)
            ids = [r.run_id for r in chosen]
        for run_id in ids:
            record = self.get_run(run_id)
            if record is not None:  # not deleted meanwhile
                yield record

    def delete_run(self, run: RunRecord) -> int:
        """Delete every item of a closed run; how many (the run's record
        included, when it was there)."""
        with self._lock:
            stored = self._records.get(run.run_id)
            if run.status == OPEN or (stored is not None and stored.status == OPEN):
                raise ConfigurationError(
                    f"run {run.run_id} is open: only closed runs are deleted")
            items = self._items.pop(run.run_id, None)
            count = 0 if items is None else items.count()
            if run.workflow_id is not None and \
                    self._workflow_ids.get(run.workflow_id) == run.run_id:
                del self._workflow_ids[run.workflow_id]  # unless a later run holds it
            if self._records.pop(run.run_id, None) is not None:
                count += 1
            return count

    def orphans(self) -> Iterator[str]:
        with self._lock:
            return iter([run_id for run_id in self._items if run_id not in self._records])

    def delete_orphan(self, run_id: str) -> int:
        with self._lock:
            if run_id in self._records or run_id not in self._items:
                return 0
            return self._items.pop(run_id).count()

    def wait_closed(self, run_id: str, timeout: float) -> None:
        """Return once ``run_id`` is closed, or after ``timeout`` seconds of the clock."""
        with self._lock:
            deadline = self._clock.now() + timeout
            while not self._closed(run_id) and self._clock.now() < deadline:
                self._clock.wait_until(self._changed, deadline)

    def _closed(self, run_id: str) -> bool:
        record = self._records.get(run_id)
        return record is not None and record.status != OPEN

    # -- history --------------------------------------------------------------

    def read_batches(self, run_id: str) -> list[Batch]:
        with self._lock:
            items = self._items.get(run_id)
            if items is None:
                return []
            # Copies of the event lists: a caller appending to one must not
            # change the stored history.
            return [Batch(version, list(events), at) for version, events, at in items.batches]

    def commit(self, run_id: str, version: int, events: Sequence[Event], at: float) -> bool:
        """Write batch ``version``, which must be the next one: a decider
        writes version v+1 only after reading v, so a gap is a bug in it."""
        with self._lock:
            batches = (self._items.get(run_id) or self._run(run_id)).batches
            if version <= len(batches):
                return False  # another decider wrote it first
            assert version == len(batches) + 1, (
                f"run {run_id}: commit of batch {version} after batch {len(batches)}")
            batches.append(Batch(version, list(events), at))
            return True

    def latest_version(self, run_id: str) -> int:
        with self._lock:
            items = self._items.get(run_id)
            return len(items.batches) if items is not None else 0

    def sent_version(self, run_id: str) -> int:
        with self._lock:
            items = self._items.get(run_id)
            return 0 if items is None or items.sent is None else items.sent

    # -- the inbox ------------------------------------------------------------

    def add_fact(self, run_id: str, fact: Fact) -> bool:
        item_key = FACT + fact_id(fact)
        with self._lock:
            inbox = (self._items.get(run_id) or self._run(run_id)).inbox
            if item_key in inbox:
                return False
            inbox[item_key] = fact
            return True

    def add_outcome(self, run_id: str, fact: Fact) -> bool:
        """First outcome wins, as in :meth:`flowy.backends.aws.store.DynamoStore.add_outcome`.

        The first outcome waits under ``fact#ATTEMPT``; while it waits, an
        outcome of another type goes to ``fact#ATTEMPT#late#TYPE`` and one of
        the same type is dropped.  (As there, once the first is consumed its
        item is gone, and the next outcome takes ``fact#ATTEMPT`` again: the
        workflow ignores an outcome of an attempt it no longer waits for.)"""
        key = outcome_attempt(fact)
        if key is None:
            raise ValueError(f"not an attempt's outcome: {fact!r}")
        item_key = FACT + key
        with self._lock:
            inbox = (self._items.get(run_id) or self._run(run_id)).inbox
            first = inbox.get(item_key)
            if first is None:
                inbox[item_key] = fact
                return True
            if type(first) is type(fact):
                return False  # a duplicate delivery
            item_key = FACT + late_id(key, type(fact).__name__)
            if item_key in inbox:
                return False
            inbox[item_key] = fact
            return True

    def read_inbox(self, run_id: str) -> list[tuple[str, Fact]]:
        """Waiting facts as ``(item key, fact)`` in arrival order (not by ``at``:
        stamps from different processes need not agree with arrival)."""
        with self._lock:
            items = self._items.get(run_id)
            return [] if items is None else list(items.inbox.items())

    def consume(self, run_id: str, consumed: Sequence[tuple[str, Fact]],
                sent_version: int | None, wake: float | None = None) -> None:
        with self._lock:
            items = self._items.get(run_id) or self._run(run_id)
            inbox, done = items.inbox, items.done
            for item_key, fact in consumed:
                inbox.pop(item_key, None)
                attempt = outcome_attempt(fact)
                if attempt is not None:
                    done.add(attempt)
            if sent_version is not None:
                items.sent = sent_version  # overwritten, as the DynamoDB put does
                items.wake = wake

    def set_aside(self, run_id: str, refused: Sequence[tuple[str, str]]) -> None:
        with self._lock:
            items = self._items.get(run_id)
            if items is None:
                return
            for item_key, reason in refused:
                fact = items.inbox.pop(item_key, None)
                if fact is not None:
                    items.bad[item_key] = (fact, reason)

    def set_aside_items(self) -> list[tuple[str, str, str]]:
        """``(run id, item key, reason)`` of every fact set aside, for checks."""
        with self._lock:
            return [(run_id, item_key, reason) for run_id, items in self._items.items()
                    for item_key, (_fact, reason) in items.bad.items()]

    def set_wake(self, run_id: str, version: int, wake: float | None) -> None:
        with self._lock:
            items = self._items.get(run_id)
            if items is not None and items.sent == version:
                items.wake = wake

    def runs_to_wake(self, before: float, limit: int) -> list[tuple[str, float]]:
        with self._lock:
            due = []
            for run_id, items in self._items.items():
                times = [fact.at for fact in items.inbox.values()]
                if items.wake is not None:
                    times.append(items.wake)
                if times and (since := min(times)) < before:
                    due.append((run_id, since))
        due.sort(key=lambda pair: pair[1])
        return due[:limit]

    # -- attempts -------------------------------------------------------------

    def open_attempts(self, run_id: str, attempts: Sequence[str], *, again: bool = False
                      ) -> None:
        with self._lock:
            held = (self._items.get(run_id) or self._run(run_id)).attempts
            for attempt in attempts:
                if not again or attempt not in held:
                    held[attempt] = _Attempt()

    def close_attempts(self, run_id: str, attempts: Sequence[str]) -> None:
        with self._lock:
            items = self._items.get(run_id)
            if items is None:
                return
            for attempt in attempts:
                items.attempts.pop(attempt, None)

    def claim(self, run_id: str, attempt: str, at: float, *, again: bool = False) -> int | None:
        with self._lock:
            items = self._items.get(run_id)
            held = None if items is None else items.attempts.get(attempt)
            if held is None:
                return None
            if held.starts and not again:
                return 0
            held.starts += 1
            held.beat = Beat(at, at)
            return held.starts

    def outcome_of(self, run_id: str, attempt: str) -> str | None:
        with self._lock:
            items = self._items.get(run_id)
            if items is None:
                return None
            if attempt in items.done:
                return IN_HISTORY
            waiting = items.inbox.get(FACT + attempt)
            return None if waiting is None else type(waiting).__name__

    def record_beat(self, run_id: str, attempt: str, at: float, details: str | None = None
                    ) -> None:
        """As the DynamoDB update: details are kept from the last beat that had some."""
        with self._lock:
            items = self._items.get(run_id)
            held = None if items is None else items.attempts.get(attempt)
            if held is not None and held.beat is not None:
                old = held.beat
                held.beat = Beat(old.started_at, at, old.details if details is None else details)

    def get_beat(self, run_id: str, attempt: str) -> Beat | None:
        with self._lock:
            items = self._items.get(run_id)
            held = None if items is None else items.attempts.get(attempt)
            return None if held is None else held.beat
