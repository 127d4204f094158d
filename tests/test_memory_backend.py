"""The in-memory backend keeps the promises of flowy.backends.base, as DynamoDB and SQS do.

Everything runs on a ManualClock: time passes only by ``advance``, and a test
that needs another thread to be waiting waits for it to register with the
clock (``wait_for_sleepers``) instead of sleeping on the wall clock.  No
assertion is about how long anything took.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import pytest

from flowy.backends.base import (
    DECISIONS,
    DEFAULT_MAX_RECEIVES,
    TIMERS,
    Clock,
    Outgoing,
    Queues,
    Received,
    RunStore,
    task_queue,
)
from flowy.backends.memory import (
    DEDUP_WINDOW,
    Faults,
    ManualClock,
    MemoryQueues,
    MemoryStore,
    RealClock,
    dead_letter_queue,
    memory_backend,
)
from flowy.core.errors import ConfigurationError, ErrorInfo, ServiceError, SimulatedCrash
from flowy.core.events import (
    CancelRequested,
    Fact,
    SignalReceived,
    TaskCompleted,
    TaskFailed,
    TaskScheduled,
    TaskTimedOut,
    TimerFired,
    WorkflowStarted,
)
from flowy.core.runs import COMPLETED, FAILED, IN_HISTORY, OPEN, RunRecord

T = TypeVar("T")
T0 = 1_700_000_000.0
TASKS = task_queue("default")
ERROR = ErrorInfo("boom", "builtins.ValueError")


class Background(Generic[T]):
    """``fn()`` in a daemon thread; ``result()`` joins it and returns (or raises) its outcome.

    The join's wall-clock timeout is only a safety net against a hang, never a bound."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], T]) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test by result()
            self._error = exc

    def done(self) -> bool:
        return not self._thread.is_alive()

    def result(self) -> T:
        self._thread.join(30)
        assert not self._thread.is_alive(), "the background call did not return"
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def store(clock: ManualClock) -> MemoryStore:
    return MemoryStore(clock)


@pytest.fixture
def queues(clock: ManualClock) -> Iterator[MemoryQueues]:
    q = MemoryQueues(clock)
    yield q
    q.close()  # no receiver thread outlives its test


def run(run_id: str, workflow: str = "order@1", started_at: float = T0, **kw: Any) -> RunRecord:
    return RunRecord(run_id, workflow, started_at, **kw)


def bodies(messages: list[Received]) -> list[str]:
    return [m.body for m in messages]


def receive(queues: MemoryQueues, queue: str = TASKS, *, n: int = 10, wait: float = 0.0,
            lease: float = 30.0) -> list[Received]:
    return queues.receive(queue, max_messages=n, wait=wait, lease=lease)


def send(queues: MemoryQueues, queue: str, *texts: str, **kw: Any) -> None:
    queues.send(queue, [Outgoing(t, **kw) for t in texts])


def notify(queues: MemoryQueues, run_id: str, why: str) -> None:
    queues.send(DECISIONS, [Outgoing(f"{run_id}:{why}", group=run_id, dedup=f"{run_id}/{why}")])


def test_the_parts_implement_the_protocols(clock: ManualClock) -> None:
    # mypy checks these assignments against base.py's protocols.
    store: RunStore = MemoryStore(clock)
    queues: Queues = MemoryQueues(clock)
    clocks: list[Clock] = [clock, RealClock()]
    assert store and queues and clocks


# -- clocks ------------------------------------------------------------------------

def test_manual_clock_moves_only_when_advanced(clock: ManualClock) -> None:
    assert clock.now() == T0
    clock.advance(2.5)
    clock.advance_to(T0 + 10)
    clock.advance_to(T0)  # the past: nothing changes
    assert clock.now() == T0 + 10
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    clock.sleep(0)  # returns at once, with no other thread
    clock.sleep(-3)
    assert clock.pending_sleepers() == 0


def test_manual_sleep_blocks_until_the_clock_passes_its_deadline(clock: ManualClock) -> None:
    sleeper = Background(lambda: clock.sleep(10))
    assert clock.wait_for_sleepers(1)
    assert clock.next_deadline() == T0 + 10
    clock.advance(9.5)
    assert clock.wait_for_sleepers(1)  # woken, looked, and went back to sleep
    assert not sleeper.done()
    clock.advance(0.5)
    sleeper.result()
    assert clock.pending_sleepers() == 0
    assert clock.next_deadline() is None


def test_manual_wait_is_woken_by_notify_and_by_time(clock: ManualClock) -> None:
    condition = threading.Condition()
    flag: list[str] = []

    def wait_for_flag() -> float:
        with condition:
            while not flag:
                clock.wait(condition, None)
        return clock.now()

    waiter = Background(wait_for_flag)
    assert clock.wait_for_sleepers(1)
    with condition:
        flag.append("set")
        condition.notify_all()
    assert waiter.result() == T0  # by notify: no time passed

    def wait_timed() -> float:
        with condition:
            clock.wait(condition, 5)
        return clock.now()

    timed = Background(wait_timed)
    assert clock.wait_for_sleepers(1)
    clock.advance(5)
    assert timed.result() == T0 + 5
    with condition:
        clock.wait(condition, 0)  # no time to wait: returns at once


