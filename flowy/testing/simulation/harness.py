"""The deterministic simulation: the engine's real decider, timer keeper and
worker code, stepped one message at a time on the in-memory backend and a
manual clock, with seeded faults, as FoundationDB and TigerBeetle test theirs.

A world has two decider processes, two workers and a client.  Each step, a
generator seeded by the world's number picks a process that is in the middle
of handling messages, or one that has a message it can receive, or the
client while runs remain to be started, and lets it go on to its next
checkpoint: so processes interleave as concurrent ones do, at every step of
the protocol.  When nobody can go on, the clock jumps to the next moment a
delay or a lease ends.  Faults come from :class:`Faults`: crashes
at the protocol's checkpoints (a crashed process is replaced by a fresh one
with nothing in memory, and what it held stays in flight until its lease
ends), stalls past a lease, dropped, duplicated, reordered and delayed
messages.  Every seed also crashes one checkpoint, chosen by its number, so
that a few hundred seeds crash every step of commit -> send -> consume many
times.  After ``fault_steps`` steps the faults stop and the world runs until
nothing is left to do; then :mod:`.checks` says what it ended in.

Everything that happens depends only on the seed (one thread, ids from
counters, no wall clock), so a failing seed reproduces exactly:
``flowy simulate --seed N --verbose``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import random
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import greenlet

from ...backends.base import CHECKPOINTS, DECISIONS, DEFAULT_MAX_RECEIVES, TIMERS, task_queue
from ...backends.clocks import ManualClock
from ...backends.memory import Faults, MemoryBackend, memory_backend
from ...client import FlowyClient
from ...core.errors import SimulatedCrash
from ...declaration import Registry
from ...worker.decider import OVERDUE_LEASES, Decider
from ...worker.worker import ActivityWorker
from .checks import (
    check_dead_letters,
    check_results,
    check_runs,
    check_set_aside,
    scheduled_attempts,
)
from .workload import Executions, Start, declare

LEASE = 30.0
# A world that has not settled in this much simulated time is stuck (a run
# that re-arms a timer for ever, say): that is a failure.
MAX_SECONDS = 3 * 24 * 3600.0


@dataclass(frozen=True)
class Profile:
    """What may go wrong in a world: probabilities per checkpoint (``crash``,
    ``stall``), per message sent (``drop``, ``duplicate``, ``delay``) and per
    receive (``reorder``); ``max_receives`` is the queues' redrive limit."""

    crash: float = 0.0
    stall: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    delay: float = 0.0
    reorder: float = 0.0
    max_receives: int = DEFAULT_MAX_RECEIVES
    drop_from: frozenset[str] | None = None  # the queues whose sends ``drop`` loses (all)
    fault_steps: int = 400  # then the faults stop
    max_steps: int = 20_000  # a world still busy after these is stuck
    crash_one_step: bool = True  # and crash the checkpoint the seed picks


PROFILES: dict[str, Profile] = {
    # What the protocol must survive: crashes and stalls anywhere, messages
    # duplicated, reordered and delayed, with SQS's redrive as a last resort.
    "protocol": Profile(crash=0.02, stall=0.01, duplicate=0.05, delay=0.05, reorder=0.2,
                        max_receives=1000),
    # More crashes, with the redrive limit deployed by default
    # (FLOWY_MAX_RECEIVES): crashes count against the messages their processes
    # held, and must not exhaust it.
    "deployed": Profile(crash=0.05, stall=0.02, duplicate=0.05, delay=0.05, reorder=0.2),
    # Wake-ups lost outright (notifications and timers): the reconciler must
    # find every run that waits.  (SQS does not lose a message it accepted:
    # this stands for the ones dead-lettered, or never sent by a process that
    # died.  A lost task message is the attempt's timeout's to find.)
    "lossy": Profile(drop=0.05, duplicate=0.05, reorder=0.2, max_receives=1000,
                     drop_from=frozenset({DECISIONS, TIMERS})),
    # No faults: the world must end right, and in few steps.
    "calm": Profile(max_receives=1000, crash_one_step=False),
}


