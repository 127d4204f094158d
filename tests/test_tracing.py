"""Tests of flowy.tracing: traces built from hand-written histories, DOT, rendering."""

from __future__ import annotations

import logging
import re
import shutil
import sys
from pathlib import Path

import pytest

from flowy import UnsupportedFormatError
from flowy.core.errors import ConfigurationError, ErrorInfo
from flowy.core.events import (
    Event,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskKind,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
    WorkflowFailed,
    WorkflowRestarted,
    WorkflowStarted,
)
from flowy.tracing import AttemptTrace, RunTrace, TaskTrace, Trace, build_run_trace
from flowy.tracing.dot import quote
from flowy.tracing.render import render

T0 = 1_000_000.0  # an epoch stamp; offsets below are exact binary fractions
BOOM = ErrorInfo("boom", "builtins.ValueError", type_mro=("builtins.ValueError",))
TRICKY = 'say "hi" \\ back\\slash\nnew line <>{}| end\\'

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz's dot is not installed")


def scheduled(call_id: str, at: float, attempt: int = 1, deps: tuple[str, ...] = (),
              kind: TaskKind = "activity") -> TaskScheduled:
    dependency = call_id.rsplit("-", 1)[0]
    return TaskScheduled(key=f"{call_id}-{attempt}", call_id=call_id, dependency=dependency,
                         kind=kind, input="[]", attempt=attempt, deps=deps, at=T0 + at)


def fan_in_history() -> list[Event]:
    return [
        WorkflowStarted("[1, 2, 3]", at=T0),
        scheduled("square-0", 0.0),
        scheduled("square-1", 0.0),
        TaskCompleted("square-0-1", "1", started_at=T0 + 0.25, at=T0 + 1.0),
        TaskCompleted("square-1-1", "4", started_at=T0 + 0.5, at=T0 + 1.5),
        scheduled("add-0", 1.5, deps=("square-0", "square-1")),
        TaskCompleted("add-0-1", "5", started_at=T0 + 1.75, at=T0 + 2.0),
        WorkflowCompleted("5", at=T0 + 2.0),
    ]


def retry_history() -> list[Event]:
    return [
        WorkflowStarted("null", at=T0),
        scheduled("flaky-0", 0.0),
        TaskFailed("flaky-0-1", BOOM, started_at=T0 + 0.5, at=T0 + 1.0),
        TimerStarted("flaky-0-2.backoff", 2.0, at=T0 + 1.0),
        TimerFired("flaky-0-2.backoff", at=T0 + 3.0),
        scheduled("flaky-0", 3.0, attempt=2),
        TaskCompleted("flaky-0-2", '"ok"', started_at=T0 + 3.5, at=T0 + 4.0),
        WorkflowCompleted('"ok"', at=T0 + 4.0),
    ]


def timeout_history() -> list[Event]:
    return [
        WorkflowStarted("null", at=T0),
        scheduled("slow-0", 0.0),
        TaskTimedOut("slow-0-1", "start_to_close", at=T0 + 10.0),
        TaskCompleted("slow-0-1", '"too late"', started_at=T0 + 1.0, at=T0 + 12.0),
        WorkflowFailed(ErrorInfo("slow-0 timed out", "flowy.TaskTimedout"), at=T0 + 12.0),
    ]


def trace_of(history: list[Event], workflow: str = "wf", run_id: str = "run-1") -> Trace:
    return Trace((build_run_trace(workflow, run_id, history),))


def labels(dot: str) -> dict[str, str]:
    """Node id -> raw (still escaped) label, from DOT source."""
    return dict(re.findall(r'^\s*(r\w+) \[label="((?:[^"\\]|\\.)*)"', dot, re.MULTILINE))


# -- data ---------------------------------------------------------------------

