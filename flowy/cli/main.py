"""The ``flowy`` command line."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from . import bench as _bench
from . import chaos as _chaos
from . import commands as _commands
from . import simulate as _simulate


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flowy", description="Flowy workflows.")
    commands = parser.add_subparsers(dest="command", required=True)
    bench = commands.add_parser(
        "bench", help="run benchmark workloads and print their figures",
        description="Run workloads with trivial activities on the local engine, or with "
                    "--engine aws on the distributed engine (and report AWS requests and "
                    "cost per activity). "
                    "Workloads: fanout (N tasks, then one summing them), chain (N sequential "
                    "tasks), reduce (parallel_reduce over N tasks), many (N runs at once, each "
                    "a 10-task chain).")
    bench.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                       help="fanout, chain, reduce, many (default: all)")
    bench.add_argument("--size", action="append", default=[], metavar="WORKLOAD=N",
                       help="size of a workload, e.g. --size chain=10000 (repeatable)")
    bench.add_argument("--executor", choices=["threads", "processes"], default="threads")
    bench.add_argument("--replay-every-decision", action="store_true",
                       help="disable the decider cache (cache_size=0): replay the whole "
                            "history for each decision, as the original Flowy did")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--engine", choices=["local", "aws"], default="local",
                       help="aws: real decider and worker processes on an emulator started "
                            "here, or on --endpoint-url / $AWS_ENDPOINT_URL")
    bench.add_argument("--endpoint-url", help="with --engine aws: the AWS endpoint to use")
    bench.add_argument("--deciders", type=int, default=1, help="with --engine aws")
    bench.add_argument("--workers", type=int, default=1, help="with --engine aws")
    bench.add_argument("--concurrency", type=int, default=16,
                       help="with --engine aws: attempts at once per worker")
    bench.add_argument("--poll-wait", type=int,
                       help="with --engine aws: long-poll seconds of the processes (default "
                            "0, short polls, on an emulator; 20 on AWS)")
    _simulate.add_parser(commands)
    _chaos.add_parser(commands)
    _commands.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        return _run_bench(args)
    if args.command == "simulate":
        return _simulate.run(args)
    if args.command == "chaos":
        return _chaos.run(args)
    if args.command in _commands.COMMANDS:
        return _commands.run(args)
    return 2


def _run_bench(args: argparse.Namespace) -> int:
    if args.engine == "aws":
        from . import bench_aws  # imports boto3: only for this engine
        sizes = dict(bench_aws.DEFAULT_AWS_SIZES)
    else:
        sizes = dict(_bench.DEFAULT_SIZES)
    unknown = [w for w in args.workloads if w not in sizes]
    if unknown:
        print(f"flowy bench: unknown workload {unknown[0]!r}; choose from "
              f"{', '.join(sizes)}", file=sys.stderr)
        return 2
    for item in args.size:
        name, _, value = item.partition("=")
        if name not in sizes or not value.isdigit() or int(value) < 1:
            print(f"flowy bench: --size takes WORKLOAD=N with WORKLOAD one of "
                  f"{', '.join(sizes)} and N >= 1, got {item!r}", file=sys.stderr)
            return 2
        sizes[name] = int(value)
    workloads = args.workloads or list(sizes)
    figures: list[Any]
    if args.engine == "aws":
        figures = bench_aws.bench_aws(workloads, sizes, args.endpoint_url, args.deciders,
                                      args.workers, args.concurrency, args.poll_wait)
        bench_aws.print_aws_figures(figures, args.json)
    else:
        figures = _bench.bench(workloads, sizes, args.executor,
                               0 if args.replay_every_decision else 1000)
        _bench.print_figures(figures, args.json)
    return 0 if all(f.correct for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
