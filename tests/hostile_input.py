"""A running engine under attack, for tests/test_hostile_input.py.

``AWS_WORKFLOWS`` is what the engine serves (``tests.hostile_input:AWS_WORKFLOWS``):
small workflows for legitimate runs and for the victims of attacks.  An
:class:`Attack` is one engine (memory, or decider and worker processes on
the emulator) with legitimate runs in flight, into which the rows of a group
send their bad inputs the way an attacker would: raw bodies on the queues
(``Queues.send`` in memory, boto3 on AWS), raw items in the table and raw
objects in the bucket (boto3), or what the client's own rights allow in
memory (the store's public methods).
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flowy import RetryPolicy, RunHandle, TaskError, Workflow
from flowy.backends.aws.sqs import REASON_ATTRIBUTE
from flowy.backends.base import DECISIONS, Outgoing, task_queue
from flowy.core.events import TaskScheduled, TimerStarted, WorkflowStarted, event_to_dict
from flowy.core.protocol import attempt_id
from flowy.core.runs import RunRecord
from flowy.worker.inbox import start_run
from flowy.worker.worker import ActivityWorker
from tests import activities as A
from tests.aws_support import wait_for
from tests.engines import EngineUnderTest

DEFINITIONS = "tests.hostile_input:AWS_WORKFLOWS"
WAIT = 60  # seconds a legitimate run or a victim may take, at most
LIMIT = 3600  # seconds a run waits for its signals: longer than any test
PROMPTLY = 20  # seconds for what should happen at once (and takes minutes when it does not)

chain = Workflow(A.ExampleWorkflow, name="hi_chain").conf_activity("square", A.square) \
    .conf_activity("sum", A.add)
timer = Workflow(A.SleepThenCall, name="hi_timer").conf_timer("sleep") \
    .conf_activity("identity", A.identity)
approval = Workflow(A.Approval, name="hi_approval").conf_signal("approve").conf_timer("sleep")
# One attempt only, so that a forged timeout or outcome shows in the run's result.
ONCE = RetryPolicy(max_attempts=1)
slow = Workflow(A.SingleCall, name="hi_slow").conf_activity("task", A.slow, timeout=300,
                                                            retry=ONCE)
recorder = Workflow(A.SingleCall, name="hi_record").conf_activity("task", A.record)
manual = Workflow(A.SingleCall, name="hi_manual").conf_activity("task", A.record,
                                                                task_list="manual", retry=ONCE)
failing = Workflow(A.SingleCall, name="hi_fail").conf_activity("task", A.fail_with, retry=ONCE)
AWS_WORKFLOWS = [chain, timer, approval, slow, recorder, manual, failing]


def arguments(*args: Any) -> str:
    """An attempt's or run's input as the JSON codec writes it."""
    return json.dumps([list(args), {}])


def task_body(run: str, key: str, workflow: Workflow | str, dependency: str, input: Any,
              **fields: Any) -> str:
    ref = workflow if isinstance(workflow, str) else workflow.ref
    return json.dumps({"run": run, "key": key, "workflow": ref,
                       "dependency": dependency, "input": input, **fields})


def timer_body(run: str, key: str, kind: str, fire_at: Any = 0) -> str:
    return json.dumps({"run": run, "key": key, "kind": kind, "fire_at": fire_at})


def orphan() -> str:
    """The id of a run that does not exist."""
    return "orphan-" + uuid.uuid4().hex


@dataclass
class Attack:
    """An engine with legitimate runs in flight, and what the rows sent to it."""

    kind: str
    engine: EngineUnderTest
    path: Path  # where activities write their side effects
    legit: dict[str, tuple[RunHandle, Any]] = field(default_factory=dict)
    sent: dict[str, Any] = field(default_factory=dict)  # per row: what its check needs
    failed_to_send: dict[str, BaseException] = field(default_factory=dict)
    _legit_results: dict[str, Any] | None = None
    _dead: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    @classmethod
    def begin(cls, kind: str, endpoint: str | None, path: Path) -> Attack:
        engine = EngineUnderTest(kind, endpoint, path, serve=False, definitions=DEFINITIONS)
        engine.decider(threads=2)
        engine.worker(task_lists=("default",), concurrency=10)  # "manual" is the test's
        attack = cls(kind, engine, path)
        client = engine.client
        attack.legit = {
            "chain": (client.start(chain, 3, 4), 25),
            "timer": (client.start(timer, 2), [None, "after"]),
            "signal": (client.start(approval, LIMIT), ["legit-1", "legit-2"]),
            "slow": (client.start(slow, attack.file("slow-legit"), 3, "slow legit"),
                     "slow legit"),
        }
        return attack

    def stop(self) -> None:
        self.engine.stop()

    @property
    def client(self) -> Any:
        return self.engine.client

    @property
    def backend(self) -> Any:
        return self.engine.backend

    @property
    def record_log(self) -> str:
        return self.file("record")

    def file(self, name: str) -> str:
        return str(self.path / f"{name}.log")

    def ran(self, tag: str) -> int:
        """How many times ``record`` ran with ``tag``."""
        return A.calls(self.record_log, tag)

    # -- the legitimate runs ------------------------------------------------------

    def legit_results(self) -> dict[str, Any]:
        """Every legitimate run's result (signalled first), or the error it raised."""
        if self._legit_results is None:
            handle = self.legit["signal"][0]
            for value in ("legit-1", "legit-2"):
                self.client.signal(handle.run_id, "approve", value)
            results: dict[str, Any] = {}
            for name, (run, _) in self.legit.items():
                try:
                    results[name] = run.result(timeout=WAIT)
                except Exception as exc:  # noqa: BLE001 - reported by the assertion
                    results[name] = f"{type(exc).__name__}: {exc}"
            self._legit_results = results
        return self._legit_results

    def assert_legit(self) -> None:
        expected = {name: value for name, (_, value) in self.legit.items()}
        assert self.legit_results() == expected

    # -- sending, the attacker's way ------------------------------------------------

    def send(self, queue: str, body: str, *, blob: str | None = None) -> None:
        """Put ``body`` on ``queue`` as it is (with a ``flowy_blob`` reference on AWS)."""
        group = dedup = uuid.uuid4().hex
        if self.kind == "memory":
            assert blob is None
            self.backend.queues.send(queue, [Outgoing(body, group=group, dedup=dedup)])
            return
        settings = self.settings
        sqs = self.backend.sqs
        url = sqs.get_queue_url(QueueName=settings.queue_name(queue))["QueueUrl"]
        extra: dict[str, Any] = {}
        if queue == DECISIONS:
            extra.update(MessageGroupId=group, MessageDeduplicationId=dedup)
        if blob is not None:
            extra["MessageAttributes"] = {"flowy_blob": {"DataType": "String",
                                                         "StringValue": blob}}
        sqs.send_message(QueueUrl=url, MessageBody=body, **extra)

    def notify(self, run: str) -> None:
        self.send(DECISIONS, json.dumps({"run": run}))

    @property
    def settings(self) -> Any:
        assert self.engine._stack is not None
        return self.engine._stack.settings

    def put_item(self, item: dict[str, Any]) -> None:
        """A raw item in the table (AWS): what PutItem rights allow."""
        self.backend.dynamodb.put_item(TableName=self.settings.table, Item=item)

    def items(self, run: str) -> list[dict[str, Any]]:
        """Every item under run ``run``'s partition (AWS)."""
        return list(self.backend.dynamodb.query(
            TableName=self.settings.table, KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": run}}, ConsistentRead=True)["Items"])

    def put_object(self, key: str, body: str) -> None:
        self.backend.s3.put_object(Bucket=self.settings.payload_bucket, Key=key,
                                   Body=body.encode())

    # -- looking ------------------------------------------------------------------

    def dead_letters(self, queue: str) -> list[tuple[str, str]]:
        """``(body, reason)`` of every message dead-lettered on ``queue`` so far."""
        if self.kind == "memory":
            return self.engine.dead_letters(queue)
        # Taken out of the queue as they are read: a FIFO dead-letter queue
        # holds its messages in one group, which a receive that leaves them
        # in the queue would block (or show only some of).
        sqs = self.backend.sqs
        url = sqs.get_queue_url(QueueName=self.settings.dead_letter_queue(
            self.settings.queue_name(queue)))["QueueUrl"]
        seen = self._dead.setdefault(queue, [])
        while messages := sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60, WaitTimeSeconds=0,
                MessageAttributeNames=["All"]).get("Messages", []):
            seen += [(m["Body"], m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"])
                     for m in messages]
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                for i, m in enumerate(messages)])
        return list(seen)

    def dead_letter(self, queue: str, matches: Callable[[str, str], bool],
                    timeout: float = PROMPTLY) -> tuple[str, str]:
        """The one dead letter of ``queue`` that ``matches(body, reason)``."""
        found = wait_for(lambda: [d for d in self.dead_letters(queue) if matches(*d)], timeout,
                         f"the dead letter on {queue}")
        assert len(found) == 1, found
        return found[0]  # type: ignore[no-any-return]

    def logs(self) -> str:
        """Every log line so far (whole files on AWS)."""
        stack = self.engine._stack
        if stack is None:
            return self.engine.logs()
        return "\n".join(p.log_path.read_text() for p in stack.processes)  # type: ignore

    def history(self, run: str) -> list[Any]:
        return list(self.client.history(run))

    def scheduled_key(self, run: str) -> str:
        """The key of run ``run``'s first scheduled attempt, once it is scheduled."""
        found = wait_for(lambda: [e.key for e in self.history(run)
                                  if isinstance(e, TaskScheduled)], WAIT, "a scheduled task")
        return found[0]  # type: ignore[no-any-return]

    def timer_key(self, run: str) -> str:
        found = wait_for(lambda: [e.key for e in self.history(run)
                                  if isinstance(e, TimerStarted)], WAIT, "a started timer")
        return found[0]  # type: ignore[no-any-return]

    def started(self, run: str, key: str) -> None:
        """Wait until attempt ``key`` of ``run`` has started on a worker (its
        claim, under the attempt's token, which the history has)."""
        [token] = [e.token for e in self.history(run)
                   if isinstance(e, TaskScheduled) and e.key == key]
        wait_for(lambda: self.backend.store.get_beat(run, attempt_id(key, token)), WAIT,
                 f"attempt {key} to start")

    # -- playing the worker of task list "manual" -------------------------------------

    def take_manual(self) -> Any:
        """Receive the task message waiting on task list "manual" (and delete it)."""
        queues = self.backend.queues
        [message] = wait_for(lambda: queues.receive(task_queue("manual"), max_messages=1,
                                                    wait=1, lease=60),
                             WAIT, "the task message on task list manual")
        queues.acknowledge(task_queue("manual"), [message.receipt])
        return message

    def work_manual(self) -> int:
        """Run the real worker on what waits on "manual", in this thread; how many came."""
        worker = ActivityWorker(self.engine.registry, self.backend, task_lists=["manual"],
                                poll_wait=0)
        handled = 0
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            count = worker.run_waiting(task_queue("manual"))
            if count == 0 and handled:
                return handled
            handled += count
            if count == 0:
                time.sleep(0.05)
        return handled


