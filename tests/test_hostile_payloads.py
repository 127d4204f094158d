"""Hostile payloads on both engines: they fail their own runs, and nothing else.

Each payload names a module whose import would do harm, one that is not
installed, or a class that is neither an Enum nor a model.  It arrives by each
way a payload can: a run's start input, a signal sent through the client, a
fact written straight into the run's inbox (the table, on AWS), an activity's
input (decoded by the worker) and an activity's result (decoded by the
decider).  The targeted runs fail with the codec's clear error; runs in flight
on the same processes complete with the right results; no process imports
anything, and no process dies.  One test body runs on each backend (the
``engine`` fixture, serving ``tests.hostile``); a LocalWorkflow whose decider
thread dies, and an AWS decider process that does, end differently by design.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowy import EncodeError, FlowyClient, FlowyError, LoopDied, TaskError
from flowy.core.events import SignalReceived
from flowy.core.protocol import fact_id
from flowy.worker.inbox import notify
from flowy.worker.messages import notification
from tests import activities as A
from tests import hostile
from tests.aws_support import wait_for
from tests.hostile import CLEAR_ERROR, NEVER_IMPORTED, PAYLOADS

CHANNELS = ["start", "signal", "fact", "task input", "result"]
EXAMPLES = [(1, 2), (3, 4), (5, 6)]
EXPECTED = [a * a + b * b for a, b in EXAMPLES]
ENGINE_DEFINITIONS = "tests.hostile:AWS_WORKFLOWS"  # what the engine fixture serves here


def imported() -> list[str]:
    return [name for name in NEVER_IMPORTED if name in sys.modules]


def assert_failed_clearly(result: Callable[[], Any]) -> None:
    with pytest.raises(TaskError, match=CLEAR_ERROR) as info:
        result()
    assert info.value.type_name == "flowy.EncodeError"


# -- the engine, on both backends -------------------------------------------------------


def start(engine: Any, channel: str, name: str) -> Any:
    client = engine.client
    if channel == "start":
        return client.start(hostile.echo, f"PLANT:{name}")
    if channel == "task input":
        return client.start(hostile.forward, name)
    if channel == "result":
        return client.start(hostile.result, name)
    handle = client.start(hostile.signalled)
    if channel == "signal":
        assert client.signal(handle.run_id, "approve", f"PLANT:{name}")
    else:  # what the client's rights allow: PutItem in the inbox, SendMessage to deciders
        fact = SignalReceived("approve", PAYLOADS[name], uuid.uuid4().hex)
        assert engine.backend.store.add_fact(handle.run_id, fact)
        notify(engine.backend, [notification(handle.run_id, fact_id(fact))])
    return handle


@pytest.mark.timeout(180)
@pytest.mark.parametrize("channel", CHANNELS)
def test_hostile_payloads_fail_only_their_runs(engine: Any, channel: str) -> None:
    assert imported() == []
    client = engine.client
    others = [client.start(hostile.example, a, b) for a, b in EXAMPLES[:2]]
    targeted = [start(engine, channel, name) for name in PAYLOADS]
    others.append(client.start(hostile.example, *EXAMPLES[2]))
    for handle in targeted:
        assert_failed_clearly(lambda handle=handle: handle.result(timeout=90))
    assert [handle.result(timeout=90) for handle in others] == EXPECTED
    # The workflow code reports the decider's modules, its activity the worker's.
    assert client.start(hostile.probe, NEVER_IMPORTED).result(timeout=60) == [[], []]
    assert imported() == []


@pytest.mark.timeout(120)
def test_activities_that_exit_fail_only_their_attempts(engine: Any) -> None:
    client = engine.client
    exiting = [client.start(workflow, 3) for workflow in (hostile.exits, hostile.exits_async)]
    others = [client.start(hostile.example, a, b) for a, b in EXAMPLES]
    for handle in exiting:
        with pytest.raises(TaskError) as info:
            handle.result(timeout=60)
        assert info.value.type_name == "builtins.SystemExit"
    assert [handle.result(timeout=60) for handle in others] == EXPECTED


@pytest.mark.timeout(120)
def test_types_declared_by_hints_and_a_client_that_lacks_them(engine: Any) -> None:
    """The activity's hints declare Point and Color to the worker, which decodes
    its input, and to the decider, which decodes its result; a client that was
    not given the declarations says how to give them."""
    handle = engine.client.start(hostile.moved, A.Point(x=1, y=2), A.Color.RED)
    assert handle.result(timeout=60) == A.Point(x=2, y=2, label="red")
    with pytest.raises(EncodeError, match=r"does not know .*give it the declarations"):
        FlowyClient(backend=engine.backend).wait(handle.run_id, timeout=10)
    informed = FlowyClient(backend=engine.backend, registry=hostile.REGISTRY)
    assert informed.wait(handle.run_id, timeout=10) == A.Point(x=2, y=2, label="red")


def test_a_worker_whose_poller_dies_stops_with_an_error(backend: Any) -> None:
    """A fault in the poll loop itself (here: the queues answer a receive with
    no response at all) ends the worker with LoopDied, never leaves it half alive."""
    from flowy.worker.worker import ActivityWorker

    class NoResponse:  # queues that answer a receive with no response at all
        max_delay = 900.0

        def receive(self, *_: Any, **__: Any) -> None:
            return None

    broken = dataclasses.replace(backend, queues=NoResponse())
    worker = ActivityWorker(hostile.REGISTRY, broken, poll_wait=0)
    with pytest.raises(LoopDied, match="thread of this worker died"):
        worker.serve(threading.Event())


# -- what only one engine has ------------------------------------------------------------


@pytest.fixture
def local() -> Iterator[dict[str, Any]]:
    workflows = hostile.local_workflows()
    yield workflows
    for workflow in workflows.values():
        workflow.close()


@pytest.mark.timeout(60)
def test_local_decider_thread_that_dies_fails_the_open_runs(local: dict[str, Any]) -> None:
    interrupting = local["interrupting"]
    waiting = interrupting.start()  # open: it waits for a signal
    interrupting.start("INTERRUPT")  # its codec raises KeyboardInterrupt in a decider thread
    with pytest.raises(TaskError, match="a decider thread of this LocalWorkflow died"):
        waiting.result(timeout=30)
    with pytest.raises(FlowyError, match="close it and make a new one"):
        interrupting.start()
    other = local["signalled"].start()  # another LocalWorkflow, with its own threads
    other.signal("approve", 1)
    assert other.result(timeout=30) == ["got", 1]


def test_local_async_activity_that_exits_fails_only_its_task(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", hostile.exit_async)
    with pytest.raises(TaskError) as info:
        w.run(3)
    assert info.value.type_name == "builtins.SystemExit"
    # The pool survives it: the same workflow runs again.
    with pytest.raises(TaskError, match="^4$"):
        w.start(4).result(timeout=30)


@pytest.mark.timeout(120)
def test_aws_decider_whose_thread_dies_exits_non_zero(make_stack: Any) -> None:
    stack = make_stack(definitions=ENGINE_DEFINITIONS)
    decider = stack.decider()
    stack.client.start(hostile.interrupting, "INTERRUPT")
    wait_for(lambda: decider.poll() is not None, 60, "the decider to exit")
    assert decider.returncode == 1
    log = decider.log_path.read_text()
    assert "died" in log and "KeyboardInterrupt" in log