def test_fan_in_tasks_deps_and_statuses() -> None:
    run = build_run_trace("sum_squares", "run-1", fan_in_history())

    assert isinstance(run, RunTrace)
    assert (run.workflow, run.run_id, run.status) == ("sum_squares", "run-1", "completed")
    assert (run.input, run.result, run.error) == ("[1, 2, 3]", "5", None)
    assert (run.started_at, run.closed_at, run.duration) == (T0, T0 + 2.0, 2.0)
    assert [t.call_id for t in run.tasks] == ["square-0", "square-1", "add-0"]
    assert [t.status for t in run.tasks] == ["completed"] * 3
    assert [t.result for t in run.tasks] == ["1", "4", "5"]
    add = run.task("add-0")
    assert isinstance(add, TaskTrace)
    assert (add.dependency, add.kind, add.deps) == ("add", "activity", ("square-0", "square-1"))
    assert add.attempts == (AttemptTrace("add-0-1", 1, scheduled_at=T0 + 1.5,
                                         started_at=T0 + 1.75, finished_at=T0 + 2.0,
                                         outcome="completed", result="5"),)
    assert (add.retries, add.duration) == (0, 0.5)
    assert run.ignored == () and run.ignored_errors == ()
    with pytest.raises(KeyError, match="no call 'nope'"):
        run.task("nope")


def test_fan_in_timeline_is_sorted_with_exact_offsets() -> None:
    assert trace_of(fan_in_history()).timeline() == [
        (0.0, "wf run 1 started (run-1)"),
        (0.0, "square-0 attempt 1 scheduled (square)"),
        (0.0, "square-1 attempt 1 scheduled (square)"),
        (0.25, "square-0 attempt 1 started"),
        (0.5, "square-1 attempt 1 started"),
        (1.0, "square-0 attempt 1 completed: 1"),
        (1.5, "square-1 attempt 1 completed: 4"),
        (1.5, "add-0 attempt 1 scheduled (add)"),
        (1.75, "add-0 attempt 1 started"),
        (2.0, "add-0 attempt 1 completed: 5"),
        (2.0, "wf run 1 completed: 5"),
    ]


def test_retry_records_attempts_and_timer() -> None:
    task = build_run_trace("wf", "r", retry_history()).task("flaky-0")

    assert [(a.key, a.attempt, a.outcome) for a in task.attempts] == [
        ("flaky-0-1", 1, "failed"), ("flaky-0-2", 2, "completed")]
    assert task.attempts[0].error == BOOM and task.attempts[0].result is None
    assert (task.status, task.retries, task.result, task.error) == ("completed", 1, '"ok"', None)
    assert [(t.key, t.delay, t.started_at, t.fired_at) for t in task.timers] == [
        ("flaky-0-2.backoff", 2.0, T0 + 1.0, T0 + 3.0)]
    assert task.duration == 4.0
    assert trace_of(retry_history()).timeline()[3:6] == [
        (1.0, "flaky-0 attempt 1 failed: builtins.ValueError: boom"),
        (1.0, "timer flaky-0-2.backoff started (2.00s)"),
        (3.0, "flaky-0 attempt 2 scheduled (flaky)"),
    ]


def test_retry_timers_are_matched_by_order_not_key_format() -> None:
    # Two calls fail; their timers have keys that name neither call.
    history: list[Event] = [
        WorkflowStarted("null", at=T0),
        scheduled("a-0", 0.0),
        scheduled("b-0", 0.0),
        TaskFailed("b-0-1", BOOM, at=T0 + 1.0),
        TimerStarted("t-first", 5.0, at=T0 + 1.0),
        TaskFailed("a-0-1", BOOM, at=T0 + 2.0),
        TimerStarted("t-second", 1.0, at=T0 + 2.0),
        TimerFired("t-second", at=T0 + 3.0),
        scheduled("a-0", 3.0, attempt=2),
        TimerFired("t-first", at=T0 + 6.0),
        scheduled("b-0", 6.0, attempt=2),
    ]
    run = build_run_trace("wf", "r", history)

    assert [t.key for t in run.task("a-0").timers] == ["t-second"]
    assert [t.key for t in run.task("b-0").timers] == ["t-first"]
    assert [t.key for t in run.timers] == ["t-first", "t-second"]
    assert run.status == "open" and run.task("a-0").status == "open"


