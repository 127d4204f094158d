"""flowy.testing's other tools: the activity environment, the pytest fixtures
(used by name, as the pytest11 entry point registers them), the AWS helper,
the history builder, and what importing flowy.testing loads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

import flowy
from flowy import TaskError, Workflow
from flowy.core.events import CancelRequested, SignalReceived
from flowy.testing import ActivityEnvironment, WorkflowEnvironment, aws_endpoint
from flowy.testing.history import HistoryBuilder, decide, done, enc

# -- the activity environment ---------------------------------------------------------


def count_to(n: int, step: int = 1) -> list[int]:
    seen = []
    for i in range(0, n, step):
        flowy.heartbeat({"at": i})
        seen.append(i)
    flowy.heartbeat("done")
    flowy.heartbeat()
    return seen


def test_an_activity_runs_as_a_worker_runs_it_and_its_heartbeats_are_kept() -> None:
    env = ActivityEnvironment()
    assert env.run(count_to, 4, step=2) == [0, 2]
    assert env.heartbeats == [json.dumps({"at": 0}), json.dumps({"at": 2}), "done", None]


def test_values_go_through_the_codec() -> None:
    def pair(x: Any) -> tuple[Any, bytes]:
        return x, b"raw"

    assert ActivityEnvironment().run(pair, {1: "one"}) == ({1: "one"}, b"raw")
    with pytest.raises(TaskError, match="can't be encoded") as raised:
        ActivityEnvironment().run(lambda: object())
    assert raised.value.type_name == "flowy.EncodeError"


def test_a_failing_activity_raises_what_the_workflow_would_read() -> None:
    def broken() -> None:
        raise ValueError("bad input")

    with pytest.raises(TaskError, match="bad input") as raised:
        ActivityEnvironment().run(broken)
    assert raised.value.type_name == "builtins.ValueError"
    assert "broken" in raised.value.traceback


def test_on_heartbeat_sees_each_beat_as_it_comes_and_may_stop_the_activity() -> None:
    seen: list[str | None] = []

    def stop_at_two(details: str | None) -> None:
        seen.append(details)
        if details == json.dumps({"at": 2}):
            raise RuntimeError("cancelled by the test")

    env = ActivityEnvironment(on_heartbeat=stop_at_two)
    with pytest.raises(TaskError, match="cancelled by the test"):
        env.run(count_to, 10)
    assert seen == env.heartbeats == [json.dumps({"at": i}) for i in range(3)]


def test_async_activities_run_on_a_loop() -> None:
    async def slow_double(x: int) -> int:
        flowy.heartbeat("half way")
        await asyncio.sleep(0)
        return 2 * x

    env = ActivityEnvironment()
    assert env.run(slow_double, 2) == 4
    assert asyncio.run(env.run_async(slow_double, 3)) == 6
    assert env.heartbeats == ["half way", "half way"]


# -- the fixtures, by name: registered by the pytest11 entry point --------------------


def test_the_flowy_env_fixture_is_a_fresh_environment(flowy_env: WorkflowEnvironment) -> None:
    class Nap:
        def __init__(self, nap: Any) -> None:
            self.nap = nap

        def __call__(self) -> str:
            flowy.wait(self.nap(86400))
            return "rested"

    start = flowy_env.clock.now()
    assert flowy_env.run(Workflow(Nap).conf_timer("nap")) == "rested"
    assert flowy_env.clock.now() == start + 86400


def test_the_flowy_activity_env_fixture(flowy_activity_env: ActivityEnvironment) -> None:
    assert flowy_activity_env.run(count_to, 1) == [0]
    assert len(flowy_activity_env.heartbeats) == 3


def test_the_plugin_is_registered_as_an_entry_point() -> None:
    from importlib.metadata import entry_points

    plugins = {e.name: e.value for e in entry_points(group="pytest11")}
    assert plugins.get("flowy") == "flowy.testing.pytest_plugin"


# -- the AWS helper --------------------------------------------------------------------


def test_aws_endpoint_is_the_one_the_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWY_TEST_ENDPOINT", "http://127.0.0.1:1")
    with aws_endpoint() as endpoint:  # no server is started for it
        assert endpoint == "http://127.0.0.1:1"


def test_local_aws_is_the_emulator() -> None:
    from flowy.backends.aws.emulator import LocalAWS

    assert flowy.testing.LocalAWS is LocalAWS


def test_importing_flowy_testing_loads_no_aws() -> None:
    code = """
        import json, sys
        import flowy.testing
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                                {"boto3", "botocore", "moto"})))
    """
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


# -- the history builder ---------------------------------------------------------------


class Approval:
    def __init__(self, approve: Any) -> None:
        self.approve = approve

    def __call__(self) -> Any:
        return flowy.wait(self.approve())


def test_the_history_builder_states_signals_and_cancels() -> None:
    workflow = Workflow(Approval).conf_signal("approve")
    history = HistoryBuilder().started().signaled("approve", {"by": "ann"}, id="s1").build()
    assert isinstance(history[1], SignalReceived) and history[1].value == enc({"by": "ann"})
    assert decide(workflow, [], history) == [done({"by": "ann"})]
    assert isinstance(HistoryBuilder().cancelled("no").build()[0], CancelRequested)


# -- the README's examples -------------------------------------------------------------


def test_the_readme_time_skipping_examples(flowy_env: WorkflowEnvironment) -> None:
    from examples.approval import approval

    run = flowy_env.start(approval, "order-2", 3600)
    assert run.result() == "order-2: expired after 3600 s"
    run = flowy_env.start(approval, "order-1", 3600)
    run.signal("approve", {"ok": True, "by": "ann"})
    assert run.result() == "order-1: charged order-1 (approved by ann)"


def test_the_readme_history_example() -> None:
    from flowy.testing.history import sched

    class ExampleWorkflow:
        def __init__(self, square: Any, sum: Any) -> None:
            self.square, self.sum = square, sum

        def __call__(self, a: int, b: int) -> Any:
            return self.sum(self.square(a), self.square(b))

    workflow = (Workflow(ExampleWorkflow).conf_activity("square", lambda x: x * x)
                .conf_activity("sum", lambda a, b: a + b))
    assert decide(workflow, [], HistoryBuilder().started(2, 10)) == [
        sched("square-0-1", 2), sched("square-1-1", 10)]