# -- rows, and what they share ----------------------------------------------------------

TASKS = task_queue("default")


VENV = '{"__flowy__":"enum","cls":"venv.__main__:X","v":1}'


PENDING = "issue 10, fix in progress: "  # the item number is the fix's to give


@dataclass(frozen=True)
class Row:
    id: str
    send: Callable[[Attack], Any]  # sends the bad input; what the check needs
    check: Callable[[Attack, Any], None]
    backends: tuple[str, ...]
    pending: str | None  # why it fails on main (xfail), if it does


ROWS: list[Row] = []


def row(id: str, *, backends: tuple[str, ...] = ("memory",), pending: str | None = None,
        ) -> Callable[[Callable[[Attack, Any], None]], Callable[[Attack, Any], None]]:
    """Declare a row: ``send`` below is paired with the decorated check."""
    def declare(check: Callable[[Attack, Any], None]) -> Callable[[Attack, Any], None]:
        ROWS.append(Row(id, SENDERS.pop(id), check, backends, pending))
        return check
    return declare


SENDERS: dict[str, Callable[[Attack], Any]] = {}


def sends(id: str) -> Callable[[Callable[[Attack], Any]], Callable[[Attack], Any]]:
    def register(send: Callable[[Attack], Any]) -> Callable[[Attack], Any]:
        SENDERS[id] = send
        return send
    return register


