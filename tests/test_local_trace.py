"""LocalWorkflow end to end: run(..., _trace=True), last_trace, DOT and rendering."""

from __future__ import annotations

import html
import logging
import re
import time

import pytest

from flowy import RetryPolicy, TaskError, TaskTimedout
from flowy.tracing import Trace
from tests import activities as A

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def example(make_workflow):
    return (make_workflow(A.ExampleWorkflow)
            .conf_activity("square", A.square)
            .conf_activity("sum", A.add))


def node_ids(dot: str) -> dict[str, str]:
    """Call id -> DOT node id, read from the node labels."""
    return {m.group(2): m.group(1)
            for m in re.finditer(r'^\s*(\w+_t\d+) \[label="([\w-]+)\\n', dot, re.MULTILINE)}


def test_trace_is_kept_only_when_asked(example) -> None:
    assert example.last_trace is None
    assert example.run(2, 10) == 104
    assert example.last_trace is None
    assert example.run(2, 10, _trace=True) == 104
    trace = example.last_trace
    assert isinstance(trace, Trace)
    assert example.run(1, 1) == 2
    assert example.last_trace is trace  # untouched by a run without _trace


def test_trace_data_of_the_readme_example(example) -> None:
    example.run(2, 10, _trace=True)
    (run,) = example.last_trace.runs
    assert run.workflow == "ExampleWorkflow"
    assert run.status == "completed"
    assert run.input == "[[2,10],{}]"
    assert run.result == "104"
    assert [t.call_id for t in run.tasks] == ["square-0", "square-1", "sum-0"]
    assert [t.deps for t in run.tasks] == [(), (), ("square-0", "square-1")]
    assert [t.result for t in run.tasks] == ["4", "100", "104"]
    assert all(t.status == "completed" and t.retries == 0 for t in run.tasks)
    assert run.started_at <= run.tasks[0].attempts[0].scheduled_at <= run.closed_at


def test_dot_has_every_call_and_dependency_edges(example) -> None:
    example.run(2, 10, _trace=True)
    dot = example.last_trace.to_dot()
    assert dot.startswith("digraph flowy {")
    ids = node_ids(dot)
    assert set(ids) == {"square-0", "square-1", "sum-0"}
    lines = dot.splitlines()
    assert f"  {ids['square-0']} -> {ids['sum-0']};" in lines
    assert f"  {ids['square-1']} -> {ids['sum-0']};" in lines
    assert f"  {ids['square-0']} -> {ids['square-1']};" not in lines
    assert "completed: 104" in dot


def test_render_svg(example, tmp_path) -> None:
    example.run(2, 10, _trace=True)
    path = tmp_path / "run.svg"
    assert example.last_trace.render(path) == path
    svg = html.unescape(path.read_text(encoding="utf-8"))
    assert "<svg" in svg
    for call_id in ("square-0", "square-1", "sum-0"):
        assert call_id in svg


