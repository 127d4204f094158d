"""Starting and looking at runs from Python, on both backends from one test body.

Workflow ids, status, listing, history, traces, replay checks and purges run
on the in-memory backend and on AWS (see tests/engines.py); the ``flowy``
command on a namespace stays in test_aws_client.py.
"""

from __future__ import annotations

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
from flowy.core.events import TaskCompleted, WorkflowCompleted, WorkflowStarted
from flowy.core.runs import RunRecord
from tests import activities as A
from tests.scenarios import aws_workflow


def test_workflow_id_starts_at_most_one_run(engine: Any) -> None:
    first = engine.start("example", 1, 2, workflow_id="order-42")
    again = engine.start("example", 5, 6, workflow_id="order-42")
    assert again.run_id == first.run_id
    assert again.result(timeout=60) == 5
    other = engine.start("example", 5, 6, workflow_id="order-43")
    assert other.run_id != first.run_id and other.result(timeout=60) == 61


def test_a_start_that_died_half_way_is_finished_by_the_next(engine: Any) -> None:
    store = engine.backend.store
    owner = store.claim_workflow_id("half", "run-half")
    store.create_run(RunRecord(  # then it died
        owner, aws_workflow("example").ref, started_at=1.0, input="[[3,4],{}]",
        workflow_id="half"))
    handle = engine.start("example", 3, 4, workflow_id="half")
    assert handle.run_id == "run-half"
    assert handle.result(timeout=60) == 25


def test_status_list_history_and_trace(make_engine: Any, tmp_path: Path) -> None:
    engine = make_engine()  # a namespace of its own: it lists every run
    client: FlowyClient = engine.client
    done = engine.start("example", 2, 10)
    failed = engine.start("single_fail", "boom")
    restarted = engine.start("countdown", 2)
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


def test_sub_workflow_trace_is_nested(engine: Any) -> None:
    handle = engine.start("parent", 3)
    assert handle.result(timeout=60) == 81
    task = engine.client.trace(handle.run_id).runs[0].task("sub-0")
    assert task.status == "completed"
    assert task.child is not None
    assert [t.call_id for t in task.child.runs[0].tasks] == ["task-0"]


def test_nondeterministic_workflow_fails_on_replay(make_engine: Any) -> None:
    engine = make_engine(serve=False)
    engine.decider(cache_size=0)  # replay for every decision
    engine.worker()
    with pytest.raises(NondeterminismError, match="not deterministic"):
        engine.start("nondeterministic").result(timeout=60)


def test_any_client_given_the_definitions_decodes_with_the_workflow_codec(engine: Any) -> None:
    run_id = engine.start("reversed_codec", 3, 4).run_id
    registry = load_registry("tests.scenarios:AWS_WORKFLOWS")
    assert FlowyClient(engine.backend, registry=registry).wait(run_id, timeout=60) == 25


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


def test_purge_deletes_closed_runs_and_frees_their_workflow_ids(make_engine: Any) -> None:
    engine = make_engine()  # a namespace of its own: a purge takes every closed run
    client, store, workflow = engine.client, engine.backend.store, aws_workflow("example")
    done = engine.start("example", 3, 4, workflow_id="purge-me")
    assert done.result(timeout=60) == 25
    still_open = RunRecord("open-run", workflow.ref, input="[[1,2],{}]", started_at=0.0)
    store.create_run(still_open)  # started long ago, never closed
    assert client.purge(time.time() - 3600) == []  # closed too recently
    assert client.purge(time.time() + 1, workflow="other") == []
    assert client.purge(time.time() + 1, workflow="example") == [done.run_id]
    with pytest.raises(RunNotFound):
        client.history(done.run_id)
    assert store.get_run(done.run_id) is None
    assert store.read_batches(done.run_id) == []
    assert client.status("open-run").status == "open"
    again = engine.start("example", 5, 0, workflow_id="purge-me")  # the id is free again
    assert again.run_id != done.run_id and again.result(timeout=60) == 25
    assert client.purge(time.time() + 1) == [again.run_id]
    assert [r.run_id for r in client.list_runs()] == ["open-run"]
