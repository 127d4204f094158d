"""Tests for flowy.codec: the default JSON codec."""

from __future__ import annotations

import datetime as dt
import enum
import json
import math
import os
import subprocess
import sys
import uuid
from collections import OrderedDict, namedtuple
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest

from flowy.codec import DEFAULT_CODEC, JSONCodec
from flowy.core.codec import Codec
from flowy.core.errors import EncodeError


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Mode(enum.StrEnum):
    FAST = "fast"


class Perm(enum.Flag):
    R = 1
    W = 2


class Planet(enum.Enum):
    EARTH = (5.97e24, 6.37e6)


class Point(pydantic.BaseModel):
    x: int
    y: float = 0.0


class Order(pydantic.BaseModel):
    id: uuid.UUID
    at: dt.datetime
    points: list[Point]
    pair: tuple[int, str]
    tags: set[str] = set()
    meta: dict[str, Any] = {}
    color: Color = Color.RED


class Outer:
    class Inner(pydantic.BaseModel):
        n: int


Pair = namedtuple("Pair", "a b")

codec = JSONCodec(types=[Color, Priority, Mode, Perm, Planet, Point, Order, Outer.Inner])


class MyStr(str):
    pass


class MyInt(int):
    pass


class MyFloat(float):
    pass


class MyList(list):  # type: ignore[type-arg]
    pass


class MyDict(dict):  # type: ignore[type-arg]
    pass


class Proxy:
    """Like a lazy result proxy: forwards everything, including __class__, to its value."""

    def __init__(self, value: Any) -> None:
        object.__setattr__(self, "_value", value)

    def __flowy_value__(self) -> Any:
        return object.__getattribute__(self, "_value")

    def __getattribute__(self, name: str) -> Any:
        raise AssertionError(f"the codec looked at proxy attribute {name!r}")


def assert_same(a: Any, b: Any) -> None:
    """``a == b``, with the same types all the way down (and nan equal to nan)."""
    assert type(a) is type(b), f"{a!r} ({type(a)}) != {b!r} ({type(b)})"
    if isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, dict):
        assert len(a) == len(b)
        for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True):
            assert_same(ka, kb)
            assert_same(va, vb)
    elif isinstance(a, (set, frozenset)):
        assert a == b
        by_value = {x: x for x in b}
        for x in a:
            assert_same(x, by_value[x])
    else:
        assert a == b


def round_trip(value: Any) -> Any:
    return codec.decode(codec.encode(value))


IST = dt.timezone(dt.timedelta(hours=5, minutes=30))
AWARE = dt.datetime(2024, 2, 29, 23, 59, 59, 999999, tzinfo=IST)
ORDER = Order(id=uuid.UUID(int=7), at=AWARE, points=[Point(x=1), Point(x=2, y=math.inf)],
              pair=(1, "a"), tags={"b", "a"}, meta={"__flowy__": "tuple", "v": [1]})