def test_real_clock_reads_and_waits_on_the_wall_clock() -> None:
    real = RealClock()
    assert real.now() > T0
    real.sleep(0)
    condition = threading.Condition()
    with condition:
        real.wait(condition, 0)
        real.wait_until(condition, real.now() - 1)


# -- the store: runs -------------------------------------------------------------------

def test_create_run_is_conditional_and_get_run_returns_a_copy(store: MemoryStore) -> None:
    assert store.get_run("r1") is None
    assert store.create_run(run("r1", input="x"))
    assert not store.create_run(run("r1", input="other"))
    got = store.get_run("r1")
    assert got is not None and got.input == "x" and got.status == OPEN
    got.status = "scribbled"
    assert store.get_run("r1").status == OPEN  # type: ignore[union-attr]


def test_claim_workflow_id_binds_once(store: MemoryStore) -> None:
    assert store.claim_workflow_id("invoice-7", "r1") == "r1"
    assert store.claim_workflow_id("invoice-7", "r2") == "r1"
    assert store.claim_workflow_id("invoice-8", "r2") == "r2"


def test_close_run_records_the_end_and_repeats_harmlessly(store: MemoryStore) -> None:
    store.create_run(run("r1"))
    for _ in range(2):
        store.close_run("r1", COMPLETED, T0 + 5, result="42")
    closed = store.get_run("r1")
    assert closed is not None
    assert (closed.status, closed.closed_at, closed.result, closed.error) == (
        COMPLETED, T0 + 5, "42", None)
    store.create_run(run("r2"))
    store.close_run("r2", FAILED, T0 + 6, error=ERROR, next_run=None)
    assert store.get_run("r2").error == ERROR  # type: ignore[union-attr]
    store.close_run("missing", COMPLETED, T0)  # nothing to record it on
    assert store.get_run("missing") is None


def test_runs_newest_first_by_name_or_version_and_by_status(store: MemoryStore) -> None:
    store.create_run(run("a", "order@1", T0 + 1))
    store.create_run(run("b", "order@2", T0 + 3))
    store.create_run(run("c", "order@1", T0 + 2))
    store.create_run(run("d", "refund@1", T0 + 4))
    store.create_run(run("e", "order@1", T0 + 2))  # same time as c: the later-made first
    store.close_run("c", COMPLETED, T0 + 9)
    assert [r.run_id for r in store.runs("order")] == ["b", "e", "c", "a"]
    assert [r.run_id for r in store.runs("order@1")] == ["e", "c", "a"]
    assert [r.run_id for r in store.runs("order", OPEN)] == ["b", "e", "a"]
    assert [r.run_id for r in store.runs("order@1", COMPLETED)] == ["c"]
    assert sorted(r.run_id for r in store.runs()) == ["a", "b", "c", "d", "e"]
    assert [r.run_id for r in store.runs(status=COMPLETED)] == ["c"]
    assert list(store.runs("nothing")) == []


def test_runs_are_read_as_the_iteration_goes(store: MemoryStore) -> None:
    store.create_run(run("a", started_at=T0 + 2))
    store.create_run(run("b", started_at=T0 + 1))
    runs = store.runs("order")
    assert next(runs).run_id == "a"
    store.close_run("b", COMPLETED, T0 + 3)
    assert next(runs).status == COMPLETED


def test_delete_run_only_closed_runs_and_every_item(store: MemoryStore) -> None:
    store.create_run(run("r1", workflow_id="w"))
    store.claim_workflow_id("w", "r1")
    with pytest.raises(ConfigurationError, match="open"):
        store.delete_run(store.get_run("r1"))  # type: ignore[arg-type]
    store.add_fact("r1", WorkflowStarted("in"))
    store.commit("r1", 1, [WorkflowStarted("in")], T0)
    store.commit("r1", 2, [TaskScheduled("k", "c", "dep", "activity", "i")], T0)
    store.add_outcome("r1", TaskCompleted("k", "v"))
    store.open_attempts("r1", ["k"])
    store.claim("r1", "k", T0)
    store.consume("r1", store.read_inbox("r1"), 2)
    store.add_fact("r1", SignalReceived("s", "v", "id1"))
    store.close_run("r1", COMPLETED, T0 + 1, result="v")
    # 2 batches, sent, 1 waiting fact, done#k, attempt#k, and the run.
    assert store.delete_run(store.get_run("r1")) == 7  # type: ignore[arg-type]
    assert store.get_run("r1") is None
    assert store.read_batches("r1") == [] and store.read_inbox("r1") == []
    assert store.outcome_of("r1", "k") is None and store.sent_version("r1") == 0
    assert store.claim_workflow_id("w", "r9") == "r9"  # the id is free again


