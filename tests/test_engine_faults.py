"""Faults on both backends, from one test body: duplicates, races, poison, redelivery.

Each test runs on the in-memory backend (the engine in threads of this
process) and on AWS (decider and worker processes on the emulator), as
tests/engines.py sets them up; a second decider in memory is a second
Decider over the same backend.  What is about processes dying, or
about S3, stays in test_aws_faults.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections import Counter
from typing import Any

import pytest

from flowy import ConfigurationError, FlowyClient, MalformedMessage, Registry, TaskError, Workflow
from flowy.backends.base import DECISIONS, TIMERS, Outgoing, task_queue
from flowy.backends.memory import ManualClock, memory_backend
from flowy.core.errors import ErrorInfo, ServiceError, SimulatedCrash
from flowy.core.events import TaskCompleted, TaskFailed, TaskScheduled
from flowy.core.protocol import attempt_id
from flowy.core.replay import Replayer
from flowy.core.runs import RunRecord
from flowy.worker.committer import Committer
from flowy.worker.decider import NOTIFICATIONS_PER_THREAD, Decider
from flowy.worker.inbox import start_run
from flowy.worker.messages import Notification, notification, parse
from flowy.worker.poison import POISON_LIMIT
from flowy.worker.worker import MAX_RESTARTS, ActivityWorker
from tests.aws_support import wait_for
from tests.engines import REGISTRY, keys
from tests.scenarios import aws_workflow


def _task_message(engine: Any, task_list: str) -> Any:
    """Play the worker of ``task_list``: receive the task message waiting there."""
    return wait_for(lambda: engine.backend.queues.receive(task_queue(task_list), max_messages=1,
                                                          wait=1, lease=30),
                    30, f"the task message on {task_list}")[0]


def test_same_result_delivered_twice_is_one_completion(make_engine: Any) -> None:
    engine = make_engine(serve=False)
    engine.decider()
    handle = engine.start("manual", 5)
    queues, store = engine.backend.queues, engine.backend.store
    task = json.loads(_task_message(engine, "manual").body)
    result = TaskCompleted(task["key"], "25", at=1.0, token=task["token"])
    for delivery in range(3):  # three deliveries of one result, each with its notification
        store.add_outcome(task["run"], result)
        queues.send(DECISIONS, [notification(task["run"], f"delivery-{delivery}")])
    assert handle.result(timeout=30) == 25
    assert keys(engine.client.history(handle.run_id), TaskCompleted) == Counter(
        {task["key"]: 1})


def test_outcome_written_but_never_notified_is_notified_on_redelivery(make_engine: Any) -> None:
    """A worker wrote the outcome and died before notifying: the next worker to
    get the message notifies instead of running the attempt again."""
    engine = make_engine(serve=False)
    engine.decider()
    handle = engine.start("manual", 7)
    message = _task_message(engine, "manual")
    task = json.loads(message.body)
    engine.backend.store.add_outcome(
        task["run"], TaskCompleted(task["key"], "49", at=1.0, token=task["token"]))
    engine.backend.queues.extend(task_queue("manual"), [message.receipt], 0)  # it dies
    engine.worker(task_lists=("manual",))
    assert handle.result(timeout=30) == 49
    assert keys(engine.client.history(handle.run_id), TaskCompleted) == Counter(
        {task["key"]: 1})


def test_an_attempt_whose_deliveries_all_went_to_dying_workers_still_runs(make_engine: Any
                                                                          ) -> None:
    """F2 of issue "Durable under crashes": four receivers died before they started
    the attempt; the fifth delivery runs it, rather than fail it for its deliveries."""
    engine = make_engine(serve=False)
    engine.decider()
    handle = engine.start("manual", 6)
    for _ in range(4):
        message = _task_message(engine, "manual")
        engine.backend.queues.extend(task_queue("manual"), [message.receipt], 0)  # it dies
    engine.worker(task_lists=("manual",))
    assert handle.result(timeout=30) == 36
    assert keys(engine.client.history(handle.run_id), TaskCompleted) == Counter(
        {json.loads(message.body)["key"]: 1})


def test_an_attempt_that_kills_every_worker_it_starts_on_fails(make_engine: Any) -> None:
    """The crash guard counts restarts, recorded before each run: after
    MAX_RESTARTS restarts that never ended, the next fails the attempt."""
    engine = make_engine(serve=False)
    engine.decider()
    handle = engine.start("manual", 6)
    message = _task_message(engine, "manual")
    task = json.loads(message.body)
    attempt = attempt_id(task["key"], task["token"])
    for _ in range(MAX_RESTARTS + 1):  # workers that started it (again), and died in it
        engine.backend.store.claim(task["run"], attempt, 1.0, again=True)
    engine.backend.queues.extend(task_queue("manual"), [message.receipt], 0)
    engine.worker(task_lists=("manual",))
    with pytest.raises(TaskError, match="seems to kill its worker"):
        handle.result(timeout=30)


def test_an_outcome_twice_in_the_inbox_enters_the_history_once(make_engine: Any) -> None:
    """An attempt's result came late twice: once while a repeated failure waited
    under the attempt's item (so as a late fact), and once after a decider
    consumed that failure (so under the item again).  One completion goes in."""
    engine = make_engine(serve=False)
    handle = engine.start("manual", 3)
    run, store = handle.run_id, engine.backend.store
    committer = Committer(REGISTRY, engine.backend)
    committer.handle(Replayer(), run)  # schedules the task
    [task] = [e for e in engine.client.history(run) if isinstance(e, TaskScheduled)]
    failed = TaskFailed(task.key, ErrorInfo("OSError", "lost"), at=2.0, token=task.token)
    store.add_outcome(run, failed)
    committer.handle(Replayer(), run)  # the failure goes in
    store.add_outcome(run, failed)  # its report came again
    waiting = store.read_inbox(run)  # a decider reads it: nothing new
    result = TaskCompleted(task.key, "9", at=3.0, token=task.token)
    store.add_outcome(run, result)  # meanwhile: late, behind the repeated failure
    store.consume(run, waiting, len(store.read_batches(run)))
    store.add_outcome(run, result)  # and again, under the attempt's item
    committer.handle(Replayer(), run)
    assert keys(engine.client.history(run), TaskCompleted) == Counter({task.key: 1})


def _completed(committer: Committer, run_id: str, key: str, result: str, at: float
               ) -> TaskCompleted:
    """Attempt ``key``'s result, as its worker reports it: with the attempt's
    token, from the history that ``committer`` has of the run."""
    state = committer._state(run_id)
    assert state is not None
    return TaskCompleted(key, result, at=at, token=state.work.token(key) or "")


def _waiting_task_keys(backend: Any, task_list: str) -> list[str]:
    """Take every message waiting on ``task_list``: the keys of their attempts."""
    found: list[str] = []
    while messages := backend.queues.receive(task_queue(task_list), max_messages=10, wait=1,
                                             lease=30):
        found += [json.loads(m.body)["key"] for m in messages]
        backend.queues.acknowledge(task_queue(task_list), [m.receipt for m in messages])
    return sorted(found)


def test_a_resent_batch_does_not_rerun_attempts_that_ended(backend: Any) -> None:
    """F5 of issue "Durable under crashes": a decider died after sending a batch
    and before marking it sent; its attempts ran and ended.  The next decider
    sends the batch again without them: nothing ends up run twice."""
    handle = FlowyClient(backend).start(aws_workflow("example"), 1, 2)

    def die_before_marking_sent(step: str) -> None:
        if step == "decider.sent":
            raise SimulatedCrash(step)

    dying = Committer(REGISTRY, dataclasses.replace(backend, checkpoint=die_before_marking_sent))
    with pytest.raises(SimulatedCrash):
        dying.handle(Replayer(), handle.run_id)
    worker = ActivityWorker(REGISTRY, backend, poll_wait=0)
    assert worker.run_waiting(task_queue("default")) == 2  # both squares ran, once
    Committer(REGISTRY, backend).handle(Replayer(), handle.run_id)
    # The squares are not sent again; the sum, which their results allow, is.
    assert _waiting_task_keys(backend, "default") == ["sum-0-1"]
    assert keys(FlowyClient(backend).history(handle.run_id), TaskCompleted) == Counter(
        {"square-0-1": 1, "square-1-1": 1})


def test_two_deciders_racing_on_one_run(backend: Any) -> None:
    """Decider B has the run cached at an old version: its commit loses to A's,
    and it decides again from fresh history; every fact is committed once."""
    handle = FlowyClient(backend).start(aws_workflow("example"), 1, 2)
    makers = [Committer(REGISTRY, backend) for _ in range(2)]
    replayers = [Replayer(), Replayer()]
    makers[0].handle(replayers[0], handle.run_id)  # commits version 1
    stale = makers[1]._state(handle.run_id)
    assert stale is not None and stale.version == 1
    backend.store.add_outcome(handle.run_id,
                              _completed(makers[0], handle.run_id, "square-0-1", "1", 2.0))
    makers[0].handle(replayers[0], handle.run_id)  # version 2
    backend.store.add_outcome(handle.run_id,
                              _completed(makers[0], handle.run_id, "square-1-1", "4", 3.0))
    assert makers[1]._decide(replayers[1], stale) is None  # version 2 is taken
    makers[1].handle(replayers[1], handle.run_id)  # reloads: version 3
    batches = backend.store.read_batches(handle.run_id)
    assert [b.version for b in batches] == [1, 2, 3]
    history = [e for b in batches for e in b.events]
    assert keys(history, TaskCompleted) == Counter({"square-0-1": 1, "square-1-1": 1})
    assert keys(history, TaskScheduled)["sum-0-1"] == 1


def test_two_deciders_share_the_work(make_engine: Any) -> None:
    engine = make_engine(serve=False)
    engine.decider()
    engine.decider()
    engine.worker()
    handles = [engine.start("example", i, 1) for i in range(8)]
    assert [h.result(timeout=60) for h in handles] == [i * i + 1 for i in range(8)]
    for h in handles:
        history = engine.client.history(h.run_id)
        assert all(n == 1 for n in keys(history, TaskCompleted).values())
        assert all(n == 1 for n in keys(history, TaskScheduled).values())


def test_a_cached_run_reads_only_its_inbox(backend: Any, monkeypatch: Any) -> None:
    client = FlowyClient(backend)
    handle = client.start(aws_workflow("example"), 1, 2)
    maker = Committer(REGISTRY, backend)
    replayer = Replayer()
    history_reads = []
    read_batches = backend.store.read_batches
    monkeypatch.setattr(backend.store, "read_batches",
                        lambda *a, **k: history_reads.append(a) or read_batches(*a, **k))
    maker.handle(replayer, handle.run_id)  # loads the run: its one history read
    for key, result in (("square-0-1", "1"), ("square-1-1", "4"), ("sum-0-1", "5")):
        backend.store.add_outcome(handle.run_id,
                                  _completed(maker, handle.run_id, key, result, 9.0))
        maker.handle(replayer, handle.run_id)
    assert len(history_reads) == 1
    assert replayer.replays == 1  # the first decision starts from the empty history
    assert client.status(handle.run_id).status == "completed"


def test_malformed_messages_go_to_dead_letter_queues(engine: Any) -> None:
    poison = {DECISIONS: Outgoing("{not json", group="x", dedup="x"),
              TIMERS: Outgoing("{not json"), task_queue("default"): Outgoing("{not json")}
    for queue, message in poison.items():
        engine.backend.queues.send(queue, [message])
    assert engine.start("example", 2, 3).result(timeout=60) == 13
    for queue in poison:
        [(body, reason)] = wait_for(lambda q=queue: engine.dead_letters(q), 30,
                                    f"the poison message in the dead-letter queue of {queue}")
        assert body == "{not json"
        assert reason.startswith("not a ")
    # The decider and the worker that moved them kept going.
    assert engine.start("example", 3, 4).result(timeout=60) == 25
    assert "moved to the dead-letter queue" in engine.logs()


def test_a_decision_that_keeps_failing_is_set_aside_with_its_reason() -> None:
    """Item 1 of issue "Durable under crashes": deliveries don't make poison,
    failures to decide do.  A decider that can't decide a run (here its inbox
    can't be read, for a reason no one calls transient) lets the notification
    come back; at the fifth failure it moves it to the dead-letter queue,
    saying why."""
    clock = ManualClock()
    backend = memory_backend(clock=clock, lease=30)
    handle = FlowyClient(backend).start(aws_workflow("example"), 1, 2)

    def broken(*_args: Any) -> Any:
        raise RuntimeError("the inbox is in a state this decider does not understand")

    backend.store.read_inbox = broken  # type: ignore[method-assign]
    decider = Decider(REGISTRY, backend, threads=0, poll_wait=0)
    for failures in range(1, POISON_LIMIT + 1):
        assert decider.poll_decisions() == 1
        assert len(backend.queues.dead_letters(DECISIONS)) == (failures == POISON_LIMIT)
        clock.advance(31)  # the lease ends: the notification comes back
    [(body, reason)] = backend.queues.dead_letters(DECISIONS)
    assert handle.run_id in body
    assert f"the decision for run {handle.run_id} failed {POISON_LIMIT} times" in reason
    assert "RuntimeError: the inbox is in a state" in reason
    assert decider.poll_decisions() == 0


def test_a_run_of_an_undeclared_workflow_is_set_aside_at_once() -> None:
    """Review finding 8: a decider that does not declare the run's workflow
    can't decide it however often it tries: the notification goes to the
    dead-letter queue at the first failure, with the reason, for a redrive
    after the deploy (the run stays open)."""
    clock = ManualClock()
    backend = memory_backend(clock=clock, lease=30)
    handle = FlowyClient(backend).start(aws_workflow("example"), 1, 2)
    decider = Decider(Registry([], "a deployment without it"), backend, threads=0, poll_wait=0)
    assert decider.poll_decisions() == 1
    [(body, reason)] = backend.queues.dead_letters(DECISIONS)
    assert handle.run_id in body
    assert f"the decision for run {handle.run_id} failed once, for good" in reason
    assert "is not declared in a deployment without it" in reason
    assert handle.status() == "open"


def test_a_failing_service_never_makes_a_message_poison() -> None:
    """What the backend calls transient (the service's failure) is not counted."""
    clock = ManualClock()
    backend = memory_backend(clock=clock, lease=30)
    FlowyClient(backend).start(aws_workflow("example"), 1, 2)

    def unavailable(*_args: Any) -> Any:
        raise ServiceError("the table is unavailable")

    backend.store.read_inbox = unavailable  # type: ignore[method-assign]
    decider = Decider(REGISTRY, backend, threads=0, poll_wait=0)
    for _ in range(3 * POISON_LIMIT):
        assert decider.poll_decisions() == 1
        clock.advance(31)
    assert backend.queues.dead_letters(DECISIONS) == []


def test_dead_letters_are_redriven_once_fixed(make_engine: Any) -> None:
    engine = make_engine(serve=False)
    queues = engine.backend.queues
    # A run whose notification was given up on (say its deciders did not know
    # the workflow yet): it waits in the dead-letter queue, the run stays open.
    stuck = RunRecord("stuck", aws_workflow("example").ref, started_at=1.0, input="[[3,4],{}]")
    queues.send(DECISIONS, [start_run(engine.backend, stuck)])
    [message] = wait_for(lambda: queues.receive(DECISIONS, max_messages=1, wait=1, lease=30),
                         30, "the run's notification")
    queues.dead_letter(DECISIONS, message, "received 5 times")
    engine.decider()
    engine.worker()
    assert queues.redrive(DECISIONS) == 1
    assert engine.client.wait("stuck", timeout=60) == 25
    assert queues.redrive(task_queue("default")) == 0


def test_unknown_activity_fails_the_task_naming_it(make_engine: Any) -> None:
    engine = make_engine(serve=False)
    engine.decider()
    engine.worker(definitions="tests.scenarios:WORKER_WORKFLOWS")  # not told about ghost
    with pytest.raises(TaskError) as info:
        engine.start("ghost", 3).result(timeout=60)
    assert info.value.type_name == "flowy.ConfigurationError"
    assert "activity task of workflow ghost@1 is not known to this worker" in str(info.value)


def test_a_poller_on_an_idle_task_list_leaves_slots_for_the_other_lists() -> None:
    """A poller holds the slots it took for its whole long poll: with two task
    lists and two slots, each takes one, so that both can be polling at once.
    (Were one to take both, the other would wait for a slot, not on its queue.)
    In memory only: the manual clock counts the receivers waiting on it."""
    clock = ManualClock()
    backend = memory_backend(clock=clock)
    worker = ActivityWorker(REGISTRY, backend, task_lists=["default", "manual"], concurrency=2,
                            poll_wait=60, grace=0)
    stop = threading.Event()
    serving = threading.Thread(target=worker.serve, args=(stop,), daemon=True)
    serving.start()
    try:
        assert clock.wait_for_sleepers(2)  # both pollers in their long poll
    finally:
        stop.set()
        backend.close()
        serving.join()


def test_a_decider_takes_only_what_its_threads_will_decide_soon() -> None:
    """F4 of issue "Durable under crashes": with its threads busy, a decider
    leaves the backlog on the queue (where no lease runs out), not in its hands."""
    backend = dataclasses.replace(memory_backend(), remote=True)  # decider threads, as on AWS
    client = FlowyClient(backend)
    for i in range(30):
        client.start(aws_workflow("example"), i, 1)
    decider = Decider(REGISTRY, backend, threads=2, poll_wait=0)
    busy = threading.Event()
    decided: list[str] = []

    def slow_handle(replayer: Any, run_id: str) -> None:
        busy.wait()
        decided.append(run_id)

    decider.committer.handle = slow_handle  # type: ignore[method-assign]
    taken = sum(decider.poll_decisions() for _ in range(5))
    assert taken == 2 * NOTIFICATIONS_PER_THREAD
    assert len(decider._held.held()) == taken
    busy.set()
    for _ in range(100):
        if len(decided) == 30:
            break
        decider.poll_decisions()
    assert sorted(decided) == sorted(r.run_id for r in client.store.runs())


def test_an_enormous_error_is_truncated_and_the_run_closes(engine: Any) -> None:
    """Finding 7 of the security review: a 500,000-character activity error made
    a run impossible to close (over DynamoDB's 400 KB item).  Recorded errors
    are bounded, so the run fails, and says so."""
    handle = engine.start("single_fail", "x" * 500_000)
    with pytest.raises(TaskError) as caught:
        handle.result(timeout=60)
    message = str(caught.value)
    assert "characters truncated]" in message
    assert len(message) < 40_000
    assert engine.client.status(handle.run_id).status == "failed"


def test_timer_messages_with_absurd_times_are_malformed(make_engine: Any) -> None:
    """Item 2 of issue "Untrusting": a NaN fire time compared as due at once, so
    a forged timer could end a wait early.  Non-finite and absurd times and
    timeouts don't parse: the messages go to the dead-letter queue, with why."""
    engine = make_engine()
    bad = [f'{{"run":"r","key":"k","kind":"timer","fire_at":{at}}}'
           for at in ("NaN", "Infinity", "-1", "1e300")]
    engine.backend.queues.send(TIMERS, [Outgoing(body) for body in bad])
    task = ('{"run":"r","key":"k-0-1","workflow":"square@1","dependency":"task",'
            '"input":"[[2],{}]","start_to_close":NaN}')
    engine.backend.queues.send(task_queue("default"), [Outgoing(task)])
    assert engine.start("example", 2, 3).result(timeout=60) == 13
    parked = wait_for(lambda: len(engine.dead_letters(TIMERS)) == 4 and engine.dead_letters(TIMERS),
                      30, "the four timers in the dead-letter queue")
    assert sorted(body for body, _ in parked) == sorted(bad)
    assert all(reason.startswith("not a TimerMessage: fire_at: Input should be")
               for _, reason in parked)
    [(_, reason)] = wait_for(lambda: engine.dead_letters(task_queue("default")), 30,
                             "the task message in the dead-letter queue")
    assert reason == "not a TaskMessage: start_to_close: Input should be a finite number"


@pytest.mark.parametrize("run", ["", "x" * 257, "run\nforged log line", "a b", "a\x1b[31m"])
def test_ids_in_messages_are_bounded_and_printable(run: str) -> None:
    """Item 5 of issue "Untrusting": a 250,000-character run id looped on
    DynamoDB's key limit; an id with a newline could forge a log line."""
    with pytest.raises(MalformedMessage, match="run: String should"):
        parse(Notification, json.dumps({"run": run}))


def test_declared_names_fit_in_messages() -> None:
    """What a message refuses, a declaration refuses first, at once, not in a
    decider after its commit."""
    with pytest.raises(ConfigurationError, match="must be 1 to 200 characters, without spaces"):
        Workflow(object, name="my workflow")
    with pytest.raises(ConfigurationError, match="dependency name"):
        Workflow(object, name="w").conf_activity("x" * 201, print)
    assert parse(Notification, json.dumps({"run": "café-0"}))  # not only ASCII
