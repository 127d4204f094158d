"""Retries with backoff, timeouts and heartbeats, set outside the workflow code.

``python -m examples.retry_timeout``: a flaky download succeeds on its third
attempt; a slow one times out and the workflow falls back to a cached copy; a
long job reports progress with heartbeats.
"""

from __future__ import annotations

import itertools
import time

import flowy
from flowy import LocalWorkflow, RetryPolicy, TaskError, TaskTimedout

_attempts = itertools.count(1)


class FetchReport:
    def __init__(self, flaky_fetch, slow_fetch, crunch):
        self.flaky_fetch = flaky_fetch
        self.slow_fetch = slow_fetch
        self.crunch = crunch

    def __call__(self, source):
        primary = self.flaky_fetch(source)
        mirror = self.slow_fetch(source)
        try:
            backup = mirror.upper()  # reading the result waits for it
        except TaskTimedout:
            backup = "cached copy"
        return {"primary": primary, "backup": backup, "crunched": self.crunch(3)}


def flaky_fetch(source):
    attempt = next(_attempts)
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt}: connection reset")
    return f"{source} (fetched on attempt {attempt})"


def slow_fetch(source):
    time.sleep(1.0)
    return source


@flowy.activity(heartbeat=0.5, timeout=10)
def crunch(steps):
    for step in range(steps):
        time.sleep(0.2)
        flowy.heartbeat({"step": step + 1, "of": steps})
    return steps


def main() -> dict:
    with LocalWorkflow(FetchReport) as workflow:
        workflow.conf_activity("flaky_fetch", flaky_fetch, retry=RetryPolicy(
            max_attempts=5, initial_delay=0.1, backoff=2.0, non_retryable=(ValueError,)))
        workflow.conf_activity("slow_fetch", slow_fetch, timeout=0.3)
        workflow.conf_activity("crunch", crunch)
        try:
            report = workflow.run("reports/2026.csv")
        except TaskError as error:
            print(f"failed: {error} ({error.type_name})")
            raise
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
