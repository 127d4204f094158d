"""How every outside fact enters a run: an idempotent write to its inbox, then a notification.

A fact is written under its identity (a repeat is a no-op), and a
notification always follows, even when the fact was there already: whoever
wrote it first may have died before notifying, and the decision queue drops
a repeated notification of the same news.  The client, the decider (for
sub-workflows and restarts), the timer keeper and the worker all go through
here.
"""

from __future__ import annotations

from ..backends.base import DECISIONS, Backend, Outgoing
from ..core.events import Fact, WorkflowStarted
from ..core.protocol import fact_id
from ..core.runs import RunRecord
from .messages import notification


def start_run(backend: Backend, record: RunRecord) -> Outgoing:
    """Create the run and put its start in its inbox, both idempotently; the
    notification that must follow."""
    backend.store.create_run(record)
    started = WorkflowStarted(record.input, at=record.started_at)
    backend.store.add_fact(record.run_id, started)
    return notification(record.run_id, fact_id(started))


def tell(backend: Backend, run_id: str, fact: Fact) -> Outgoing:
    """Put a fact (a signal, a cancel, a fired timer) in the run's inbox; the
    notification that must follow."""
    backend.store.add_fact(run_id, fact)
    return notification(run_id, fact_id(fact))


def report(backend: Backend, run_id: str, fact: Fact) -> Outgoing:
    """Put an attempt's outcome in the run's inbox (the first outcome wins);
    the notification that must follow."""
    backend.store.add_outcome(run_id, fact)
    return notification(run_id, fact_id(fact))


def notify(backend: Backend, notifications: list[Outgoing]) -> None:
    if notifications:
        backend.queues.send(DECISIONS, notifications)
