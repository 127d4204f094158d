"""The README's example: two squares in parallel, then their sum.

Run it with ``python -m examples.toy``; it prints the result and writes the
execution trace to ``toy.svg`` (or the path given as the first argument).
"""

from __future__ import annotations

import sys
import time

from flowy import LocalWorkflow


class ExampleWorkflow:
    def __init__(self, square, sum):  # one proxy per configured dependency
        self.square = square
        self.sum = sum

    def __call__(self, a, b):
        a2 = self.square(a)  # returns at once: a lazy result
        b2 = self.square(b)  # scheduled in the same decision: runs in parallel
        return self.sum(a2, b2)  # results as arguments: dependency edges


def square(x):
    time.sleep(0.2)
    return x * x


def add(a, b):
    return a + b


def main(trace_path: str = "toy.svg") -> int:
    with LocalWorkflow(ExampleWorkflow) as workflow:
        workflow.conf_activity("square", square)
        workflow.conf_activity("sum", add)
        result = workflow.run(2, 10, _trace=True)
    print(f"result: {result}")
    written = workflow.last_trace.render(trace_path)
    print(f"trace: {written}" if written else "trace: not rendered (see the warning above)")
    return result


if __name__ == "__main__":
    main(*sys.argv[1:2])
