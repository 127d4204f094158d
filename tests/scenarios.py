"""Workflow scenarios that the behaviour suite runs on both backends.

Each scenario is one workflow class from ``tests.activities`` with its
dependencies; :func:`local_workflow` declares it as a ``LocalWorkflow`` (the
in-memory backend) and :func:`aws_workflow` as a ``Workflow`` for the
decider and worker processes of the AWS tests, which load ``AWS_WORKFLOWS``
(``tests.scenarios:AWS_WORKFLOWS``).  Both go through :func:`declare`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flowy import DEFAULT_CODEC, Codec, LocalWorkflow, RetryPolicy, Workflow
from flowy.cli import bench
from tests import activities as A
from tests import sealing


@dataclass(frozen=True)
class Scenario:
    factory: Callable[..., Any]
    activities: dict[str, tuple[Callable[..., Any], dict[str, Any]]]
    children: dict[str, str] = field(default_factory=dict)  # dependency -> scenario name
    codec: Codec = DEFAULT_CODEC
    timers: tuple[str, ...] = ()
    signals: tuple[str, ...] = ()


def _plain(**functions: Callable[..., Any]) -> dict[str, tuple[Callable[..., Any], dict[str, Any]]]:
    return {name: (function, {}) for name, function in functions.items()}


FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=1.0, backoff=1.0)

SCENARIOS: dict[str, Scenario] = {
    "example": Scenario(A.ExampleWorkflow, _plain(square=A.square, sum=A.add)),
    "branching": Scenario(A.Branching, _plain(square=A.square)),
    "reversed_codec": Scenario(A.ExampleWorkflow, _plain(square=A.square, sum=A.add),
                               codec=A.REVERSED_JSON),
    "sealed_fail": Scenario(A.SingleCall, _plain(task=sealing.declines),
                            codec=sealing.sealed_codec()),
    "init_calls": Scenario(A.InitCalls, _plain(square=A.square, sum=A.add)),
    "single_fail": Scenario(A.SingleCall, _plain(task=A.fail_with)),
    "catch_and_continue": Scenario(A.CatchAndContinue, _plain(fail=A.fail_with,
                                                              square=A.square)),
    "pass_error": Scenario(A.PassError, _plain(fail=A.fail_with, counted=A.counted)),
    "workflow_raises": Scenario(A.WorkflowRaises, _plain(square=A.square)),
    "two_failures": Scenario(A.TwoFailures, _plain(fail=A.fail_with, identity=A.identity)),
    "wait_forms": Scenario(A.WaitForms, _plain(square=A.square)),
    "race": Scenario(A.Race, _plain(sleepy=A.sleepy)),
    "reduce": Scenario(A.Reduce, _plain(square=A.square, add=A.add)),
    "retry": Scenario(A.SingleCall, {"task": (A.flaky, {"retry": FAST_RETRY})}),
    "timeout": Scenario(A.CatchTimeout, {"task": (A.slow, {"timeout": 1.0})}),
    "heartbeat": Scenario(A.CatchTimeout, {"task": (A.heartbeating, {"heartbeat": 2.0})}),
    "heartbeat_quiet": Scenario(A.CatchTimeout, {"task": (A.goes_quiet, {"heartbeat": 2.0})}),
    "square": Scenario(A.SingleCall, _plain(task=A.square)),
    "async": Scenario(A.SingleCall, _plain(task=A.async_square)),
    "parent": Scenario(A.Parent, _plain(square=A.square), {"sub": "square"}),
    "parent_catch": Scenario(A.ParentCatch, {}, {"sub": "single_fail"}),
    "countdown": Scenario(A.Countdown, _plain(add=A.add)),
    "ignore_then_restart": Scenario(A.IgnoreErrorThenRestart, _plain(fail=A.fail_with,
                                                                     sleepy=A.sleepy)),
    # -- for the AWS engine's own tests --
    "worker_crash": Scenario(A.SingleCall, {"task": (A.slow_first, {
        "timeout": 3.0, "retry": RetryPolicy(max_attempts=2, initial_delay=1.0)})}),
    "manual": Scenario(A.SingleCall, {"task": (A.square, {"task_list": "manual"})}),
    "ghost": Scenario(A.SingleCall, _plain(task=A.square)),
    "text": Scenario(A.SingleCall, _plain(task=A.text_of)),
    "slow": Scenario(A.SingleCall, _plain(task=A.slow)),
    "nondeterministic": Scenario(A.ReadsCounter, _plain(identity=A.identity)),
    "fanout": Scenario(bench.Fanout, _plain(increment=bench.increment, total=bench.total)),
    "deadline": Scenario(A.Deadline, _plain(sleepy=A.sleepy), timers=("sleep",)),
    "sleep_then_call": Scenario(A.SleepThenCall, _plain(identity=A.identity), timers=("sleep",)),
    "approval": Scenario(A.Approval, {}, timers=("sleep",), signals=("approve",)),
    "slow_child": Scenario(A.SingleCall, _plain(task=A.sleepy)),
    "cancel_tree": Scenario(A.Parent, _plain(square=A.square), {"sub": "slow_child"}),
}

def declare(workflow: Workflow, scenario: Scenario, child: Callable[[str], Workflow]) -> Workflow:
    """Bind a scenario's dependencies on ``workflow``; ``child(name)`` declares a sub-workflow."""
    for dependency, (function, conf) in scenario.activities.items():
        workflow.conf_activity(dependency, function, **conf)
    for dependency, name in scenario.children.items():
        workflow.conf_workflow(dependency, child(name))
    for name in scenario.timers:
        workflow.conf_timer(name)
    for name in scenario.signals:
        workflow.conf_signal(name)
    return workflow


def local_workflow(name: str, **options: Any) -> LocalWorkflow:
    scenario = SCENARIOS[name]
    workflow = LocalWorkflow(scenario.factory, name=name, codec=scenario.codec, **options)
    declare(workflow, scenario, lambda child: local_workflow(child, **options))
    return workflow


@functools.cache
def aws_workflow(name: str) -> Workflow:
    scenario = SCENARIOS[name]
    return declare(Workflow(scenario.factory, name=name, codec=scenario.codec), scenario,
                   aws_workflow)


AWS_WORKFLOWS = [aws_workflow(name) for name in SCENARIOS]
# Workers that were not told about the ghost activity.
WORKER_WORKFLOWS = [w for w in AWS_WORKFLOWS if w.name != "ghost"]
