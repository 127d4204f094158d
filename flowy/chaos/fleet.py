"""The decider and worker processes of a chaos run, kept alive while killed.

Each process has a slot; a killed process is replaced in its slot at once,
and so is one that exits by itself (a decider whose thread died exits 1, for
its supervisor to restart it: here the fleet is that supervisor).  Output of
every process goes to a log file of its own, for the post-mortem of a
failing run.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

DEFINITIONS = "flowy.chaos.workflows"
# SIGTERM lets a worker finish its attempts; past this, the fleet kills it.
STOP_GRACE = 15.0


class Fleet:
    """``deciders`` decider and ``workers`` worker processes on one namespace
    (named, with the endpoint, by ``env``)."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, deciders: int, workers: int,
                 poll_wait: int) -> None:
        self._env = env
        self._log_dir = log_dir
        self._poll_wait = poll_wait
        self._roles = ["decider"] * deciders + ["worker"] * workers
        self._slots: list[subprocess.Popen[bytes] | None] = [None] * len(self._roles)
        self._spawned = 0
        self.kills: Counter[str] = Counter()
        self.exits: Counter[str] = Counter()  # ended by themselves, not by a kill

    def start(self) -> None:
        for slot in range(len(self._slots)):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        role = self._roles[slot]
        self._spawned += 1
        log = self._log_dir / f"{role}-{slot}-{self._spawned}.log"
        with log.open("wb") as output:  # the child keeps its own descriptor
            self._slots[slot] = subprocess.Popen(
                [sys.executable, "-m", "flowy", role, DEFINITIONS,
                 "--poll-wait", str(self._poll_wait)],
                env=self._env, stdout=output, stderr=subprocess.STDOUT)

    def kill_one(self, rng: random.Random) -> str:
        """SIGKILL a random process, start its replacement; the role killed."""
        slot = rng.randrange(len(self._slots))
        process = self._slots[slot]
        assert process is not None, "the fleet kills only after it started"
        process.send_signal(signal.SIGKILL)
        process.wait()
        self.kills[self._roles[slot]] += 1
        self._spawn(slot)
        return self._roles[slot]

    def replace_exited(self) -> None:
        """Start a replacement for every process that ended by itself."""
        for slot, process in enumerate(self._slots):
            if process is not None and process.poll() is not None:
                self.exits[self._roles[slot]] += 1
                self._spawn(slot)

    def stop(self) -> None:
        """SIGTERM every process, and SIGKILL those still running after the grace."""
        running = [p for p in self._slots if p is not None and p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(timeout=STOP_GRACE + self._poll_wait)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._slots = [None] * len(self._slots)
