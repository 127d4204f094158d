"""infra/'s IAM policies: no namespace reaches another's resources, and each role
may make exactly the DynamoDB requests its code makes.

Patterns are matched as IAM matches ARNs (``*`` and ``?``: fnmatchcase), on
the template as CloudFormation resolves it (tests/infra_support.py).  The
roles' requests are recorded from the store's real calls, on the emulator,
and judged by IAM's rules for the condition keys DynamoDB sets.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fnmatch import fnmatchcase
from typing import Any

import pytest

from flowy import FlowyClient
from flowy.backends.aws import RESOURCE_PROBE
from flowy.backends.aws.settings import AWSSettings
from flowy.backends.aws.store import RUN_INDEX, WAKE_INDEX
from flowy.core.errors import ConfigurationError, ErrorInfo
from flowy.core.events import (
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    WorkflowCompleted,
    WorkflowStarted,
)
from flowy.core.runs import COMPLETED, RunRecord
from tests.infra_support import ACCOUNT, REGION, Request, allowed, as_list, policy_statements
from tests.infra_support import requests as requests_of

ROLES = ("decider", "worker", "client", "operator")
# The review's pair (prod, prod-tasks-x), and others whose names share prefixes.
NAMESPACES = ["prod", "prod-tasks-x", "prod-tasks", "prod-eu", "prod-eu-tasks-x", "tasks",
              "prod-decisions", "prod-timers", "p", "prod-x-tasks"]
TASK_LISTS = ["default", "x", "images", "tasks-x", "-x", "a_b", "-tasks-", "decisions", "Z" * 32]


def _policies(namespace: str) -> dict[str, list[dict[str, Any]]]:
    by_name = policy_statements("flowy.yaml", Namespace=namespace)
    return {role: by_name[f"flowy-{namespace}-{role}"] for role in ROLES}


def _arns(namespace: str) -> list[str]:
    """Every ARN of the namespace that a policy could name, from the engine's names."""
    settings = AWSSettings(namespace=namespace, region=REGION)
    table = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{settings.table}"
    queues = [settings.decision_queue, settings.timer_queue,
              *(settings.task_queue(t) for t in TASK_LISTS)]
    bucket = f"arn:aws:s3:::{settings.prefix}-payloads-{ACCOUNT}"
    return [table, f"{table}/index/{RUN_INDEX}", f"{table}/index/{WAKE_INDEX}",
            *(f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"
              for queue in queues for name in (queue, settings.dead_letter_queue(queue))),
            bucket, f"{bucket}/payloads/{'0' * 64}"]


def _patterns(statements: list[dict[str, Any]]) -> list[str]:
    return [pattern for s in statements for pattern in as_list(s["Resource"])]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_no_policy_reaches_another_namespace(namespace: str) -> None:
    own = _arns(namespace)
    for role, statements in _policies(namespace).items():
        for pattern in _patterns(statements):
            # Not vacuous: each pattern names something of its own namespace.
            assert any(fnmatchcase(arn, pattern) for arn in own), (role, pattern)
            for other in NAMESPACES:
                if other != namespace:
                    reached = [arn for arn in _arns(other) if fnmatchcase(arn, pattern)]
                    assert not reached, (role, pattern, reached)


def test_the_old_names_let_prod_reach_prod_tasks_x() -> None:
    # What the check above finds when names don't end the namespace: the
    # policies of "prod" matched the decision queue of "prod-tasks-x".
    old_pattern = f"arn:aws:sqs:{REGION}:{ACCOUNT}:flowy-prod-tasks-*"
    assert fnmatchcase(f"arn:aws:sqs:{REGION}:{ACCOUNT}:flowy-prod-tasks-x-decisions.fifo",
                       old_pattern)
    new_patterns = _patterns(_policies("prod")["worker"])
    assert not any(fnmatchcase(arn, p) for arn in _arns("prod-tasks-x") for p in new_patterns)