def test_render_without_dot_warns_and_returns_none(example, tmp_path, monkeypatch,
                                                  caplog) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        assert example.run(2, 10, _trace=True) == 104
        assert example.last_trace.render(tmp_path / "run.svg") is None
    assert not (tmp_path / "run.svg").exists()
    warnings = [r for r in caplog.records if r.name == "flowy.tracing"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert "'dot' program is not installed" in warnings[0].getMessage()
    # .dot needs no Graphviz.
    assert example.last_trace.render(tmp_path / "run.dot") == tmp_path / "run.dot"
    assert (tmp_path / "run.dot").read_text(encoding="utf-8") == example.last_trace.to_dot()


def test_timeline(example) -> None:
    example.run(2, 10, _trace=True)
    rows = example.last_trace.timeline()
    times = [t for t, _ in rows]
    assert times == sorted(times)
    assert times[0] == 0.0
    assert rows[0][1].startswith("ExampleWorkflow run 1 started")
    assert rows[-1][1] == "ExampleWorkflow run 1 completed: 104"
    texts = [text for _, text in rows]
    for call_id, result in (("square-0", 4), ("square-1", 100), ("sum-0", 104)):
        assert f"{call_id} attempt 1 completed: {result}" in texts


def test_sub_workflows_are_cluster_boxes(make_workflow, example) -> None:
    parent = (make_workflow(A.Parent)
              .conf_workflow("sub", example)
              .conf_activity("square", A.square))
    assert parent.run(2, 10, _trace=True) == 104 ** 2
    run = parent.last_trace.runs[0]
    sub = run.task("sub-0")
    assert sub.kind == "workflow"
    assert [t.call_id for t in sub.child.runs[0].tasks] == ["square-0", "square-1", "sum-0"]
    assert run.task("square-0").deps == ("sub-0",)
    dot = parent.last_trace.to_dot()
    ids = node_ids(dot)
    sub_node = ids["sub-0"]
    assert f"subgraph cluster_{sub_node}_child {{" in dot
    assert 'label="sub-workflow sub-0"' in dot
    assert f"  {sub_node} -> {sub_node}_r0_start " in dot
    for call_id in ("square-0", "square-1", "sum-0"):
        assert re.search(rf'{sub_node}_r0_t\d \[label="{call_id}\\n', dot)
    assert "sub-0 > square-0 attempt 1 completed: 4" in [t for _, t in
                                                          parent.last_trace.timeline()]


def test_retries_appear_in_the_trace(make_workflow, calls_file) -> None:
    w = make_workflow(A.SingleCall).conf_activity(
        "task", A.flaky, retry=RetryPolicy(max_attempts=3, initial_delay=0.05, backoff=2))
    assert w.run(calls_file(), 2, _trace=True) == 3
    run = w.last_trace.runs[0]
    task = run.task("task-0")
    assert task.retries == 2
    assert [a.attempt for a in task.attempts] == [1, 2, 3]
    assert [a.key for a in task.attempts] == ["task-0-1", "task-0-2", "task-0-3"]
    assert [a.outcome for a in task.attempts] == ["failed", "failed", "completed"]
    assert task.attempts[0].error.type_name == "builtins.RuntimeError"
    assert [(t.delay, t.fired_at is not None) for t in run.timers] == [(0.05, True),
                                                                       (0.1, True)]
    assert task.timers == run.timers
    dot = w.last_trace.to_dot()
    assert "3 attempts, 2 retries" in dot
    assert "attempt 1 failed: builtins.RuntimeError: attempt 1 failed" in dot
    assert any("timer task-0-2.backoff started" in t for _, t in w.last_trace.timeline())


def test_timeouts_and_late_results_appear_in_the_trace(make_workflow, calls_file) -> None:
    w = make_workflow(A.SingleCall).conf_activity(
        "task", A.slow, timeout=0.2, retry=RetryPolicy(max_attempts=2, initial_delay=0.01))
    with pytest.raises(TaskTimedout):
        w.run(calls_file(), 0.4, _trace=True, _wait=True)
    run = w.last_trace.runs[0]
    assert run.status == "failed"
    assert run.error.type_name == "flowy.TaskTimedout"
    assert run.error.message == "task-0 timed out (start-to-close) on attempt 2"
    task = run.task("task-0")
    assert [a.outcome for a in task.attempts] == ["timed_out", "timed_out"]
    assert [a.timeout_type for a in task.attempts] == ["start_to_close"] * 2
    assert "timed out" in w.last_trace.to_dot()


def test_late_results_are_recorded_as_ignored(make_workflow, calls_file) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.slow, timeout=0.1)
    handle = w.start(calls_file(), 0.3)
    with pytest.raises(TaskTimedout):
        handle.result(timeout=5, wait_for_tasks=True)
    time.sleep(0.1)  # the late result goes through the decider thread
    attempt = handle.trace().runs[0].task("task-0").attempts[0]
    assert attempt.outcome == "timed_out"
    assert [str(n) for n in attempt.ignored] == [
        'late TaskCompleted (result "done") ignored: attempt already timed_out']
    assert "ignored: attempt already timed_out" in handle.trace().to_dot()


def _slow_late_facts(monkeypatch, delay: float) -> None:
    """Make the decider take ``delay`` s over facts for closed runs.

    Only a scheduling delay: nothing else in the engine changes.
    """
    from flowy.core.replay import is_closed
    from flowy.worker.committer import Committer

    decide = Committer._decide

    def slow_decide(self, decider, state):
        if is_closed(state.history):
            time.sleep(delay)
        return decide(self, decider, state)

    monkeypatch.setattr(Committer, "_decide", slow_decide)


def test_waited_for_late_results_appear_in_the_trace(make_workflow, calls_file,
                                                     monkeypatch) -> None:
    _slow_late_facts(monkeypatch, 0.1)
    w = make_workflow(A.SingleCall).conf_activity("task", A.slow, timeout=0.1)
    with pytest.raises(TaskTimedout):
        w.run(calls_file(), 0.3, _trace=True, _wait=True)
    notes = w.last_trace.runs[0].task("task-0").attempts[0].ignored
    assert [str(n) for n in notes] == [
        'late TaskCompleted (result "done") ignored: attempt already timed_out']


def test_failed_run_keeps_its_trace(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.fail_with)
    with pytest.raises(TaskError):
        w.run("nope", _trace=True)
    run = w.last_trace.runs[0]
    assert run.status == "failed"
    assert run.error.message == "nope"
    assert run.task("task-0").error.type_name == "builtins.ValueError"
    assert "failed: builtins.ValueError: nope" in w.last_trace.to_dot()


def test_restart_chain_in_the_trace(make_workflow) -> None:
    w = make_workflow(A.Countdown).conf_activity("add", A.add)
    assert w.run(2, _trace=True) == 3
    runs = w.last_trace.runs
    assert [r.status for r in runs] == ["restarted", "restarted", "completed"]
    assert [r.input for r in runs] == ['[[2],{}]', '[[1],{"acc":2}]', '[[0],{"acc":3}]']
    assert len({r.run_id for r in runs}) == 3
    dot = w.last_trace.to_dot()
    assert 'r0_end -> r1_start [label="restart"' in dot
    assert 'r1_end -> r2_start [label="restart"' in dot