ROUND_TRIPS: dict[str, Any] = {
    "none": None,
    "true": True,
    "false": False,
    "int": 42,
    "negative int": -7,
    "big int": 2**100,
    "float": 1.5,
    "negative zero": -0.0,
    "tiny float": 5e-324,
    "inf": math.inf,
    "-inf": -math.inf,
    "nan": math.nan,
    "str": "hello",
    "unicode str": "héllo ☃ \U0001f600 \x00",
    "empty str": "",
    "list": [1, "a", None, 2.5],
    "empty list": [],
    "dict": {"a": 1, "b": [2, 3]},
    "empty dict": {},
    "tuple": (1, "a", None),
    "empty tuple": (),
    "1-tuple": (1,),
    "bytes": b"\x00\xffabc",
    "empty bytes": b"",
    "set": {1, 2, 3},
    "set of str": {"x", "y", "z"},
    "empty set": set(),
    "frozenset": frozenset({"a", 1}),
    "empty frozenset": frozenset(),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "naive datetime": dt.datetime(2024, 1, 2, 3, 4, 5, 6),
    "datetime without microseconds": dt.datetime(2024, 1, 2, 3, 4, 5),
    "utc datetime": dt.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC),
    "offset datetime": AWARE,
    "date": dt.date(1999, 12, 31),
    "time": dt.time(13, 14, 15, 16),
    "aware time": dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-3))),
    "timedelta": dt.timedelta(days=-2, seconds=5, microseconds=7),
    "decimal": Decimal("1.10"),
    "decimal exponent": Decimal("-1.5E+30"),
    "decimal negative zero": Decimal("-0"),
    "decimal infinity": Decimal("-Infinity"),
    "decimal many digits": Decimal("3.14159265358979323846264338327950288419716939937510"),
    "int keys": {1: "a", 2: "b"},
    "tuple keys": {(1, 2): "a", (3, "x"): [1]},
    "mixed keys keep order": {"z": 1, 1: 2, "a": 3, None: 4, False: 5, 2.5: 6},
    "frozenset and enum keys": {frozenset({1}): 1, Color.RED: 2, Priority.LOW: 3},
    "dict with tag key": {"__flowy__": "tuple", "v": [1, 2]},
    "dict with only tag key": {"__flowy__": None},
    "nested tag key dict": [{"a": {"__flowy__": {"__flowy__": "set"}}}],
    "enum": Color.BLUE,
    "int enum": Priority.HIGH,
    "str enum": Mode.FAST,
    "flag combination": Perm.R | Perm.W,
    "enum with tuple value": Planet.EARTH,
    "model": Point(x=1, y=2.5),
    "nested class model": Outer.Inner(n=3),
    "rich model": ORDER,
    "list of tuples of models": [(Point(x=1), Point(x=2)), (Point(x=3),)],
    "nested everything": {
        "args": [(1, b"x", {2, 3}), {"k": frozenset({(1, 2)})}],
        "when": [dt.date(2020, 1, 1), dt.timedelta(0)],
        "ids": {uuid.UUID(int=1): Decimal("0.1")},
        "deep": [[[[(None,)]]]],
        "model": {"m": [ORDER]},
    },
}


