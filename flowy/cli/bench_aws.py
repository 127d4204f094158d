"""``flowy bench --engine aws``: the workloads on real decider and worker processes.

Each workload gets a fresh namespace and fresh processes, which count their
AWS requests by API (botocore hooks, :mod:`flowy.backends.aws.metrics`) and write the
counts when they stop.  Reported: tasks per second, the decision latency
(from an activity's reported completion to the commit of the decision that
took it, p50 and p99), AWS requests per activity, and what those requests
cost per million activities at public on-demand prices, beside Amazon SWF's
price for the same work.  Only the engine's processes are counted, not the
benchmark's own polling for results.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..backends.aws import connect
from ..backends.aws.emulator import LocalAWS, emulator_environment
from ..backends.aws.metrics import UNITS, load_counts
from ..backends.aws.settings import AWSSettings
from ..client import FlowyClient
from ..core.errors import FlowyError
from ..core.events import TaskCompleted, TaskFailed, is_decision
from ..declaration import Workflow
from .bench import MANY_CHAIN_LENGTH, Chain, Fanout, Reduce, add, increment, total

AWS_WORKFLOWS = [
    Workflow(Fanout, name="bench_fanout").conf_activity("increment", increment)
    .conf_activity("total", total),
    Workflow(Chain, name="bench_chain").conf_activity("increment", increment),
    Workflow(Reduce, name="bench_reduce").conf_activity("increment", increment)
    .conf_activity("add", add),
]
DEFINITIONS = "flowy.cli.bench_aws:AWS_WORKFLOWS"
DEFAULT_AWS_SIZES = {"fanout": 1000, "chain": 100, "reduce": 200, "many": 100}

# Public on-demand prices, us-east-1, USD (checked 2026-11): SQS per request
# (64 KB chunk), DynamoDB per request unit, SWF per task (activity and
# decision tasks, timers, signals, markers) and per workflow execution.
PRICES = {"sqs_standard": 0.40e-6, "sqs_fifo": 0.50e-6, "dynamodb_write_unit": 0.625e-6,
          "dynamodb_read_unit": 0.125e-6, "s3_put": 5e-6, "s3_get": 0.4e-6,
          "swf_task": 0.025e-3, "swf_execution": 0.1e-3}


@dataclass
class AWSFigures:
    workload: str
    n: int
    tasks: int
    runs: int
    seconds: float
    tasks_per_second: float
    decisions: int
    latency_p50_ms: float
    latency_p99_ms: float
    requests_per_activity: float
    dollars_per_million: float
    swf_dollars_per_million: float
    correct: bool
    requests: dict[str, int] = field(default_factory=dict)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def dollars(requests: dict[str, int]) -> float:
    """What these requests cost at :data:`PRICES`."""
    sqs = sum(n for api, n in requests.items() if api.startswith("sqs."))
    fifo = requests.get(UNITS + "sqs_fifo_requests", 0)
    return (fifo * PRICES["sqs_fifo"] + (sqs - fifo) * PRICES["sqs_standard"]
            + requests.get(UNITS + "dynamodb_write", 0) * PRICES["dynamodb_write_unit"]
            + requests.get(UNITS + "dynamodb_read", 0) * PRICES["dynamodb_read_unit"]
            + requests.get("s3.PutObject", 0) * PRICES["s3_put"]
            + requests.get("s3.GetObject", 0) * PRICES["s3_get"])


@contextmanager
def _engine(endpoint: str | None, deciders: int, workers: int, concurrency: int,
            poll_wait: int | None) -> Iterator[tuple[FlowyClient, dict[str, int]]]:
    """A fresh namespace with decider and worker processes; the dict yielded
    is filled with their request counts when they have stopped."""
    namespace = "bench" + uuid.uuid4().hex[:8]
    emulated = endpoint is not None
    env = {**os.environ, "FLOWY_NAMESPACE": namespace}
    if endpoint is not None:
        env.update(emulator_environment(endpoint))
        os.environ.update({k: v for k, v in emulator_environment(endpoint).items()
                           if k != "AWS_ENDPOINT_URL"})
    settings = AWSSettings.from_env(namespace=namespace, endpoint_url=endpoint)
    backend = connect(settings)
    backend.ensure_resources(["default"])
    with tempfile.TemporaryDirectory(prefix="flowy-bench-") as scratch:
        counts = Path(scratch) / "counts"
        env["FLOWY_REQUEST_COUNTS"] = str(counts)
        if poll_wait is None:  # short polls on emulators: see flowy.worker.decider.SHORT_POLL_PAUSE
            poll_wait = 0 if emulated else 20
        wait = str(poll_wait)
        logs = [Path(scratch) / f"{i}.log" for i in range(deciders + workers)]
        commands = ([["decider", "--threads", "2"]] * deciders
                    + [["worker", "--concurrency", str(concurrency)]] * workers)
        processes = [subprocess.Popen([sys.executable, "-m", "flowy", command[0], DEFINITIONS,
                                       "--poll-wait", wait, *command[1:]], env=env,
                                      stdout=log.open("wb"), stderr=subprocess.STDOUT)
                     for command, log in zip(commands, logs, strict=True)]
        requests: dict[str, int] = {}
        try:
            _wait_until_ready(logs, processes)
            yield FlowyClient(backend), requests
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                process.wait(timeout=60)
            requests.update(load_counts(counts))


def _wait_until_ready(logs: list[Path], processes: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            raise FlowyError("a benchmark process died:\n" + "\n".join(
                log.read_text() for log in logs))
        if all(b"decider for" in log.read_bytes() or b"worker polling" in log.read_bytes()
               for log in logs):
            return
        time.sleep(0.1)
    raise FlowyError("benchmark processes did not start within 60 s")


def run_aws_workload(workload: str, n: int, endpoint: str | None, deciders: int = 1,
                     workers: int = 1, concurrency: int = 16,
                     poll_wait: int | None = None) -> AWSFigures:
    ref = {"fanout": "bench_fanout@1", "chain": "bench_chain@1", "many": "bench_chain@1",
           "reduce": "bench_reduce@1"}[workload]
    workflow = next(w for w in AWS_WORKFLOWS if w.ref == ref)
    with _engine(endpoint, deciders, workers, concurrency, poll_wait) as (client, requests):
        started = time.perf_counter()
        if workload == "many":
            handles = [client.start(workflow, MANY_CHAIN_LENGTH) for _ in range(n)]
            expected: list[Any] = [MANY_CHAIN_LENGTH] * n
            tasks = n * MANY_CHAIN_LENGTH
        else:
            handles = [client.start(workflow, n)]
            expected = [{"fanout": n * (n + 1) // 2, "chain": n,
                         "reduce": n * (n + 1) // 2}[workload]]
            tasks = {"fanout": n + 1, "chain": n, "reduce": 2 * n - 1}[workload]
        results = [h.result(timeout=3600) for h in handles]
        seconds = time.perf_counter() - started
    latencies, decisions = _latencies(client, [h.run_id for h in handles])
    per_activity = sum(v for k, v in requests.items() if not k.startswith(UNITS)) / tasks
    swf = (tasks + decisions) * PRICES["swf_task"] + len(handles) * PRICES["swf_execution"]
    return AWSFigures(
        workload, n, tasks, len(handles), round(seconds, 2), round(tasks / seconds, 1),
        decisions, round(percentile(latencies, 50) * 1000, 1),
        round(percentile(latencies, 99) * 1000, 1), round(per_activity, 2),
        round(dollars(requests) / tasks * 1e6, 2), round(swf / tasks * 1e6, 2),
        results == expected, requests)


def _latencies(client: FlowyClient, run_ids: list[str]) -> tuple[list[float], int]:
    latencies: list[float] = []
    decisions = 0
    for run_id in run_ids:
        for batch in client.store.read_batches(run_id):
            decisions += 1
            latencies.extend(batch.committed_at - e.at for e in batch.events
                             if not is_decision(e) and isinstance(e, (TaskCompleted, TaskFailed)))
    return latencies, decisions


def bench_aws(workloads: list[str], sizes: dict[str, int], endpoint: str | None,
              deciders: int, workers: int, concurrency: int,
              poll_wait: int | None = None) -> list[AWSFigures]:
    server = None
    if endpoint is None and not os.environ.get("AWS_ENDPOINT_URL"):
        server = LocalAWS()
        endpoint = server.start()
    try:
        return [run_aws_workload(w, sizes[w], endpoint, deciders, workers, concurrency,
                                 poll_wait) for w in workloads]
    finally:
        if server is not None:
            server.stop()


def print_aws_figures(figures: list[AWSFigures], as_json: bool) -> None:
    if as_json:
        import json
        from dataclasses import asdict
        json.dump([asdict(f) for f in figures], sys.stdout, indent=2)
        print()
        return
    print(f"{'workload':<9}{'n':>6}{'tasks':>7}{'seconds':>9}{'tasks/s':>9}{'decisions':>10}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'req/act':>9}{'$/M act':>9}{'SWF $/M':>9}  correct")
    for f in figures:
        print(f"{f.workload:<9}{f.n:>6}{f.tasks:>7}{f.seconds:>9.2f}{f.tasks_per_second:>9.1f}"
              f"{f.decisions:>10}{f.latency_p50_ms:>9.0f}{f.latency_p99_ms:>9.0f}"
              f"{f.requests_per_activity:>9.2f}{f.dollars_per_million:>9.2f}"
              f"{f.swf_dollars_per_million:>9.2f}  {f.correct}")
    for f in figures:
        apis = ", ".join(f"{api} {count / f.tasks:.2f}" for api, count in
                         sorted(f.requests.items()) if count)
        print(f"  {f.workload} per activity: {apis}")
