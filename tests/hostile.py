"""Hostile payloads, and workflows to carry them, for both engines.

``PlantingCodec`` stands in for whoever can write a payload without going
through Flowy's codec (a client writing a start input or a signal, a worker
writing a result): wherever a value holds the string ``"PLANT:<name>"``, it
writes the raw payload ``PAYLOADS[name]`` instead.  ``AWS_WORKFLOWS`` is what
the engine under test serves on both backends (``tests.hostile:AWS_WORKFLOWS``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from flowy import JSONCodec, LocalWorkflow, Registry, Workflow
from tests import activities as A


def _tagged(kind: str, name: str, value: Any) -> str:
    return json.dumps({"__flowy__": kind, "cls": name, "v": value})


# Modules whose import does harm (venv.__main__ and unittest.__main__ call
# sys.exit, and venv creates virtualenvs from the process's argv), os, a module
# that is not installed, and a class that is neither an Enum nor a model.
PAYLOADS = {
    "venv": _tagged("enum", "venv.__main__:X", 1),
    "unittest": _tagged("model", "unittest.__main__:X", {}),
    "os": _tagged("model", "os:system", "echo owned"),
    "missing": _tagged("enum", "flowy_not_installed_xyz:X", 1),
    "popen": _tagged("model", "subprocess:Popen", {"args": "true"}),
}
# What must never be imported by decoding them.
NEVER_IMPORTED = ["venv", "venv.__main__", "unittest.__main__", "flowy_not_installed_xyz"]
CLEAR_ERROR = "this codec does not know that type, and Flowy never imports"


class PlantingCodec(JSONCodec):
    """The JSON codec, but it writes ``PAYLOADS[name]`` for the string ``"PLANT:name"``."""

    def encode(self, value: Any) -> str:
        text = super().encode(value)
        for name, payload in PAYLOADS.items():
            text = text.replace(json.dumps(f"PLANT:{name}"), payload)
        return text


PLANTING = PlantingCodec()


class InterruptingCodec(JSONCodec):
    """Raises KeyboardInterrupt on decoding a string that holds ``INTERRUPT``: the
    one exception that passes every containment, so it ends a decider thread."""

    def decode(self, data: str) -> Any:
        if "INTERRUPT" in data:
            raise KeyboardInterrupt
        return super().decode(data)


def plant(name: str) -> str:
    """An activity whose result, written by the planting codec, is a hostile payload."""
    return f"PLANT:{name}"


async def exit_async(code: int) -> None:
    """An async activity that calls sys.exit: it must fail its attempt, not the worker."""
    raise SystemExit(code)


def loaded(names: list[str]) -> list[str]:
    """Which of ``names`` this process has imported (an activity: the worker's)."""
    return [name for name in names if name in sys.modules]


class Loaded:
    """Which of ``names`` the decider process has imported: workflow code runs there."""

    def __init__(self, loaded: Any) -> None:
        self.loaded = loaded

    def __call__(self, names: list[str]) -> Any:
        return [[name for name in names if name in sys.modules], self.loaded(names)]


class Forward:
    """Give an activity a hostile input: the worker decodes it."""

    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, name: str) -> Any:
        return self.task(f"PLANT:{name}")


class Signalled:
    """Wait for signal ``approve`` and return its value."""

    def __init__(self, approve: Any) -> None:
        self.approve = approve

    def __call__(self) -> Any:
        return ["got", self.approve()]


def local_workflows() -> dict[str, LocalWorkflow]:
    """For the death of a LocalWorkflow's decider thread (fresh ones: each test closes its own)."""
    return {
        "signalled": LocalWorkflow(Signalled, codec=PLANTING).conf_signal("approve"),
        "interrupting": LocalWorkflow(Signalled, codec=InterruptingCodec()).conf_signal(
            "approve"),
    }


echo = Workflow(A.SingleCall, name="hostile_echo", codec=PLANTING).conf_activity(
    "task", A.identity)
result = Workflow(A.SingleCall, name="hostile_result", codec=PLANTING).conf_activity(
    "task", plant)
forward = Workflow(Forward, name="hostile_forward", codec=PLANTING).conf_activity(
    "task", A.identity)
signalled = Workflow(Signalled, name="hostile_signalled", codec=PLANTING).conf_signal("approve")
interrupting = Workflow(A.SingleCall, name="interrupting", codec=InterruptingCodec()
                           ).conf_activity("task", A.identity)
example = (Workflow(A.ExampleWorkflow, name="hostile_example")
           .conf_activity("square", A.square).conf_activity("sum", A.add))
probe = Workflow(Loaded, name="hostile_probe").conf_activity("loaded", loaded)
exits = Workflow(A.SingleCall, name="exits").conf_activity("task", A.system_exit)
exits_async = Workflow(A.SingleCall, name="exits_async").conf_activity("task", exit_async)
moved = Workflow(A.SingleCall, name="moved").conf_activity("task", A.move)
AWS_WORKFLOWS = [echo, result, forward, signalled, example, probe, interrupting, exits,
                 exits_async, moved]

REGISTRY = Registry(AWS_WORKFLOWS, "tests.hostile")