def test_delete_run_keeps_a_workflow_id_a_later_run_holds(store: MemoryStore) -> None:
    store.create_run(run("r1", workflow_id="w", status=COMPLETED))
    store.create_run(run("r2", workflow_id="w"))
    store.claim_workflow_id("w", "r2")
    assert store.delete_run(store.get_run("r1")) == 1  # type: ignore[arg-type]
    assert store.claim_workflow_id("w", "r3") == "r2"


def test_wait_closed_is_woken_by_close_run(clock: ManualClock, store: MemoryStore) -> None:
    store.create_run(run("r1"))
    waiter = Background(lambda: store.wait_closed("r1", 60))
    assert clock.wait_for_sleepers(1)
    store.close_run("r1", COMPLETED, T0, result="x")
    waiter.result()
    assert clock.now() == T0  # woken, not timed out


def test_wait_closed_gives_up_after_its_timeout(clock: ManualClock, store: MemoryStore) -> None:
    store.create_run(run("r1"))
    waiter = Background(lambda: store.wait_closed("r1", 60))
    assert clock.wait_for_sleepers(1)
    clock.advance(30)
    assert clock.wait_for_sleepers(1)
    assert not waiter.done()
    clock.advance(30)
    waiter.result()
    store.close_run("r1", COMPLETED, T0)
    store.wait_closed("r1", 60)  # closed already: returns at once


# -- the store: history ---------------------------------------------------------------

def test_commit_is_conditional_on_the_version(store: MemoryStore) -> None:
    started = WorkflowStarted("in")
    assert store.commit("r1", 1, [started], T0)
    assert not store.commit("r1", 1, [TimerFired("t")], T0 + 1)  # another decider won
    assert store.commit("r1", 2, [TimerFired("t")], T0 + 2)
    with pytest.raises(AssertionError, match="batch 4 after batch 2"):
        store.commit("r1", 4, [], T0)
    batches = store.read_batches("r1")
    assert [(b.version, b.events, b.committed_at) for b in batches] == [
        (1, [started], T0), (2, [TimerFired("t")], T0 + 2)]
    batches[0].events.append(TimerFired("scribble"))
    assert store.read_batches("r1")[0].events == [started]


def test_sent_version_is_recorded_by_consume(store: MemoryStore) -> None:
    assert store.sent_version("r1") == 0
    store.consume("r1", [], 3)
    assert store.sent_version("r1") == 3


# -- the store: inbox and attempts --------------------------------------------------------

def test_add_fact_is_idempotent_and_the_inbox_keeps_arrival_order(store: MemoryStore) -> None:
    # Stamps from different processes disagree with arrival: arrival order wins.
    facts: list[Fact] = [WorkflowStarted("in", at=T0 + 9),
                         SignalReceived("s", "1", "id1", at=T0 + 5),
                         TimerFired("t", at=T0 + 1), CancelRequested("why", at=T0)]
    assert all(store.add_fact("r1", f) for f in facts)
    assert not store.add_fact("r1", SignalReceived("s", "other value", "id1"))
    assert not store.add_fact("r1", CancelRequested("another reason"))
    inbox = store.read_inbox("r1")
    assert [f for _, f in inbox] == facts
    assert [k for k, _ in inbox] == ["fact#start", "fact#signal:id1", "fact#timer:t",
                                     "fact#cancel"]
    store.consume("r1", inbox[1:3], 1)
    assert [f for _, f in store.read_inbox("r1")] == [facts[0], facts[3]]
    assert store.add_fact("r1", TimerFired("t"))  # consumed, so new: it goes last
    assert [k for k, _ in store.read_inbox("r1")][-1] == "fact#timer:t"


def test_first_outcome_wins_a_late_one_is_kept_and_a_duplicate_dropped(
        store: MemoryStore) -> None:
    timed_out = TaskTimedOut("k", "start_to_close")
    assert store.add_outcome("r1", timed_out)
    assert not store.add_outcome("r1", TaskTimedOut("k", "heartbeat"))  # same kind: dropped
    assert store.add_outcome("r1", TaskCompleted("k", "v"))  # a result after the timeout
    assert not store.add_outcome("r1", TaskCompleted("k", "v"))
    assert store.add_outcome("r1", TaskFailed("k", ERROR))  # another kind: late too
    assert store.read_inbox("r1") == [
        ("fact#k", timed_out), ("fact#k#late#TaskCompleted", TaskCompleted("k", "v")),
        ("fact#k#late#TaskFailed", TaskFailed("k", ERROR))]
    with pytest.raises(ValueError, match="outcome"):
        store.add_outcome("r1", TimerFired("t"))