def test_late_completion_after_timeout_is_ignored_not_the_result() -> None:
    run = build_run_trace("wf", "r", timeout_history())
    task = run.task("slow-0")
    (attempt,) = task.attempts

    assert (attempt.outcome, attempt.timeout_type, attempt.result) == (
        "timed_out", "start_to_close", None)
    assert (attempt.started_at, attempt.finished_at) == (None, T0 + 10.0)
    assert [(n.at, n.description) for n in attempt.ignored] == [
        (T0 + 12.0, ('late TaskCompleted (result "too late") ignored: '
                     "attempt already timed_out"))]
    assert (task.status, task.result) == ("timed_out", None)
    assert run.status == "failed" and run.error is not None
    assert run.error.type_name == "flowy.TaskTimedout"
    assert trace_of(timeout_history()).timeline()[-2:] == [
        (12.0, ('slow-0 attempt 1: late TaskCompleted (result "too late") ignored: '
                "attempt already timed_out")),
        (12.0, "wf run 1 failed: flowy.TaskTimedout: slow-0 timed out"),
    ]


def test_duplicate_unknown_and_after_close_outcomes_are_ignored() -> None:
    history = [*fan_in_history()[:4],
               TaskCompleted("square-0-1", "1", at=T0 + 1.25),     # duplicate
               TaskFailed("ghost-9-1", BOOM, at=T0 + 1.25),        # never scheduled
               TimerFired("no-such-timer", at=T0 + 1.25),
               *fan_in_history()[4:],
               TaskCompleted("add-0-1", "6", at=T0 + 3.0),          # after close
               scheduled("late-0", 3.0)]
    run = build_run_trace("wf", "r", history)

    assert [n.description for n in run.task("square-0").attempts[0].ignored] == [
        "duplicate TaskCompleted (result 1) ignored: attempt already completed"]
    assert [n.description for n in run.task("add-0").attempts[0].ignored] == [
        "duplicate TaskCompleted (result 6) ignored: attempt already completed"]
    assert run.task("add-0").result == "5"
    assert [str(n) for n in run.ignored] == [
        "TaskFailed (builtins.ValueError: boom) for unknown attempt 'ghost-9-1' ignored",
        "TimerFired 'no-such-timer' for an unknown or already fired timer ignored",
        "TaskScheduled after the run closed ignored",
    ]
    assert [t.call_id for t in run.tasks] == ["square-0", "square-1", "add-0"]


def test_outcome_after_the_run_closed_is_ignored() -> None:
    run = build_run_trace("wf", "r", [
        WorkflowStarted("null", at=T0),
        scheduled("forgotten-0", 0.0),
        WorkflowCompleted("null", at=T0 + 1.0),
        TaskCompleted("forgotten-0-1", "1", at=T0 + 2.0),
    ])
    (attempt,) = run.task("forgotten-0").attempts

    assert (attempt.outcome, attempt.result) == ("open", None)
    assert [(n.at, n.description) for n in attempt.ignored] == [
        (T0 + 2.0, "late TaskCompleted (result 1) ignored: run already closed")]
    assert run.status == "completed"


def test_open_run() -> None:
    run = build_run_trace("wf", "r", fan_in_history()[:4])

    assert (run.status, run.closed_at, run.duration, run.result) == ("open", None, None, None)
    assert [t.status for t in run.tasks] == ["completed", "open"]
    assert run.tasks[1].duration is None
    dot = trace_of(fan_in_history()[:4]).to_dot()
    assert 'label="square-1\\nsquare\\nopen", fillcolor="#eeeeee", color="#757575"' in dot
    assert 'r0_end [label="open", shape="oval", fillcolor="#eeeeee"' in dot


def test_empty_history_is_an_open_run() -> None:
    run = build_run_trace("wf", "r", [])
    assert (run.status, run.started_at, run.input, run.tasks) == ("open", None, None, ())
    assert Trace((run,)).timeline() == []
    assert "r0_start -> r0_end [style=\"invis\"];" in Trace((run,)).to_dot()


def child_trace() -> Trace:
    child = build_run_trace("child_wf", "child-run", [
        WorkflowStarted("[7]", at=T0 + 1.0),
        scheduled("square-0", 1.0),
        TaskCompleted("square-0-1", "49", at=T0 + 2.0),
        WorkflowCompleted("49", at=T0 + 2.0),
    ])
    return Trace((child,))


