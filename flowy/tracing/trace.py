"""The trace users get: the data of :mod:`flowy.tracing.model`, drawn on request.

:class:`Trace` is the model's :class:`~flowy.tracing.model.TraceData` with
``to_dot()`` (:mod:`flowy.tracing.dot`, plain string building) and
``render(path)`` (:mod:`flowy.tracing.render`, which imports Graphviz only
when it draws).  The model imports neither: the renderers depend on it, never
the other way round.
"""

from __future__ import annotations

from pathlib import Path

from .dot import to_dot
from .model import TraceData
from .render import render as render_dot

__all__ = ["Trace"]


class Trace(TraceData):
    """The runs of one workflow execution: one per run of a continue-as-new chain.

    Read it as data (``runs``, ``timeline()``) or draw it (``to_dot()``,
    ``render(path)``).  A sub-workflow's trace, ``task.child``, is drawn as part
    of its parent's.
    """

    __slots__ = ()

    def to_dot(self) -> str:
        """The trace as Graphviz DOT source."""
        return to_dot(self)

    def render(self, path: str | Path) -> Path | None:
        """Draw the trace to ``path`` (.svg, .png, .pdf or .dot).

        Returns the path written, or ``None`` (with a logged warning) when
        Graphviz is unavailable or fails: a trace must never fail a run.
        """
        return render_dot(self.to_dot(), path)