def test_outcome_of_follows_an_attempt_from_inbox_to_history(store: MemoryStore) -> None:
    assert store.outcome_of("r1", "k") is None
    store.add_outcome("r1", TaskCompleted("k", "v"))
    store.add_outcome("r1", TaskTimedOut("k", "heartbeat"))
    assert store.outcome_of("r1", "k") == "TaskCompleted"
    store.consume("r1", store.read_inbox("r1"), 1)
    assert store.outcome_of("r1", "k") == IN_HISTORY
    assert store.read_inbox("r1") == []
    assert store.outcome_of("r1", "other") is None


# -- standard queues ----------------------------------------------------------------------

def test_send_receive_acknowledge(queues: MemoryQueues) -> None:
    send(queues, TASKS, "a", "b", "c")
    assert queues.depth(TASKS) == (3, 0, 0)
    first = receive(queues, n=2)
    assert bodies(first) == ["a", "b"] and [m.receive_count for m in first] == [1, 1]
    assert len({m.receipt for m in first}) == 2
    assert queues.depth(TASKS) == (1, 2, 0)
    assert queues.acknowledge(TASKS, [m.receipt for m in first]) == []
    assert bodies(receive(queues)) == ["c"]
    assert queues.depth(TASKS) == (0, 1, 0)
    assert receive(queues) == []
    assert queues.depth("never-used") == (0, 0, 0)


def test_a_lease_that_ends_makes_the_message_visible_again(clock: ManualClock,
                                                           queues: MemoryQueues) -> None:
    send(queues, TASKS, "a")
    (first,) = receive(queues, lease=30)
    clock.advance(29.9)
    assert receive(queues) == []
    clock.advance(0.1)
    assert queues.depth(TASKS) == (1, 0, 0)
    (second,) = receive(queues, lease=30)
    assert (second.id, second.body, second.receive_count) == (first.id, "a", 2)
    assert second.receipt != first.receipt
    # The first delivery's receipt is stale now: it neither extends nor deletes.
    assert queues.extend(TASKS, [first.receipt], 30) == [first.receipt]
    assert queues.acknowledge(TASKS, [first.receipt]) == [first.receipt]
    assert queues.depth(TASKS) == (0, 1, 0)
    assert queues.acknowledge(TASKS, [second.receipt, second.receipt]) == [second.receipt]


def test_a_receipt_whose_lease_ended_fails_even_before_redelivery(
        clock: ManualClock, queues: MemoryQueues) -> None:
    send(queues, TASKS, "a")
    (message,) = receive(queues, lease=10)
    clock.advance(10)
    assert queues.acknowledge(TASKS, [message.receipt]) == [message.receipt]
    assert queues.depth(TASKS) == (1, 0, 0)


def test_extend_keeps_a_message_hidden_and_zero_shows_it(clock: ManualClock,
                                                         queues: MemoryQueues) -> None:
    send(queues, TASKS, "a")
    (message,) = receive(queues, lease=10)
    clock.advance(8)
    assert queues.extend(TASKS, [message.receipt], 10) == []
    clock.advance(9)  # 17 s after the receive: past the first lease, not the second
    assert receive(queues) == []
    assert queues.depth(TASKS) == (0, 1, 0)
    assert queues.extend(TASKS, [message.receipt], 0) == []
    assert queues.depth(TASKS) == (1, 0, 0)
    (again,) = receive(queues)
    assert again.receive_count == 2
    assert queues.acknowledge(TASKS, [again.receipt]) == []
    with pytest.raises(ValueError):
        queues.extend(TASKS, [again.receipt], -1)


def test_delays_hold_messages_back_up_to_the_limit(clock: ManualClock,
                                                   queues: MemoryQueues) -> None:
    queues.send(TIMERS, [Outgoing("late", delay=10), Outgoing("later", delay=900),
                         Outgoing("now")])
    assert queues.depth(TIMERS) == (1, 0, 2)
    assert bodies(receive(queues, TIMERS, lease=3600)) == ["now"]
    clock.advance(10)
    assert bodies(receive(queues, TIMERS, lease=3600)) == ["late"]
    clock.advance(890)
    assert bodies(receive(queues, TIMERS, lease=3600)) == ["later"]
    with pytest.raises(ServiceError, match="delay"):
        queues.send(TIMERS, [Outgoing("fine"), Outgoing("too late", delay=900.5)])
    with pytest.raises(ServiceError):
        queues.send(TIMERS, [Outgoing("negative", delay=-1)])
    assert queues.depth(TIMERS) == (0, 3, 0)  # the refused batch sent nothing


