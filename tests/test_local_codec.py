"""LocalWorkflow end to end: values through the codec, and values it can't encode."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from decimal import Decimal

import pytest

from flowy import EncodeError, TaskError
from tests import activities as A

pytestmark = pytest.mark.timeout(20)

VALUES = {
    "bytes": b"\x00\xffbinary\n",
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "aware": dt.datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=dt.timezone.utc),
    "naive": dt.datetime(1999, 12, 31, 1, 2, 3),
    "date": dt.date(2020, 1, 2),
    "delta": dt.timedelta(days=1, seconds=2, microseconds=3),
    "decimal": Decimal("1.10"),
    "tuple": (1, (2, "x"), ()),
    "model": A.Point(x=1, y=-2, label="p"),
    "enum": A.Color.BLUE,
    "set": {1, 2, 3},
    "float": 0.1,
    "none": None,
    "time": dt.time(12, 30, 1, 5),
    "frozenset": frozenset({"a", "b"}),
    "int_keys": {1: "one", (2, 3): "pair", None: "none"},
    "big_int": 2 ** 80,
}
TYPES = {"bytes": "bytes", "uuid": "UUID", "aware": "datetime", "naive": "datetime",
         "date": "date", "delta": "timedelta", "decimal": "Decimal", "tuple": "tuple",
         "model": "Point", "enum": "Color", "set": "set", "float": "float",
         "none": "NoneType", "time": "time", "frozenset": "frozenset", "int_keys": "dict",
         "big_int": "int"}


def test_values_round_trip_through_an_activity(make_workflow) -> None:
    w = make_workflow(A.SingleCall, codec=A.TYPED_CODEC).conf_activity("task", A.echo_types)
    types, value = w.run(VALUES)
    # The activity received exactly these types...
    assert types == TYPES
    # ...and the run returns them exactly, after a second trip through the codec.
    assert value == VALUES
    assert {k: type(v).__name__ for k, v in value.items()} == TYPES
    assert str(value["decimal"]) == "1.10"
    assert value["aware"].utcoffset() == dt.timedelta(0)
    assert value["naive"].tzinfo is None
    assert value["tuple"][1] == (2, "x") and type(value["tuple"][1]) is tuple
    assert type(value["model"]) is A.Point


@pytest.mark.parametrize("key", sorted(VALUES))
def test_each_value_as_a_plain_argument_and_result(make_workflow, key: str) -> None:
    w = make_workflow(A.SingleCall, codec=A.TYPED_CODEC).conf_activity("task", A.echo_types)
    type_name, value = w.run(VALUES[key])
    if TYPES[key] == "dict":  # echo_types describes a dict item by item
        assert type_name == {k: type(v).__name__ for k, v in VALUES[key].items()}
    else:
        assert type_name == TYPES[key]
    assert value == VALUES[key]
    assert type(value) is type(VALUES[key])


def test_bytearray_and_subclasses_come_back_as_base_types(make_workflow) -> None:
    from collections import OrderedDict, namedtuple

    pair = namedtuple("pair", "a b")
    w = make_workflow(A.SingleCall, codec=A.TYPED_CODEC).conf_activity("task", A.echo_types)
    assert w.run(bytearray(b"ab")) == ["bytes", b"ab"]
    assert w.run(pair(1, 2)) == ["tuple", (1, 2)]
    assert w.run(OrderedDict(a=1)) == [{"a": "int"}, {"a": 1}]


def test_results_pass_between_activities_with_exact_types(make_workflow) -> None:
    class Relay:
        def __init__(self, identity, echo):
            self.identity, self.echo = identity, echo

        def __call__(self, value):
            return self.echo(self.identity(value))

    w = (make_workflow(Relay, codec=A.TYPED_CODEC)
         .conf_activity("identity", A.identity)
         .conf_activity("echo", A.echo_types))
    types, value = w.run(VALUES)
    assert types == TYPES
    assert value == VALUES


def test_unencodable_argument_fails_that_task_without_running_it(make_workflow,
                                                                 calls_file) -> None:
    path = calls_file()

    class BadArgument:
        def __init__(self, counted, square):
            self.counted, self.square = counted, square

        def __call__(self, path):
            good = self.square(3)
            bad = self.counted(path, {"inner": [good, object()]})
            return [good, bad]

    w = (make_workflow(BadArgument)
         .conf_activity("counted", A.counted)
         .conf_activity("square", A.square))
    with pytest.raises(TaskError) as info:
        w.run(path)
    message = str(info.value)
    assert "encode" in message
    assert "counted-0" in message
    assert "'object'" in message
    assert "value[0][1]['inner'][1]" in message
    assert info.value.type_name == "flowy.EncodeError"
    assert A.calls(path) == 0


def test_unencodable_argument_error_can_be_caught(make_workflow) -> None:
    class CatchIt:
        def __init__(self, identity):
            self.identity = identity

        def __call__(self):
            import flowy
            try:
                flowy.wait(self.identity(object()))
            except flowy.TaskError as e:
                return ["caught", e.type_name]
            return "not caught"

    w = make_workflow(CatchIt).conf_activity("identity", A.identity)
    assert w.run() == ["caught", "flowy.EncodeError"]


def test_unencodable_result_fails_the_task(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.return_object)
    with pytest.raises(TaskError) as info:
        w.run()
    # (The message names the attempt by its engine token, "<run id>/task-0-1".)
    assert re.search(r"the result of \S*task-0-1 can't be encoded", str(info.value))
    assert "'object'" in str(info.value)
    assert info.value.type_name == "flowy.EncodeError"


def test_unencodable_workflow_result_fails_the_run(make_workflow) -> None:
    w = make_workflow(lambda: (lambda: {"x": object()}))
    with pytest.raises(TaskError, match="encode") as info:
        w.run()
    assert info.value.type_name == "flowy.EncodeError"


def test_unencodable_run_input_raises_at_once(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.identity)
    with pytest.raises(EncodeError, match="encode"):
        w.run(object())
    assert w.run(1) == 1


def test_unencodable_restart_arguments_fail_the_run(make_workflow) -> None:
    def factory():
        import flowy
        return lambda: flowy.restart(object())

    w = make_workflow(factory)
    with pytest.raises(TaskError, match="encode"):
        w.run()


def test_an_undeclared_model_can_not_be_sent(make_workflow) -> None:
    import pydantic

    class Local(pydantic.BaseModel):
        x: int

    w = make_workflow(lambda identity: (lambda: identity(Local(x=1))))
    w.conf_activity("identity", A.identity)
    with pytest.raises(TaskError, match=r"does not know .*Local; declare it") as info:
        w.run()
    assert info.value.type_name == "flowy.EncodeError"


def test_types_in_an_activitys_hints_need_no_codec(make_workflow) -> None:
    w = make_workflow(A.SingleCall).conf_activity("task", A.move)
    moved = w.run(A.Point(x=1, y=2), A.Color.RED)
    assert moved == A.Point(x=2, y=2, label="red")
    assert type(moved) is A.Point


def test_types_in_the_workflows_hints_need_no_codec(make_workflow) -> None:
    class Hinted:
        def __init__(self, task):
            self.task = task

        def __call__(self, color: A.Color) -> list[A.Color]:
            return [color, self.task(color)]

    w = make_workflow(Hinted).conf_activity("task", A.identity)
    assert w.run(A.Color.BLUE) == [A.Color.BLUE, A.Color.BLUE]


def test_a_sub_workflows_hints_declare_its_types_to_the_parent(make_workflow) -> None:
    """Neither workflow's code names Point or Color; the child's activity does,
    and the parent encodes the child's input and decodes its result."""
    child = make_workflow(A.SingleCall).conf_activity("task", A.move)
    parent = make_workflow(A.ParentCatch).conf_workflow("sub", child)
    assert parent.run(A.Point(x=1, y=2), A.Color.RED) == ["ok", A.Point(x=2, y=2, label="red")]
