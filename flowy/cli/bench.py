"""``flowy bench``: run named workloads on an engine and print what they cost.

Each workload runs in a fresh process, so that its peak RSS is its own.  The
activities are trivial: what is measured is the engine's own overhead.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from ..core.combinators import parallel_reduce
from ..core.errors import FlowyError
from ..engines.local import LocalWorkflow

DEFAULT_SIZES = {"fanout": 10_000, "chain": 1_000, "reduce": 1_000, "many": 100}
MANY_CHAIN_LENGTH = 10


def increment(x: int) -> int:
    return x + 1


def add(a: int, b: int) -> int:
    return a + b


def total(values: list[int]) -> int:
    return sum(values)


class Fanout:
    def __init__(self, increment: Callable[..., Any], total: Callable[..., Any]) -> None:
        self.increment, self.total = increment, total

    def __call__(self, n: int) -> Any:
        return self.total([self.increment(i) for i in range(n)])


class Chain:
    def __init__(self, increment: Callable[..., Any]) -> None:
        self.increment = increment

    def __call__(self, n: int) -> Any:
        value: Any = 0
        for _ in range(n):
            value = self.increment(value)
        return value


class Reduce:
    def __init__(self, increment: Callable[..., Any], add: Callable[..., Any]) -> None:
        self.increment, self.add = increment, add

    def __call__(self, n: int) -> Any:
        return parallel_reduce(self.add, [self.increment(i) for i in range(n)])


@dataclass
class Figures:
    workload: str
    n: int
    tasks: int
    seconds: float
    tasks_per_second: float
    peak_rss_mb: float
    correct: bool


def _workflow(workload: str, executor: str, cache_size: int) -> LocalWorkflow:
    factory: Callable[..., Any] = {"fanout": Fanout, "chain": Chain, "reduce": Reduce,
                                   "many": Chain}[workload]
    pool = ThreadPoolExecutor if executor == "threads" else ProcessPoolExecutor
    workflow = LocalWorkflow(factory, executor=pool, cache_size=cache_size)
    workflow.conf_activity("increment", increment)
    if workload == "fanout":
        workflow.conf_activity("total", total)
    if workload == "reduce":
        workflow.conf_activity("add", add)
    return workflow


def run_workload(workload: str, n: int, executor: str, cache_size: int) -> Figures:
    """Run one workload in this process and measure it."""
    with _workflow(workload, executor, cache_size) as workflow:
        started = time.perf_counter()
        if workload == "many":
            runs = [workflow.start(MANY_CHAIN_LENGTH) for _ in range(n)]
            results = [run.result() for run in runs]
            correct = results == [MANY_CHAIN_LENGTH] * n
            tasks = n * MANY_CHAIN_LENGTH
        else:
            result = workflow.run(n)
            expected = {"fanout": n * (n + 1) // 2, "chain": n,
                        "reduce": n * (n + 1) // 2}[workload]
            correct = result == expected
            tasks = {"fanout": n + 1, "chain": n, "reduce": 2 * n - 1}[workload]
        seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Figures(workload, n, tasks, round(seconds, 4), round(tasks / seconds, 1),
                   round(peak_mb, 1), correct)


def bench(workloads: list[str], sizes: dict[str, int], executor: str, cache_size: int
          ) -> list[Figures]:
    """Run each workload in a fresh interpreter, so that its peak RSS is its own."""
    figures = []
    for workload in workloads:
        command = [sys.executable, "-m", "flowy.cli.bench", workload, str(sizes[workload]),
                   executor, str(cache_size)]
        finished = subprocess.run(command, capture_output=True, text=True, check=False)
        if finished.returncode != 0:
            raise FlowyError(f"benchmark {workload} failed:\n{finished.stderr}")
        figures.append(Figures(**json.loads(finished.stdout)))
    return figures


def print_figures(figures: list[Figures], as_json: bool) -> None:
    if as_json:
        json.dump([asdict(f) for f in figures], sys.stdout, indent=2)
        print()
        return
    header = f"{'workload':<10}{'n':>8}{'tasks':>8}{'seconds':>10}{'tasks/s':>11}" \
             f"{'peak RSS MB':>13}  correct"
    print(header)
    for f in figures:
        print(f"{f.workload:<10}{f.n:>8}{f.tasks:>8}{f.seconds:>10.3f}"
              f"{f.tasks_per_second:>11.0f}{f.peak_rss_mb:>13.1f}  {f.correct}")


if __name__ == "__main__":
    # One workload in this process: what bench() runs in a child interpreter.
    name, size, pool, cache = sys.argv[1:5]
    print(json.dumps(asdict(run_workload(name, int(size), pool, int(cache)))))
