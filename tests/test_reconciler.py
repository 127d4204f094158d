"""The reconciler: runs whose every wake-up was lost are still decided (both backends).

Item 2 of issue "Durable under crashes".  A decider whose clock is an hour
ahead plays the reconciler an hour later: the facts and timers the store
indexed by then are overdue, as they would be had their messages been lost.
On AWS this reads the table's sparse ``runs_to_wake`` index on the emulator.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from flowy import FlowyClient
from flowy.backends.base import DECISIONS, TIMERS
from flowy.core.events import TaskScheduled, TimerFired, TimerStarted
from flowy.core.replay import Replayer
from flowy.worker.committer import Committer
from flowy.worker.decider import Decider
from tests.engines import REGISTRY
from tests.scenarios import aws_workflow


class _HourAhead:
    def now(self) -> float:
        return time.time() + 3600

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


def _lose_every_message(backend: Any, queue: str, wait: float = 0) -> int:
    """Take and delete what waits on ``queue`` (what is delayed, within ``wait`` seconds)."""
    lost = 0
    while messages := backend.queues.receive(queue, max_messages=10, wait=wait, lease=60):
        backend.queues.acknowledge(queue, [m.receipt for m in messages])
        lost += len(messages)
        wait = 0
    return lost


def _deciders(backend: Any) -> tuple[Decider, Decider]:
    """A decider now, and one an hour later."""
    later = dataclasses.replace(backend, clock=_HourAhead())
    return (Decider(REGISTRY, backend, threads=0, poll_wait=0),
            Decider(REGISTRY, later, threads=0, poll_wait=0))


def test_a_run_whose_notification_was_lost_is_decided(backend: Any) -> None:
    client = FlowyClient(backend)
    handle = client.start(aws_workflow("example"), 1, 2)
    assert _lose_every_message(backend, DECISIONS) == 1
    now, later = _deciders(backend)
    assert now.reconcile() == 0  # nothing is overdue yet: a pass finds nothing
    assert later.reconcile() == 1
    scheduled = [e.key for e in client.history(handle.run_id) if isinstance(e, TaskScheduled)]
    assert scheduled == ["square-0-1", "square-1-1"]
    assert later.reconcile() == 0  # decided: the run waits for nothing it can lose


def test_a_run_whose_timer_message_was_lost_has_its_timer_fired(backend: Any) -> None:
    client = FlowyClient(backend)
    handle = client.start(aws_workflow("sleep_then_call"), 1)
    Committer(REGISTRY, backend).handle(Replayer(), handle.run_id)
    [timer] = [e for e in client.history(handle.run_id) if isinstance(e, TimerStarted)]
    now, later = _deciders(backend)
    assert now.reconcile() == 0  # the timer is not overdue
    assert _lose_every_message(backend, TIMERS, wait=10) == 1
    assert later.reconcile() == 1  # it is an hour overdue: fired
    Committer(REGISTRY, backend).handle(Replayer(), handle.run_id)
    history = client.history(handle.run_id)
    assert [e.key for e in history if isinstance(e, TimerFired)] == [timer.key]
    assert [e.dependency for e in history if isinstance(e, TaskScheduled)] == ["identity"]
    assert later.reconcile() == 0  # its wake-up went with the timer


def test_a_batch_committed_but_never_sent_is_sent(backend: Any) -> None:
    """A decider died after its commit, and every message about the run is gone:
    the inbox's facts, still there, wake it, and the batch goes out."""
    client = FlowyClient(backend)
    handle = client.start(aws_workflow("example"), 1, 2)
    committer = Committer(REGISTRY, backend)
    state = committer._state(handle.run_id)
    assert state is not None
    fresh = [fact for _, fact in backend.store.read_inbox(handle.run_id)]
    assert backend.store.commit(handle.run_id, 1, fresh, time.time())  # and it dies here
    _lose_every_message(backend, DECISIONS)
    _now, later = _deciders(backend)
    assert later.reconcile() == 1
    assert backend.store.sent_version(handle.run_id) == 1
    assert backend.store.read_inbox(handle.run_id) == []
