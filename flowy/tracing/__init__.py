"""Traces of workflow runs: what was called, when, with what outcome, drawn with Graphviz.

Build a :class:`RunTrace` per run with :func:`build_run_trace`, compose the runs
of a continue-as-new chain into a :class:`Trace`, then read it as data,
``trace.timeline()``, ``trace.to_dot()`` or ``trace.render("run.svg")``.
"""

from .build import build_run_trace
from .model import AttemptTrace, RunTrace, TaskTrace
from .trace import Trace

__all__ = ["AttemptTrace", "RunTrace", "TaskTrace", "Trace", "build_run_trace"]
