"""A sub-workflow that continues as new, called from a parent like an activity.

``python -m examples.subworkflow``: the child sums a range in batches of 10,
restarting itself with the running total after each batch (continue-as-new
keeps every run's history short); the parent runs two children in parallel.
"""

from __future__ import annotations

from flowy import LocalWorkflow, RetryPolicy, restart


class SumRange:
    """Sum of start..stop-1, one batch of 10 per run."""

    def __init__(self, add):
        self.add = add

    def __call__(self, start, stop, total=0):
        end = min(start + 10, stop)
        for number in range(start, end):
            total = self.add(total, number)
        if end < stop:
            return restart(end, stop, total=total)  # total may still be unfinished
        return total


class TwoHalves:
    def __init__(self, sum_range, add):
        self.sum_range = sum_range
        self.add = add

    def __call__(self, n):
        half = n // 2
        return self.add(self.sum_range(0, half), self.sum_range(half, n))


def add(a, b):
    return a + b


def main(n: int = 100) -> int:
    child = LocalWorkflow(SumRange)
    child.conf_activity("add", add)
    with child, LocalWorkflow(TwoHalves) as parent:
        parent.conf_workflow("sum_range", child, retry=RetryPolicy(max_attempts=2))
        parent.conf_activity("add", add)
        total = parent.run(n)
    print(f"sum of 0..{n - 1}: {total}")
    return total


if __name__ == "__main__":
    main()
