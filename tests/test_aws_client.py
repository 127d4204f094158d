"""Starting and looking at runs on the AWS engine, from Python and from the CLI."""

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
    FlowyClient,
    NondeterminismError,
    Registry,
    RunNotFound,
    TaskError,
    Workflow,
    load_registry,
)
from flowy.backends.aws.settings import AWSSettings
from flowy.core.events import TaskCompleted, WorkflowCompleted, WorkflowStarted
from flowy.core.runs import RunRecord
from flowy.declaration import check_task_list
from tests import activities as A
from tests.aws_support import ROOT
from tests.scenarios import aws_workflow


def test_workflow_id_starts_at_most_one_run(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    first = stack.client.start(aws_workflow("example"), 1, 2, workflow_id="order-42")
    again = stack.client.start(aws_workflow("example"), 5, 6, workflow_id="order-42")
    assert again.run_id == first.run_id
    assert again.result(timeout=60) == 5
    other = stack.client.start(aws_workflow("example"), 5, 6, workflow_id="order-43")
    assert other.run_id != first.run_id and other.result(timeout=60) == 61


def test_a_start_that_died_half_way_is_finished_by_the_next(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    workflow = aws_workflow("example")
    owner = stack.backend.store.claim_workflow_id("half", "run-half")
    stack.backend.store.create_run(RunRecord(  # then it died
        owner, workflow.ref, started_at=1.0, input="[[3,4],{}]", workflow_id="half"))
    handle = stack.client.start(workflow, 3, 4, workflow_id="half")
    assert handle.run_id == "run-half"
    assert handle.result(timeout=60) == 25


def test_status_list_history_and_trace(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    client: FlowyClient = stack.client
    done = client.start(aws_workflow("example"), 2, 10)
    failed = client.start(aws_workflow("single_fail"), "boom")
    restarted = client.start(aws_workflow("countdown"), 2)
    assert done.result(timeout=60) == 104
    with pytest.raises(TaskError):
        failed.result(timeout=60)
    assert restarted.result(timeout=60) == 3
    assert client.status(done.run_id).status == "completed"
    assert client.status(restarted.run_id).status == "restarted"
    assert client.last_run(restarted.run_id).status == "completed"
    assert {r.run_id for r in client.list_runs(status="failed")} == {failed.run_id}
    assert [r.run_id for r in client.list_runs(workflow="example")] == [done.run_id]
    assert len(client.list_runs(workflow="countdown@1")) == 3
    history = client.history(done.run_id)
    assert isinstance(history[0], WorkflowStarted)
    assert isinstance(history[-1], WorkflowCompleted)
    assert sum(isinstance(e, TaskCompleted) for e in history) == 3
    trace = client.trace(restarted.run_id)
    assert [run.status for run in trace.runs] == ["restarted", "restarted", "completed"]
    written = client.trace(done.run_id).render(str(tmp_path / "run.svg"))
    assert written is None or Path(written).read_text().startswith("<?xml")
    with pytest.raises(RunNotFound, match="no run nope"):
        client.status("nope")


def test_sub_workflow_trace_is_nested(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    handle = stack.client.start(aws_workflow("parent"), 3)
    assert handle.result(timeout=60) == 81
    task = stack.client.trace(handle.run_id).runs[0].task("sub-0")
    assert task.status == "completed"
    assert task.child is not None
    assert [t.call_id for t in task.child.runs[0].tasks] == ["task-0"]


def test_nondeterministic_workflow_fails_on_replay(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider("--cache-size", "0")  # replay for every decision
    stack.worker()
    with pytest.raises(NondeterminismError, match="not deterministic"):
        stack.client.start(aws_workflow("nondeterministic")).result(timeout=60)


def test_cli_start_wait_status_list_history_trace(make_stack: Any, tmp_path: Path) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    started = stack.flowy("start", "tests.scenarios:AWS_WORKFLOWS", "example", "3", "4",
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
    failed = stack.flowy("start", "tests.scenarios:AWS_WORKFLOWS", "single_fail", "boom",
                    "--wait")
    assert failed.returncode == 1 and "builtins.ValueError: boom" in failed.stderr
    unknown = stack.flowy("start", "tests.scenarios:AWS_WORKFLOWS", "nope")
    assert unknown.returncode == 2 and "no workflow named 'nope'" in unknown.stderr
    bad = stack.flowy("start", "tests.scenarios:AWS_WORKFLOWS", "example", "--kwargs", "[1")
    assert bad.returncode == 2 and "--kwargs must be a JSON object" in bad.stderr
    missing = stack.flowy("status", "no-such-run")
    assert missing.returncode == 1 and "no run no-such-run" in missing.stderr
    assert "Traceback" not in bad.stderr + missing.stderr


def test_any_client_given_the_definitions_decodes_with_the_workflow_codec(
        make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    started = stack.flowy("start", "tests.scenarios:AWS_WORKFLOWS", "reversed_codec", "3", "4")
    run_id = started.stdout.strip()
    registry = load_registry("tests.scenarios:AWS_WORKFLOWS")
    assert FlowyClient(stack.backend, registry=registry).wait(run_id, timeout=60) == 25
    waited = stack.flowy("wait", run_id, "--definitions", "tests.scenarios:AWS_WORKFLOWS")
    assert waited.stdout.strip() == "25", waited.stderr


def test_a_name_without_version_starts_the_highest_version() -> None:
    def versions(*numbers: str) -> Registry:
        return Registry([Workflow(A.SingleCall, name="w", version=v)
                         .conf_activity("task", A.square) for v in numbers])

    registry = versions("2", "10", "9", "1.10")
    assert registry.latest("w").version == "10"
    assert registry.latest("w@9").version == "9"
    assert versions("1.9", "1.10").latest("w").version == "1.10"
    with pytest.raises(ConfigurationError, match="no workflow named 'v'"):
        registry.latest("v")


def test_purge_deletes_closed_runs_and_frees_their_workflow_ids(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    client, store, workflow = stack.client, stack.backend.store, aws_workflow("example")
    done = client.start(workflow, 3, 4, workflow_id="purge-me")
    assert done.result(timeout=60) == 25
    still_open = RunRecord("open-run", workflow.ref, input="[[1,2],{}]", started_at=0.0)
    store.create_run(still_open)  # started long ago, never closed
    assert client.purge(time.time() - 3600) == []  # closed too recently
    assert client.purge(time.time() + 1, workflow="other") == []
    assert client.purge(time.time() + 1, workflow="example") == [done.run_id]
    with pytest.raises(RunNotFound):
        client.history(done.run_id)
    items = store._db.query(TableName=store.table, KeyConditionExpression="pk = :pk",
                            ExpressionAttributeValues={":pk": {"S": done.run_id}})["Items"]
    assert items == []
    assert client.status("open-run").status == "open"
    again = client.start(workflow, 5, 0, workflow_id="purge-me")  # the id is free again
    assert again.run_id != done.run_id and again.result(timeout=60) == 25
    purged = stack.flowy("purge", "--days", "0")
    assert purged.stdout.strip() == f"deleted 1 closed run(s) of namespace {stack.namespace}"
    assert [r.run_id for r in client.list_runs()] == ["open-run"]


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
    with pytest.raises(ConfigurationError, match="must be non-empty"):
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
    import time

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