def sub_workflow_trace() -> Trace:
    history: list[Event] = [
        WorkflowStarted("[7]", at=T0),
        scheduled("child-0", 0.5, kind="workflow"),
        TaskCompleted("child-0-1", "49", at=T0 + 2.5),
        WorkflowCompleted("49", at=T0 + 3.0),
    ]
    return Trace((build_run_trace("parent_wf", "parent-run", history,
                                  children={"child-0-1": child_trace()}),))


def test_sub_workflow_child_trace() -> None:
    trace = sub_workflow_trace()
    task = trace.runs[0].task("child-0")

    assert task.kind == "workflow"
    assert task.child == child_trace()
    assert task.child is not None and task.child.runs[0].status == "completed"
    assert build_run_trace("wf", "r", fan_in_history(),
                           children={"square-0-1": child_trace()}).tasks[1].child is None
    assert trace.timeline() == [
        (0.0, "parent_wf run 1 started (parent-run)"),
        (0.5, "child-0 attempt 1 scheduled (child)"),
        (1.0, "child-0 > child_wf run 1 started (child-run)"),
        (1.0, "child-0 > square-0 attempt 1 scheduled (square)"),
        (2.0, "child-0 > square-0 attempt 1 completed: 49"),
        (2.0, "child-0 > child_wf run 1 completed: 49"),
        (2.5, "child-0 attempt 1 completed: 49"),
        (3.0, "parent_wf run 1 completed: 49"),
    ]


def restart_trace() -> Trace:
    first = build_run_trace("counter", "run-a", [
        WorkflowStarted("0", at=T0),
        scheduled("inc-0", 0.0),
        TaskCompleted("inc-0-1", "1", at=T0 + 1.0),
        WorkflowRestarted("1", at=T0 + 1.0),
    ])
    second = build_run_trace("counter", "run-b", [
        WorkflowStarted("1", at=T0 + 1.5),
        scheduled("inc-0", 1.5),
        TaskCompleted("inc-0-1", "2", at=T0 + 2.0),
        WorkflowCompleted("2", at=T0 + 2.0),
    ])
    return Trace((first, second))


def test_restart_chain() -> None:
    trace = restart_trace()

    assert [(r.run_id, r.status) for r in trace.runs] == [
        ("run-a", "restarted"), ("run-b", "completed")]
    assert (trace.runs[0].next_input, trace.runs[0].result) == ("1", None)
    assert [text for _, text in trace.timeline()] == [
        "counter run 1 started (run-a)",
        "inc-0 attempt 1 scheduled (inc)",
        "inc-0 attempt 1 completed: 1",
        "counter run 1 restarted with input 1",
        "counter run 2 started (run-b)",
        "inc-0 attempt 1 scheduled (inc)",
        "inc-0 attempt 1 completed: 2",
        "counter run 2 completed: 2",
    ]
    assert repr(trace) == (
        "Trace(\n"
        "  counter run 1 (run-a): restarted with input 1 in 1.00s\n"
        "    inc-0 (inc): completed: 1\n"
        "  counter run 2 (run-b): completed: 2 in 0.50s\n"
        "    inc-0 (inc): completed: 2)")


def test_results_are_shortened_not_decoded() -> None:
    long = '{"items": [' + ", ".join(str(i) for i in range(100)) + "]}"
    history = [*fan_in_history()[:5], scheduled("add-0", 1.5),
               TaskCompleted("add-0-1", long, at=T0 + 2.0)]
    run = build_run_trace("wf", "r", history)

    assert run.task("add-0").result == long
    row = trace_of(history).timeline()[-1][1]
    assert row == "add-0 attempt 1 completed: " + long[:59] + "…"


# -- DOT ----------------------------------------------------------------------

def test_dot_nodes_edges_and_colors() -> None:
    dot = trace_of(fan_in_history(), workflow="sum_squares").to_dot()

    assert dot.startswith("digraph flowy {\n") and dot.endswith("}\n")
    assert "subgraph cluster_r0 {" in dot
    assert labels(dot) == {
        "r0_start": "start\\ninput: [1, 2, 3]",
        "r0_t0": "square-0\\nsquare\\ncompleted in 1.00s\\nresult: 1",
        "r0_t1": "square-1\\nsquare\\ncompleted in 1.50s\\nresult: 4",
        "r0_t2": "add-0\\nadd\\ncompleted in 0.50s\\nresult: 5",
        "r0_end": "completed: 5\\nafter 2.00s",
    }
    assert 'fillcolor="#d8f0d8", color="#2e7d32"' in dot
    assert "  r0_t0 -> r0_t2;\n  r0_t1 -> r0_t2;\n" in dot
    assert "r0_t0 -> r0_t1" not in dot


