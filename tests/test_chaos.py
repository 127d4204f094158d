"""``flowy chaos``: its checks catch what they must (no processes), its
workloads end with the results it expects, and a small run on the test
endpoint, with processes SIGKILLed as it goes, loses nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flowy.chaos import workflows
from flowy.chaos.checks import (
    RunEnd,
    activity_attempts,
    duplicated_completions,
    execution_figures,
    summarize,
    violated,
)
from flowy.cli.chaos import options
from flowy.cli.main import _parser
from flowy.core.errors import ConfigurationError, ErrorInfo
from flowy.core.events import TaskCompleted, TaskFailed, TaskScheduled, WorkflowStarted
from flowy.core.runs import COMPLETED, FAILED, OPEN
from flowy.testing import WorkflowEnvironment

ROOT = Path(__file__).resolve().parent.parent


def scheduled(key: str, call_id: str, kind: Any = "activity") -> TaskScheduled:
    return TaskScheduled(key, call_id, "square", kind, "[[1], {}]")


def end(status: str = COMPLETED, result: Any = 3, histories: Any = None) -> RunEnd:
    return RunEnd("r1", "fanout", status, result, 3, histories or {})


# -- the checks, on histories made by hand ---------------------------------------


def test_a_call_completed_once_is_no_duplicate_even_after_a_failed_attempt() -> None:
    error = ErrorInfo("boom", "builtins.ValueError")
    history = [WorkflowStarted("[]"), scheduled("sq-0-1", "sq-0"), TaskFailed("sq-0-1", error),
               scheduled("sq-0-2", "sq-0"), TaskCompleted("sq-0-2", "1")]
    assert duplicated_completions(history) == {}


def test_an_attempt_completed_twice_and_two_attempts_of_a_call_are_duplicates() -> None:
    twice = [scheduled("a-0-1", "a-0"), TaskCompleted("a-0-1", "1"), TaskCompleted("a-0-1", "1")]
    both = [scheduled("b-0-1", "b-0"), scheduled("b-0-2", "b-0"), TaskCompleted("b-0-1", "1"),
            TaskCompleted("b-0-2", "1")]
    assert duplicated_completions(twice) == {"a-0": 2}
    assert duplicated_completions(both) == {"b-0": 2}


def test_lost_and_wrong_runs_are_told_apart() -> None:
    assert end(OPEN, None).lost and not end(OPEN, None).wrong
    assert end(COMPLETED, 4).wrong and end(FAILED, "ValueError: x").wrong
    assert not end().lost and not end().wrong


def test_attempts_are_named_as_the_execution_log_names_them() -> None:
    histories = {"r1": [scheduled("a-0-1", "a-0"), TaskCompleted("a-0-1", "1"),
                        scheduled("child-1-1", "child-1", kind="workflow"),
                        TaskCompleted("child-1-1", "2")]}
    assert activity_attempts(histories) == ({"r1/a-0-1"}, {"r1/a-0-1"})


def test_executions_per_attempt_count_repeats_and_attempts_that_never_ran() -> None:
    lines = [{"attempt": "r/a-1"}, {"attempt": "r/a-1"}, {"attempt": "r/b-1"}]
    figures = execution_figures(lines, {"r/a-1", "r/b-1", "r/c-1"})
    assert figures == {"lines": 3, "attempts": 3, "min": 0, "max": 2, "mean": 1.0,
                       "more_than_once": 1}


def test_the_summary_counts_every_violation_and_says_what_it_was() -> None:
    duplicated = {"r1": [scheduled("a-0-1", "a-0"), TaskCompleted("a-0-1", "1"),
                         TaskCompleted("a-0-1", "1")]}
    lost = RunEnd("r2", "chain", OPEN, None, 5, {"r2": [WorkflowStarted("[]"),
                                                         scheduled("s-0-1", "s-0")]})
    summary = summarize([end(histories=duplicated), lost, end(COMPLETED, 4)], [])
    assert (summary["runs"], summary["lost"], summary["wrong"],
            summary["duplicated_completions"], summary["completed_without_execution"]) \
        == (3, 1, 1, 1, 1)
    assert summary["by_shape"]["chain"] == {"runs": 1, "lost": 1, "wrong": 0}
    assert any("r2 (chain) still open" in p and "waiting on s-0-1" in p
               for p in summary["problems"])
    assert violated(summary)
    clean = summarize([end(histories={"r1": [scheduled("a-0-1", "a-0"),
                                             TaskCompleted("a-0-1", "1")]})],
                      [{"attempt": "r1/a-0-1"}])
    assert not violated(clean) and clean["problems"] == []


@pytest.mark.parametrize("flags, wrong", [
    (["--kill-every", "2"], "--kill-every"), (["--kill-every", "2-1"], "--kill-every"),
    (["--runs", "0"], "--runs"), (["--visibility-timeout", "5"], "--visibility-timeout"),
    (["--duration", "-1"], "--duration")])
def test_bad_options_say_which_to_fix(flags: list[str], wrong: str) -> None:
    with pytest.raises(ConfigurationError, match=wrong):
        options(_parser().parse_args(["chaos", *flags]))


def test_the_defaults_are_those_of_the_issue() -> None:
    chosen = options(_parser().parse_args(["chaos", "--seed", "3"]))
    assert (chosen.runs, chosen.deciders, chosen.workers, chosen.kill_every, chosen.duration,
            chosen.visibility_timeout, chosen.seed, chosen.poll_wait) \
        == (200, 2, 3, (0.5, 1.5), 90.0, 10, 3, 0)


def test_the_command_rejects_bad_options_with_status_2() -> None:
    finished = subprocess.run([sys.executable, "-m", "flowy", "chaos", "--kill-every", "fast"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert "flowy chaos: --kill-every takes A-B" in finished.stderr


# -- the workloads, on the in-memory engine ---------------------------------------


def test_every_shape_ends_with_its_expected_result_and_logs_each_execution(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "executions.jsonl"
    monkeypatch.setenv(workflows.LOG_VARIABLE, str(log))
    with WorkflowEnvironment() as env:
        for n, shape in enumerate(workflows.SHAPES):
            assert env.run(shape.workflow, n) == shape.expected(n), shape.name
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    flaky = [line["attempt"] for line in lines if line["activity"] == "flaky"]
    assert len(flaky) == 2 and flaky[0].endswith("-1") and flaky[1].endswith("-2")
    assert all(line["attempt"] and line["pid"] for line in lines)


def test_outside_a_worker_an_activity_logs_no_attempt_and_is_not_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "executions.jsonl"
    monkeypatch.setenv(workflows.LOG_VARIABLE, str(log))
    assert workflows.flaky(4) == 40
    assert json.loads(log.read_text())["attempt"] is None


# -- a small run with real processes ------------------------------------------------


def test_a_small_chaos_run_loses_nothing(aws_endpoint: str, tmp_path: Path) -> None:
    """8 runs, 2 deciders and 2 workers, one SIGKILLed every 1-2 s for 10 s."""
    if aws_endpoint.startswith("https://"):
        pytest.skip("the chaos suite runs on an emulator, not on real AWS")
    report = tmp_path / "chaos.json"
    finished = subprocess.run(
        [sys.executable, "-m", "flowy", "chaos", "--runs", "8", "--deciders", "2",
         "--workers", "2", "--kill-every", "1-2", "--duration", "10", "--seed", "11",
         "--drain-timeout", "60", "--endpoint-url", aws_endpoint, "--json", str(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert report.exists(), finished.stderr[-3000:]
    summary = json.loads(report.read_text())
    assert (summary["runs"], summary["lost"], summary["wrong"],
            summary["duplicated_completions"], summary["completed_without_execution"]) \
        == (8, 0, 0, 0, 0), summary["problems"]
    assert sum(summary["kills"].values()) >= 3  # 5 to 10 on time; a loaded machine is late
    assert summary["executions"]["min"] >= 1
    assert finished.returncode == 0


def test_stopping_the_command_stops_every_process_it_started(aws_endpoint: str) -> None:
    if aws_endpoint.startswith("https://"):
        pytest.skip("the chaos suite runs on an emulator, not on real AWS")
    import psutil

    from tests.aws_support import wait_for

    chaos = subprocess.Popen(
        [sys.executable, "-m", "flowy", "chaos", "--runs", "4", "--deciders", "1",
         "--workers", "1", "--duration", "600", "--kill-every", "300-300",
         "--endpoint-url", aws_endpoint], cwd=ROOT, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE)
    children = wait_for(lambda: len(psutil.Process(chaos.pid).children()) == 2
                        and psutil.Process(chaos.pid).children(), 60, "the two processes")
    chaos.send_signal(signal.SIGTERM)
    _, stderr = chaos.communicate(timeout=60)
    assert chaos.returncode == 130, stderr.decode()[-2000:]
    assert not [child.pid for child in children if child.is_running()
                and child.status() != psutil.STATUS_ZOMBIE]