def raw(queue: str, *bodies: str) -> Callable[[Attack], Any]:
    def send(attack: Attack) -> list[str]:
        for body in bodies:
            attack.send(queue, body)
        return list(bodies)
    return send


def _is(body: str, found: str, _reason: str) -> bool:
    return found == body


def parked(queue: str, *reasons: str) -> Callable[[Attack, Any], None]:
    """The check that each body sent is in the dead-letter queue with its reason."""
    def check(attack: Attack, bodies: list[str]) -> None:
        for body, part in zip(bodies, reasons, strict=True):
            _, reason = attack.dead_letter(queue, functools.partial(_is, body))
            assert part in reason, (body, reason)
    return check


def approval_victim(attack: Attack) -> Any:
    return attack.client.start(approval, LIMIT)


def assert_approved(attack: Attack, victim: Any) -> None:
    """Signal the victim twice: it completes with both values (not "timed out")."""
    for value in ("v-1", "v-2"):
        attack.client.signal(victim.run_id, "approve", value)
    assert victim.result(timeout=WAIT) == ["v-1", "v-2"]


def assert_encode_error(run: Callable[[], Any], match: str | None = None) -> None:
    with pytest.raises(TaskError, match=match) as info:
        run()
    assert info.value.type_name == "flowy.EncodeError", info.value


