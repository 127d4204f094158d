"""Durable timers past the queue's delay limit, decisions that batch completions,
and held notifications' leases: on both backends, from one test body."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowy.backends.base import DECISIONS, TIMERS
from flowy.backends.memory import ManualClock, memory_backend
from flowy.core.events import TaskCompleted, TaskTimedOut
from flowy.core.replay import Replayer
from flowy.worker.committer import Committer
from flowy.worker.leases import HeldMessages
from flowy.worker.messages import TimerMessage, notification, timer_delay
from flowy.worker.timers import TimerKeeper
from tests.aws_support import stack_backend, wait_for
from tests.engines import BACKENDS, REGISTRY


def _open(_run_id: str) -> bool:
    return True  # as a decider that knows the run to be open


def test_timer_delay_is_capped() -> None:
    assert timer_delay(100.0 + 3600, 100.0, 900) == 900
    assert timer_delay(100.0 + 1.2, 100.0, 900) == 1.2000000000000028
    assert timer_delay(99.0, 100.0, 900) == 0


def test_timer_past_the_longest_delay_is_re_armed_not_fired(backend: Any) -> None:
    keeper = TimerKeeper(backend, _open)
    now = backend.clock.now()
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=now + 3600))
    assert backend.queues.receive(TIMERS, max_messages=10, wait=0, lease=30) == []  # delayed
    assert backend.store.read_inbox("r1") == []  # nothing fired yet
    keeper.handle(TimerMessage(run="r1", key="wait-0-1.backoff", kind="timer",
                               fire_at=now - 1))
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r1")] == ["TimerFired"]


def test_a_repeated_timeout_notifies_again(backend: Any) -> None:
    """The first handler of a timeout recorded it and died before notifying."""
    keeper = TimerKeeper(backend, _open)
    backend.store.add_outcome("r2", TaskTimedOut("t-0-1", "start_to_close", at=1.0))
    keeper.handle(TimerMessage(run="r2", key="t-0-1", kind="start_to_close", fire_at=0.0))
    notes = backend.queues.receive(DECISIONS, max_messages=10, wait=1, lease=30)
    assert [json.loads(m.body)["run"] for m in notes] == ["r2"]
    assert [type(f).__name__ for _, f in backend.store.read_inbox("r2")] == ["TaskTimedOut"]


def test_completions_that_arrive_together_share_a_decision(make_engine: Any) -> None:
    """Thirty completions wait in the inbox before a decider runs: one decision takes them all."""
    engine = make_engine(serve=False)
    n = 30
    handle = engine.start("fanout", n)
    Committer(REGISTRY, engine.backend).handle(Replayer(), handle.run_id)  # schedules the tasks
    engine.worker(concurrency=10)
    store = engine.backend.store
    wait_for(lambda: len(store.read_inbox(handle.run_id)) == n, 60, "every task's completion")
    engine.decider()
    assert handle.result(timeout=60) == n * (n + 1) // 2
    batches = store.read_batches(handle.run_id)
    # The fan-out, the n completions with the total's scheduling, the total's completion.
    assert [sum(isinstance(e, TaskCompleted) for e in b.events) for b in batches] == [0, n, 1]


@pytest.fixture(params=BACKENDS)
def leased(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Callable[[float], None]]]:
    """A backend whose leases last 10 s, and how to let time pass on it: a
    manual clock in memory, the wall clock on AWS."""
    if request.param == "memory":
        clock = ManualClock()
        memory = memory_backend(clock=clock, lease=10.0)
        yield memory, clock.advance
        memory.close()
    else:
        aws = stack_backend(request.getfixturevalue("aws_endpoint"), visibility_timeout=10)
        yield aws, time.sleep


def test_held_messages_keep_their_lease_until_let_go(leased: tuple[Any, Callable[[float], None]]
                                                   ) -> None:
    """A notification held by a slow decision must not reappear to other deciders;
    once let go, its lease is no longer extended."""
    backend, let_pass = leased
    queues = backend.queues
    held = HeldMessages(backend)
    queues.send(DECISIONS, [notification("run-1", "news"), notification("run-2", "news")])
    received = queues.receive(DECISIONS, max_messages=10, wait=0, lease=10)
    assert len(received) == 2
    for message in received:
        held.hold(DECISIONS, message.receipt)
    held.let_go(DECISIONS, received[1].receipt)  # its decision is done, say
    let_pass(4)
    held.renew()  # a third through its 10 s lease: extended by 10 s
    assert held.held() == [(DECISIONS, received[0].receipt)]
    let_pass(7.5)  # past the first lease, inside the renewed one
    again = queues.receive(DECISIONS, max_messages=10, wait=0, lease=10)
    assert [json.loads(m.body)["run"] for m in again] == ["run-2"]
