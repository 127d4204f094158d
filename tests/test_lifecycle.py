"""Processes' lifecycles, in real OS processes: ``flowy dev`` and ``flowy demo``
stop their decider and worker however they end, a child whose parent was
killed stops by itself, a taken port or a missing resource ends a process
with one line; and where the region comes from.

Nothing here times a process: each test polls for an outcome with a
generous deadline, so a loaded machine only makes it slower.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flowy import ConfigurationError
from flowy.backends.aws.emulator import EMULATOR_CREDENTIALS
from flowy.backends.aws.settings import AWSSettings, default_region
from flowy.backends.base import task_queue
from flowy.cli.aws_stack import local_stack
from flowy.worker import processes
from flowy.worker.processes import PARENT_VARIABLE, stop_with_parent
from tests.aws_support import ROOT, wait_for

PROC = Path("/proc")
needs_proc = pytest.mark.skipif(not (PROC / "self" / "stat").exists(),
                                reason="finds child processes through /proc (Linux)")
SLOW = pytest.mark.timeout(300)  # several processes start, on a machine maybe loaded
# What flowy dev, its decider and its worker log once they serve.
READY = ("Ctrl-C stops everything", "decider for ", "worker polling ")


# -- processes, by pid, through /proc --------------------------------------------

def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name; None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


class Process:
    """A process known by its pid and start time, so that a reused pid is not it."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        fields = _stat(pid)
        self.started = fields[19] if fields else None
        self.command = (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()

    def alive(self) -> bool:
        fields = _stat(self.pid)  # a zombie has exited: nobody may be there to reap it
        return fields is not None and fields[19] == self.started and fields[0] not in "ZX"


def children(parent: int) -> list[Process]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None and fields[1] == str(parent):
                try:
                    found.append(Process(int(entry.name)))
                except OSError:  # ended meanwhile
                    continue
    return found


def decider_and_worker(parent: int) -> list[Process]:
    """The parent's decider and worker, once both are running."""
    def both() -> list[Process] | None:
        roles = [p for p in children(parent) if " -m flowy decider " in p.command
                 or " -m flowy worker " in p.command]
        return roles if len(roles) == 2 else None
    found: list[Process] = wait_for(both, 90, f"the decider and worker of {parent}", 0.2)
    return found


def wait_gone(processes: list[Process], why: str) -> None:
    wait_for(lambda: not any(p.alive() for p in processes), 90, why, 0.2)


# -- flowy dev and flowy demo ------------------------------------------------------

def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env(tmp_path: Path, region: str = "eu-west-3") -> dict[str, str]:
    """No AWS or Flowy variables of the caller's; a profile whose region is ``region``."""
    config = tmp_path / "aws-config"
    config.write_text(f"[default]\nregion = {region}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "FLOWY_"))}
    return {**env, "AWS_CONFIG_FILE": str(config), "PYTHONPATH": str(ROOT)}


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Any]:
    """``flowy dev`` on a free port, running; its log as ``.log`` (a Path)."""
    log = tmp_path / "dev.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "flowy", "dev", "examples.aws_defs", "--port",
             str(free_port())], env=clean_env(tmp_path), cwd=ROOT, stdout=output,
            stderr=subprocess.STDOUT)
    process.log = log  # type: ignore[attr-defined]
    try:
        wait_for(lambda: all(line in log.read_text() for line in READY)
                 or process.poll() is not None, 90, "flowy dev and its children to start")
        assert process.poll() is None, log.read_text()
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@needs_proc
@SLOW
def test_the_children_of_a_sigkilled_dev_stop(dev: Any) -> None:
    served = decider_and_worker(dev.pid)
    dev.send_signal(signal.SIGKILL)
    dev.wait()
    # Only that they exit: the local AWS died with their parent, so what they
    # would do on the way out can fail.
    wait_gone(served, "the decider and worker to stop after their parent was killed")


@needs_proc
@SLOW
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_dev_stops_its_children(dev: Any, signum: signal.Signals) -> None:
    served = decider_and_worker(dev.pid)
    dev.send_signal(signum)
    assert dev.wait(timeout=120) == 0, dev.log.read_text()[-3000:]
    assert not any(p.alive() for p in served)  # dev waited for them
    log = dev.log.read_text()
    assert "decider stopped" in log and "worker stopped" in log, log[-3000:]
    # The children were given the stack's region, the profile's, not their own default.
    for role in ("decider", "worker"):
        [start] = [line for line in log.splitlines() if f" {role} on http://127.0.0.1:" in line]
        assert start.endswith(", region eu-west-3, namespace dev"), start