def plant_run(attack: Attack, run: str, workflow: str, input: str) -> None:
    """A run with its start in its inbox, and a notification: what the
    client's rights allow (PutItem and SendMessage on AWS)."""
    now = time.time()
    if attack.kind == "memory":
        attack.backend.queues.send(DECISIONS, [start_run(attack.backend, RunRecord(
            run, workflow, started_at=now, input=input))])
        return
    attack.put_item({"pk": {"S": run}, "sk": {"S": "run"}, "ref": {"S": workflow},
                     "workflow": {"S": workflow.partition("@")[0]}, "status": {"S": "open"},
                     "input": {"S": json.dumps({"data": input})},
                     "started_at": {"N": repr(now)}})
    plant_fact(attack, run, "start", event_to_dict(WorkflowStarted(input, at=now)))


def plant_fact(attack: Attack, run: str, ident: str, event: dict[str, Any]) -> None:
    """A raw inbox item (AWS), and its notification."""
    attack.put_item({"pk": {"S": run}, "sk": {"S": f"fact#{ident}"},
                     "type": {"S": str(event.get("type"))},
                     "event": {"S": json.dumps({"data": json.dumps(event)})}})
    attack.notify(run)


def assert_no_items(attack: Attack, run: str, key: str) -> None:
    """Nothing was written for ``run`` (nor notified: a decider would have
    dropped it, and a reconciler, later, removed what was written)."""
    dropped = f"notification for unknown run {run} dropped"
    assert dropped not in attack.logs(), f"something was written and notified: {dropped}"
    if attack.kind == "aws":
        assert attack.items(run) == []
        return
    store = attack.backend.store
    assert (store.read_inbox(run), store.outcome_of(run, key), store.get_beat(run, key)) == (
        [], None, None)