@dataclass
class Report:
    """What one world did and what it ended in."""

    seed: int
    profile: str
    steps: int = 0
    simulated_seconds: float = 0.0
    crashes: int = 0
    executions: int = 0  # activity runs, redeliveries that ran again included
    attempts: int = 0  # activity attempts scheduled
    crashed_at: Counter[str] = field(default_factory=Counter)  # by checkpoint
    violations: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # steps and faults, in order
    fingerprint: str = ""

    @property
    def ok(self) -> bool:
        return not self.violations


_PAUSED = object()  # what a step's greenlet hands the scheduler at a checkpoint
RECONCILE = "reconcile"  # a decider's step that is not a receive: its reconciler's pass
# How long a run waits for a decision before the reconciler wakes it.
OVERDUE = LEASE * OVERDUE_LEASES


class _Process:
    """A decider or a worker: a name, the queues it receives from, a fresh
    engine object after each crash (a new process, nothing in memory), and
    the step it is in the middle of, if any.

    A step runs in a greenlet that pauses at each checkpoint of the protocol,
    so the scheduler can let other processes run in between, as they would
    concurrently: two deciders on one run after a lease ran out, a worker
    reporting while a decider commits.
    """

    def __init__(self, name: str, queues: tuple[str, ...], make: Callable[[], object]) -> None:
        self.name, self.queues, self._make = name, queues, make
        self.generation = 0
        self.engine = make()
        self.step: greenlet.greenlet | None = None

    def restart(self) -> None:
        self.generation += 1
        self.engine = self._make()
        self.step = None

    def begin(self, queue: str) -> None:
        engine = self.engine
        body: Callable[[], object]
        if isinstance(engine, ActivityWorker):
            body = functools.partial(engine.run_waiting, queue)
        else:
            assert isinstance(engine, Decider)
            body = {DECISIONS: engine.poll_decisions, TIMERS: engine.poll_timers,
                    RECONCILE: engine.reconcile}[queue]
        self.step = greenlet.greenlet(body)

    def resume(self) -> None:
        """Run the step to its next checkpoint or its end; a crash raises."""
        assert self.step is not None
        try:
            paused = self.step.switch() is _PAUSED
        except BaseException:
            self.step = None
            raise
        if not paused:
            self.step = None