@needs_proc
@SLOW
def test_a_sigterm_to_demo_stops_its_children(tmp_path: Path) -> None:
    demo = subprocess.Popen([sys.executable, "-m", "flowy", "demo", "-o",
                             str(tmp_path / "d.svg")], env=clean_env(tmp_path), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        served = decider_and_worker(demo.pid)
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
    assert demo.returncode == 1 and "demo stopped by a signal" in output, output
    assert not any(p.alive() for p in served)


def test_a_stack_left_by_an_exception_stops_its_children(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    for name in (*EMULATOR_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)  # and restored after the stack set them
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(RuntimeError, match="boom"):
        with local_stack("examples.aws_defs", "boom", quiet=True) as stack:
            served = list(stack.processes.values())
            assert stack.must_stop(0) is None
            raise RuntimeError("boom")
    assert all(process.returncode is not None for process in served)
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_dev_on_a_taken_port_says_so_and_exits(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "flowy", "dev", "examples.aws_defs",
                               "--port", str(port)], env=clean_env(tmp_path), cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    [line] = done.stderr.strip().splitlines()
    assert f"port {port}" in line and "Address already in use" in line, done.stderr


# -- a parent's death, without a flowy dev -----------------------------------------

WATCHING_CHILD = textwrap.dedent("""
    import threading
    from flowy.worker import processes
    processes._set_parent_death_signal = lambda signum: False  # as where prctl is missing
    stop = threading.Event()
    processes.stop_with_parent(stop)
    print("watching", flush=True)
    print("parent gone" if stop.wait(240) else "timed out", flush=True)
""")

PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    env = {**os.environ, "FLOWY_PARENT_PID": str(os.getpid())}
    child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], env=env,
                             stdout=open(sys.argv[2], "w"))
    print(child.pid, flush=True)
    time.sleep(300)
""")


@needs_proc
@SLOW
def test_without_prctl_a_thread_notices_the_parent_die(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WATCHING_CHILD, str(log)],
                              cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = Process(int(parent.stdout.readline()))
        wait_for(lambda: "watching" in log.read_text(), 90, "the child to watch its parent")
    finally:
        parent.kill()
        parent.wait()
    wait_gone([child], "the child to stop after its parent was killed")
    assert log.read_text().split() == ["watching", "parent", "gone"]


def test_a_parent_gone_before_the_child_looked_stops_it(monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    monkeypatch.setattr(processes, "_set_parent_death_signal", lambda signum: True)
    monkeypatch.setenv(PARENT_VARIABLE, str(os.getppid() + 1_000_000))  # no pid of ours
    stop = threading.Event()
    stop_with_parent(stop)
    assert stop.is_set()
    assert PARENT_VARIABLE not in os.environ  # not passed on to this one's children


def test_without_a_parent_to_follow_nothing_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PARENT_VARIABLE, raising=False)
    stop = threading.Event()
    stop_with_parent(stop)
    assert not stop.is_set()
    monkeypatch.setenv(PARENT_VARIABLE, "dad")
    with pytest.raises(ConfigurationError, match=PARENT_VARIABLE):
        stop_with_parent(stop)


# -- a process on a namespace without its resources ----------------------------------

@pytest.mark.parametrize(("role", "missing"), [
    ("decider", "table"), ("decider", "queue"), ("worker", "queue")])
def test_a_missing_resource_ends_a_process_with_one_line(make_stack: Any, role: str,
                                                         missing: str) -> None:
    stack = make_stack(task_lists=())  # the table, the decision and timer queues
    settings = stack.settings
    if role == "decider" and missing == "table":
        stack.backend.dynamodb.delete_table(TableName=settings.table)
        name = f"table {settings.table}"
    elif role == "decider":
        sqs = stack.backend.sqs
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=settings.decision_queue)[
            "QueueUrl"])
        name = f"queue {settings.decision_queue}"
    else:
        name = f"queue {settings.queue_name(task_queue('default'))}"
    process = stack.decider() if role == "decider" else stack.worker("--task-list", "default")
    assert process.wait(timeout=90) == 1, stack.logs()
    log = process.log_path.read_text()
    [line] = [line for line in log.splitlines() if "does not exist" in line]
    assert line == (f"flowy {role}: {name} does not exist: create the namespace's resources "
                    f"with 'flowy setup --namespace {settings.namespace}' (or deploy "
                    "infra/flowy.yaml)")
    assert "Traceback" not in log
    assert f"{role} on {settings.endpoint_url}, region {settings.region}, namespace " \
           f"{settings.namespace}" in log


# -- the region --------------------------------------------------------------------

@pytest.fixture
def profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An AWS config file with a default and a named profile, and no region variables."""
    config = tmp_path / "config"
    config.write_text("[default]\nregion = eu-west-3\n\n[profile other]\nregion = ap-south-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("profiles")
@pytest.mark.parametrize(("variables", "region"), [
    ({}, "eu-west-3"),
    ({"AWS_PROFILE": "other"}, "ap-south-1"),
    ({"AWS_DEFAULT_REGION": "ca-central-1"}, "ca-central-1"),
    ({"AWS_REGION": "sa-east-1", "AWS_DEFAULT_REGION": "ca-central-1", "AWS_PROFILE": "other"},
     "sa-east-1"),
], ids=["profile", "named-profile", "AWS_DEFAULT_REGION", "AWS_REGION"])
def test_the_region_follows_the_environment_and_profile(
        monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], region: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    assert default_region() == region
    assert AWSSettings().region == region
    assert AWSSettings.from_env().client_kwargs()["region_name"] == region
    # An explicit region (--region) wins over all of them.
    assert AWSSettings.from_env(region="us-west-2").region == "us-west-2"
    assert AWSSettings(region="us-west-2").region == "us-west-2"


def test_the_region_falls_back_to_us_east_1(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    assert AWSSettings.from_env().region == "us-east-1"


@pytest.mark.usefixtures("profiles")
def test_a_missing_profile_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    with pytest.raises(ConfigurationError, match="nobody.*AWS_PROFILE"):
        AWSSettings.from_env()