@pytest.mark.parametrize("namespace", ["prod--x", "prod-", "-prod", "Prod", "a" * 31, ""])
def test_a_namespace_cant_end_early(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        AWSSettings(namespace=namespace)


def test_a_task_list_cant_pass_for_a_dead_letter_queue() -> None:
    settings = AWSSettings(namespace="prod")
    with pytest.raises(ConfigurationError, match="-dlq"):
        settings.task_queue("images-dlq")
    assert settings.task_queue("dlq") == "flowy-prod--tasks-dlq"
    with pytest.raises(ConfigurationError, match="80 characters"):
        AWSSettings(namespace="n" * 30).task_queue("t" * 40)


# -- each role's DynamoDB requests, as its code makes them ------------------------------


class Recorder:
    """The DynamoDB requests of the calls made while :meth:`calls` lasts."""

    def __init__(self, backend: Any, statements: dict[str, list[dict[str, Any]]]) -> None:
        self.backend, self.statements = backend, statements
        self.table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{backend.settings.table}"
        self._calls: list[tuple[str, dict[str, Any]]] | None = None
        backend.dynamodb.meta.events.register("before-parameter-build.dynamodb", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self._calls is not None:
            self._calls.append((model.name, json.loads(json.dumps(params, default=str))))

    @contextmanager
    def calls(self) -> Iterator[list[Request]]:
        self._calls, made = [], []
        try:
            yield made
        finally:
            made += [r for name, params in self._calls for r in
                     requests_of(name, params, self.table_arn)]
            self._calls = None

    def denied(self, role: str, action: Callable[[], Any]) -> list[Request]:
        """Run ``action``; the requests of it that ``role``'s policy refuses."""
        with self.calls() as made:
            action()
        assert made, "no DynamoDB request was made"
        return [r for r in made if not allowed(self.statements[role], r)]


@pytest.fixture(scope="module")
def recorder(aws_endpoint: str) -> Recorder:
    from tests.aws_support import stack_backend

    backend = stack_backend(aws_endpoint)
    return Recorder(backend, _policies(backend.settings.namespace))


def _run(store: Any, run_id: str) -> RunRecord:
    record = RunRecord(run_id, "w@1", started_at=time.time(), input="[[], {}]",
                       workflow_id=f"id-{run_id}")
    store.claim_workflow_id(f"id-{run_id}", run_id)
    store.create_run(record)
    return record


def test_each_role_may_make_its_requests(recorder: Recorder) -> None:
    """In the order of a run's life: each role works on what the one before left."""
    backend, now = recorder.backend, time.time()
    store = backend.store
    record = _run(store, "run-1")

    def client() -> None:  # start (with a workflow id), signal, status, list, history
        store.claim_workflow_id("id-run-1", "run-1")  # taken: the old item comes back
        store.get_run("run-1")
        store.create_run(record)
        store.add_fact("run-1", WorkflowStarted(record.input, at=now))
        store.add_fact("run-1", SignalReceived("go", "1", "s-1", at=now))
        list(store.runs()), list(store.runs("w@1"))
        store.read_batches("run-1")

    def worker() -> None:  # start-up check, claims, a redelivered attempt, beats, outcomes
        store.get_run(RESOURCE_PROBE)
        assert store.claim("run-1", "a-1", now) == 1
        assert store.claim("run-1", "a-1", now) == 0
        assert store.claim("run-1", "no-such-attempt", now) is None
        store.outcome_of("run-1", "a-1")
        assert store.claim("run-1", "a-1", now, again=True) == 2
        store.get_beat("run-1", "a-1")
        store.record_beat("run-1", "a-1", now, "50%")
        store.add_outcome("run-1", TaskCompleted("a-1", "1", now, at=now))
        store.add_outcome("run-1", TaskCompleted("a-1", "1", now, at=now))  # a duplicate
        store.add_outcome("run-1", TaskFailed("a-1", ErrorInfo("E", "late"), at=now))

    def operator() -> None:  # flowy purge
        assert "run-1" in FlowyClient(backend).purge(time.time() + 1, "w")

    def schedule() -> None:  # the decider opens an attempt before sending its task
        store.open_attempts("run-1", ["a-1"])

    for role, job in (("client", client), ("decider", schedule), ("worker", worker),
                      ("decider", lambda: _decide(store, record, now)), ("operator", operator)):
        assert recorder.denied(role, job) == [], role


def _decide(store: Any, record: RunRecord, now: float) -> None:
    run_id = record.run_id
    inbox = store.read_inbox(run_id)
    assert inbox
    store.read_batches(run_id)
    store.sent_version(run_id)
    assert store.commit(run_id, 1, [fact for _, fact in inbox], now)
    store.consume(run_id, inbox, 1, now + 60)
    store.set_wake(run_id, 1, None)
    store.runs_to_wake(now + 120, 10)
    store.outcome_of(run_id, "a-1")
    store.get_beat(run_id, "a-1")
    store.latest_version(run_id)
    store.open_attempts(run_id, ["b-1"], again=True)
    store.add_fact(run_id, SignalReceived("go", "2", "s-2", at=now))
    [(item, _)] = [entry for entry in store.read_inbox(run_id) if entry[0].endswith("s-2")]
    store.set_aside(run_id, [(item, "refused")])
    store.close_attempts(run_id, ["b-1"])
    store.close_run(run_id, COMPLETED, now, result="1")


FORBIDDEN: dict[str, list[str]] = {  # what each role's policy must refuse, by store call
    "worker": ["commit", "close_run", "create_run", "consume", "set_wake", "delete_run",
               "claim_workflow_id", "open_attempts"],
    "client": ["commit", "close_run", "record_beat", "claim", "consume", "set_wake",
               "delete_run", "open_attempts"],
    "operator": ["commit", "close_run", "create_run", "add_fact", "read_batches", "get_run",
                 "record_beat"],
    "decider": ["list_runs"],
}


@pytest.mark.parametrize("role, call", [(r, c) for r, calls in FORBIDDEN.items() for c in calls])
def test_a_role_cant_make_anothers_writes(recorder: Recorder, role: str, call: str) -> None:
    store, now = recorder.backend.store, time.time()
    run_id = f"forbidden-{role}-{call}"
    record = _run(store, run_id)
    attempts: dict[str, Callable[[], Any]] = {
        "commit": lambda: store.commit(run_id, 1, [WorkflowCompleted("1", at=now)], now),
        "close_run": lambda: store.close_run(run_id, COMPLETED, now, result="forged"),
        "create_run": lambda: store.create_run(RunRecord(run_id + "-b", "w@1", started_at=now)),
        "consume": lambda: store.consume(run_id, [], 1),
        "set_wake": lambda: store.set_wake(run_id, 0, now),
        "delete_run": lambda: store.delete_run(RunRecord(run_id, "w@1", now, status=COMPLETED)),
        "claim_workflow_id": lambda: store.claim_workflow_id(f"other-{run_id}", run_id),
        "record_beat": lambda: store.record_beat(run_id, "a-1", now),
        "claim": lambda: store.claim(run_id, "a-1", now),
        "open_attempts": lambda: store.open_attempts(run_id, ["a-1"]),
        "add_fact": lambda: store.add_fact(run_id, SignalReceived("go", "1", "s", at=now)),
        "read_batches": lambda: store.read_batches(run_id),
        "get_run": lambda: store.get_run(run_id),
        "list_runs": lambda: list(store.runs()),
    }
    assert record.run_id == run_id
    assert recorder.denied(role, attempts[call]), f"{role} may {call}"


def test_what_iam_cant_stop_a_worker_from(recorder: Recorder) -> None:
    """infra/README.rst: IAM can't scope writes by sort key, or tell one run's
    inbox from another's; the protocol does (tokens, validation, bad#)."""
    store, now = recorder.backend.store, time.time()
    _run(store, "victim")
    assert recorder.denied("worker", lambda: store.add_fact(
        "victim", SignalReceived("approve", '{"ok": true}', "forged", at=now))) == []