class World:
    """One seeded world (see the module docstring)."""

    def __init__(self, seed: int, profile: str | Profile = "protocol") -> None:
        self.seed = seed
        self.profile = p = PROFILES[profile] if isinstance(profile, str) else profile
        self.profile_name = profile if isinstance(profile, str) else repr(profile)
        self.clock = ManualClock()
        self.faults = Faults(seed, crash_probability=p.crash, stall=p.stall, drop=p.drop,
                             duplicate=p.duplicate, delay=p.delay, reorder=p.reorder,
                             drop_from=p.drop_from)
        if p.crash_one_step:
            self.faults.crash_at(CHECKPOINTS[seed % len(CHECKPOINTS)], times=1 + seed % 3)
        self.backend: MemoryBackend = memory_backend(
            clock=self.clock, lease=LEASE, max_receives=p.max_receives, faults=self.faults)
        self.backend.checkpoint = self._checkpoint
        self.executions = Executions()
        self.starts: list[Start] = declare(self.executions)
        self.registry = Registry([s.workflow for s in self.starts], "the simulation")
        run_ids = (f"run{seed}-{i}" for i in itertools.count())
        self.client = FlowyClient(self.backend, registry=self.registry,
                                  new_run_id=lambda: next(run_ids))
        self.task_queues = tuple(task_queue(t) for t in self.registry.task_lists())
        self.processes = [
            *(_Process(f"decider{i}", (DECISIONS, TIMERS), self._decider) for i in range(2)),
            *(_Process(f"worker{i}", self.task_queues, self._worker) for i in range(2))]
        self._schedule = random.Random(f"schedule {seed}")

    def _checkpoint(self, step: str) -> None:
        """Faults first (a crash here ends the step), then a pause, for the
        scheduler to choose who goes on."""
        self.faults.checkpoint(step)
        scheduler = greenlet.getcurrent().parent
        if scheduler is not None:  # in a step: not in the client, which runs in the main one
            scheduler.switch(_PAUSED)

    def _decider(self) -> Decider:
        return Decider(self.registry, self.backend, threads=0, poll_wait=0,
                              cache_size=100)

    def _worker(self) -> ActivityWorker:
        return ActivityWorker(self.registry, self.backend, poll_wait=0, grace=0)

    def run(self) -> Report:
        report = Report(self.seed, self.profile_name, log=self.faults.log)
        log = self.faults.record  # one log: the steps among the faults they met
        pending = list(enumerate(self.starts))
        started: list[tuple[str, object]] = []
        begin = self.clock.now()
        with _quiet_engine():
            while True:
                if report.steps == self.profile.fault_steps:
                    self._heal()
                choices: list[tuple[_Process, str | None]] = [
                    (p, None) for p in self.processes if p.step is not None]
                choices += [(p, q) for p in self.processes if p.step is None
                            for q in p.queues if self.backend.queues.receivable(q)]
                waiting = self.backend.store.runs_to_wake(float("inf"), 1)
                if waiting and waiting[0][1] < self.clock.now() - OVERDUE:
                    choices += [(p, RECONCILE) for p in self.processes
                                if p.step is None and DECISIONS in p.queues]
                if not choices and not pending:
                    events = [self.backend.queues.next_event()]
                    if waiting:  # then the reconciler has a run to wake
                        events.append(waiting[0][1] + OVERDUE + 1)
                    wake_at = min((t for t in events if t is not None), default=None)
                    if wake_at is None:
                        break  # settled
                    if wake_at - begin > MAX_SECONDS:
                        report.violations.append(f"still busy after {MAX_SECONDS:.0f} "
                                                 "simulated seconds")
                        break
                    self.clock.advance_to(wake_at)
                    continue
                if report.steps >= self.profile.max_steps:
                    report.violations.append(f"still busy after {report.steps} steps")
                    break
                report.steps += 1
                pick = self._schedule.randrange(len(choices) + (1 if pending else 0))
                if pick == len(choices):  # the client starts the next run
                    index, start = pending.pop(0)
                    handle = self.client.start(start.workflow, *start.args,
                                               workflow_id=f"w{index}")
                    started.append((handle.run_id, start.expected))
                    log(f"{self.clock.now() - begin:.3f} client start w{index}")
                    continue
                process, queue = choices[pick]
                log(f"{self.clock.now() - begin:.3f} {process.name}.{process.generation} "
                    + ("reconciles" if queue == RECONCILE
                       else f"receives from {queue}" if queue else "goes on"))
                if queue is not None:
                    process.begin(queue)
                try:
                    process.resume()
                except SimulatedCrash as crash:
                    report.crashed_at[str(crash)] += 1
                    process.restart()
        self._heal()
        report.simulated_seconds = self.clock.now() - begin
        report.executions = sum(self.executions.runs.values())
        report.attempts = scheduled_attempts(self.client)
        report.violations += (check_runs(self.client) + check_results(self.client, started)
                              + check_dead_letters(self.backend, self.task_queues)
                              + check_set_aside(self.backend))
        report.crashes = sum(report.crashed_at.values())
        report.fingerprint = hashlib.sha256("\n".join(
            [*report.log, *report.violations]).encode()).hexdigest()[:16]
        return report

    def _heal(self) -> None:
        """No more faults from now on: the world must come right by itself."""
        faults = self.faults
        faults.crash_probability = faults.stall = faults.drop = 0.0
        faults.duplicate = faults.delay = faults.reorder = 0.0


@contextmanager
def _quiet_engine() -> Iterator[None]:
    """The engine logs every crash and retry it survives; in a world that
    crashes on purpose those are the point, not news (``--verbose`` shows
    the world's own log instead)."""
    logger = logging.getLogger("flowy")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


def simulate(seed: int, profile: str | Profile = "protocol") -> Report:
    """Run the world of ``seed`` under ``profile`` (a name in PROFILES, or
    one's own) and report how it ended."""
    return World(seed, profile).run()