def test_dot_retry_timeout_and_late_result() -> None:
    retry = labels(trace_of(retry_history()).to_dot())["r0_t0"]
    assert retry == ("flaky-0\\nflaky\\ncompleted in 4.00s\\n2 attempts, 1 retry\\n"
                     "attempt 1 failed: builtins.ValueError: boom after 1.00s\\nresult: \\\"ok\\\"")

    dot = trace_of(timeout_history()).to_dot()
    assert labels(dot)["r0_t0"] == (
        "slow-0\\nslow\\ntimed out in 10.0s\\n"
        "attempt 1: late TaskCompleted (result \\\"too late\\\") ignored: "
        "attempt already timed_out")
    assert 'fillcolor="#ffe0b2", color="#e65100"' in dot  # orange: timed out
    assert 'fillcolor="#f8d7da", color="#c62828"' in dot  # red: the run failed


def test_dot_draws_timer_dependencies_signals_and_their_edges() -> None:
    history: list[Event] = [
        WorkflowStarted("[]", at=T0),
        TimerStarted("sleep-0", 0.5, at=T0),
        TimerStarted("sleep-1", 60.0, at=T0),
        TimerFired("sleep-0", at=T0 + 0.5),
        scheduled("echo-0", 0.5, deps=("sleep-0",)),
        SignalReceived("approve", '"yes"', "id-1", at=T0 + 0.75),
        SignalReceived("approve", '"again"', "id-2", at=T0 + 1.0),
        scheduled("echo-1", 1.0, deps=("approve-1",)),
        *retry_history()[1:-1],  # a retry timer stays with its call
    ]
    trace = trace_of(history)
    dot = trace.to_dot()
    assert labels(dot)["r0_w0"] == "sleep-0\\ntimer 0.50s, fired"
    assert labels(dot)["r0_w1"] == "sleep-1\\ntimer 1m00s, waiting"
    assert labels(dot)["r0_w2"] == "approve-0\\nsignal received\\nvalue: \\\"yes\\\""
    assert "r0_w4" not in dot  # flaky-0-2.backoff is drawn on flaky-0
    assert "  r0_w0 -> r0_t0;\n" in dot and "  r0_w3 -> r0_t1;\n" in dot
    assert (0.75, 'signal approve-0 received: "yes"') in trace.timeline()


def test_dot_sub_workflow_cluster_with_prefixed_ids() -> None:
    dot = sub_workflow_trace().to_dot()

    assert "subgraph cluster_r0_t0_child {" in dot
    assert 'graph [label="sub-workflow child-0", style="dashed"' in dot
    assert "subgraph cluster_r0_t0_r0 {" in dot
    assert labels(dot)["r0_t0_r0_t0"] == "square-0\\nsquare\\ncompleted in 1.00s\\nresult: 49"
    assert labels(dot)["r0_t0"].startswith("child-0\\nchild (sub-workflow)\\n")
    assert 'r0_t0 -> r0_t0_r0_start [label="sub-workflow", style="dashed"];' in dot
    # The child cluster is nested in the parent run's cluster.
    parent = dot.index("subgraph cluster_r0 {")
    assert parent < dot.index("subgraph cluster_r0_t0_child {") < dot.index("r0_end [")


def test_dot_restart_edge_between_run_clusters() -> None:
    dot = restart_trace().to_dot()

    assert "subgraph cluster_r0 {" in dot and "subgraph cluster_r1 {" in dot
    assert 'r0_end -> r1_start [label="restart", style="bold", color="#1565c0"];' in dot
    assert 'graph [label="counter run 2 · run-b"' in dot


