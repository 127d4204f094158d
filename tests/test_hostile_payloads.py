"""Hostile payloads on both engines: they fail their own runs, and nothing else.

Each payload names a module whose import would do harm, one that is not
installed, or a class that is neither an Enum nor a model.  It arrives by each
way a payload can: a run's start input, a signal sent through the client, a
fact written straight into the run's inbox (the table, on AWS), an activity's
input (decoded by the worker) and an activity's result (decoded by the
decider).  The targeted runs fail with the codec's clear error; runs in flight
on the same processes complete with the right results; no process imports
anything, and no process dies.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from flowy import EncodeError, FlowyError, LoopDied, TaskError
from flowy.core.events import SignalReceived
from flowy.core.protocol import fact_id
from flowy.worker.inbox import notify, tell
from flowy.worker.messages import notification
from tests import activities as A
from tests import hostile
from tests.aws_support import wait_for
from tests.hostile import CLEAR_ERROR, NEVER_IMPORTED, PAYLOADS

CHANNELS = ["start", "signal", "fact", "task input", "result"]
EXAMPLES = [(1, 2), (3, 4), (5, 6)]
EXPECTED = [a * a + b * b for a, b in EXAMPLES]


def imported() -> list[str]:
    return [name for name in NEVER_IMPORTED if name in sys.modules]


def assert_failed_clearly(result: Callable[[], Any]) -> None:
    with pytest.raises(TaskError, match=CLEAR_ERROR) as info:
        result()
    assert info.value.type_name == "flowy.EncodeError"


# -- LocalWorkflow ------------------------------------------------------------------


@pytest.fixture
def local() -> Iterator[dict[str, Any]]:
    workflows = hostile.local_workflows()
    yield workflows
    for workflow in workflows.values():
        workflow.close()


def start_local(workflows: dict[str, Any], channel: str, name: str) -> Any:
    if channel == "start":
        return workflows["echo"].start(f"PLANT:{name}")
    if channel == "task input":
        return workflows["forward"].start(name)
    if channel == "result":
        return workflows["result"].start(name)
    run = workflows["signalled"].start()
    if channel == "signal":
        run.signal("approve", f"PLANT:{name}")
    else:  # a fact with the raw payload, handed to the engine as it takes outside facts
        fact = SignalReceived("approve", PAYLOADS[name], uuid.uuid4().hex)
        notify(run.client.backend, [tell(run.client.backend, run.run_id, fact)])
    return run


@pytest.mark.timeout(60)
@pytest.mark.parametrize("channel", CHANNELS)
def test_local_hostile_payloads_fail_only_their_runs(local: dict[str, Any],
                                                     channel: str) -> None:
    assert imported() == []
    others = [local["example"].start(a, b) for a, b in EXAMPLES[:2]]
    targeted = [start_local(local, channel, name) for name in PAYLOADS]
    others.append(local["example"].start(*EXAMPLES[2]))
    for run in targeted:
        assert_failed_clearly(lambda run=run: run.result(timeout=30))
    assert [run.result(timeout=30) for run in others] == EXPECTED
    assert imported() == []


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


# -- the AWS engine -------------------------------------------------------------------


def start_aws(stack: Any, channel: str, name: str) -> Any:
    client = stack.client
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
        assert stack.backend.store.add_fact(handle.run_id, fact)
        notify(stack.backend, [notification(handle.run_id, fact_id(fact))])
    return handle


@pytest.mark.timeout(180)
@pytest.mark.parametrize("channel", CHANNELS)
def test_aws_hostile_payloads_fail_only_their_runs(make_stack: Any, channel: str) -> None:
    stack = make_stack(definitions="tests.hostile:AWS_WORKFLOWS")
    decider, worker = stack.decider(), stack.worker()
    client = stack.client
    others = [client.start(hostile.example, a, b) for a, b in EXAMPLES[:2]]
    targeted = [start_aws(stack, channel, name) for name in PAYLOADS]
    others.append(client.start(hostile.example, *EXAMPLES[2]))
    for handle in targeted:
        assert_failed_clearly(lambda handle=handle: handle.result(timeout=90))
    assert [handle.result(timeout=90) for handle in others] == EXPECTED
    # The workflow code reports the decider's modules, its activity the worker's.
    assert client.start(hostile.probe, NEVER_IMPORTED).result(timeout=60) == [[], []]
    assert decider.poll() is None and worker.poll() is None, stack.logs()


@pytest.mark.timeout(120)
def test_aws_activities_that_exit_fail_only_their_attempts(make_stack: Any) -> None:
    stack = make_stack(definitions="tests.hostile:AWS_WORKFLOWS")
    stack.decider()
    worker = stack.worker()
    exiting = [stack.client.start(workflow, 3) for workflow in (hostile.exits, hostile.exits_async)]
    others = [stack.client.start(hostile.example, a, b) for a, b in EXAMPLES]
    for handle in exiting:
        with pytest.raises(TaskError) as info:
            handle.result(timeout=60)
        assert info.value.type_name == "builtins.SystemExit"
    assert [handle.result(timeout=60) for handle in others] == EXPECTED
    assert worker.poll() is None, stack.logs()


@pytest.mark.timeout(120)
def test_aws_types_declared_by_hints_and_a_client_that_lacks_them(make_stack: Any) -> None:
    """The activity's hints declare Point and Color to the worker, which decodes
    its input, and to the decider, which decodes its result; a client that was
    not given the declarations says how to give them."""
    from flowy import FlowyClient

    stack = make_stack(definitions="tests.hostile:AWS_WORKFLOWS")
    stack.decider()
    stack.worker()
    handle = stack.client.start(hostile.moved, A.Point(x=1, y=2), A.Color.RED)
    assert handle.result(timeout=60) == A.Point(x=2, y=2, label="red")
    with pytest.raises(EncodeError, match=r"does not know .*give it the declarations"):
        FlowyClient(backend=stack.backend).wait(handle.run_id, timeout=10)
    informed = FlowyClient(backend=stack.backend, registry=hostile.REGISTRY)
    assert informed.wait(handle.run_id, timeout=10) == A.Point(x=2, y=2, label="red")


@pytest.mark.timeout(120)
def test_aws_decider_whose_thread_dies_exits_non_zero(make_stack: Any) -> None:
    stack = make_stack(definitions="tests.hostile:AWS_WORKFLOWS")
    decider = stack.decider()
    stack.client.start(hostile.interrupting, "INTERRUPT")
    wait_for(lambda: decider.poll() is not None, 60, "the decider to exit")
    assert decider.returncode == 1
    log = decider.log_path.read_text()
    assert "died" in log and "KeyboardInterrupt" in log


def test_aws_worker_whose_poller_dies_stops_with_an_error(make_stack: Any) -> None:
    """A fault in the poll loop itself (here: the queues answer a receive with
    no response at all) ends the worker with LoopDied, never leaves it half alive."""
    from flowy.worker.worker import ActivityWorker

    class NoResponse:  # queues that answer a receive with no response at all
        max_delay = 900.0

        def receive(self, *_: Any, **__: Any) -> None:
            return None

    stack = make_stack()
    backend = dataclasses.replace(stack.backend, queues=NoResponse())
    worker = ActivityWorker(hostile.REGISTRY, backend, poll_wait=0)
    with pytest.raises(LoopDied, match="thread of this worker died"):
        worker.serve(threading.Event())