@pytest.mark.parametrize("value", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_round_trip_keeps_value_and_type(value: Any) -> None:
    assert_same(round_trip(value), value)


def test_negative_zero_and_decimal_nan_keep_their_sign_and_kind() -> None:
    assert math.copysign(1.0, round_trip(-0.0)) == -1.0
    assert round_trip(Decimal("NaN")).is_nan()
    assert round_trip(Decimal("sNaN")).is_snan()


CHANGES: dict[str, tuple[Any, Any]] = {
    "bytearray becomes bytes": (bytearray(b"ab"), b"ab"),
    "str subclass becomes str": (MyStr("s"), "s"),
    "int subclass becomes int": (MyInt(3), 3),
    "float subclass becomes float": (MyFloat(1.5), 1.5),
    "list subclass becomes list": (MyList([1, (2,)]), [1, (2,)]),
    "dict subclass becomes dict": (MyDict(a=(1,)), {"a": (1,)}),
    "OrderedDict becomes dict": (OrderedDict([("b", 1), ("a", 2)]), {"b": 1, "a": 2}),
    "namedtuple becomes tuple": (Pair(1, 2), (1, 2)),
    "str subclass key becomes str": ({MyStr("k"): 1}, {"k": 1}),
}


@pytest.mark.parametrize(("value", "expected"), list(CHANGES.values()), ids=list(CHANGES))
def test_documented_changes(value: Any, expected: Any) -> None:
    assert_same(round_trip(value), expected)


@pytest.mark.parametrize(("value", "expected"), [
    (None, "null"),
    ([1, "é", 2.5, True], '[1,"é",2.5,true]'),
    ({"b": 1, "a": {"d": 2, "c": 3}}, '{"b":1,"a":{"d":2,"c":3}}'),
    ((1, 2), '{"__flowy__":"tuple","v":[1,2]}'),
    (math.nan, '{"__flowy__":"float","v":"nan"}'),
    (b"hi", '{"__flowy__":"bytes","v":"aGk="}'),
    ({1: 2}, '{"__flowy__":"dict","v":[[1,2]]}'),
    ({"__flowy__": 1}, '{"__flowy__":"dict","v":[["__flowy__",1]]}'),
    (Color.RED, '{"__flowy__":"enum","cls":"' + __name__ + ':Color","v":"red"}'),
    (Point(x=1), '{"__flowy__":"model","cls":"' + __name__ + ':Point","v":{"x":1,"y":0.0}}'),
], ids=repr)
def test_encoded_form_is_compact_tagged_json(value: Any, expected: str) -> None:
    assert codec.encode(value) == expected
    json.loads(expected)  # strict JSON: no NaN, no Infinity


@pytest.mark.parametrize("value", list(ROUND_TRIPS.values()), ids=list(ROUND_TRIPS))
def test_encoding_is_deterministic(value: Any) -> None:
    assert codec.encode(value) == codec.encode(value)
    assert codec.encode(round_trip(value)) == codec.encode(value)


def test_dict_order_is_preserved_not_sorted() -> None:
    value = {"zeta": 1, "alpha": 2, "mid": {"y": 1, "x": 2}}
    assert codec.encode(value) == '{"zeta":1,"alpha":2,"mid":{"y":1,"x":2}}'
    assert list(round_trip(value)) == ["zeta", "alpha", "mid"]
    assert list(round_trip({3: "a", 1: "b", 2: "c"})) == [3, 1, 2]


def test_sets_encode_identically_across_hash_seeds() -> None:
    script = ("from flowy.codec import DEFAULT_CODEC as c; "
              "print(c.encode([{'apple', 'kiwi', 'fig', 1, (2, 'x')}, frozenset('abcdef')]))")
    root = Path(__file__).resolve().parent.parent
    outputs = {
        subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                       cwd=root, env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        for seed in ("1", "2", "3", "4")
    }
    assert len(outputs) == 1


def test_default_codec_is_a_json_codec_and_satisfies_the_protocol() -> None:
    assert isinstance(DEFAULT_CODEC, JSONCodec)
    assert isinstance(DEFAULT_CODEC, Codec)


def test_encode_error_is_a_type_error() -> None:
    assert issubclass(EncodeError, TypeError)


def make_socket() -> Any:
    import socket

    return socket.socket()


def local_model() -> Any:
    class Local(pydantic.BaseModel):
        n: int

    return Local(n=1)


def local_enum() -> Any:
    class Local(enum.Enum):
        A = 1

    return Local.A


class ArbitraryModel(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(arbitrary_types_allowed=True)
    thing: object


UNSUPPORTED: dict[str, tuple[Any, str, str]] = {
    "lambda": (lambda: 1, "'function'", "at value:"),
    "object in nested dict": ({"args": [1, {"cb": object()}]}, "'object'",
                              "at value['args'][1]['cb']:"),
    "class": ([1, 2, int], "'type'", "at value[2]:"),
    "in tuple": ((1, (2, print)), "'builtin_function_or_method'", "at value[1][1]:"),
    "in set": ({1, Outer}, "'type'", "at value{...}:"),
    "in key": ({(1, object()): 1}, "'object'", "at value.keys()[1]:"),
    "under a non-str key": ({1: [object()]}, "'object'", "at value[1][0]:"),
    "complex": (1j, "'complex'", "at value:"),
    "memoryview": (memoryview(b"x"), "'memoryview'", "at value:"),
    "user object": ([Outer()], f"'{__name__}.Outer'", "at value[0]:"),
    "model field": (ArbitraryModel(thing=Outer()), "ArbitraryModel", "at value:"),
}


@pytest.mark.parametrize(("value", "type_name", "path"), list(UNSUPPORTED.values()),
                         ids=list(UNSUPPORTED))
def test_unsupported_values_name_type_and_path(value: Any, type_name: str, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        codec.encode(value)
    message = str(info.value)
    assert type_name in message
    assert path in message


def test_unsupported_message_says_what_to_do() -> None:
    with pytest.raises(EncodeError, match="the JSON codec supports .*pass a custom codec="):
        codec.encode({"cb": lambda: 1})


def test_socket_is_rejected() -> None:
    sock = make_socket()
    with sock, pytest.raises(EncodeError, match=r"'socket\.socket' at value\[0\]"):
        codec.encode([sock])


@pytest.mark.parametrize("make", [local_model, local_enum], ids=["model", "enum"])
def test_undeclared_enum_or_model_is_rejected_on_encode(make: Any) -> None:
    with pytest.raises(EncodeError, match=r"this codec does not know .*<locals>\.Local; declare "
                                          r"it: pass codec=JSONCodec\(types=\[Local\]\)") as info:
        codec.encode({"x": [make()]})
    assert "at value['x'][0]" in str(info.value)


@pytest.mark.parametrize("make", [local_model, local_enum], ids=["model", "enum"])
def test_a_class_defined_in_a_function_round_trips_once_declared(make: Any) -> None:
    value = make()
    local = JSONCodec(types=[type(value)])
    assert_same(local.decode(local.encode([value])), [value])


def test_circular_values_are_rejected() -> None:
    loop: list[Any] = [1]
    loop.append({"self": loop})
    with pytest.raises(EncodeError, match=r"circular reference at value\[1\]\['self'\]"):
        codec.encode(loop)
    cyclic: dict[str, Any] = {}
    cyclic["me"] = (cyclic,)
    with pytest.raises(EncodeError, match="circular"):
        codec.encode(cyclic)


def test_shared_references_are_not_cycles() -> None:
    shared = [1, 2]
    assert_same(round_trip([shared, shared, {"a": shared}]), [[1, 2], [1, 2], {"a": [1, 2]}])


def test_too_deep_values_are_rejected() -> None:
    deep: list[Any] = []
    for _ in range(sys.getrecursionlimit() * 2):
        deep = [deep]
    with pytest.raises(EncodeError, match="nested too deeply"):
        codec.encode(deep)


def test_oversized_int_is_an_encode_error() -> None:
    with pytest.raises(EncodeError, match="custom codec"):
        codec.encode(10 ** (sys.get_int_max_str_digits() + 1))


def test_proxies_are_unwrapped_without_touching_the_instance() -> None:
    value = {"a": (1, Point(x=2))}
    assert codec.encode(Proxy(value)) == codec.encode(value)
    nested = [Proxy(1), {"k": Proxy((2, Proxy("x")))}, {Proxy(3): 4}]
    assert_same(round_trip(nested), [1, {"k": (2, "x")}, {3: 4}])


BAD_DATA: dict[str, tuple[Any, str]] = {
    "invalid json": ("{", "as JSON"),
    "truncated": ('{"a": [1, 2', "as JSON"),
    "empty": ("", "as JSON"),
    "not a string": (None, "as JSON"),
    "too deep": ("[" * 100_000 + "]" * 100_000, "as JSON"),
    "unknown tag": ('{"__flowy__":"nope","v":1}', "unknown tag"),
    "non-str tag": ('{"__flowy__":[1],"v":1}', "unknown tag"),
    "missing payload": ('{"__flowy__":"tuple"}', "tagged 'tuple'"),
    "bad base64": ('{"__flowy__":"bytes","v":"!!"}', "tagged 'bytes'"),
    "bad datetime": ('{"__flowy__":"datetime","v":"yesterday"}', "tagged 'datetime'"),
    "bad decimal": ('{"__flowy__":"decimal","v":"x"}', "tagged 'decimal'"),
    "bad uuid": ('{"__flowy__":"uuid","v":"x"}', "tagged 'uuid'"),
    "unhashable set element": ('{"__flowy__":"set","v":[[1]]}', "tagged 'set'"),
    "unhashable key": ('{"__flowy__":"dict","v":[[[1],2]]}', "tagged 'dict'"),
    "missing module": ('{"__flowy__":"model","cls":"no_such_mod:M","v":{}}', "does not know"),
    "missing class": (f'{{"__flowy__":"model","cls":"{__name__}:Nope","v":{{}}}}',
                      "does not know"),
    "empty class path": ('{"__flowy__":"model","cls":"","v":{}}', "does not know"),
    "class path not a string": ('{"__flowy__":"enum","cls":["os"],"v":1}', "does not know"),
    "no class path": ('{"__flowy__":"enum","v":1}', "does not know"),
    "not a model": ('{"__flowy__":"model","cls":"os:path","v":{}}', "does not know"),
    "not an enum": (f'{{"__flowy__":"enum","cls":"{__name__}:Point","v":1}}', "not an Enum"),
    "an enum as a model": (f'{{"__flowy__":"model","cls":"{__name__}:Color","v":{{}}}}',
                           "it is an Enum"),
    "invalid model data": (f'{{"__flowy__":"model","cls":"{__name__}:Point","v":{{"x":"no"}}}}',
                           "ValidationError"),
    "unknown enum value": (f'{{"__flowy__":"enum","cls":"{__name__}:Color","v":"green"}}',
                           "tagged 'enum'"),
}


@pytest.mark.parametrize(("data", "message"), list(BAD_DATA.values()), ids=list(BAD_DATA))
def test_bad_data_raises_encode_error(data: Any, message: str) -> None:
    with pytest.raises(EncodeError, match=message):
        codec.decode(data)


def test_tagged_looking_user_dicts_come_back_as_plain_dicts() -> None:
    for value in ({"__flowy__": "tuple", "v": [1]},
                  {"__flowy__": "model", "cls": "os:system", "v": "echo hi"},
                  {"x": {"__flowy__": "bytes", "v": "aGk="}}):
        assert_same(round_trip(value), value)
