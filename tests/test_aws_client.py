"""The ``flowy`` command on a namespace (``start``, ``wait``, ``redrive``, ``purge``,
``setup``, ``dev``, ``demo``), namespaces, and checked declarations.

Starting and looking at runs from Python runs on both backends, in
test_engine_client.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from flowy import (
    ConfigurationError,
    Registry,
    RunNotFound,
    Workflow,
    load_registry,
)
from flowy.backends.aws.settings import AWSSettings
from flowy.backends.base import DECISIONS
from flowy.core.events import TaskCompleted, TimerFired
from flowy.core.runs import COMPLETED, RunRecord
from flowy.declaration import check_task_list
from flowy.worker.messages import notification
from tests import activities as A
from tests.aws_support import DEFINITIONS, ROOT, wait_for
from tests.scenarios import aws_workflow
from tests.sealing import SECRET


def test_cli_start_wait_status_list_history_trace(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    started = stack.flowy("start", DEFINITIONS, "example", "3", "4",
                     "--workflow-id", "cli-1", "--wait")
    assert started.returncode == 0, started.stderr
    run_id, result = started.stdout.split()
    assert result == "25"
    assert stack.flowy("wait", run_id).stdout.strip() == "25"
    assert '"status": "completed"' in stack.flowy("status", run_id).stdout
    assert run_id in stack.flowy("list", "--workflow", "example").stdout
    assert "WorkflowCompleted" in stack.flowy("history", run_id).stdout
    svg = tmp_path / "cli.svg"
    traced = stack.flowy("trace", run_id, "-o", str(svg))
    assert traced.returncode == 0 and svg.exists(), traced.stdout + traced.stderr
    failed = stack.flowy("start", DEFINITIONS, "single_fail", "boom",
                    "--wait")
    assert failed.returncode == 1 and "builtins.ValueError: boom" in failed.stderr
    unknown = stack.flowy("start", DEFINITIONS, "nope")
    assert unknown.returncode == 2 and "no workflow named 'nope'" in unknown.stderr
    bad = stack.flowy("start", DEFINITIONS, "example", "--kwargs", "[1")
    assert bad.returncode == 2 and "--kwargs must be a JSON object" in bad.stderr
    missing = stack.flowy("status", "no-such-run")
    assert missing.returncode == 1 and "no run no-such-run" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr
    # Given the definitions, wait decodes with the workflow's codec.
    coded = stack.flowy("start", DEFINITIONS, "reversed_codec", "3", "4").stdout.strip()
    waited = stack.flowy("wait", coded, "--definitions", DEFINITIONS)
    assert waited.stdout.strip() == "25", waited.stderr
    # A sealed workflow's error is encoded in the table: shown only with the definitions.
    sealed = stack.flowy("start", DEFINITIONS, "sealed_fail", SECRET, "--wait")
    assert sealed.returncode == 1 and f"card {SECRET} declined" in sealed.stderr
    sealed_id = sealed.stdout.strip()
    for command in ("status", "history"):
        shown = stack.flowy(command, sealed_id)
        assert shown.returncode == 0 and SECRET not in shown.stdout, shown.stderr
        assert "encoded by the workflow's codec" in shown.stdout
        decoded = stack.flowy(command, sealed_id, "--definitions", DEFINITIONS).stdout
        assert f"card {SECRET} declined" in decoded


def test_cli_redrive_and_purge(make_stack: Any) -> None:
    """What ``flowy redrive`` and ``flowy purge`` say, and that a purge leaves
    no item in the table; what they do to runs is in test_engine_*.py."""
    stack = make_stack()
    queues, settings, store = stack.backend.queues, stack.settings, stack.backend.store
    queues.send(DECISIONS, [notification("lost", "news")])
    [message] = wait_for(lambda: queues.receive(DECISIONS, max_messages=1, wait=1, lease=30),
                         30, "the notification")
    queues.dead_letter(DECISIONS, message, "received 5 times")
    moved = stack.flowy("redrive", "decisions")
    dlq = settings.dead_letter_queue(settings.decision_queue)
    assert moved.stdout.strip() == (f"moved 1 message(s) from {dlq} back to "
                                    f"{settings.decision_queue}"), moved.stderr
    nothing = stack.flowy("redrive", "tasks", "--task-list", "default")
    assert nothing.stdout.startswith("moved 0 message(s)"), nothing.stderr
    store.create_run(RunRecord("closed", aws_workflow("example").ref, input="[[1,2],{}]",
                               started_at=0.0))
    store.close_run("closed", COMPLETED, 1.0, result="5")
    # A timer and an outcome for a run that never was: items of no run.
    store.add_fact("never", TimerFired("t", at=1.0))
    store.add_outcome("never", TaskCompleted("k-0-1", "1", at=1.0))
    purged = stack.flowy("purge", "--days", "0")
    assert purged.stdout.strip().splitlines() == [
        f"deleted 1 closed run(s) of namespace {stack.namespace}",
        "deleted 2 item(s) that belonged to no run"]
    for run_id in ("closed", "never"):
        items = store._db.query(TableName=store.table, KeyConditionExpression="pk = :pk",
                                ExpressionAttributeValues={":pk": {"S": run_id}})["Items"]
        assert items == []
    assert stack.client.list_runs() == []


def test_setup_creates_a_namespace(aws_endpoint: str) -> None:
    from tests.aws_support import new_namespace

    namespace = new_namespace()
    env = {**os.environ, "AWS_ENDPOINT_URL": aws_endpoint, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    done = subprocess.run([sys.executable, "-m", "flowy", "setup", "examples.aws_defs",
                           "--namespace", namespace], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"table flowy-{namespace}" in done.stdout


def test_declarations_are_checked() -> None:
    workflow = Workflow(A.ExampleWorkflow, name="w")
    with pytest.raises(ConfigurationError, match="not a valid Python identifier"):
        workflow.conf_activity("not valid", A.square)
    with pytest.raises(ConfigurationError, match="task list"):
        check_task_list("no spaces")
    with pytest.raises(ConfigurationError, match="must be 1 to 200 characters.*or any of .@#"):
        Workflow(A.ExampleWorkflow, name="a@b")
    with pytest.raises(ConfigurationError, match="namespace"):
        AWSSettings.from_env(namespace="Upper_Case")
    with pytest.raises(ConfigurationError, match="can't import the definitions module"):
        load_registry("no.such.module")
    with pytest.raises(ConfigurationError, match="declared twice"):
        Registry([Workflow(A.SingleCall, name="a").conf_activity("task", A.square),
                  Workflow(A.SingleCall, name="a").conf_activity("task", A.add)])


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The README's main command, as a new user runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWY_"))}
    done = subprocess.run([sys.executable, "-m", "flowy", "demo", "-o", str(tmp_path / "d.svg")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "result: 780" in done.stdout
    assert "completed: 43/43 tasks done in 5 run(s)" in done.stdout
    assert (tmp_path / "d.svg").exists() or "not rendered" in done.stdout


def test_dev_serves_definitions_until_interrupted(tmp_path: Path) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWY_"))}
    log = tmp_path / "dev.log"
    with log.open("w") as output:
        dev = subprocess.Popen([sys.executable, "-m", "flowy", "dev", "examples.aws_defs",
                                "--port", str(port)], env=env, cwd=ROOT, stderr=output)
    try:
        deadline = time.monotonic() + 60
        while "Ctrl-C stops everything" not in log.read_text():
            assert time.monotonic() < deadline and dev.poll() is None, log.read_text()
            time.sleep(0.1)
        client_env = {**env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                      "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                      "AWS_DEFAULT_REGION": "us-east-1", "FLOWY_NAMESPACE": "dev"}
        started = subprocess.run([sys.executable, "-m", "flowy", "start", "examples.aws_defs",
                                  "example", "2", "10", "--wait", "--timeout", "60"],
                                 env=client_env, cwd=ROOT, capture_output=True, text=True,
                                 timeout=90)
        assert started.stdout.split()[-1] == "104", started.stderr
    finally:
        dev.send_signal(signal.SIGINT)
        assert dev.wait(timeout=60) == 0, log.read_text()[-3000:]
    assert "decider stopped" in log.read_text()


def test_namespaces_never_see_each_others_runs(make_stack: Any) -> None:
    first, second = make_stack(), make_stack()
    run = first.client.start(aws_workflow("example"), 1, 2)
    assert [r.run_id for r in first.client.list_runs()] == [run.run_id]
    assert second.client.list_runs() == []
    with pytest.raises(RunNotFound):
        second.client.status(run.run_id)
