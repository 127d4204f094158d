"""``flowy`` commands: processes, runs, and the local stack; one handler per command."""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ..backends.base import DECISIONS, TIMERS, task_queue
from ..client import FlowyClient
from ..core.errors import ConfigurationError, FlowyError, TaskError
from ..core.events import event_to_dict
from ..core.redaction import printable
from ..core.runs import RunRecord
from ..declaration import Registry, check_task_list, load_registry


def add_commands(commands: Any) -> None:
    """Add the AWS engine's sub-commands to the ``flowy`` parser."""
    where = argparse.ArgumentParser(add_help=False)
    group = where.add_argument_group("where the namespace lives")
    group.add_argument("--namespace", help="resource name prefix (default $FLOWY_NAMESPACE "
                                           "or 'dev')")
    group.add_argument("--endpoint-url", help="AWS endpoint (default $AWS_ENDPOINT_URL: "
                                              "real AWS if unset)")
    group.add_argument("--region", help="AWS region (default $AWS_REGION, else boto3's: "
                                        "$AWS_DEFAULT_REGION or the profile's; else "
                                        "us-east-1)")
    defs = argparse.ArgumentParser(add_help=False)
    defs.add_argument("definitions", metavar="DEFS",
                      help="module declaring Workflows, e.g. examples.aws_defs "
                           "(or module:attribute)")

    def add(name: str, help: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(
            name, help=help, description=help[0].upper() + help[1:] + ".", parents=list(parents))
        return parser

    add("setup", "create the namespace's table, queues and bucket", where, defs)
    decider = add("decider", "run a decider process (decisions and timers)", where, defs)
    decider.add_argument("--threads", type=int, default=2, help="decision threads")
    decider.add_argument("--cache-size", type=int, default=1000,
                         help="live runs kept per thread (0: replay every decision)")
    poll_help = ("long-poll seconds (0: short polls with a 50 ms pause, for emulators such "
                 "as moto that answer long polls late)")
    decider.add_argument("--poll-wait", type=int, default=20, help=poll_help)
    worker = add("worker", "run an activity worker process", where, defs)
    worker.add_argument("--task-list", action="append", dest="task_lists",
                        help="task list to serve (repeatable; default: all in DEFS)")
    worker.add_argument("--concurrency", type=int, default=8, help="attempts at once")
    worker.add_argument("--grace", type=float, default=30.0,
                        help="seconds running attempts get to finish on SIGTERM")
    worker.add_argument("--poll-wait", type=int, default=20, help=poll_help)
    start = add("start", "start a run; prints its id", where, defs)
    start.add_argument("workflow", help="workflow name or name@version")
    start.add_argument("args", nargs="*", metavar="ARG",
                       help="positional arguments, as JSON (plain words are strings)")
    start.add_argument("--kwargs", default="{}", help="keyword arguments as a JSON object")
    start.add_argument("--workflow-id", help="at most one run per id: starting it again "
                                             "returns the existing run")
    start.add_argument("--wait", action="store_true", help="wait and print the result")
    start.add_argument("--timeout", type=float, help="seconds to wait at most")
    codec_help = ("module declaring the run's workflow, to decode with the workflow's codec "
                  "(default: JSON; errors that codec encoded are shown encoded)")
    for name, text in (("status", "show a run's status"),
                       ("history", "print a run's history, one event per line (JSON)")):
        shown = add(name, text, where)
        shown.add_argument("run_id", metavar="RUN_ID")
        shown.add_argument("--definitions", metavar="DEFS", help=codec_help)
    wait = add("wait", "wait for a run and print its result", where)
    wait.add_argument("run_id", metavar="RUN_ID")
    wait.add_argument("--definitions", metavar="DEFS", help=codec_help)
    wait.add_argument("--timeout", type=float)
    listing = add("list", "list runs, newest first", where)
    listing.add_argument("--workflow", help="name or name@version")
    listing.add_argument("--status", choices=["open", "completed", "failed", "restarted"])
    listing.add_argument("--limit", type=int, default=50)
    trace = add("trace", "render a run's trace (SVG, PNG or DOT by extension)", where)
    trace.add_argument("run_id", metavar="RUN_ID")
    trace.add_argument("-o", "--output", default="run.svg")
    trace.add_argument("--definitions", metavar="DEFS", help=codec_help)
    signal = add("signal", "send a run a signal", where)
    signal.add_argument("run_id", metavar="RUN_ID")
    signal.add_argument("name", metavar="NAME", help="the signal's name, as in conf_signal")
    signal.add_argument("value", nargs="?", default="null", metavar="VALUE",
                        help="its value, as JSON (plain words are strings; default null)")
    signal.add_argument("--signal-id", help="sending the same id again is a no-op")
    signal.add_argument("--definitions", metavar="DEFS", help=codec_help)
    cancel = add("cancel", "cancel an open run and its open sub-workflows", where)
    cancel.add_argument("run_id", metavar="RUN_ID")
    cancel.add_argument("--reason", default="", help="recorded in the run's error")
    purge = add("purge", "delete closed runs and their histories, and (without --workflow) "
                "the items of no run", where)
    purge.add_argument("--days", type=float, required=True,
                       help="delete the runs that closed more than DAYS days ago")
    purge.add_argument("--workflow", help="only runs of this workflow (name or name@version)")
    redrive = add("redrive", "move a queue's dead letters back to it, once their cause is "
                             "fixed", where)
    redrive.add_argument("queue", choices=["decisions", "timers", "tasks"])
    redrive.add_argument("--task-list", default="default", help="with tasks: which task list")
    dev = add("dev", "serve DEFS on an embedded local AWS: moto, a decider and a worker",
              defs)
    dev.add_argument("--port", type=int, default=4566, help="port of the local AWS")
    dev.add_argument("--namespace", default="dev")
    demo = add("demo", "run an example workflow end to end on an embedded local AWS")
    demo.add_argument("-o", "--output", default="demo.svg", help="where to write the trace")
    demo.add_argument("--workflow", default="two_halves",
                      choices=["example", "two_halves"], help="which example to run")


def run(args: argparse.Namespace) -> int:
    if os.getcwd() not in sys.path:  # DEFS modules live in the project, as for `python -m`
        sys.path.insert(0, os.getcwd())
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(processName)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        return HANDLERS[args.command](args)
    except FlowyError as exc:  # bad input or an unreachable service: say what, no traceback
        print(f"flowy {args.command}: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigurationError) else 1


def _settings(args: argparse.Namespace) -> Any:
    from ..backends.aws.settings import AWSSettings
    return AWSSettings.from_env(namespace=getattr(args, "namespace", None),
                                endpoint_url=getattr(args, "endpoint_url", None),
                                region=getattr(args, "region", None))


def _backend(args: argparse.Namespace) -> Any:
    from ..backends.aws import connect  # imports boto3: only when an AWS command runs
    return connect(_settings(args))


def _registry(args: argparse.Namespace) -> Registry:
    definitions = getattr(args, "definitions", None)
    return load_registry(definitions) if definitions else Registry([], "no definitions")


def _client(args: argparse.Namespace) -> FlowyClient:
    return FlowyClient(_backend(args), registry=_registry(args))


def _setup(args: argparse.Namespace) -> int:
    backend, registry = _backend(args), _registry(args)
    backend.ensure_resources(registry.task_lists())
    settings = backend.settings
    print(f"namespace {settings.namespace}: table {settings.table}, queues for task lists "
          f"{', '.join(registry.task_lists()) or '(none)'}, bucket {settings.payload_bucket}")
    return 0


def _decider(args: argparse.Namespace) -> int:
    from ..worker.processes import run_decider
    run_decider(_registry(args), _backend(args), threads=args.threads,
                cache_size=args.cache_size, poll_wait=args.poll_wait)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from ..worker.processes import run_worker
    run_worker(_registry(args), _backend(args), task_lists=args.task_lists,
               concurrency=args.concurrency, poll_wait=args.poll_wait, grace=args.grace)
    return 0


def _start(args: argparse.Namespace) -> int:
    client = _client(args)
    registry = _registry(args)
    handle = client.start(registry.latest(args.workflow), *map(_json_arg, args.args),
                          workflow_id=args.workflow_id, **_json_object(args.kwargs))
    print(handle.run_id)
    return _print_result(client, handle.run_id, args.timeout) if args.wait else 0


def _wait(args: argparse.Namespace) -> int:
    return _print_result(_client(args), args.run_id, args.timeout)


def _status(args: argparse.Namespace) -> int:
    record = _client(args).last_run(args.run_id)
    print(json.dumps(describe(record), indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    for record in _client(args).list_runs(args.workflow, args.status, args.limit):
        # Ids as the table holds them, which anyone who can write to it chose.
        print(f"{printable(record.run_id)}  {printable(record.workflow):<24} "
              f"{record.status:<10} {when(record.started_at)}")
    return 0


def _history(args: argparse.Namespace) -> int:
    for event in _client(args).history(args.run_id):
        print(json.dumps(event_to_dict(event)))
    return 0


def _trace(args: argparse.Namespace) -> int:
    written = _client(args).trace(args.run_id).render(args.output)
    print(written or "trace not rendered: install graphviz (apt-get install graphviz)")
    return 0 if written else 1


def _signal(args: argparse.Namespace) -> int:
    sent = _client(args).signal(args.run_id, args.name, _json_arg(args.value),
                                signal_id=args.signal_id)
    run = printable(args.run_id)
    return _told(sent, f"signal {printable(args.name)} sent to run {run}",
                 f"run {run} has already closed; signal not sent")


def _cancel(args: argparse.Namespace) -> int:
    run = printable(args.run_id)
    return _told(_client(args).cancel(args.run_id, args.reason),
                 f"cancel requested for run {run}",
                 f"run {run} has already closed; nothing to cancel")


def _redrive(args: argparse.Namespace) -> int:
    queue = {"decisions": DECISIONS, "timers": TIMERS,
             "tasks": task_queue(check_task_list(args.task_list))}[args.queue]
    backend = _backend(args)
    moved = backend.queues.redrive(queue)
    name = backend.settings.queue_name(queue)
    print(f"moved {moved} message(s) from {backend.settings.dead_letter_queue(name)} back to "
          f"{name}")
    return 0


def _purge(args: argparse.Namespace) -> int:
    client = _client(args)
    purged = client.purge(time.time() - args.days * 86400, args.workflow)
    print(f"deleted {len(purged)} closed run(s) of {client.backend.name}")
    if args.workflow is None:
        print(f"deleted {client.purge_orphans()} item(s) that belonged to no run")
    return 0


def _dev(args: argparse.Namespace) -> int:
    from .aws_stack import dev
    return dev(args.definitions, args.port, args.namespace)


def _demo(args: argparse.Namespace) -> int:
    from .aws_stack import demo
    return demo(args.output, args.workflow)


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "setup": _setup, "decider": _decider, "worker": _worker, "start": _start, "wait": _wait,
    "status": _status, "list": _list, "history": _history, "trace": _trace,
    "signal": _signal, "cancel": _cancel, "redrive": _redrive, "purge": _purge, "dev": _dev,
    "demo": _demo}
COMMANDS = tuple(HANDLERS)


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.datetime.fromtimestamp(timestamp).isoformat(sep=" ", timespec="seconds")


def describe(record: RunRecord) -> dict[str, Any]:
    return {"run_id": record.run_id, "workflow": record.workflow, "status": record.status,
            "started": when(record.started_at), "closed": when(record.closed_at),
            "workflow_id": record.workflow_id, "result": record.result,
            "error": None if record.error is None else
            f"{record.error.type_name}: {record.error.message}",
            "restarted_from": record.prev_run, "parent_run": record.parent_run}


def _told(told: bool, done: str, closed: str) -> int:
    """Report a signal or cancel: 0 if the run took it, 1 if it had closed."""
    print(done if told else closed, file=sys.stdout if told else sys.stderr)
    return 0 if told else 1


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"--kwargs must be a JSON object: {exc}") from None
    if not isinstance(value, dict):
        raise ConfigurationError(f"--kwargs must be a JSON object, got {text!r}")
    return value


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _print_result(client: FlowyClient, run_id: str, timeout: float | None) -> int:
    try:
        print(json.dumps(client.wait(run_id, timeout), default=repr))
    except TaskError as exc:
        print(f"run {printable(run_id)} failed: {exc.type_name}: {exc}", file=sys.stderr)
        return 1
    return 0