def tampered(attack: Attack, tag: str, input: str | None = None, copies: int = 1) -> Any:
    """A victim on task list "manual", whose genuine task message is sent
    ``copies`` times, with ``input`` in place of its own; then run by a worker."""
    victim = attack.client.start(manual, attack.record_log, tag)
    body = json.loads(attack.take_manual().body)
    if input is not None:
        body["input"] = input
    attack.backend.queues.send(task_queue("manual"), [Outgoing(json.dumps(body))] * copies)
    assert attack.work_manual() == copies
    return victim


def blob_task(attack: Attack, tag: str) -> str:
    return task_body(orphan(), "task-0-1", recorder, "task", arguments(attack.record_log, tag))


def slow_victim(attack: Attack, value: str) -> tuple[Any, str]:
    """A run in a slow attempt (4 s of a 300 s limit), once the attempt has started."""
    victim = attack.client.start(slow, attack.file("slow-victims"), 4, value)
    key = attack.scheduled_key(victim.run_id)
    attack.started(victim.run_id, key)
    return victim, key


class Attacks:
    """One attack per backend, begun by its first case and stopped after the module;
    a backend's attack ends before the next one begins."""

    def __init__(self, request: pytest.FixtureRequest,
                 tmp_path_factory: pytest.TempPathFactory) -> None:
        self._request = request
        self._tmp = tmp_path_factory
        self._current: Attack | None = None

    def get(self, kind: str) -> Attack:
        if self._current is not None and self._current.kind == kind:
            return self._current
        self.close()
        endpoint = self._request.getfixturevalue("aws_endpoint") if kind == "aws" else None
        attack = self._current = Attack.begin(kind, endpoint, self._tmp.mktemp(kind))
        for each in ROWS:
            if kind in each.backends:
                try:
                    attack.sent[each.id] = each.send(attack)
                except Exception as exc:  # noqa: BLE001 - that row's case reports it
                    attack.failed_to_send[each.id] = exc
        return attack

    def close(self) -> None:
        if self._current is not None:
            attack, self._current = self._current, None
            attack.stop()


def cases() -> list[Any]:
    found = []
    for kind in ("memory", "aws"):
        for each in ROWS:
            if kind in each.backends:
                marks = [] if each.pending is None else [
                    pytest.mark.xfail(strict=True, reason=each.pending)]
                found.append(pytest.param(kind, each, marks=marks, id=f"{kind}: {each.id}"))
    return found


BAD_FACTS: dict[str, dict[str, Any]] = {
    "table: fact with a list for a key": {"type": "TimerFired", "key": ["x"]},
    "table: fact missing fields": {"type": "TaskCompleted"},
    "table: fact with an extra field": {"type": "TimerFired", "key": "forged", "evil": 1},
}


def plant_bad_fact(id: str) -> Callable[[Attack], Any]:
    def send(attack: Attack) -> Any:
        victim = approval_victim(attack)
        attack.timer_key(victim.run_id)  # decided: it waits
        plant_fact(attack, victim.run_id, "forged", {**BAD_FACTS[id], "at": time.time()})
        return victim
    return send


def set_aside(attack: Attack, victim: Any) -> None:
    """The bad fact is set aside under bad#, with its reason; the run goes on."""
    [bad] = wait_for(lambda: [i for i in attack.items(victim.run_id)
                              if i["sk"]["S"].startswith("bad#")], PROMPTLY, "a bad# item")
    assert bad["sk"]["S"] == "bad#forged" and bad["reason"]["S"], bad
    assert_approved(attack, victim)
    assert [i["sk"]["S"] for i in attack.items(victim.run_id)
            if i["sk"]["S"].startswith("fact#")] == []


def plant_inputs(*payloads: str) -> Callable[[Attack], list[str]]:
    def send(attack: Attack) -> list[str]:
        runs = [orphan() for _ in payloads]
        for run, payload in zip(runs, payloads, strict=True):
            plant_run(attack, run, chain.ref, f"[[{payload}, 1], {{}}]")
        return runs
    return send


def failed_decoding(attack: Attack, runs: list[str]) -> None:
    for run in runs:
        assert_encode_error(functools.partial(attack.client.wait, run, timeout=WAIT))
