"""Signals and timers as results: the core, LocalWorkflow and the AWS engine.

A ``conf_signal(name)`` dependency's n-th call finishes with the value of the
n-th signal of that name in the run's history, whether it came before or
after the call; a ``conf_timer(name)`` dependency's call finishes, with
``None``, after the seconds it was given.  (Timer cases that need no outside
action are in the shared behaviour suite.)
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from flowy import ConfigurationError, first, wait
from flowy.core.events import (
    CancelRequested,
    SignalReceived,
    TimerFired,
    TimerStarted,
    WorkflowCompleted,
)
from flowy.core.replay import Replayer, replay
from flowy.core.spec import TaskSpec
from flowy.testing.history import HistoryBuilder as B
from flowy.testing.history import definition, enc
from flowy.worker.inbox import notify
from flowy.worker.messages import notification
from tests.aws_support import wait_for
from tests.scenarios import aws_workflow, local_workflow

SPECS = {"approve": TaskSpec(kind="signal"), "sleep": TaskSpec(kind="timer")}


class TwoSignals:
    def __init__(self, approve: Any, sleep: Any) -> None:
        self.approve = approve
        self.sleep = sleep

    def __call__(self) -> Any:
        first_one = self.approve()
        self.sleep(1.0)
        return wait(first_one, self.approve())


class SignalWithArguments(TwoSignals):
    def __call__(self) -> Any:
        return self.approve("no")


class BadTimer(TwoSignals):
    def __call__(self) -> Any:
        return [first(self.sleep("soon"), self.sleep(1.0))]


def _signal(value: Any, signal_id: str, name: str = "approve") -> SignalReceived:
    return SignalReceived(name, enc(value), signal_id)


# -- the core -------------------------------------------------------------------

def test_nth_call_takes_the_nth_signal_whenever_it_came() -> None:
    two = definition(TwoSignals, **SPECS)
    replayer = Replayer()
    facts = [*B().started().events, _signal("early", "a")]  # before the workflow asks
    history = [*facts, *replayer.decide("r", two, [], facts)]
    assert history[-1] == TimerStarted("sleep-0", 1.0)
    more = [_signal("other name", "b", name="reject"), _signal("late", "c")]
    [completed] = replayer.decide("r", two, history, more)
    assert isinstance(completed, WorkflowCompleted)
    assert completed.result == enc(("early", "late"))
    replay(two, [*history, *more, completed])  # the same decisions on replay


def test_a_signal_called_with_arguments_fails_the_run_clearly() -> None:
    [failed] = Replayer().decide("r", definition(SignalWithArguments, **SPECS), [],
                                B().started().events)
    assert failed.error.type_name == "flowy.ConfigurationError"  # type: ignore[union-attr]
    assert "approve() is a signal: call it with no arguments" in (
        failed.error.message)  # type: ignore[union-attr]


def test_a_timer_needs_a_number_of_seconds() -> None:
    bad = definition(BadTimer, **SPECS)
    replayer = Replayer()
    started = B().started().events
    decisions = replayer.decide("r", bad, [], started)
    # The bad call fails at once; first() takes that failure, the good timer stays.
    assert decisions[0] == TimerStarted("sleep-1", 1.0)
    assert decisions[1].error.message == (  # type: ignore[union-attr]
        "sleep-0: a timer takes one number of seconds >= 0, got (str of 4 characters "
        "(sha256 4a754148))")  # what was given, never its content
    assert replayer.decide("r", bad, [*started, *decisions], [TimerFired("sleep-1")]) == []


def test_timer_dependencies_need_valid_names() -> None:
    with pytest.raises(ConfigurationError, match="configured twice"):
        local_workflow("approval").conf_timer("sleep")


# -- the engine, on both backends -------------------------------------------------

def test_signals_reach_the_run_once_per_id(engine: Any) -> None:
    client = engine.client
    assert engine.start("approval", 0.2).result(timeout=30) == "timed out"
    run = engine.start("approval", 60.0)
    assert client.signal(run.run_id, "approve", {"by": "ann"}, signal_id="s-1")  # before
    assert client.signal(run.run_id, "approve", "again", signal_id="s-1")  # a no-op
    wait_for(lambda: any(isinstance(e, SignalReceived) for e in client.history(run.run_id)),
             30, "the first signal to be recorded")
    assert run.signal("approve", 2)  # after the workflow asked for it
    assert run.result(timeout=30) == [{"by": "ann"}, 2]
    history = client.history(run.run_id)
    assert [e.id for e in history if isinstance(e, SignalReceived)][0] == "s-1"
    assert sum(isinstance(e, SignalReceived) for e in history) == 2
    rows = [text for _, text in client.trace(run.run_id).timeline()]
    assert 'signal approve-0 received: {"by":"ann"}' in rows
    assert run.signal("approve", 3) is False  # closed: nothing sent
    assert run.result() == [{"by": "ann"}, 2]


def test_signal_and_cancel_after_a_restart_go_on_to_the_next_run(engine: Any) -> None:
    client, backend = engine.client, engine.backend
    run = engine.start("countdown", 1)
    assert run.result(timeout=60) == 1
    next_run = client.status(run.run_id).next_run
    assert next_run is not None
    # As if they raced with the restart: the client saw the first run open.
    raced = [SignalReceived("approve", enc(1), "raced", at=time.time()),
             CancelRequested("late", at=time.time())]
    for fact in raced:
        backend.store.add_fact(run.run_id, fact)
    notify(backend, [notification(run.run_id, "raced")])
    wait_for(lambda: client.history(next_run)[-2:] == raced, 30,
             "the signal and the cancel to reach the restarted run")
    assert client.history(run.run_id)[-2:] == raced
    assert client.status(next_run).status == "completed"  # it had closed: unchanged


def test_cli_signal(make_stack: Any) -> None:
    stack = make_stack()
    stack.decider()
    stack.worker()
    run = stack.client.start(aws_workflow("approval"), 60.0)
    sent = stack.flowy("signal", run.run_id, "approve", "2")
    assert sent.returncode == 0, sent.stderr
    assert stack.flowy("signal", run.run_id, "approve", '"x"').returncode == 0
    assert run.result(timeout=30) == [2, "x"]
    late = stack.flowy("signal", run.run_id, "approve")
    assert late.returncode == 1 and "already closed" in late.stderr