def test_max_receives_moves_a_message_to_the_dead_letter_queue(clock: ManualClock) -> None:
    queues = MemoryQueues(clock, max_receives=2)
    send(queues, TASKS, "poison")
    for count in (1, 2):
        got = receive(queues, n=1, lease=5)
        assert (bodies(got), got[0].receive_count) == (["poison"], count)
        clock.advance(5)  # its holder died
    send(queues, TASKS, "fine")
    assert bodies(receive(queues)) == ["fine"]  # poison went instead of coming a third time
    assert queues.dead_letters(TASKS) == [("poison", "received 2 times (max_receives=2)")]
    assert queues.depth(dead_letter_queue(TASKS)) == (1, 0, 0)
    assert queues.depth(TASKS) == (0, 1, 0)
    assert queues.redrive(TASKS) == 1
    assert queues.dead_letters(TASKS) == []
    (back,) = receive(queues, n=1)
    assert (back.body, back.receive_count) == ("poison", 1)
    assert queues.redrive(TASKS) == 0


def test_max_receives_none_never_dead_letters(clock: ManualClock) -> None:
    queues = MemoryQueues(clock, max_receives=None)
    send(queues, TASKS, "a")
    for count in range(1, 21):
        (got,) = receive(queues, lease=1)
        assert got.receive_count == count
        clock.advance(1)
    assert queues.dead_letters(TASKS) == []


def test_dead_letter_moves_a_message_with_its_reason(clock: ManualClock,
                                                     queues: MemoryQueues) -> None:
    send(queues, TASKS, "junk", "stale")
    junk, stale = receive(queues, lease=10)
    queues.dead_letter(TASKS, junk, "not a TaskMessage")
    assert queues.depth(TASKS) == (0, 1, 0)
    clock.advance(10)  # the lease of the other was lost before it was dead-lettered:
    queues.dead_letter(TASKS, stale, "bad")  # a copy goes, the message comes back
    assert queues.dead_letters(TASKS) == [("junk", "not a TaskMessage"), ("stale", "bad")]
    assert bodies(receive(queues)) == ["stale"]
    assert queues.redrive(TASKS) == 2
    assert sorted(bodies(receive(queues))) == ["junk", "stale"]


# -- the FIFO decision queue ---------------------------------------------------------------

def test_fifo_gives_a_receive_a_groups_messages_in_order_then_holds_the_group(
        clock: ManualClock, queues: MemoryQueues) -> None:
    for why in ("1", "2", "3"):
        notify(queues, "a", why)
    notify(queues, "b", "1")
    first = receive(queues, DECISIONS, n=2, lease=10)
    assert bodies(first) == ["a:1", "a:2"]  # as many of one group as it can, as SQS does
    assert queues.depth(DECISIONS) == (2, 2, 0)
    (other,) = receive(queues, DECISIONS, lease=20)
    assert other.body == "b:1"  # a:3 waits behind a:1 and a:2
    queues.acknowledge(DECISIONS, [first[0].receipt])
    assert receive(queues, DECISIONS) == []  # a:2 is still in flight
    clock.advance(10)  # a:2's holder died: a:2 comes again, before a:3
    again = receive(queues, DECISIONS, lease=10)
    assert bodies(again) == ["a:2", "a:3"]
    assert [m.receive_count for m in again] == [2, 1]
    clock.advance(10)  # and so did b:1's (received first), and a's second holder
    assert bodies(receive(queues, DECISIONS)) == ["b:1", "a:2", "a:3"]


def test_fifo_messages_whose_leases_end_together_keep_their_order(clock: ManualClock,
                                                                  queues: MemoryQueues) -> None:
    for why in ("1", "2", "3"):
        notify(queues, "a", why)
    assert bodies(receive(queues, DECISIONS, lease=10)) == ["a:1", "a:2", "a:3"]
    clock.advance(10)
    again = receive(queues, DECISIONS, n=2, lease=10)
    assert bodies(again) == ["a:1", "a:2"]
    queues.extend(DECISIONS, [again[1].receipt], 0)  # a:2 let go at once: behind a:1 still
    assert receive(queues, DECISIONS) == []
    queues.acknowledge(DECISIONS, [again[0].receipt])
    assert bodies(receive(queues, DECISIONS)) == ["a:2", "a:3"]


def test_fifo_drops_a_repeated_dedup_id_for_five_minutes(clock: ManualClock,
                                                         queues: MemoryQueues) -> None:
    notify(queues, "a", "start")
    notify(queues, "a", "start")
    (message,) = receive(queues, DECISIONS)
    queues.acknowledge(DECISIONS, [message.receipt])
    clock.advance(DEDUP_WINDOW - 1)
    notify(queues, "a", "start")  # deleted, but still inside the window
    assert queues.depth(DECISIONS) == (0, 0, 0)
    clock.advance(1)
    notify(queues, "a", "start")
    assert bodies(receive(queues, DECISIONS)) == ["a:start"]
    queues.send(DECISIONS, [Outgoing("no dedup id", group="b"), Outgoing("no dedup id", group="b")])
    assert queues.depth(DECISIONS) == (2, 1, 0)


