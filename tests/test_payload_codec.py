"""PayloadCodec: a codec wrapped with a function of bytes (encryption), which
also covers what the engine records beside payloads: errors and heartbeats.

The end-to-end tests run real workflows on the in-memory engine with a
sealing codec and look at everything the backend holds (the run records, the
histories, the inbox, the heartbeats, the queues): a secret that went into
the inputs, the results, an error message, a traceback or heartbeat details
appears nowhere, while the workflow code and the client see it decoded.
"""

from __future__ import annotations

import collections
import pickle
import types
from enum import Enum
from typing import Any

import pytest

from flowy import (
    ConfigurationError,
    EncodeError,
    JSONCodec,
    PayloadCodec,
    TaskError,
    TaskTimedout,
    Workflow,
)
from flowy.core.codec import (
    ENCODED_ERROR,
    TextCodec,
    decode_error,
    decode_text,
    encode_error,
    encode_text,
    is_encoded,
)
from flowy.core.errors import TRACEBACK_LIMIT, ErrorInfo
from flowy.core.events import TaskFailed, TaskTimedOut, WorkflowFailed
from flowy.testing import ActivityEnvironment, WorkflowEnvironment
from tests import activities as A
from tests.sealing import (
    KEY,
    SECRET,
    Guarded,
    SealingCodec,
    ToySealer,
    declines,
    sealed_codec,
)

CODECS = {"functions": sealed_codec, "subclass": SealingCodec}


class Color(Enum):
    RED = "red"


@pytest.fixture(params=sorted(CODECS))
def make_codec(request: pytest.FixtureRequest) -> Any:
    return CODECS[request.param]


# -- the codec ---------------------------------------------------------------------------


def test_values_round_trip_and_are_sealed(make_codec: Any) -> None:
    codec = make_codec()
    value = {"card": SECRET, "amounts": (1, 2.5), "raw": b"\x00\xff"}
    encoded = codec.encode(value)
    assert encoded.startswith("sealed:") and SECRET not in encoded and "card" not in encoded
    assert codec.decode(encoded) == value
    assert codec.encode(value) == encoded  # deterministic: replay compares inputs
    assert isinstance(codec, TextCodec)


def test_what_it_did_not_seal_is_refused_without_being_quoted(make_codec: Any) -> None:
    codec = make_codec()
    with pytest.raises(EncodeError, match="not written by a PayloadCodec") as plain:
        codec.decode(JSONCodec().encode(SECRET))
    other_key = make_codec(b"o" * 32).encode(SECRET)
    with pytest.raises(EncodeError, match="a wrong key") as wrong:
        codec.decode(other_key)
    with pytest.raises(EncodeError, match="not base64") as corrupt:
        codec.decode("sealed:" + SECRET)
    for error in (plain, wrong, corrupt):
        assert SECRET not in str(error.value)


def test_the_text_it_did_not_encode_is_shown_as_it_is(make_codec: Any) -> None:
    codec = make_codec()
    assert codec.decode_text(codec.encode_text(SECRET)) == SECRET
    assert codec.decode_text("a worker's own error") == "a worker's own error"
    assert SECRET not in codec.encode_text(SECRET)


def test_it_needs_both_functions_or_a_subclass_and_bytes() -> None:
    sealer = ToySealer(KEY)
    with pytest.raises(ConfigurationError, match="both encode= and decode="):
        PayloadCodec(JSONCodec(), encode=sealer.seal)
    with pytest.raises(ConfigurationError, match="both encode= and decode="):
        PayloadCodec(JSONCodec())
    with pytest.raises(ConfigurationError, match="wraps a codec"):
        PayloadCodec(sealer.seal, sealer.seal, sealer.open)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="must return bytes, not str"):
        PayloadCodec(JSONCodec(), encode=lambda b: b.decode(), decode=bytes).encode(1)


def test_a_sealing_with_a_random_nonce_is_refused_at_once() -> None:
    counter = iter(range(1_000_000))
    codec = PayloadCodec(JSONCodec(), encode=lambda b: b + bytes([next(counter) % 256]),
                         decode=lambda b: b[:-1])
    with pytest.raises(ConfigurationError, match="same bytes for the same bytes"):
        codec.encode("x")


