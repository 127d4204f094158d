"""The security review's table "Bad input tried", row by row, on a running engine.

Each row is a case: its bad input arrives while legitimate runs are in flight
(a chain, a run waiting on a timer, one waiting for signals, one in a slow
activity), and it must get the outcome the table's last column documents,
while every legitimate run completes with its right result.  Rows run on the
in-memory engine, and those that depend on AWS (SQS bodies and attributes,
raw table items, S3 objects, DynamoDB's keys) also on decider and worker
processes on the emulator.  One engine per backend serves all its rows: the
first case of a backend starts it, with the legitimate runs, and sends every
row's input at once; each case then checks its own row.  Victims (runs a row
attacks) are the row's own, so a row whose fix is pending fails only itself.

Rows whose fix is under way fail on main and are marked ``xfail(strict=True)``:
they turn into failures when the fix lands, for the mark to be removed.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowy import TaskError
from flowy.backends.base import DECISIONS, TIMERS
from flowy.core.events import TaskTimedOut
from tests import hostile_input as H
from tests.aws_support import wait_for
from tests.hostile_input import (
    TASKS,
    VENV,
    Attack,
    arguments,
    orphan,
    parked,
    raw,
    row,
    sends,
    task_body,
    timer_body,
)

FORGED_LINE = "2099-01-01 00:00:00 MainProcess flowy.decider INFO FORGED LOG LINE"


# -- the decision queue -------------------------------------------------------------

sends("decisions: not json")(raw(DECISIONS, "hello, not json"))
row("decisions: not json", backends=("memory", "aws"))(
    parked(DECISIONS, "not a Notification: body: Invalid JSON"))

sends("decisions: wrong fields")(raw(DECISIONS, '{"foo": 1}', '{"run": 5}',
                                     '{"run":"x","extra":1}'))
row("decisions: wrong fields", backends=("memory", "aws"))(
    parked(DECISIONS, "run: Field required", "run: Input should be a valid string",
           "extra: Extra inputs are not permitted"))


@sends("decisions: unknown run")
def _(attack: Attack) -> str:
    run = "nope-unknown-run-" + attack.kind
    attack.notify(run)
    return run


@row("decisions: unknown run", backends=("memory", "aws"))
def _(attack: Attack, run: str) -> None:
    line = f"notification for unknown run {run!r} dropped"
    wait_for(lambda: line in attack.logs(), H.PROMPTLY, "the log line")
    assert [b for b, _ in attack.dead_letters(DECISIONS) if run in b] == []


sends("decisions: run id with a newline")(raw(DECISIONS,
                                              json.dumps({"run": f"x\n{FORGED_LINE}"})))


@row("decisions: run id with a newline", backends=("memory", "aws"))
def _(attack: Attack, bodies: list[str]) -> None:
    parked(DECISIONS, "run: String should match pattern")(attack, bodies)
    assert "FORGED LOG LINE" not in attack.logs()


HUGE = "r" * 250_000  # under SQS's size limit, far over DynamoDB's for a key
sends("decisions: 250,000-character run id")(raw(DECISIONS, json.dumps({"run": HUGE})))


@row("decisions: 250,000-character run id", backends=("memory", "aws"))
def _(attack: Attack, _bodies: list[str]) -> None:
    # On AWS the dead letter's body travels in S3: it is found by its reason.
    attack.dead_letter(DECISIONS, lambda _b, r: "run: String should have at most 256" in r)
    assert HUGE[:1000] not in attack.logs()


sends("decisions: empty run id")(raw(DECISIONS, '{"run": ""}'))
row("decisions: empty run id", backends=("memory", "aws"))(
    parked(DECISIONS, "run: String should have at least 1 character"))


@sends("decisions: run of an undeclared workflow")
def _(attack: Attack) -> str:
    run = orphan()
    H.plant_run(attack, run, "ghost@1", arguments(1))
    return run


@row("decisions: run of an undeclared workflow", backends=("memory", "aws"))
def _(attack: Attack, run: str) -> None:
    _, reason = attack.dead_letter(DECISIONS, lambda b, _r: run in b)
    assert "ghost@1" in reason
    assert attack.client.status(run).status == "open"  # kept, for a redrive after a deploy


@sends("decisions: duplicate notification for a live run")
def _(attack: Attack) -> str:
    run = attack.legit["chain"][0].run_id
    attack.notify(run)
    attack.notify(run)
    return run


@row("decisions: duplicate notification for a live run")
def _(attack: Attack, run: str) -> None:
    attack.legit["chain"][0].result(timeout=H.WAIT)
    keys = [(type(e).__name__, e.key) for e in attack.history(run) if hasattr(e, "key")]
    assert len(keys) == len(set(keys)) == 6, keys  # 3 scheduled, 3 completed, once each
    assert [b for b, _ in attack.dead_letters(DECISIONS) if run in b] == []


@sends("decisions: start input naming venv.__main__")
def _(attack: Attack) -> str:
    # On the first decider thread, which the review's poison killed (crc32 % 2).
    run = next(r for r in (orphan() for _ in range(100)) if zlib.crc32(r.encode()) % 2 == 0)
    H.plant_run(attack, run, H.chain.ref, f"[[{VENV}, 1], {{}}]")
    return run


@row("decisions: start input naming venv.__main__", backends=("memory", "aws"))
def _(attack: Attack, run: str) -> None:
    H.assert_encode_error(lambda: attack.client.wait(run, timeout=H.WAIT),
                        "this codec does not know that type")
    assert "venv.__main__" not in sys.modules
    if attack.engine._stack is not None:
        assert [p.poll() for p in attack.engine._stack.processes] == [None, None]
        assert "venv: error" not in attack.logs()


# -- the task queue -------------------------------------------------------------------

sends("tasks: not json")(raw(TASKS, "not json either", '{"run":"r"}'))
row("tasks: not json", backends=("memory", "aws"))(
    parked(TASKS, "not a TaskMessage: body: Invalid JSON", "key: Field required"))


@sends("tasks: unknown run")
def _(attack: Attack) -> tuple[str, str]:
    run, tag = orphan(), "T3-unknown-run"
    attack.send(TASKS, task_body(run, "task-0-1", H.recorder, "task",
                                 arguments(attack.record_log, tag)))
    return run, tag


@row("tasks: unknown run", backends=("memory", "aws"))
def _(attack: Attack, sent: tuple[str, str]) -> None:
    run, tag = sent
    assert attack.ran(tag) == 0
    H.assert_no_items(attack, run, "task-0-1")
    attack.dead_letter(TASKS, lambda b, r: run in b and bool(r))


@sends("tasks: unknown activity, fresh key, real open run")
def _(attack: Attack) -> Any:
    victim = H.approval_victim(attack)
    attack.timer_key(victim.run_id)  # decided: it waits
    attack.send(TASKS, task_body(victim.run_id, "bogus-1", "nope@9", "nope", arguments()))
    return victim


@row("tasks: unknown activity, fresh key, real open run")
def _(attack: Attack, victim: Any) -> None:
    assert attack.backend.store.outcome_of(victim.run_id, "bogus-1") is None
    assert [e for e in attack.history(victim.run_id) if getattr(e, "key", "") == "bogus-1"] == []
    attack.dead_letter(TASKS, lambda b, r: "nope@9" in b and bool(r))
    H.assert_approved(attack, victim)


@sends("tasks: the same task message twice")
def _(attack: Attack) -> Any:
    return H.tampered(attack, "T5-duplicate", copies=2)


@row("tasks: the same task message twice")
def _(attack: Attack, victim: Any) -> None:
    assert victim.result(timeout=H.WAIT) == 1
    assert attack.ran("T5-duplicate") == 1


sends("tasks: input that is not a string")(raw(TASKS, task_body(
    orphan(), "task-0-1", H.recorder, "task", {})))
row("tasks: input that is not a string", backends=("memory", "aws"))(
    parked(TASKS, "input: Input should be a valid string"))


@sends("tasks: input that is not an argument list")
def _(attack: Attack) -> Any:
    return H.tampered(attack, "T6-not-arguments", input="{}")


@row("tasks: input that is not an argument list")
def _(attack: Attack, victim: Any) -> None:
    # At once, with the real cause: its one attempt failed decoding, not for deliveries.
    H.assert_encode_error(lambda: victim.result(timeout=H.WAIT), "can't be decoded")
    assert attack.ran("T6-not-arguments") == 0


def bad_blob(id: str, reason: str, *tags: str,
             stored: Callable[[Attack], tuple[str, str | None]]) -> None:
    """A task message whose body is in S3 under the key ``stored`` gives (with
    the object it puts there, if any): dead-lettered with ``reason``, and no
    activity ran with ``tags``."""
    def send(attack: Attack) -> str:
        key, body = stored(attack)
        if body is not None:
            attack.put_object(key, body)
        attack.send(TASKS, "{}", blob=key)
        return key

    def check(attack: Attack, key: str) -> None:
        _, found = attack.dead_letter(TASKS, lambda _b, r: key in r)
        assert reason in found
        assert [attack.ran(tag) for tag in tags] == [0] * len(tags)

    sends(id)(send)
    row(id, backends=("aws",))(check)


def _not_its_hash(attack: Attack) -> tuple[str, str]:
    original = H.blob_task(attack, "T8-original")
    return ("payloads/" + hashlib.sha256(original.encode()).hexdigest(),
            H.blob_task(attack, "T8-tampered"))


bad_blob("tasks: blob missing from S3", "is missing from S3 bucket",
         stored=lambda _attack: ("payloads/" + "0" * 64, None))
bad_blob("tasks: blob whose content is not its hash", "is corrupt", "T8-original",
         "T8-tampered", stored=_not_its_hash)
bad_blob("tasks: blob outside payloads/", "not a packed payload", "T8b-any-key-in-bucket",
         stored=lambda attack: ("not-a-payload/secret.txt",
                                H.blob_task(attack, "T8b-any-key-in-bucket")))


@sends("tasks: 250,000 characters of input that is not JSON")
def _(attack: Attack) -> Any:
    return H.tampered(attack, "T7-not-json", input="x" * 250_000)


@row("tasks: 250,000 characters of input that is not JSON")
def _(attack: Attack, victim: Any) -> None:
    H.assert_encode_error(lambda: victim.result(timeout=H.WAIT),
                          "can't decode a str of 250000 characters")


@sends("tasks: task for a closed run")
def _(attack: Attack) -> tuple[Any, int, str]:
    victim = attack.client.start(H.recorder, attack.record_log, "T9-closed")
    assert victim.result(timeout=H.WAIT) == 1
    key = attack.scheduled_key(victim.run_id)
    events = len(attack.history(victim.run_id))
    attack.send(TASKS, task_body(victim.run_id, key, H.recorder, "task",
                                 arguments(attack.record_log, "T9-closed")))
    return victim, events, key


@row("tasks: task for a closed run")
def _(attack: Attack, sent: tuple[Any, int, str]) -> None:
    victim, events, key = sent
    assert attack.ran("T9-closed") == 1
    assert len(attack.history(victim.run_id)) == events
    assert attack.backend.store.read_inbox(victim.run_id) == []


@sends("tasks: forged input under a live attempt's key")
def _(attack: Attack) -> Any:
    victim, key = H.slow_victim(attack, "slow real")
    attack.send(TASKS, task_body(victim.run_id, key, H.slow, "task",
                                 arguments(attack.file("slow-victims"), 0, "FORGED")))
    return victim


@row("tasks: forged input under a live attempt's key")
def _(attack: Attack, victim: Any) -> None:
    assert victim.result(timeout=H.WAIT) == "slow real"


@sends("tasks: input naming venv.__main__")
def _(attack: Attack) -> Any:
    return H.tampered(attack, "T10-venv", input=f"[[{VENV}, \"T10-venv\"], {{}}]")


@row("tasks: input naming venv.__main__")
def _(attack: Attack, victim: Any) -> None:
    H.assert_encode_error(lambda: victim.result(timeout=H.WAIT),
                        "this codec does not know that type")
    assert "venv.__main__" not in sys.modules
    assert attack.ran("T10-venv") == 0


# -- the timer queue ------------------------------------------------------------------

sends("timers: malformed")(raw(TIMERS, "<timer/>", timer_body("r", "k", "alarm")))
row("timers: malformed", backends=("memory", "aws"))(
    parked(TIMERS, "not a TimerMessage: body: Invalid JSON", "kind: Input should be"))


@sends("timers: forged timer of a real run")
def _(attack: Attack) -> Any:
    victim = H.approval_victim(attack)
    attack.send(TIMERS, timer_body(victim.run_id, attack.timer_key(victim.run_id), "timer"))
    return victim


@row("timers: forged timer of a real run")
def _(attack: Attack, victim: Any) -> None:
    assert attack.client.status(victim.run_id).status == "open"
    H.assert_approved(attack, victim)


@sends("timers: forged start-to-close of a live attempt")
def _(attack: Attack) -> Any:
    victim, key = H.slow_victim(attack, "slow timed")
    attack.send(TIMERS, timer_body(victim.run_id, key, "start_to_close"))
    return victim


@row("timers: forged start-to-close of a live attempt")
def _(attack: Attack, victim: Any) -> None:
    assert victim.result(timeout=H.WAIT) == "slow timed"
    assert [e for e in attack.history(victim.run_id) if isinstance(e, TaskTimedOut)] == []


sends("timers: fire_at NaN")(raw(TIMERS, timer_body("r", "k", "timer", float("nan"))))
row("timers: fire_at NaN", backends=("memory", "aws"))(
    parked(TIMERS, "fire_at: Input should be a finite number"))

sends("timers: fire_at 1e300")(raw(TIMERS, timer_body("r", "k", "timer", 1e300)))
row("timers: fire_at 1e300", backends=("memory", "aws"))(
    parked(TIMERS, "fire_at: Input should be less than or equal to"))


@sends("timers: timer of an unknown run")
def _(attack: Attack) -> str:
    run = orphan()
    attack.send(TIMERS, timer_body(run, "sleep-0", "timer"))
    return run


@row("timers: timer of an unknown run", backends=("memory", "aws"))
def _(attack: Attack, run: str) -> None:
    H.assert_no_items(attack, run, "sleep-0")


# -- the table (raw items, AWS) ----------------------------------------------------------


for _id in H.BAD_FACTS:
    sends(_id)(H.plant_bad_fact(_id))
    row(_id, backends=("aws",))(H.set_aside)


@sends("table: activity error of 500,000 characters")
def _(attack: Attack) -> Any:
    return attack.client.start(H.failing, "x" * 500_000)


@row("table: activity error of 500,000 characters", backends=("aws",))
def _(attack: Attack, victim: Any) -> None:
    with pytest.raises(TaskError, match=r"characters truncated\]") as info:
        victim.result(timeout=H.WAIT)
    assert len(str(info.value)) < 40_000
    assert attack.client.status(victim.run_id).status == "failed"


# -- the codec: start inputs written raw -------------------------------------------------

CODEC_EDGES = {
    "200k-deep JSON": "[" * 200_000 + "]" * 200_000,
    "100k nested tags": '{"__flowy__":"tuple","v":[' * 100_000 + "]}" * 100_000,
    "5,000-digit int": "1" * 5_000,
    "overflow": '{"__flowy__":"timedelta","v":[1000000000000,0,0]}',
    "unknown tag": '{"__flowy__":"nope","v":1}',
    "bad base64": '{"__flowy__":"bytes","v":"!!!"}',
}


sends("codec: deep, nested, huge, overflowing, unknown, bad base64")(
    H.plant_inputs(*CODEC_EDGES.values()))
row("codec: deep, nested, huge, overflowing, unknown, bad base64")(H.failed_decoding)

sends("codec: decimal 1e1000000")(H.plant_inputs('{"__flowy__":"decimal","v":"1e1000000"}'))
row("codec: decimal 1e1000000")(H.failed_decoding)

assert not H.SENDERS, f"rows without a check: {list(H.SENDERS)}"


# -- the H.cases -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def attacks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[H.Attacks]:
    held = H.Attacks(request, tmp_path_factory)
    yield held
    held.close()


@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind, bad", H.cases())
def test_bad_input_gets_its_outcome_and_legitimate_runs_complete(
        attacks: H.Attacks, kind: str, bad: H.Row) -> None:
    attack = attacks.get(kind)
    if bad.id in attack.failed_to_send:
        raise attack.failed_to_send[bad.id]
    attack.assert_legit()  # which also gives every bad input the time to be handled
    bad.check(attack, attack.sent[bad.id])
    attack.assert_legit()