def test_fifo_messages_need_a_group_and_have_no_delays(queues: MemoryQueues) -> None:
    with pytest.raises(ServiceError, match="group"):
        queues.send(DECISIONS, [Outgoing("x")])
    with pytest.raises(ServiceError, match="delay"):
        queues.send(DECISIONS, [Outgoing("x", group="g", delay=5)])


def test_fifo_dead_letters_and_redrive_keep_the_group(clock: ManualClock) -> None:
    queues = MemoryQueues(clock, max_receives=1)
    notify(queues, "a", "1")
    notify(queues, "a", "2")
    receive(queues, DECISIONS, n=1, lease=5)
    clock.advance(5)
    # a:1 goes to the dead-letter queue, which frees its group for a:2.
    (next_one,) = receive(queues, DECISIONS, lease=5)
    assert next_one.body == "a:2"
    assert queues.redrive(DECISIONS) == 1  # past the dedup window: a redrive delivers
    queues.acknowledge(DECISIONS, [next_one.receipt])
    assert bodies(receive(queues, DECISIONS)) == ["a:1"]


# -- waiting, join and close -------------------------------------------------------------

def test_a_waiting_receive_is_woken_by_a_send(clock: ManualClock, queues: MemoryQueues) -> None:
    waiting = Background(lambda: receive(queues, wait=20))
    assert clock.wait_for_sleepers(1)
    send(queues, TASKS, "hello")
    assert bodies(waiting.result()) == ["hello"]
    assert clock.now() == T0


def test_a_waiting_receive_times_out_or_gets_a_due_message(clock: ManualClock,
                                                          queues: MemoryQueues) -> None:
    empty = Background(lambda: receive(queues, wait=20))
    assert clock.wait_for_sleepers(1)
    clock.advance(20)
    assert empty.result() == []
    queues.send(TIMERS, [Outgoing("due", delay=5)])
    due = Background(lambda: receive(queues, TIMERS, wait=20))
    assert clock.wait_for_sleepers(1)
    clock.advance(5)
    assert bodies(due.result()) == ["due"]


def test_a_waiting_receive_looks_again_when_a_sooner_delay_ends(
        clock: ManualClock, queues: MemoryQueues) -> None:
    waiting = Background(lambda: receive(queues, TIMERS, wait=100))
    assert clock.wait_for_sleepers(1)
    assert clock.next_deadline() == T0 + 100
    queues.send(TIMERS, [Outgoing("due", delay=5)])
    # Woken by the send (an advance would wake it anyway): it waits only until
    # the message shows now.  The registry is notified as waiters come and go.
    with clock._registry:
        assert clock._registry.wait_for(lambda: clock.next_deadline() == T0 + 5, 10)
    clock.advance(5)
    assert bodies(waiting.result()) == ["due"]


def test_each_message_sent_reaches_a_waiting_receiver(clock: ManualClock,
                                                      queues: MemoryQueues) -> None:
    waiting = [Background(lambda: receive(queues, n=1, wait=100)) for _ in range(3)]
    assert clock.wait_for_sleepers(3)
    send(queues, TASKS, "a")
    send(queues, TASKS, "b")
    queues.send(TASKS, [Outgoing("c")])
    assert sorted(body for w in waiting for body in bodies(w.result())) == ["a", "b", "c"]
    assert clock.now() == T0  # all woken by the sends, none by time


def test_acknowledging_a_fifo_message_wakes_a_receiver_for_the_next(
        clock: ManualClock, queues: MemoryQueues) -> None:
    notify(queues, "a", "1")
    notify(queues, "a", "2")
    (first,) = receive(queues, DECISIONS, n=1)
    waiting = Background(lambda: receive(queues, DECISIONS, wait=100))
    assert clock.wait_for_sleepers(1)
    assert queues.acknowledge(DECISIONS, [first.receipt]) == []
    assert bodies(waiting.result()) == ["a:2"]
    assert clock.now() == T0


def test_close_wakes_every_waiting_receiver(clock: ManualClock, queues: MemoryQueues) -> None:
    waiting = [Background(functools.partial(receive, queues, q, wait=1000))
               for q in (TASKS, DECISIONS)]
    assert clock.wait_for_sleepers(2)
    queues.close()
    assert [w.result() for w in waiting] == [[], []]
    send(queues, TASKS, "after")
    assert receive(queues, wait=1000) == []  # closed: at once


