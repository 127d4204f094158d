"""Fan-out and fan-in: score many items in parallel, combine with parallel_reduce.

``python -m examples.fanout [N]``: N scoring tasks run at once; the scores are
merged two at a time, as soon as any two are ready, by a ``merge`` task.
"""

from __future__ import annotations

import sys

from flowy import LocalWorkflow, parallel_reduce


class ScoreAll:
    def __init__(self, score, merge):
        self.score = score
        self.merge = merge

    def __call__(self, words):
        scores = [self.score(word) for word in words]  # all scheduled at once
        return parallel_reduce(self.merge, scores)


def score(word):
    return {"words": 1, "letters": len(word)}


def merge(left, right):
    return {key: left[key] + right[key] for key in left}


def main(n: str = "100") -> dict:
    words = [f"word{i}" for i in range(int(n))]
    with LocalWorkflow(ScoreAll) as workflow:
        workflow.conf_activity("score", score)
        workflow.conf_activity("merge", merge)
        totals = workflow.run(words)
    print(f"totals: {totals}")
    return totals


if __name__ == "__main__":
    main(*sys.argv[1:2])
