"""flowy.testing.replay: recorded histories against today's code.

The histories are real: recorded by a run on the engine (in a
WorkflowEnvironment), read from the client, and written by the ``flowy
history`` command itself (its backend pointed at the environment's).
"""

from __future__ import annotations

import json
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import pytest

import flowy
from flowy import NondeterminismError, Workflow
from flowy.cli import commands
from flowy.cli.main import main
from flowy.core.events import Event, event_to_dict
from flowy.testing import WorkflowEnvironment, load_history, replay


class SumOfSquares:
    def __init__(self, square: Any, add: Any, nap: Any) -> None:
        self.square, self.add, self.nap = square, add, nap

    def __call__(self, a: int, b: int) -> Any:
        flowy.wait(self.nap(60))
        return self.add(self.square(a), self.square(b))


class SumOfSquaresPlusOne(SumOfSquares):
    """A change that breaks runs in flight: the first call's argument differs."""

    def __call__(self, a: int, b: int) -> Any:
        flowy.wait(self.nap(60))
        return self.add(self.square(a + 1), self.square(b))


class SumWithoutNap(SumOfSquares):
    """A change that breaks them too: the timer call is gone."""

    def __call__(self, a: int, b: int) -> Any:
        return self.add(self.square(a), self.square(b))


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


def declared(factory: Any) -> Workflow:
    return (Workflow(factory, name="sum-of-squares").conf_timer("nap")
            .conf_activity("square", square).conf_activity("add", add))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Event], Path]:
    """A real run's history, from the client and as ``flowy history RUN`` writes it."""
    with WorkflowEnvironment() as env:
        run = env.start(declared(SumOfSquares), 3, 4)
        assert run.result() == 25
        history = env.client.history(run.run_id)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(commands, "_backend", lambda args: env.backend)
            path = tmp_path_factory.mktemp("histories") / "run.jsonl"
            with path.open("w") as out, redirect_stdout(out):
                assert main(["history", run.run_id]) == 0
    return history, path


def test_the_same_code_replays_a_recorded_history(recorded: tuple[list[Event], Path]) -> None:
    history, path = recorded
    replay(declared(SumOfSquares), history)
    replay(declared(SumOfSquares), path)
    replay(declared(SumOfSquares), str(path))
    replay(declared(SumOfSquares), [event_to_dict(e) for e in history])


def test_the_file_holds_the_history_the_client_read(recorded: tuple[list[Event], Path]) -> None:
    history, path = recorded
    assert load_history(path) == history
    assert [e.at for e in load_history(path)] == [e.at for e in history]


def test_a_changed_argument_fails_the_replay_naming_the_call(
        recorded: tuple[list[Event], Path]) -> None:
    _, path = recorded
    with pytest.raises(NondeterminismError, match="square-0-1") as raised:
        replay(declared(SumOfSquaresPlusOne), path)
    assert "square with an input of 8 characters, SHA-256 " in str(raised.value)
    # the inputs' content stays out of the error, which is recorded and logged
    assert "[[4],{}]" not in str(raised.value) and "[[3],{}]" not in str(raised.value)


def test_a_removed_call_fails_the_replay_naming_it(recorded: tuple[list[Event], Path]) -> None:
    history, _ = recorded
    with pytest.raises(NondeterminismError, match="nap-0"):
        replay(declared(SumWithoutNap), history)


def test_changed_configuration_is_no_change(recorded: tuple[list[Event], Path]) -> None:
    history, _ = recorded
    reconfigured = (Workflow(SumOfSquares, name="sum-of-squares").conf_timer("nap")
                    .conf_activity("square", square, timeout=30,
                                   retry=flowy.RetryPolicy(max_attempts=5))
                    .conf_activity("add", add))
    replay(reconfigured, history)


def test_a_file_that_is_not_a_history_says_which_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"type": "WorkflowStarted", "input": "[[], {}]"}) + "\n\n"
                    + json.dumps({"type": "Nonsense"}) + "\n")
    with pytest.raises(flowy.HistoryError, match="line 3: not a history event"):
        load_history(path)