def test_declared_types_reach_the_wrapped_codec(make_codec: Any) -> None:
    codec = make_codec()
    typed = codec.with_types([Color, int])
    assert typed is not codec and typed.codec.types == {Color}
    assert typed.decode(typed.encode([Color.RED])) == [Color.RED]
    assert type(typed) is type(codec)
    assert typed.with_types([Color]) is typed
    with pytest.raises(EncodeError, match="does not know"):
        codec.encode(Color.RED)


def test_it_pickles_for_a_process_pool(make_codec: Any) -> None:
    codec = make_codec()
    again = pickle.loads(pickle.dumps(codec))
    assert again.decode(codec.encode([SECRET])) == [SECRET]
    assert codec.decode(again.encode([SECRET])) == [SECRET]


def test_codecs_are_equal_with_the_same_functions_or_state() -> None:
    sealer = ToySealer(KEY)
    assert (PayloadCodec(JSONCodec(), sealer.seal, sealer.open)
            == PayloadCodec(JSONCodec(), sealer.seal, sealer.open))
    assert PayloadCodec(JSONCodec(), sealer.seal, sealer.open) != sealed_codec(b"o" * 32)
    assert SealingCodec() == SealingCodec() != SealingCodec(b"o" * 32)
    assert SealingCodec(codec=JSONCodec(types=[Color])) != SealingCodec()


# -- errors and text ---------------------------------------------------------------------


def test_an_error_is_encoded_once_and_decoded_whole() -> None:
    codec = sealed_codec()
    try:
        raise ValueError(f"card {SECRET} declined")
    except ValueError as exc:
        error = ErrorInfo.from_exception(exc)
    encoded = encode_error(codec, error)
    assert is_encoded(encoded) and encoded.message == ENCODED_ERROR
    assert SECRET not in repr(encoded)
    assert (encoded.type_name, encoded.type_mro) == (error.type_name, error.type_mro)
    assert encode_error(codec, encoded) is encoded  # a failure passed on is not encoded twice
    assert decode_error(codec, encoded) == error
    # Another workflow's codec (another key) leaves it as it is, saying it is encoded.
    assert decode_error(sealed_codec(b"o" * 32), encoded) == encoded
    # A codec that encodes no text changes nothing.
    assert encode_error(JSONCodec(), error) is error and decode_error(JSONCodec(), error) is error


def test_an_error_too_long_to_encode_keeps_what_fits() -> None:
    codec = sealed_codec()
    error = ErrorInfo("m" * 40_000, "builtins.ValueError", "start " + "t" * 40_000 + " end")
    encoded = encode_error(codec, error)
    assert len(encoded.traceback) <= TRACEBACK_LIMIT
    decoded = decode_error(codec, encoded)
    assert decoded.message.startswith("mmm") and "truncated" in decoded.message
    assert decoded.traceback.endswith("t end") and "truncated" in decoded.traceback


def test_an_error_the_codec_fails_on_is_recorded_without_its_text() -> None:
    def broken(data: bytes) -> bytes:
        raise RuntimeError(f"cannot seal {data!r}")

    codec = PayloadCodec(JSONCodec(), encode=broken, decode=broken)
    encoded = encode_error(codec, ErrorInfo(SECRET, "builtins.ValueError", SECRET))
    assert SECRET not in repr(encoded) and "could not be encoded" in encoded.message


def test_text_is_encoded_within_its_limit() -> None:
    codec = sealed_codec()
    encoded = encode_text(codec, SECRET * 500, 2048)
    assert len(encoded) <= 2048 and SECRET not in encoded
    assert (SECRET * 500).startswith(decode_text(codec, encoded))
    assert encode_text(JSONCodec(), "x" * 3000, 2048) == "x" * 2048
    assert decode_text(sealed_codec(b"o" * 32), encoded) == encoded  # can't: shown encoded


def test_an_activity_environment_shows_errors_and_heartbeats_decoded() -> None:
    env = ActivityEnvironment(codec=sealed_codec())
    with pytest.raises(TaskError, match=f"card {SECRET} declined"):
        env.run(declines, SECRET)
    assert env.run(A.heartbeating, 2, 0.0) == 2
    assert env.heartbeats == ['{"step": 0}', '{"step": 1}']


# -- end to end: nothing in the clear where the runs are kept ----------------------------