def test_quote_escapes() -> None:
    assert quote('a"b') == '"a\\"b"'
    assert quote("a\\b") == '"a\\\\b"'
    assert quote("a\nb\r\nc") == '"a\\nb\\nc"'
    assert quote("<>{}|") == '"<>{}|"'
    assert quote("tab\there\x00\x1b") == '"tab here\\\\x00\\\\x1b"'
    assert quote("ends with \\") == '"ends with \\\\"'


@needs_dot
def test_tricky_strings_are_accepted_by_dot(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    run = build_run_trace(TRICKY, TRICKY, [
        WorkflowStarted(TRICKY, at=T0),
        TaskScheduled(key=TRICKY, call_id=TRICKY, dependency=TRICKY, kind="activity",
                      input=TRICKY, at=T0),
        TaskFailed(TRICKY, ErrorInfo(TRICKY, TRICKY), at=T0 + 1.0),
        TaskCompleted(TRICKY, TRICKY + "\x00\x07", at=T0 + 2.0),
        WorkflowCompleted(TRICKY, ignored_errors=(TRICKY,), at=T0 + 2.0),
    ])
    trace = Trace((run,))

    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        svg = trace.render(tmp_path / "tricky.svg")
    assert svg == tmp_path / "tricky.svg"
    assert caplog.records == []
    text = svg.read_text(encoding="utf-8")
    assert "say &quot;hi&quot; \\ back\\slash\\nnew line &lt;&gt;{}| end\\" in text
    assert "\\x00\\x07" in text


# -- rendering ----------------------------------------------------------------

@needs_dot
@pytest.mark.parametrize(("name", "magic"), [
    ("run.svg", b"<?xml"), ("run.png", b"\x89PNG\r\n\x1a\n"), ("run.pdf", b"%PDF"),
    ("RUN.SVG", b"<?xml"),
])
def test_render_formats(tmp_path: Path, name: str, magic: bytes) -> None:
    path = restart_trace().render(tmp_path / name)

    assert path == tmp_path / name
    data = path.read_bytes()
    assert data.startswith(magic)
    if name.lower().endswith(".svg"):
        assert b"<svg" in data[:1000]


def test_render_dot_writes_source_without_graphviz(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)  # any import of it fails
    trace = sub_workflow_trace()

    path = trace.render(str(tmp_path / "run.dot"))

    assert path == tmp_path / "run.dot"
    assert path.read_text(encoding="utf-8") == trace.to_dot()


def test_missing_dot_program_warns_and_returns_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))

    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        result = trace_of(fan_in_history()).render(tmp_path / "run.svg")

    assert result is None
    assert not (tmp_path / "run.svg").exists()
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("flowy.tracing", logging.WARNING)
    assert record.getMessage() == (
        "can't render trace to run.svg: Graphviz's 'dot' program is not installed; "
        "install it (apt-get install graphviz / brew install graphviz) or write .dot instead")


def test_missing_graphviz_package_warns_and_returns_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setitem(sys.modules, "graphviz", None)

    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        assert render("digraph {}", tmp_path / "run.png") is None

    (record,) = caplog.records
    assert "the 'graphviz' Python package is not installed; pip install graphviz" in (
        record.getMessage())


@needs_dot
def test_dot_failure_warns_and_returns_none(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        assert render("digraph { a -> ", tmp_path / "bad.svg") is None

    (record,) = caplog.records
    assert record.getMessage().startswith(
        "can't render trace to bad.svg: Graphviz's 'dot' failed (exit 1): ")
    assert "syntax error" in record.getMessage()
    assert not (tmp_path / "bad.svg").exists()


def test_unwritable_path_warns_and_returns_none(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flowy.tracing"):
        assert render("digraph {}", tmp_path / "no-such-dir" / "run.dot") is None
    assert "can't write trace to" in caplog.records[0].getMessage()


@pytest.mark.parametrize("name", ["run.jpg", "run", "run.svg.txt"])
def test_unsupported_suffix_raises(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsupportedFormatError, match=r"\.svg, \.png, \.pdf, \.dot") as info:
        trace_of(fan_in_history()).render(tmp_path / name)

    assert isinstance(info.value, ConfigurationError)
    assert isinstance(info.value, ValueError)
    assert list(tmp_path.iterdir()) == []
