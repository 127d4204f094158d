"""The JSON codec resolves type names only among declared types, and never imports.

Payloads can be written by anyone with a client's rights (a start input, a
signal) or a worker's (a result, an item in the table), so what they name must
never make a process import a module or build an object of a type the program
did not declare.
"""

from __future__ import annotations

import enum
import functools
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
import pytest

from flowy import ConfigurationError, EncodeError, JSONCodec
from flowy.config import hinted_types
from flowy.core.codec import TypedCodec

if TYPE_CHECKING:
    from decimal import Decimal

ROOT = Path(__file__).resolve().parent.parent


class Color(enum.Enum):
    RED = "red"


class Shape(enum.Enum):
    SQUARE = 4


class Point(pydantic.BaseModel):
    x: int


class Strict(pydantic.BaseModel):
    x: int

    @pydantic.field_validator("x")
    @classmethod
    def leave(cls, value: int) -> int:
        raise SystemExit(3)  # what a hostile or buggy validator may do


class Interrupting(pydantic.BaseModel):
    x: int

    @pydantic.field_validator("x")
    @classmethod
    def interrupt(cls, value: int) -> int:
        raise KeyboardInterrupt


def tagged(kind: str, name: object, value: Any = 1) -> str:
    return json.dumps({"__flowy__": kind, "cls": name, "v": value})


# Modules whose import does harm (venv.__main__ and unittest.__main__ call
# sys.exit; venv may create virtualenvs), one that is not installed, and names
# of classes that are neither Enums nor models.
HOSTILE = {
    "venv.__main__": tagged("enum", "venv.__main__:X"),
    "unittest.__main__": tagged("model", "unittest.__main__:X", {}),
    "os": tagged("model", "os:system", "echo owned"),
    "not installed": tagged("enum", "flowy_no_such_module_xyz:X"),
    "not an enum or model": tagged("model", "subprocess:Popen", {"args": "true"}),
    "this": tagged("enum", "this:X"),
}


@pytest.mark.parametrize("payload", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_named_module_is_never_imported(payload: str) -> None:
    before = set(sys.modules)
    with pytest.raises(EncodeError, match="this codec does not know that type, and Flowy never "
                                          "imports a module that a payload names"):
        JSONCodec(types=[Color, Point]).decode(payload)
    assert set(sys.modules) == before


def test_nothing_is_imported_in_a_fresh_interpreter_with_a_workers_argv(tmp_path: Path) -> None:
    """As the review did: venv.__main__ parses sys.argv, and with a worker's
    argv it would create virtualenvs in the working directory, then exit."""
    script = (
        "import sys; sys.argv = ['flowy', 'worker', 'mydefs']\n"
        "from flowy.codec import DEFAULT_CODEC\n"
        "before = set(sys.modules)\n"
        f"for payload in {list(HOSTILE.values())!r}:\n"
        "    try:\n"
        "        DEFAULT_CODEC.decode(payload)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__)\n"
        "print(sorted(set(sys.modules) - before))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n") == [*["EncodeError"] * len(HOSTILE), "[]", ""]
    assert list(tmp_path.iterdir()) == []


def test_the_error_names_the_type_and_says_how_to_declare_it() -> None:
    with pytest.raises(EncodeError) as info:
        JSONCodec().decode('[1, {"__flowy__":"enum","cls":"shop.models:Color","v":"red"}]')
    assert str(info.value) == (
        "can't decode a value of type 'shop.models:Color': this codec does not know that type, "
        "and Flowy never imports a module that a payload names; if the type is yours, declare "
        "it: pass codec=JSONCodec(types=[Color]) to the workflow, or name the type in the type "
        "hints of the activity or workflow that receives it")


def test_a_huge_type_name_is_not_quoted_whole() -> None:
    with pytest.raises(EncodeError) as info:
        JSONCodec().decode(tagged("enum", "x" * 100_000))
    assert len(str(info.value)) < 600


def test_declared_types_round_trip_and_others_do_not_decode() -> None:
    codec = JSONCodec(types=[Color, Point])
    assert codec.decode(codec.encode([Color.RED, Point(x=1)])) == [Color.RED, Point(x=1)]
    with pytest.raises(EncodeError, match="does not know"):
        JSONCodec(types=[Color]).decode(codec.encode(Point(x=1)))


def test_decoding_is_total_whatever_a_validator_raises() -> None:
    codec = JSONCodec(types=[Strict])
    with pytest.raises(EncodeError, match="SystemExit"):
        codec.decode(tagged("model", f"{__name__}:Strict", {"x": 1}))


def test_keyboard_interrupt_still_passes() -> None:
    codec = JSONCodec(types=[Interrupting])
    with pytest.raises(KeyboardInterrupt):
        codec.decode(tagged("model", f"{__name__}:Interrupting", {"x": 1}))


@pytest.mark.parametrize("bad", [int, "shop:Color", Color.RED, dict[str, int]], ids=repr)
def test_only_enum_and_model_classes_can_be_declared(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="takes Enum and pydantic model classes"):
        JSONCodec(types=[bad])


def test_two_types_with_one_name_can_not_both_be_declared() -> None:
    def make() -> type:
        class Twin(enum.Enum):
            A = 1
        return Twin

    with pytest.raises(ConfigurationError, match="two different types are named .*Twin"):
        JSONCodec(types=[make(), make()])


def test_with_types_adds_enums_and_models_and_ignores_the_rest() -> None:
    base = JSONCodec(types=[Color])
    assert isinstance(base, TypedCodec)
    wider = base.with_types([int, str, Point, Color, list])
    assert wider.types == {Color, Point}
    assert base.types == {Color}  # codecs are values: the declared one is unchanged
    assert base.with_types([int, Color]) is base
    assert wider == JSONCodec(types=[Point, Color])
    assert hash(wider) == hash(JSONCodec(types=[Point, Color]))
    assert wider != base


# -- which types a declaration finds in type hints -------------------------------


def hinted(order: Point, colors: list[Color | None], **extra: dict[str, Shape]) -> Point:
    return order


def literal(choice: Literal[Color.RED, "x"], note: Annotated[Shape, "meta"]) -> None:
    pass


def callbacks(make: Callable[[Point], Color]) -> None:
    pass


def forward(amount: Decimal) -> Color:  # Decimal is only imported for type checking
    return Color.RED


class Workflow:
    def __init__(self, task: Any) -> None:
        self.task = task

    def __call__(self, shape: Shape) -> Point:
        return Point(x=1)


class Child(Workflow):
    pass


class Activity:
    def __call__(self, color: Color) -> None:
        pass


@pytest.mark.parametrize(("target", "expected"), [
    (hinted, {Point, Color, Shape}),
    (literal, {Color, Shape}),
    (callbacks, {Point, Color}),
    (forward, set()),
    (Workflow, {Shape, Point}),
    (Child, {Shape, Point}),
    (Activity(), {Color}),
    (functools.partial(hinted, Point(x=1)), {Point, Color, Shape}),
    (len, set()),
    (lambda x: x, set()),
], ids=["params and return", "Literal and Annotated", "Callable", "unresolvable",
        "workflow class", "inherited __call__", "callable object", "partial", "builtin",
        "no hints"])
def test_hinted_types(target: Any, expected: set[type]) -> None:
    assert {t for t in hinted_types(target) if t in {Point, Color, Shape}} == expected