def test_join_waits_for_every_message_to_be_done(clock: ManualClock,
                                                 queues: MemoryQueues) -> None:
    assert queues.join(0)
    send(queues, TASKS, "a")
    queues.send(TIMERS, [Outgoing("t", delay=30)])
    assert not queues.join(0)
    (message,) = receive(queues)
    joined = Background(lambda: queues.join(delayed=False))
    assert clock.wait_for_sleepers(1)
    queues.acknowledge(TASKS, [message.receipt])
    assert joined.result()  # the delayed timer does not count
    everything = Background(lambda: queues.join(100))
    assert clock.wait_for_sleepers(1)
    clock.advance(30)  # the timer shows, and nobody takes it
    assert clock.wait_for_sleepers(1)
    (timer,) = receive(queues, TIMERS)
    queues.acknowledge(TIMERS, [timer.receipt])
    assert everything.result()


def test_join_times_out_on_the_clock(clock: ManualClock, queues: MemoryQueues) -> None:
    send(queues, TASKS, "a")
    joined = Background(lambda: queues.join(60))
    assert clock.wait_for_sleepers(1)
    clock.advance(60)
    assert joined.result() is False
    queues.dead_letter(TASKS, receive(queues)[0], "bad")
    assert queues.join(0)  # dead letters are parked, not work


# -- faults ------------------------------------------------------------------------------

def test_drop_loses_sends(clock: ManualClock) -> None:
    faults = Faults(1, drop=1.0)
    queues = MemoryQueues(clock, faults=faults)
    send(queues, TASKS, "a", "b")
    assert queues.depth(TASKS) == (0, 0, 0)
    assert faults.log == [f"drop {TASKS} m1", f"drop {TASKS} m2"]


def test_duplicate_delivers_a_message_twice(clock: ManualClock) -> None:
    faults = Faults(1, duplicate=1.0)
    queues = MemoryQueues(clock, faults=faults)
    send(queues, TASKS, "a")
    got = receive(queues)
    assert bodies(got) == ["a", "a"] and got[0].id == got[1].id
    assert got[0].receipt != got[1].receipt
    assert faults.log == [f"duplicate {TASKS} m1"]
    notify(queues, "r", "x")  # a FIFO duplicate comes behind the first, in its group
    assert bodies(receive(queues, DECISIONS, n=1)) == ["r:x"]
    assert queues.depth(DECISIONS) == (1, 1, 0)


def test_delay_holds_standard_messages_back(clock: ManualClock) -> None:
    faults = Faults(1, delay=1.0, max_extra_delay=10)
    queues = MemoryQueues(clock, faults=faults)
    send(queues, TASKS, "a")
    notify(queues, "r", "x")  # FIFO messages are never delayed
    assert queues.depth(TASKS) == (0, 0, 1)
    assert queues.depth(DECISIONS) == (1, 0, 0)
    (entry,) = faults.log
    assert entry.startswith(f"delay {TASKS} m1 +")
    clock.advance(10)
    assert bodies(receive(queues)) == ["a"]


def test_reorder_delivers_out_of_order(clock: ManualClock) -> None:
    faults = Faults(3, reorder=1.0)
    queues = MemoryQueues(clock, faults=faults)
    texts = [str(i) for i in range(6)]
    send(queues, TASKS, *texts)
    got = bodies(receive(queues))
    assert sorted(got) == texts and got != texts
    assert len(faults.log) == 5 and all(e.startswith("reorder ") for e in faults.log)


def test_expire_leases_makes_in_flight_messages_visible(clock: ManualClock) -> None:
    faults = Faults(0)
    queues = MemoryQueues(clock, faults=faults)
    send(queues, TASKS, "a", "b")
    notify(queues, "r", "1")
    notify(queues, "r", "2")
    held = receive(queues, lease=300)
    (note,) = receive(queues, DECISIONS, n=1, lease=300)
    assert faults.expire_leases(TASKS) == 2
    assert queues.depth(TASKS) == (2, 0, 0)
    assert queues.acknowledge(TASKS, [m.receipt for m in held]) == [m.receipt for m in held]
    assert [m.receive_count for m in receive(queues)] == [2, 2]
    assert faults.expire_leases() == 3
    assert bodies(receive(queues, DECISIONS)) == ["r:1", "r:2"]  # r:1 still first
    assert faults.log == [f"expire {TASKS} 2", "expire * 3"]
    assert note.body == "r:1"


def scenario(seed: int) -> tuple[list[str], list[str]]:
    """A mixed workload under every fault: what was delivered, and the fault log."""
    clock = ManualClock(T0)
    faults = Faults(seed, drop=0.2, duplicate=0.2, delay=0.3, max_extra_delay=20, reorder=0.5,
                    crash_probability=0.3)
    queues = MemoryQueues(clock, faults=faults)
    delivered: list[str] = []
    for step in range(40):
        send(queues, TASKS, f"task{step}")
        notify(queues, f"run{step % 3}", str(step))
        try:
            faults.checkpoint("decider.committed")
        except SimulatedCrash:
            faults.expire_leases()
        for queue in (TASKS, DECISIONS):
            got = receive(queues, queue, n=3, lease=15)
            delivered += bodies(got)
            queues.acknowledge(queue, [m.receipt for m in got[:2]])
        clock.advance(5)
    return delivered, faults.log


