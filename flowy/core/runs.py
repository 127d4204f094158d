"""Runs as the engine records them: a run's record, its committed batches, its statuses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .errors import ErrorInfo
from .events import Event

OPEN, COMPLETED, FAILED, RESTARTED = "open", "completed", "failed", "restarted"
STATUSES = (OPEN, COMPLETED, FAILED, RESTARTED)
IN_HISTORY = "in history"  # how an attempt ended, once a decider took its outcome


class Batch(NamedTuple):
    """One committed decision: the facts it took and the decisions it made."""

    version: int
    events: list[Event]
    committed_at: float


@dataclass
class RunRecord:
    """What the store says about one run.  ``workflow`` is ``name@version``;
    ``parent_run``, ``parent_key`` and ``parent_token`` name the attempt that
    started a sub-workflow (whose outcome its end becomes); ``prev_run`` and
    ``next_run`` link the runs of a restart chain (continue-as-new)."""

    run_id: str
    workflow: str
    started_at: float
    status: str = OPEN
    input: str = ""
    closed_at: float | None = None
    result: str | None = None
    error: ErrorInfo | None = None
    workflow_id: str | None = None
    parent_run: str | None = None
    parent_key: str | None = None
    parent_token: str = ""
    next_run: str | None = None
    prev_run: str | None = None

    @property
    def name(self) -> str:
        return self.workflow.partition("@")[0]
