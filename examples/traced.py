"""A traced run with a retry, an ignored error and a sub-workflow, drawn as SVG.

``python -m examples.traced [PATH]`` writes the trace (default ``traced.svg``)
and prints its timeline.
"""

from __future__ import annotations

import sys

from flowy import LocalWorkflow, RetryPolicy, TaskError

_failures: dict[str, int] = {}


class Pipeline:
    def __init__(self, extract, transform, load, audit):
        self.extract = extract
        self.transform = transform
        self.load = load
        self.audit = audit

    def __call__(self, table):
        rows = self.extract(table)
        self.audit(table)  # may fail; its error is never read, so it is only logged
        cleaned = [self.transform(row) for row in range(3)]
        try:
            return self.load(rows, cleaned)
        except TaskError as error:
            return f"load failed: {error}"


class Audit:
    def __init__(self, check):
        self.check = check

    def __call__(self, table):
        return self.check(table)


def extract(table):
    return 3


def transform(row):
    _failures[f"row{row}"] = _failures.get(f"row{row}", 0) + 1
    if row == 1 and _failures["row1"] == 1:
        raise RuntimeError("transient failure")
    return row * 10


def load(rows, cleaned):
    return f"loaded {rows} rows: {cleaned}"


def check(table):
    raise PermissionError(f"no audit rights on {table}")


def main(path: str = "traced.svg") -> str:
    audit = LocalWorkflow(Audit)
    audit.conf_activity("check", check)
    with audit, LocalWorkflow(Pipeline) as workflow:
        workflow.conf_activity("extract", extract)
        workflow.conf_activity("transform", transform,
                               retry=RetryPolicy(max_attempts=2, initial_delay=0.05))
        workflow.conf_activity("load", load)
        workflow.conf_workflow("audit", audit)
        result = workflow.run("orders", _trace=True)
    trace = workflow.last_trace
    for offset, event in trace.timeline():
        print(f"{offset:8.3f}s  {event}")
    print(f"result: {result}")
    print(f"trace: {trace.render(path)}")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