def test_every_fault_is_deterministic_from_the_seed() -> None:
    first = scenario(7)
    assert first == scenario(7)
    assert first != scenario(8)
    kinds = {entry.split()[0] for entry in first[1]}
    assert kinds == {"drop", "duplicate", "delay", "reorder", "crash", "expire"}


def test_faults_check_their_probabilities() -> None:
    with pytest.raises(ValueError, match="probability"):
        Faults(0, drop=1.5)


def test_checkpoint_crashes_where_armed() -> None:
    faults = Faults(0)
    faults.checkpoint("decider.committed")
    faults.crash_at("decider.committed", times=2)
    for _ in range(2):
        with pytest.raises(SimulatedCrash, match="decider.committed"):
            faults.checkpoint("decider.committed")
    faults.checkpoint("decider.committed")
    faults.checkpoint("decider.sent")
    assert faults.steps_seen == {"decider.committed": 4, "decider.sent": 1}
    assert faults.log == ["crash decider.committed"] * 2


def test_checkpoint_crashes_at_random_by_the_seed() -> None:
    def crashes(seed: int) -> list[bool]:
        faults = Faults(seed, crash_probability=0.5)
        out = []
        for _ in range(30):
            try:
                faults.checkpoint("step")
                out.append(False)
            except SimulatedCrash:
                out.append(True)
        assert faults.log.count("crash step (random)") == sum(out)
        return out

    assert crashes(1) == crashes(1)
    assert True in crashes(1) and False in crashes(1)
    assert Faults(1, crash_probability=1.0).crash_probability == 1.0
    with pytest.raises(SimulatedCrash):
        Faults(1, crash_probability=1.0).checkpoint("any")


# -- the backend --------------------------------------------------------------------------

def test_memory_backend_wires_the_parts(clock: ManualClock) -> None:
    faults = Faults(0)
    backend = memory_backend(clock=clock, lease=45.0, max_receives=3, faults=faults)
    assert (backend.name, backend.lease, backend.remote) == ("memory", 45.0, False)
    assert backend.clock is clock and backend.faults is faults
    assert backend.queues.max_receives == 3 and backend.queues.faults is faults
    faults.crash_at("worker.reported")
    with pytest.raises(SimulatedCrash):
        backend.checkpoint("worker.reported")
    backend.store.create_run(run("r1"))
    assert backend.store.get_run("r1") is not None
    waiting = Background(lambda: backend.queues.receive(TIMERS, max_messages=1, wait=100,
                                                        lease=10))
    assert clock.wait_for_sleepers(1)
    backend.close()
    assert waiting.result() == []


def test_memory_backend_join_ignores_delayed_timers(clock: ManualClock) -> None:
    backend = memory_backend(clock=clock)
    assert backend.join is not None
    backend.queues.send(TIMERS, [Outgoing("timeout check", delay=900)])
    assert backend.join(0)  # an armed timer is neither waiting nor held
    backend.queues.send(TASKS, [Outgoing("task")])
    assert not backend.join(0)
    backend.close()


def test_memory_backend_defaults() -> None:
    backend = memory_backend()
    assert isinstance(backend.clock, RealClock) and backend.faults is None
    backend.checkpoint("anything")  # a no-op without faults
    assert backend.queues.max_receives == DEFAULT_MAX_RECEIVES and backend.lease == 60.0
    backend.close()


# -- throughput, by count ----------------------------------------------------------------

def test_ten_thousand_messages_come_through_exactly_once(clock: ManualClock,
                                                         queues: MemoryQueues) -> None:
    count = 10_000
    for start in range(0, count, 10):
        queues.send(TASKS, [Outgoing(str(i)) for i in range(start, start + 10)])
    seen: list[str] = []
    while True:
        got = receive(queues, lease=60)
        if not got:
            break
        seen += bodies(got)
        assert queues.acknowledge(TASKS, [m.receipt for m in got]) == []
    assert seen == [str(i) for i in range(count)]
    assert queues.depth(TASKS) == (0, 0, 0)
    clock.advance(60)  # the stale lease entries of acknowledged messages change nothing
    assert queues.depth(TASKS) == (0, 0, 0) and queues.join(0)


def test_many_fifo_groups_come_through_in_order(queues: MemoryQueues) -> None:
    for i in range(2_000):
        notify(queues, f"run{i % 100}", str(i))
    seen: dict[str, list[int]] = {}
    while got := receive(queues, DECISIONS):
        for message in got:
            run_id, why = message.body.split(":")
            seen.setdefault(run_id, []).append(int(why))
        queues.acknowledge(DECISIONS, [m.receipt for m in got])
    assert len(seen) == 100
    assert all(whys == sorted(whys) and len(whys) == 20 for whys in seen.values())
