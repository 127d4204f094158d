"""F5's scenario of issue "Durable under crashes", as trials with real processes.

A 100-task fan-out starts with a 10 s visibility timeout; the decider is
SIGKILLed as soon as the first task message is out (its first batch, the
100 tasks, is committed and being sent, and not yet marked sent), and a
new one starts.  It finds the batch unsent and sends it again, 10 s or more after
the first sending, when the workers have run those tasks.  Every execution
is logged by the activity itself; a trial counts the tasks that ran twice::

    FLOWY_TEST_ENDPOINT=http://127.0.0.1:PORT python -m tests.resend_trials --trials 10

prints one JSON line per trial and a summary, and exits 1 if any task ran
twice.  (This module is also the definitions the processes serve.)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from flowy import Workflow

LOG_VARIABLE = "RESEND_TRIALS_LOG"
WIDTH = 100


def touch(i: int) -> int:
    descriptor = os.open(os.environ[LOG_VARIABLE], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(descriptor, f"{i}\n".encode())
    finally:
        os.close(descriptor)
    return i


class Fanout:
    def __init__(self, touch: Any) -> None:
        self.touch = touch

    def __call__(self, width: int) -> int:
        return sum(self.touch(i) for i in range(width))  # type: ignore[no-any-return]


resend_fanout = Workflow(Fanout, name="resend_fanout").conf_activity("touch", touch)


def trial(endpoint: str, log_dir: Path) -> dict[str, Any]:
    from tests.aws_support import Stack, wait_for

    executions = log_dir / "executions.log"
    stack = Stack(endpoint, log_dir, definitions="tests.resend_trials", visibility_timeout=10,
                  task_lists=("default",))
    env = {LOG_VARIABLE: str(executions)}
    first = stack.decider(env=env)
    for _ in range(3):
        stack.worker("--concurrency", "8", env=env)
    handle = stack.client.start(resend_fanout, WIDTH)
    began = time.monotonic()
    # The first task message out: the batch is committed and going out, and
    # not yet marked sent (the decider marks it once all of it has gone).
    sqs = stack.backend.sqs
    url = sqs.get_queue_url(QueueName=stack.settings.task_queue("default"))["QueueUrl"]

    def sent() -> bool:
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
        return any(int(n) for n in counts["Attributes"].values())

    wait_for(sent, 60, "the first task message", interval=0.001)
    first.send_signal(signal.SIGKILL)
    first.wait()
    stack.decider(env=env)
    try:
        result = handle.result(timeout=300)
    finally:
        stack.stop()
    ran = Counter(executions.read_text().split())
    return {"result_right": result == sum(range(WIDTH)), "tasks": len(ran),
            "ran_twice": sum(1 for n in ran.values() if n > 1),
            "executions": sum(ran.values()), "seconds": round(time.monotonic() - began, 1),
            "resent": "sending it again" in stack.logs()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10)
    args = parser.parse_args()
    endpoint = os.environ.get("FLOWY_TEST_ENDPOINT")
    if not endpoint:
        print("set FLOWY_TEST_ENDPOINT to an emulator (see README.rst)", file=sys.stderr)
        return 2
    results = []
    for number in range(args.trials):
        with tempfile.TemporaryDirectory() as tmp:
            results.append(trial(endpoint, Path(tmp)))
        print(json.dumps({"trial": number, **results[-1]}), flush=True)
    clean = sum(r["ran_twice"] == 0 and r["result_right"] and r["tasks"] == WIDTH
                for r in results)
    print(json.dumps({"trials": len(results), "without_reruns": clean,
                      "resent": sum(r["resent"] for r in results),
                      "ran_twice": sum(r["ran_twice"] for r in results)}))
    return 0 if clean == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
