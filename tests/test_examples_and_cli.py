"""The examples run as documented, and the flowy command works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize(("example", "expected"), [
    ("toy", ["result: 104", "trace: toy.svg"]),
    ("fanout", ["totals: {'words': 100, 'letters': 590}"]),
    ("retry_timeout", ["report: {'primary': 'reports/2026.csv (fetched on attempt 3)', "
                       "'backup': 'cached copy', 'crunched': 3}"]),
    ("subworkflow", ["sum of 0..99: 4950"]),
    ("traced", ["result: loaded 3 rows: [0, 10, 20]", "trace: traced.svg"]),
    ("approval", ["order-1: charged order-1 (approved by ann)", "order-2: expired after 0.5 s",
                  "order-3: the run was cancelled: customer left"]),
])
def test_example_runs(example: str, expected: list[str], tmp_path: Path) -> None:
    finished = run("-m", f"examples.{example}", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    lines = finished.stdout.splitlines()
    for line in expected:
        assert line in lines
    for svg in tmp_path.glob("*.svg"):
        assert svg.read_text().lstrip().startswith("<?xml")


def test_traced_example_warns_about_the_ignored_error(tmp_path: Path) -> None:
    finished = run("-m", "examples.traced", cwd=tmp_path)
    assert "never read the errors of audit-0" in finished.stderr


def test_bench_prints_json_figures(tmp_path: Path) -> None:
    finished = run("-m", "flowy.cli.main", "bench", "chain", "many", "--size", "chain=50",
                   "--size", "many=5", "--json", cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    figures = {f["workload"]: f for f in json.loads(finished.stdout)}
    assert figures["chain"]["tasks"] == 50 and figures["chain"]["correct"] is True
    assert figures["many"]["tasks"] == 50 and figures["many"]["correct"] is True
    assert figures["chain"]["peak_rss_mb"] > 0 and figures["chain"]["tasks_per_second"] > 0


def test_bench_prints_a_table(tmp_path: Path) -> None:
    finished = run("-m", "flowy.cli.main", "bench", "reduce", "--size", "reduce=20",
                   cwd=tmp_path)
    assert finished.returncode == 0, finished.stderr
    header, row = finished.stdout.splitlines()
    assert header.split()[:4] == ["workload", "n", "tasks", "seconds"]
    assert row.split()[:3] == ["reduce", "20", "39"] and row.endswith("True")


@pytest.mark.parametrize("args", [["bench", "nope"], ["bench", "--size", "chain=zero"]])
def test_bench_rejects_bad_arguments(args: list[str], tmp_path: Path) -> None:
    finished = run("-m", "flowy.cli.main", *args, cwd=tmp_path)
    assert finished.returncode == 2
    assert "flowy bench:" in finished.stderr
