"""Replaying recorded histories against the workflow code of today.

Runs in flight, and runs that will restart or be retried, are rebuilt from
their histories whenever a decider has no live copy of them; a change to the
workflow code that makes it call something else at some point of a recorded
history breaks those runs.  :func:`replay` finds that out in a test, before
a deploy: record histories of real runs (``flowy history RUN > run.jsonl``,
or :meth:`flowy.FlowyClient.history`), keep them with the tests, and replay
each one against the new code.  It is the core's own replay, the one the
decider does (:func:`flowy.core.replay.replay`), so what passes here replays
in production.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..core.errors import HistoryError
from ..core.events import Event, event_from_dict
from ..core.replay import WorkflowDefinition
from ..core.replay import replay as replay_history
from ..declaration import Workflow

HistorySource = str | os.PathLike[str] | Iterable[Event | Mapping[str, Any]]


def load_history(source: HistorySource) -> list[Event]:
    """A run's events, from what :func:`replay` takes: the path of a file that
    ``flowy history RUN`` wrote (one JSON event per line; blank lines are
    skipped), the events themselves (:meth:`flowy.FlowyClient.history`), or
    events as JSON-ready dicts (``flowy.core.events.event_to_dict``)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        lines = [(number, line) for number, line
                 in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if line.strip()]
        events = []
        for number, line in lines:
            try:
                events.append(event_from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise HistoryError(f"{path}, line {number}: not a history event ({exc}); "
                                   "write the file with `flowy history RUN`") from exc
        return events
    return [event_from_dict(dict(item)) if isinstance(item, Mapping) else item
            for item in source]


def replay(workflow: Workflow | WorkflowDefinition, history: HistorySource) -> None:
    """Replay ``history`` with ``workflow``'s code (a :class:`flowy.Workflow`,
    a ``LocalWorkflow`` too, as declared now); return if it makes every
    decision the history recorded.

    Raises :class:`flowy.NondeterminismError` naming the first call that
    differs (the dependency and its arguments, or the end of the run) when
    the code no longer matches.  Only the decisions are compared, not the
    timeouts or retry delays, which are configuration: changing those does
    not break runs in flight.  ``history`` is one run's (a sub-workflow's
    and a restart's are runs of their own): see :func:`load_history`.
    """
    definition = workflow.definition if isinstance(workflow, Workflow) else workflow
    replay_history(definition, load_history(history))
