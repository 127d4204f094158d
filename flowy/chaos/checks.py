"""What a chaos run must end in, checked from what it left behind.

The runner reads each started run's end (its status and result, and the
histories of the run and its sub-workflows) and the execution log the
activities wrote; everything here is pure, over those.

* No run is lost: each closed by the end of the drain.
* No run is wrong: each completed, with its shape's result.
* No completion is duplicated: in each history, every call has at most one
  completed attempt (an attempt completed twice, or two attempts of one call
  completed, are both duplicates).
* Nothing completed that never ran: every completed activity attempt has a
  line in the execution log.

Executions per attempt are figures, not checks: delivery is at-least-once,
and a worker killed after running an attempt but before reporting it runs
again elsewhere.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..core.events import Event, TaskCompleted, TaskFailed, TaskScheduled, TaskTimedOut
from ..core.runs import COMPLETED, OPEN

OUTCOMES = (TaskCompleted, TaskFailed, TaskTimedOut)
# Enough problems to see what broke; the counts say how much.
SHOWN_PROBLEMS = 20


@dataclass(frozen=True)
class RunEnd:
    """What one started run ended in: its last run's status and result, and the
    histories of the run and of its sub-workflows, by run id."""

    run_id: str
    shape: str
    status: str
    result: Any
    expected: Any
    histories: Mapping[str, list[Event]] = field(default_factory=dict)

    @property
    def lost(self) -> bool:
        return self.status == OPEN

    @property
    def wrong(self) -> bool:
        return not self.lost and (self.status != COMPLETED or self.result != self.expected)


def duplicated_completions(history: list[Event]) -> dict[str, int]:
    """The calls of one history with more than one completion, and how many."""
    call_of = {e.key: e.call_id for e in history if isinstance(e, TaskScheduled)}
    completions = Counter(call_of.get(e.key, e.key) for e in history
                          if isinstance(e, TaskCompleted))
    return {call: count for call, count in completions.items() if count > 1}


def activity_attempts(histories: Mapping[str, list[Event]]) -> tuple[set[str], set[str]]:
    """The activity attempts the histories scheduled and those that completed,
    as the ``RUN_ID/KEY`` tokens the execution log records."""
    scheduled, completed = set(), set()
    for run_id, history in histories.items():
        keys = {e.key for e in history if isinstance(e, TaskScheduled) and e.kind == "activity"}
        scheduled |= {f"{run_id}/{key}" for key in keys}
        completed |= {f"{run_id}/{e.key}" for e in history
                      if isinstance(e, TaskCompleted) and e.key in keys}
    return scheduled, completed


def describe_open(end: RunEnd) -> str:
    """A lost run, by what its histories show: their sizes and the attempts
    still waiting for an outcome."""
    parts = []
    for run_id, history in end.histories.items():
        ended = {e.key for e in history if isinstance(e, OUTCOMES)}
        waiting = [e.key for e in history if isinstance(e, TaskScheduled) and e.key not in ended]
        last = type(history[-1]).__name__ if history else "nothing"
        parts.append(f"{run_id}: {len(history)} events, last {last}, waiting on "
                     f"{', '.join(waiting) or 'no attempt'}")
    return f"run {end.run_id} ({end.shape}) still open; " + "; ".join(parts)


def execution_figures(lines: Iterable[Mapping[str, Any]], attempts: set[str]
                      ) -> dict[str, Any]:
    """Executions per attempt, over the attempts scheduled and those logged."""
    executions = Counter(line["attempt"] for line in lines)
    counts = [executions.get(token, 0) for token in attempts | set(executions)]
    return {"lines": sum(executions.values()), "attempts": len(counts),
            "min": min(counts, default=0), "max": max(counts, default=0),
            "mean": round(statistics.fmean(counts), 3) if counts else 0.0,
            "more_than_once": sum(count > 1 for count in counts)}


def summarize(ends: list[RunEnd], lines: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The figures and violations of a chaos run's outcome (the runner adds
    its kills and times)."""
    problems: list[str] = []
    by_shape: dict[str, dict[str, int]] = {}
    duplicated = 0
    scheduled: set[str] = set()
    completed: set[str] = set()
    for end in ends:
        shape = by_shape.setdefault(end.shape, {"runs": 0, "lost": 0, "wrong": 0})
        shape["runs"] += 1
        shape["lost"] += end.lost
        shape["wrong"] += end.wrong
        if end.lost:
            problems.append(describe_open(end))
        elif end.wrong:
            problems.append(f"run {end.run_id} ({end.shape}) ended {end.status} with "
                            f"{end.result!r}, not {end.expected!r}")
        for run_id, history in end.histories.items():
            for call, count in sorted(duplicated_completions(history).items()):
                duplicated += 1
                problems.append(f"run {run_id} ({end.shape}): call {call} completed "
                                f"{count} times")
        run_scheduled, run_completed = activity_attempts(end.histories)
        scheduled |= run_scheduled
        completed |= run_completed
    logged = {line["attempt"] for line in lines}
    unexecuted = sorted(completed - logged)
    problems += [f"attempt {token} completed, but the execution log has no line for it"
                 for token in unexecuted]
    return {"runs": len(ends), "lost": sum(e.lost for e in ends),
            "wrong": sum(e.wrong for e in ends), "duplicated_completions": duplicated,
            "completed_without_execution": len(unexecuted), "by_shape": by_shape,
            "executions": execution_figures(lines, scheduled),
            "problems": problems[:SHOWN_PROBLEMS], "problem_count": len(problems)}


def violated(summary: Mapping[str, Any]) -> bool:
    """Whether the summary shows any violation."""
    return any(summary[name] for name in ("lost", "wrong", "duplicated_completions",
                                          "completed_without_execution"))
