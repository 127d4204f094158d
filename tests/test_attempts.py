"""Attempts in the store, on both backends: opened by the decider, claimed by
a worker before it runs one, heartbeated, withdrawn when their run closes;
refused facts set aside; the items of no run found and deleted."""

from __future__ import annotations

import uuid
from typing import Any

from flowy.core.events import SignalReceived, TaskCompleted, TimerFired, WorkflowStarted
from flowy.core.protocol import Beat, attempt_id
from flowy.core.runs import COMPLETED, IN_HISTORY, RunRecord

T0 = 1_000.0


def _run(backend: Any) -> str:
    run_id = uuid.uuid4().hex
    backend.store.create_run(RunRecord(run_id, "w@1", started_at=T0))
    return run_id


def test_an_attempt_is_claimed_once_and_again_only_when_its_message_came_back(
        backend: Any) -> None:
    store, run_id = backend.store, _run(backend)
    attempt = attempt_id("a-0-1", "ab" * 16)
    assert store.claim(run_id, attempt, T0) is None  # not open yet: not run
    store.open_attempts(run_id, [attempt])
    assert store.get_beat(run_id, attempt) is None
    assert store.claim(run_id, attempt, T0) == 1
    assert store.get_beat(run_id, attempt) == Beat(T0, T0)
    assert store.claim(run_id, attempt, T0 + 1) == 0  # a second message of it: not run
    assert store.claim(run_id, attempt, T0 + 2, again=True) == 2  # its worker died
    assert store.get_beat(run_id, attempt) == Beat(T0 + 2, T0 + 2)
    # Opening it again (a batch sent again) keeps its claim.
    store.open_attempts(run_id, [attempt], again=True)
    assert store.claim(run_id, attempt, T0 + 3) == 0
    # Without its token, no one claims it.
    assert store.claim(run_id, "a-0-1", T0) is None
    assert store.claim(run_id, attempt_id("a-0-1", "cd" * 16), T0) is None


def test_heartbeats_keep_the_start_and_the_last_details(backend: Any) -> None:
    store, run_id, attempt = backend.store, _run(backend), "h-0-1@" + "1" * 32
    store.record_beat(run_id, attempt, T0)  # not claimed: nothing is made
    assert store.get_beat(run_id, attempt) is None
    store.open_attempts(run_id, [attempt])
    store.claim(run_id, attempt, T0)
    store.record_beat(run_id, attempt, T0 + 5, "half way")
    store.record_beat(run_id, attempt, T0 + 7)  # no details: the last ones stay
    assert store.get_beat(run_id, attempt) == Beat(T0, T0 + 7, "half way")


def test_a_withdrawn_attempt_is_not_claimed(backend: Any) -> None:
    store, run_id = backend.store, _run(backend)
    left, running = "x-0-1@" + "2" * 32, "y-0-1@" + "3" * 32
    store.open_attempts(run_id, [left, running])
    store.claim(run_id, running, T0)
    store.close_attempts(run_id, [left, running])
    assert store.claim(run_id, left, T0) is None
    assert store.claim(run_id, running, T0, again=True) is None
    store.record_beat(run_id, running, T0 + 1)  # the run closed under it: no error
    assert store.get_beat(run_id, running) is None


def test_outcomes_are_kept_by_attempt_token_and_all(backend: Any) -> None:
    store, run_id = backend.store, _run(backend)
    token = "4" * 32
    real = TaskCompleted("a-0-1", "real", at=T0, token=token)
    forged = TaskCompleted("a-0-1", "forged", at=T0 - 1)  # no token
    assert store.add_outcome(run_id, forged)
    assert store.add_outcome(run_id, real)  # the forged one does not take its place
    attempt = attempt_id("a-0-1", token)
    assert store.outcome_of(run_id, attempt) == "TaskCompleted"
    inbox = store.read_inbox(run_id)
    assert sorted(f.result for _, f in inbox) == ["forged", "real"]  # type: ignore[union-attr]
    store.consume(run_id, [item for item in inbox if item[1] == real
                           and item[1].token == token], 1)  # type: ignore[union-attr]
    assert store.outcome_of(run_id, attempt) == IN_HISTORY
    assert store.outcome_of(run_id, "a-0-1") == "TaskCompleted"  # the forged one waits


def test_refused_facts_are_set_aside_with_their_reason(backend: Any) -> None:
    store, run_id = backend.store, _run(backend)
    store.add_fact(run_id, TimerFired("t", at=T0))
    store.add_fact(run_id, SignalReceived("s", "[]", "id1", at=T0))
    (timer_item, _), signal_item = store.read_inbox(run_id)
    store.set_aside(run_id, [(timer_item, "the run has no timer t waiting to fire")])
    assert store.read_inbox(run_id) == [signal_item]
    store.set_aside(run_id, [(timer_item, "again")])  # gone already: nothing happens
    assert store.read_inbox(run_id) == [signal_item]


def test_items_of_no_run_are_found_and_deleted(backend: Any) -> None:
    store, kept = backend.store, _run(backend)
    store.add_fact(kept, WorkflowStarted("[]", at=T0))
    orphan = uuid.uuid4().hex
    store.add_fact(orphan, TimerFired("t", at=T0))
    store.add_outcome(orphan, TaskCompleted("k", "1", at=T0))
    assert orphan in set(store.orphans()) and kept not in set(store.orphans())
    assert store.delete_orphan(kept) == 0  # it has a record: kept
    assert store.delete_orphan(orphan) == 2
    assert store.read_inbox(orphan) == [] and orphan not in set(store.orphans())
    assert store.read_inbox(kept) != []
    store.close_run(kept, COMPLETED, T0 + 1, result="1")
