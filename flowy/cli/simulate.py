"""``flowy simulate``: run seeded worlds of the deterministic simulation and
print what they ended in (see :mod:`flowy.testing.simulation`)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from typing import Any

from ..testing.simulation import PROFILES, Profile, Report, simulate


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "simulate", help="run the deterministic simulation over many seeds",
        description="Run the engine's decider, timer keeper and worker on the in-memory "
                    "backend with a manual clock and seeded faults (crashes at every step "
                    "of the protocol, stalls, duplicated, reordered, delayed or dropped "
                    "messages), and check that no run is lost, no completion duplicated, "
                    "every result right and every task ended.  A failing seed reproduces "
                    "exactly: flowy simulate --seed N --verbose.")
    parser.add_argument("--seeds", type=int, default=200, help="how many seeds (default 200)")
    parser.add_argument("--first", type=int, default=0, help="the first seed (default 0)")
    parser.add_argument("--seed", type=int, help="run this one seed only")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="protocol",
                        help="which faults (default protocol: what the engine must survive)")
    parser.add_argument("--max-receives", type=int,
                        help="the queues' redrive limit instead of the profile's (the "
                             "deployed default is 100; a low one shows how crashes exhaust it)")
    parser.add_argument("--verbose", action="store_true",
                        help="print each failing world's steps, faults and violations")


def run(args: argparse.Namespace) -> int:
    seeds = [args.seed] if args.seed is not None else range(args.first,
                                                            args.first + args.seeds)
    profile: str | Profile = args.profile
    reproduce = f"--profile {args.profile}"
    if args.max_receives is not None:
        profile = dataclasses.replace(PROFILES[args.profile], max_receives=args.max_receives)
        reproduce += f" --max-receives {args.max_receives}"
    began = time.perf_counter()
    reports = [simulate(seed, profile) for seed in seeds]
    elapsed = time.perf_counter() - began
    failed = [r for r in reports if not r.ok]
    for report in (reports if args.seed is not None else failed) if args.verbose else ():
        _print_world(report)
    _print_summary(reports, failed, elapsed, reproduce)
    return 1 if failed else 0


def _print_world(report: Report) -> None:
    print(f"-- seed {report.seed} ({report.profile}): {len(report.log)} entries, "
          f"fingerprint {report.fingerprint}")
    for entry in report.log:
        print(f"   {entry}")
    for violation in report.violations:
        print(f"!! {violation}")


def _print_summary(reports: list[Report], failed: list[Report], elapsed: float,
                   profile: str) -> None:
    """``profile``: the options that chose it, as given."""
    count = len(reports)
    steps = sum(r.steps for r in reports)
    executions = sum(r.executions for r in reports)
    attempts = sum(r.attempts for r in reports)
    print(f"{profile.removeprefix('--')}: {count - len(failed)} of {count} seeds passed in "
          f"{elapsed:.1f} s ({count / elapsed:.1f} seeds/s)")
    print(f"  {steps} steps ({steps / count:.0f} per seed), "
          f"{sum(r.crashes for r in reports)} crashes, "
          f"{sum(r.simulated_seconds for r in reports) / count / 3600:.1f} simulated hours "
          "per seed")
    print(f"  {executions} activity runs for {attempts} attempts scheduled "
          f"({executions / max(attempts, 1):.2f} runs per attempt: at-least-once)")
    if failed:
        print(f"  failed seeds: {' '.join(str(r.seed) for r in failed)}")
        first = failed[0]
        print(f"  first failure, seed {first.seed}: {first.violations[0]}")
        print(f"  reproduce: flowy simulate --seed {first.seed} {profile} --verbose")