def held(root: object) -> str:
    """Every string and bytes reachable from ``root`` (through containers and
    objects' attributes), joined: all that a backend holds."""
    found: list[str] = []
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, types.ModuleType, types.FunctionType,
                                                 types.MethodType)):
            continue
        seen.add(id(obj))
        if isinstance(obj, str):
            found.append(obj)
        elif isinstance(obj, (bytes, bytearray)):
            found.append(bytes(obj).decode("utf-8", "replace"))
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
            todo.extend(obj)
        else:
            todo.extend(getattr(obj, "__dict__", {}).values())
            for name in getattr(type(obj), "__slots__", ()):
                todo.append(getattr(obj, name, None))
    return "\n".join(found)


def stored(env: WorkflowEnvironment) -> str:
    backend = env.client.backend
    return held(backend.store) + held(backend.queues)


def test_runs_keep_no_plaintext_and_code_and_client_see_it(make_codec: Any) -> None:
    codec = make_codec()
    guarded = Workflow(Guarded, name="guarded", codec=codec).conf_activity("task", declines)
    fails = Workflow(A.SingleCall, name="fails", codec=codec).conf_activity("task", declines)
    parent = Workflow(A.SingleCall, name="parent", codec=codec).conf_workflow("task", fails)
    with WorkflowEnvironment() as env:
        # The workflow code reads the activity's real message and type.
        assert env.run(guarded, SECRET) == [f"card {SECRET} declined", "builtins.ValueError"]
        failed = env.start(fails, SECRET)
        with pytest.raises(TaskError, match=f"card {SECRET} declined"):
            failed.result()
        with pytest.raises(TaskError, match=f"card {SECRET} declined"):
            env.run(parent, SECRET)  # through a sub-workflow

        assert SECRET not in stored(env) and "declined" not in stored(env)
        raw = env.client.store.get_run(failed.run_id)
        assert raw is not None and raw.error is not None and is_encoded(raw.error)
        assert raw.error.type_name == "builtins.ValueError"  # kept, for retry policies
        # The client has the declaration: it shows the errors decoded.
        assert env.client.status(failed.run_id).error.message == f"card {SECRET} declined"
        errors = [e.error for e in env.client.history(failed.run_id)
                  if isinstance(e, (TaskFailed, WorkflowFailed))]
        assert [e.message for e in errors] == [f"card {SECRET} declined"] * 2
        assert "ValueError: card" in errors[0].traceback


def test_the_same_runs_with_json_keep_the_secret_which_the_check_finds() -> None:
    # The check above can fail: without sealing, the secret is there to find.
    fails = Workflow(A.SingleCall, name="fails").conf_activity("task", declines)
    with WorkflowEnvironment() as env:
        with pytest.raises(TaskError):
            env.run(fails, SECRET)
        assert SECRET in stored(env) and "declined" in stored(env)


def test_a_client_without_the_declaration_shows_errors_encoded() -> None:
    fails = Workflow(A.SingleCall, name="fails", codec=sealed_codec()).conf_activity(
        "task", declines)
    with WorkflowEnvironment() as env:
        run = env.start(fails, SECRET)
        with pytest.raises(TaskError):
            run.result()
        from flowy import FlowyClient

        stranger = FlowyClient(env.client.backend)
        with pytest.raises(TaskError) as info:
            stranger.wait(run.run_id)
        assert str(info.value) == ENCODED_ERROR and SECRET not in info.value.traceback
        assert is_encoded(stranger.status(run.run_id).error)  # type: ignore[arg-type]


@pytest.mark.timeout(60)
def test_heartbeat_details_are_sealed_and_shown_on_timeout(make_workflow, tmp_path) -> None:
    steps = str(tmp_path / "steps.txt")
    w = make_workflow(A.SingleCall, codec=sealed_codec()).conf_activity(
        "task", A.quiet_until_released, heartbeat=0.3)
    try:
        with pytest.raises(TaskTimedout) as info:
            w.run(steps, 3, 0.05)
    finally:
        A.record(steps, "release")
    assert str(info.value).endswith('last heartbeat details: {"step": 2}')
    client = w._get_engine().client
    assert '"step"' not in held(client.backend.store)
    run_id = client.list_runs()[0].run_id
    raw = [e for batch in client.store.read_batches(run_id) for e in batch.events
           if isinstance(e, TaskTimedOut)]
    assert raw and all(e.details and e.details.startswith("sealed:") for e in raw)
    shown = [e for e in client.history(run_id) if isinstance(e, TaskTimedOut)]
    assert [e.details for e in shown] == ['{"step": 2}']
