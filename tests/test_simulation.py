"""The deterministic simulation: its worlds hold the invariants, crash every
checkpoint, reproduce from their seed, and its checks catch what they must."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections import Counter

import pytest

from flowy.backends.base import CHECKPOINTS, DECISIONS, Outgoing
from flowy.backends.clocks import ManualClock
from flowy.backends.memory import memory_backend
from flowy.cli.main import main
from flowy.client import FlowyClient
from flowy.core.events import (
    TaskCompleted,
    TaskScheduled,
    TimerFired,
    WorkflowCompleted,
    WorkflowStarted,
)
from flowy.core.runs import COMPLETED, RunRecord
from flowy.testing.simulation import PROFILES, Profile, simulate
from flowy.testing.simulation.checks import check_dead_letters, check_runs, check_set_aside

SEEDS = 300
CHUNKS = 6  # so that the seeds spread over the suite's processes


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_worlds_under_faults_hold_every_invariant(chunk: int) -> None:
    """No run lost, no completion duplicated, results right, every task ended:
    crashes at every checkpoint, stalls past leases, duplicated, reordered
    and delayed messages."""
    size = SEEDS // CHUNKS
    reports = [simulate(seed, "protocol") for seed in range(chunk * size, (chunk + 1) * size)]
    failed = {r.seed: r.violations[:3] for r in reports if not r.ok}
    assert not failed, (f"seeds {sorted(failed)} failed (reproduce one with flowy simulate "
                        f"--seed N --verbose): {failed}")
    assert all(r.crashes for r in reports)  # every world crashed a process at least once


def test_seeds_crash_every_checkpoint_of_the_protocol() -> None:
    crashed: Counter[str] = Counter()
    for seed in range(2 * len(CHECKPOINTS)):
        crashed.update(simulate(seed, "protocol").crashed_at)
    del crashed["the worker died in the attempt"]  # the workload's own
    assert set(crashed) == set(CHECKPOINTS), crashed
    assert min(crashed.values()) >= 2


def test_without_faults_every_attempt_runs_once() -> None:
    for seed in range(5):
        report = simulate(seed, "calm")
        assert report.ok, report.violations
        # A worker that dies in an attempt is part of the workload, not a fault.
        assert report.crashed_at == {"the worker died in the attempt": 1}
        assert report.executions == report.attempts > 30


def test_a_seed_reproduces_exactly_even_in_another_process() -> None:
    first, again = simulate(17, "protocol"), simulate(17, "protocol")
    assert first.log == again.log and first.fingerprint == again.fingerprint
    assert simulate(18, "protocol").fingerprint != first.fingerprint
    # Another process hashes strings with another seed: nothing may depend on it.
    code = ("from flowy.testing.simulation import simulate; "
            "print(simulate(17, 'protocol').fingerprint)")
    for hash_seed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={"PYTHONHASHSEED": hash_seed, "PATH": ""})
        assert out.stdout.strip() == first.fingerprint


def test_crashes_do_not_exhaust_the_deployed_redrive_limit() -> None:
    """Issue "Durable under crashes", F1 and F2: crashes count against the
    messages their processes held.  With the default redrive limit, a last
    resort, they must not dead-letter a run's notification or task, nor fail
    an attempt that did not run (the worker counts restarts, not deliveries)."""
    reports = [simulate(seed, "deployed") for seed in range(30)]
    assert [v for r in reports for v in r.violations] == []


def test_a_low_redrive_limit_loses_work_under_crashes() -> None:
    """What the chaos run found with FLOWY_MAX_RECEIVES=5: the simulation shows it."""
    low = dataclasses.replace(PROFILES["deployed"], max_receives=5)
    violations = [v for seed in range(30) for v in simulate(seed, low).violations]
    assert any("on decisions was dead-lettered (received 5 times" in v for v in violations)


def test_lost_wake_ups_lose_no_run() -> None:
    """Item 2 of issue "Durable under crashes": notifications and timer messages
    lost outright; the reconciler finds every run that waits, and each ends right."""
    reports = [simulate(seed, "lossy") for seed in range(40)]
    assert sum(entry.startswith("drop ") for r in reports for entry in r.log) > 40
    assert [v for r in reports for v in r.violations] == []


def test_a_world_that_does_not_settle_fails() -> None:
    # Every step crashes, and the faults never stop: nothing progresses.
    endless = Profile(crash=1.0, max_receives=1000, fault_steps=1000, max_steps=200)
    report = simulate(3, endless)
    assert not report.ok
    assert any("still busy after" in v for v in report.violations)


# -- the checks on hand-made states --------------------------------------------------


def _closed_run(store_events: list, status: str = COMPLETED):  # type: ignore[no-untyped-def]
    backend = memory_backend(clock=ManualClock())
    record = RunRecord("r1", "w@1", started_at=0.0)
    backend.store.create_run(record)
    assert backend.store.commit("r1", 1, store_events, 1.0)
    backend.store.close_run("r1", status, 2.0, result="1")
    return backend


def test_checks_catch_a_duplicated_completion_and_an_attempt_that_never_ended() -> None:
    scheduled = [TaskScheduled("a-0-1", "a-0", "a", "activity", "[[],{}]"),
                 TaskScheduled("b-0-1", "b-0", "b", "activity", "[[],{}]")]
    backend = _closed_run([WorkflowStarted("[[],{}]"), *scheduled,
                           TaskCompleted("a-0-1", "1"), TaskCompleted("a-0-1", "1"),
                           WorkflowCompleted("1")])
    problems = check_runs(FlowyClient(backend))
    assert any("a-0-1 has 2 TaskCompleted events" in p for p in problems)
    assert any("b-0-1 never ended" in p for p in problems)


def test_checks_catch_an_open_run_and_a_dead_letter() -> None:
    backend = memory_backend(clock=ManualClock())
    backend.store.create_run(RunRecord("r1", "w@1", started_at=0.0))
    assert any("is still open: lost" in p for p in check_runs(FlowyClient(backend)))
    backend.queues.send(DECISIONS, [Outgoing("wake r1", group="r1", dedup="d1")])
    [message] = backend.queues.receive(DECISIONS, max_messages=1, wait=0, lease=30)
    backend.queues.dead_letter(DECISIONS, message, "poison")
    assert check_dead_letters(backend, ()) == [
        "a message on decisions was dead-lettered (poison): wake r1"]


def test_checks_catch_a_genuine_fact_set_aside() -> None:
    """A decider judging facts on a stale copy of a history would refuse real
    ones: in a world without forgers, nothing may be set aside."""
    backend = memory_backend(clock=ManualClock())
    backend.store.add_fact("r1", TimerFired("t"))
    [(item, _fact)] = backend.store.read_inbox("r1")
    assert check_set_aside(backend) == []
    backend.store.set_aside("r1", [(item, "the run has no timer t waiting to fire")])
    assert check_set_aside(backend) == [
        "run r1: a genuine fact was set aside as fact#timer:t: "
        "the run has no timer t waiting to fire"]


def test_checks_catch_a_run_that_closed_unlike_its_history() -> None:
    backend = _closed_run([WorkflowStarted("[[],{}]"), WorkflowCompleted("1")], status="failed")
    assert any("is failed, but its history ends with WorkflowCompleted" in p
               for p in check_runs(FlowyClient(backend)))


def test_flowy_simulate_prints_a_summary_and_how_to_reproduce(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--seeds", "3"]) == 0
    out = capsys.readouterr().out
    assert "profile protocol: 3 of 3 seeds passed" in out and "seeds/s" in out
    assert main(["simulate", "--seeds", "10", "--profile", "deployed", "--max-receives", "5",
                 "--verbose"]) == 1
    out = capsys.readouterr().out
    failed = out.split("failed seeds: ")[1].split()[0]
    assert (f"reproduce: flowy simulate --seed {failed} --profile deployed --max-receives 5 "
            "--verbose") in out
    assert "!! " in out and "crash " in out and "dead-lettered" in out

