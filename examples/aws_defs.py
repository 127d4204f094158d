"""Workflows declared for the distributed engine: the same classes and functions
as the local examples, with names, versions and task lists added outside the code.

``flowy dev examples.aws_defs`` serves them on an embedded local AWS;
``flowy demo`` runs ``two_halves`` (or ``example``) end to end; ``approval``
waits for ``flowy signal RUN_ID approve '{"ok": true, "by": "ann"}'``.
"""

from __future__ import annotations

from examples import subworkflow, toy
from examples.approval import approval
from flowy import RetryPolicy, Workflow

example = (Workflow(toy.ExampleWorkflow, name="example", version="1")
           .conf_activity("square", toy.square, timeout=30)
           .conf_activity("sum", toy.add, retry=RetryPolicy(max_attempts=3, initial_delay=1)))

sum_range = Workflow(subworkflow.SumRange, name="sum_range").conf_activity(
    "add", subworkflow.add)

two_halves = (Workflow(subworkflow.TwoHalves, name="two_halves")
              .conf_workflow("sum_range", sum_range)
              .conf_activity("add", subworkflow.add))

__all__ = ["approval", "example", "sum_range", "two_halves"]
