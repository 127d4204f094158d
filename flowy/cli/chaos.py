"""``flowy chaos``: the engine's real processes on an emulator, SIGKILLed at
random while runs of every shape go through (see :mod:`flowy.chaos`)."""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
from typing import TYPE_CHECKING, Any

from ..core.errors import ConfigurationError, FlowyError

if TYPE_CHECKING:
    from ..chaos.runner import ChaosOptions


def add_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "chaos", help="kill real decider and worker processes at random and check the runs",
        description="Run D decider and W worker processes on an emulator (an embedded moto "
                    "server, or --endpoint-url), start R runs of four shapes (fan-out, chain, "
                    "sub-workflows, retry), and SIGKILL a random process every A-B seconds "
                    "for S seconds, replacing each at once.  Then wait for every run to close "
                    "and check: none lost, none wrong, no call completed twice, nothing "
                    "completed that never ran.  Prints a JSON summary; exits 1 on any "
                    "violation.")
    parser.add_argument("--runs", type=int, default=200, help="runs to start (default 200)")
    parser.add_argument("--deciders", type=int, default=2, help="decider processes (2)")
    parser.add_argument("--workers", type=int, default=3, help="worker processes (3)")
    parser.add_argument("--kill-every", default="0.5-1.5", metavar="A-B",
                        help="seconds between kills, uniform in [A, B] (default 0.5-1.5)")
    parser.add_argument("--duration", type=float, default=90.0,
                        help="seconds of killing; the runs start spread over them (90)")
    parser.add_argument("--visibility-timeout", type=int, default=10,
                        help="the processes' lease seconds (FLOWY_VISIBILITY_TIMEOUT, 10 to "
                             "43200; default 10): how soon a killed process's work returns")
    parser.add_argument("--seed", type=int, help="the killer's seed (default: random, "
                                                 "printed in the summary)")
    parser.add_argument("--endpoint-url",
                        help="an emulator already running (moto, ministack); default: an "
                             "embedded moto server")
    parser.add_argument("--drain-timeout", type=float, default=600.0,
                        help="seconds to wait for the runs after the killing (600); a run "
                             "still open then is lost")
    parser.add_argument("--poll-wait", type=int, default=0,
                        help="the processes' long-poll seconds (default 0: short polls, "
                             "for emulators)")
    parser.add_argument("--json", metavar="PATH", help="also write the summary to PATH")


def options(args: argparse.Namespace) -> ChaosOptions:
    """The run's options from the command line; ConfigurationError says what to fix."""
    from ..chaos.runner import ChaosOptions  # imports boto3: only for this command

    low, _, high = args.kill_every.partition("-")
    try:
        kill_every = (float(low), float(high))
    except ValueError:
        raise ConfigurationError(f"--kill-every takes A-B, seconds with 0 < A <= B, such as "
                                 f"0.5-1.5; got {args.kill_every!r}") from None
    if not 0 < kill_every[0] <= kill_every[1]:
        raise ConfigurationError(f"--kill-every takes A-B with 0 < A <= B; got "
                                 f"{args.kill_every!r}")
    for name in ("runs", "deciders", "workers"):
        if getattr(args, name) < 1:
            raise ConfigurationError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if not 10 <= args.visibility_timeout <= 43200:
        raise ConfigurationError("--visibility-timeout must be 10 to 43200 seconds (SQS's "
                                 f"range for Flowy), got {args.visibility_timeout}")
    for name in ("duration", "drain_timeout", "poll_wait"):
        if getattr(args, name) < 0:
            raise ConfigurationError(f"--{name.replace('_', '-')} can't be negative, got "
                                     f"{getattr(args, name)}")
    return ChaosOptions(
        runs=args.runs, deciders=args.deciders, workers=args.workers, kill_every=kill_every,
        duration=args.duration, visibility_timeout=args.visibility_timeout,
        seed=random.randrange(2**32) if args.seed is None else args.seed,
        endpoint_url=args.endpoint_url, drain_timeout=args.drain_timeout,
        poll_wait=args.poll_wait)


def run(args: argparse.Namespace) -> int:
    from ..chaos.runner import run_chaos

    # A SIGTERM unwinds like Ctrl-C, through the runner's cleanup, which stops
    # every process it started; the default action would orphan them.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        summary = run_chaos(options(args))
    except FlowyError as exc:  # bad options or an unreachable emulator: say what
        print(f"flowy chaos: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1
    except KeyboardInterrupt:
        print("flowy chaos: interrupted; the processes it started are stopped",
              file=sys.stderr)
        return 130
    text = json.dumps(summary, indent=2, default=repr)
    print(text)
    if args.json:
        with open(args.json, "w") as output:
            output.write(text + "\n")
    return 0 if summary["ok"] else 1


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)
