"""What a payload can't do to the codec, and what the codec's errors don't say.

A Decimal is bounded like an int (review finding 13: ``int()`` of a 40-byte
``1e1000000`` ran for minutes), and an error about a payload names its type,
length and hash, never its content (finding 11: pydantic's ``input_value``,
``fromisoformat``'s message and an Enum's quoted the payload into histories).
"""

from __future__ import annotations

import json
from decimal import Decimal
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel

from flowy import ConfigurationError, EncodeError, JSONCodec, Workflow
from flowy.codec import DECIMAL_LIMIT
from flowy.core.redaction import describe, printable
from flowy.testing import WorkflowEnvironment
from tests.activities import SingleCall, square
from tests.sealing import SECRET

CODEC = JSONCodec()


def decimal_payload(text: str) -> str:
    return json.dumps({"__flowy__": "decimal", "v": text}, separators=(",", ":"))


# -- Decimal ----------------------------------------------------------------------------


def test_a_tiny_decimal_payload_asking_for_a_huge_number_is_refused() -> None:
    payload = decimal_payload("1e1000000")
    assert len(payload) <= 40  # what it costs an attacker
    with pytest.raises(EncodeError, match=f"at most {DECIMAL_LIMIT} digits and an exponent"):
        CODEC.decode(payload)


@pytest.mark.parametrize("text", [
    "1e999999999999999999", f"1e{DECIMAL_LIMIT + 1}", f"1e-{DECIMAL_LIMIT + 1}",
    "-" + "7" * (DECIMAL_LIMIT + 1), "0." + "1" * (DECIMAL_LIMIT + 1),
], ids=["huge exponent", "exponent just over", "negative exponent just over",
        "digits just over", "fraction digits just over"])
def test_decimals_over_the_bounds_are_refused(text: str) -> None:
    with pytest.raises(EncodeError, match=f"at most {DECIMAL_LIMIT}"):
        CODEC.decode(decimal_payload(text))
    with pytest.raises(EncodeError, match=r"can't encode a Decimal .* at value\[0\]"):
        CODEC.encode([Decimal(text)])  # refused where it is made, not only where it is read


def test_a_long_decimal_string_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(EncodeError, match="not the string of a Decimal") as info:
        CODEC.decode(decimal_payload("9" * 1_000_000))
    assert "999" not in str(info.value)
    with pytest.raises(EncodeError, match="not the string of a Decimal"):
        CODEC.decode('{"__flowy__":"decimal","v":12}')


@pytest.mark.parametrize("value", [
    Decimal("9" * DECIMAL_LIMIT), Decimal(f"1e{DECIMAL_LIMIT}"), Decimal(f"-1e-{DECIMAL_LIMIT}"),
    Decimal("0." + "3" * (DECIMAL_LIMIT - 1)), Decimal("NaN"), Decimal("-Infinity"),
    Decimal("-0"),
], ids=["most digits", "largest exponent", "smallest exponent", "longest fraction", "nan",
        "infinity", "negative zero"])
def test_decimals_within_the_bounds_round_trip(value: Decimal) -> None:
    back = CODEC.decode(CODEC.encode(value))
    assert str(back) == str(value)


# -- errors that don't quote the payload ------------------------------------------------


class Card(BaseModel):
    number: int


class Color(Enum):
    RED = "red"


def tampered(value: Any, new: Any, codec: JSONCodec) -> str:
    """``value`` encoded, its tagged payload replaced by ``new``."""
    data = json.loads(codec.encode(value))
    data["v"] = new
    return json.dumps(data)


TYPED = JSONCodec(types=[Card, Color])
BAD = {
    "model field": (tampered(Card(number=1), {"number": SECRET}, TYPED),
                    "ValidationError: number: Input should be a valid integer"),
    "enum value": (tampered(Color.RED, SECRET, TYPED), "tagged 'enum', a str of 19 characters"),
    "datetime": (decimal_payload(SECRET).replace("decimal", "datetime"), "ValueError"),
    "uuid": (decimal_payload(SECRET).replace("decimal", "uuid"), "ValueError"),
    "bytes": (decimal_payload(SECRET).replace("decimal", "bytes"), "Error"),
    "json": (f'["{SECRET}", oops]', "as JSON"),
    "tag": (json.dumps({"__flowy__": SECRET}), "unknown tag"),
}


@pytest.mark.parametrize(("data", "reason"), list(BAD.values()), ids=list(BAD))
def test_decode_errors_name_the_payload_without_quoting_it(data: str, reason: str) -> None:
    with pytest.raises(EncodeError) as info:
        TYPED.decode(data)
    message = str(info.value)
    assert reason in message
    if "tag" not in reason:  # an unknown tag is the codec's word, cut short, not a payload
        assert SECRET not in message and "4111" not in message


def test_an_unknown_tag_is_cut_short() -> None:
    with pytest.raises(EncodeError) as info:
        CODEC.decode(json.dumps({"__flowy__": "x" * 100_000}))
    assert len(str(info.value)) < 400


def test_encode_errors_show_field_names_but_not_data_keys() -> None:
    with pytest.raises(EncodeError, match=r"at value\['order'\]\[<str key>\]\[<int key>\]"):
        CODEC.encode({"order": {SECRET: {4111111111111111: object()}}})
    with pytest.raises(EncodeError, match=r"at value\[1\]\[None\]\[0\]"):
        CODEC.encode({1: {None: [object()]}})


def test_describe_and_printable() -> None:
    assert describe("abc") == "str of 3 characters (sha256 ba7816bf)"
    assert describe(b"a") == "bytes of 1 byte (sha256 ca978112)"
    assert describe([1, 2]) == "list of 2 items" and describe(None) == "NoneType"
    assert printable("run\n2099-01-01 FORGED") == "run\\n2099-01-01 FORGED"
    assert printable("a\\nb") == "a\\nb" and printable("x" * 300, 10) == "x" * 10 + "..."
    assert printable("\x1b[31mred") == "\\x1b[31mred"


# -- ids from outside --------------------------------------------------------------------


@pytest.mark.parametrize("workflow_id", ["order\n42", "", "a b", "x" * 257, "\x1b[2J"])
def test_a_client_refuses_workflow_ids_that_could_forge_a_line(workflow_id: str) -> None:
    workflow = Workflow(SingleCall, name="ids").conf_activity("task", square)
    with WorkflowEnvironment() as env:
        with pytest.raises(ConfigurationError, match="workflow_id .* must be 1 to 256"):
            env.start(workflow, 2, workflow_id=workflow_id)
        assert env.start(workflow, 3, workflow_id="order-42").result() == 9
