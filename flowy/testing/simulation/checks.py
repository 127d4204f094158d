"""The invariants a simulated world must end in (DESIGN.md section 3).

* No run is lost: every run that started closed, and every restart chain
  ends in a closed run.
* A history is totally ordered: its batches are versions 1, 2, 3...
* No completion is duplicated: no attempt has two outcomes of one kind in
  its history, and no run closes twice.
* Results are correct: every top-level run ends with the result its
  workload says.
* Every scheduled task ends: each attempt in a closed run's history has an
  outcome, and no message waits in a dead-letter queue.
* Nothing legitimate is refused: in a world without forgers, no fact is
  set aside (a decider judging on a stale history would refuse real ones).

Each check returns what it found wrong, as sentences, so that the report of
a failing seed says what broke, not only that something did.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from ...backends.base import DECISIONS, TIMERS
from ...backends.memory import MemoryBackend
from ...client import FlowyClient
from ...core.errors import TaskError
from ...core.events import (
    CLOSING_TYPES,
    Event,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
)
from ...core.runs import COMPLETED, FAILED, OPEN, RESTARTED, RunRecord

OUTCOME_TYPES = (TaskCompleted, TaskFailed, TaskTimedOut)
CLOSED_STATUS = {"WorkflowCompleted": COMPLETED, "WorkflowFailed": FAILED,
                 "WorkflowRestarted": RESTARTED}


def scheduled_attempts(client: FlowyClient) -> int:
    """How many activity attempts the histories scheduled."""
    return sum(isinstance(e, TaskScheduled) and e.kind == "activity"
               for record in client.store.runs() for e in client.history(record.run_id))


def check_runs(client: FlowyClient) -> list[str]:
    """Every run in the store: closed, closed once, as its history says, with
    one outcome of each kind per attempt, and an outcome for every attempt."""
    problems = []
    for record in client.store.runs():
        batches = client.store.read_batches(record.run_id)
        versions = [batch.version for batch in batches]
        if versions != list(range(1, len(versions) + 1)):
            problems.append(f"run {record.run_id}: its batches are versions {versions}")
        problems += _check_history(record, [e for batch in batches for e in batch.events])
    return problems


def _check_history(record: RunRecord, history: list[Event]) -> list[str]:
    run = f"run {record.run_id} ({record.workflow})"
    if record.status == OPEN:
        return [f"{run} is still open: lost ({len(history)} events in its history)"]
    problems = []
    closings = [e for e in history if isinstance(e, CLOSING_TYPES)]
    if len(closings) != 1:
        problems.append(f"{run} closed {len(closings)} times in its history")
    elif CLOSED_STATUS[type(closings[0]).__name__] != record.status:
        problems.append(f"{run} is {record.status}, but its history ends with "
                        f"{type(closings[0]).__name__}")
    outcomes = Counter((type(e).__name__, e.key) for e in history
                       if isinstance(e, OUTCOME_TYPES))
    problems += [f"{run}: attempt {key} has {count} {kind} events" for (kind, key), count
                 in sorted(outcomes.items()) if count > 1]
    scheduled = Counter(e.key for e in history if isinstance(e, TaskScheduled))
    problems += [f"{run}: attempt {key} was scheduled {count} times"
                 for key, count in sorted(scheduled.items()) if count > 1]
    ended = {key for _, key in outcomes}
    problems += [f"{run}: attempt {key} never ended" for key in sorted(scheduled)
                 if key not in ended]
    return problems


def check_results(client: FlowyClient, started: Iterable[tuple[str, Any]]) -> list[str]:
    """Each ``(run id, expected result)``: the run's last run completed with it."""
    problems = []
    for run_id, expected in started:
        record = client.last_run(run_id)
        if record.status != COMPLETED:
            problems.append(f"run {run_id} ({record.workflow}) ended {record.status}"
                            + (f": {record.error.message}" if record.error else ""))
            continue
        try:
            result = client.wait(run_id, timeout=0)
        except TaskError as exc:  # pragma: no cover - completed runs don't raise
            problems.append(f"run {run_id}: {exc}")
            continue
        if result != expected:
            problems.append(f"run {run_id} ({record.workflow}) returned {result!r}, "
                            f"not {expected!r}")
    return problems


def check_dead_letters(backend: MemoryBackend, task_queues: Iterable[str]) -> list[str]:
    """Nothing was given up on: a dead-lettered message is a run's wake-up,
    a timer or an attempt that never comes back."""
    return [f"a message on {queue} was dead-lettered ({reason}): {body[:160]}"
            for queue in (DECISIONS, TIMERS, *task_queues)
            for body, reason in backend.queues.dead_letters(queue)]


def check_set_aside(backend: MemoryBackend) -> list[str]:
    """No fact was refused: every fact in a simulated world is genuine."""
    return [f"run {run_id}: a genuine fact was set aside as {item}: {reason}"
            for run_id, item, reason in backend.store.set_aside_items()]
