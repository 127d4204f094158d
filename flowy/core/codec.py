"""The codec protocol: how inputs and results become the strings in a history,
and the one way a run's or an attempt's arguments are decoded.

A codec may also encode the text the engine records beside payloads (a
:class:`TextCodec`, such as :class:`flowy.PayloadCodec`): error messages and
tracebacks, and heartbeat details.  Whoever makes such text encodes it with
the run's codec (the worker for an activity's error and heartbeats, the core
for the run's own error), and whoever shows it to workflow code or to a user
decodes it (the core where it raises :class:`flowy.TaskError`, the client).
An encoded error keeps its type names in the clear, for retry policies to
match, and carries its message and traceback as one encoded text in its
traceback, under the message :data:`ENCODED_ERROR`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol, runtime_checkable

from .errors import TRACEBACK_LIMIT, UNCONTAINED, EncodeError, ErrorInfo


@runtime_checkable
class Codec(Protocol):
    """Turns values into strings and back.

    ``encode`` and ``decode`` raise :class:`flowy.EncodeError` for a value or a
    string they can't handle; they must be pure and deterministic (the same
    value always gives the same string), because replay compares encoded inputs.
    ``decode`` reads strings that anyone who can write a payload may have
    made: it must never import or run code that the string names.
    """

    def encode(self, value: Any) -> str: ...

    def decode(self, data: str) -> Any: ...


@runtime_checkable
class TypedCodec(Codec, Protocol):
    """A codec that can be told which types the program declares.

    A workflow declaration calls ``with_types`` with the classes named in the
    type hints of its workflow's ``__call__``, its activities and its
    sub-workflows, and runs with the codec it returns (see
    :meth:`flowy.JSONCodec.with_types`).
    """

    def with_types(self, types: Iterable[type]) -> Codec: ...


@runtime_checkable
class TextCodec(Codec, Protocol):
    """A codec that also encodes the text the engine records: error messages,
    tracebacks and heartbeat details.

    ``encode_text`` needs not be deterministic.  ``decode_text`` returns text
    that ``encode_text`` did not make (recorded by a process without this
    codec, such as a worker's own error) as it is, and raises
    :class:`flowy.EncodeError` for encoded text it can't decode.
    """

    def encode_text(self, text: str) -> str: ...

    def decode_text(self, text: str) -> str: ...


ENCODED_ERROR = ("[encoded by the workflow's codec: read it with the workflow's declaration, "
                 "e.g. flowy status RUN_ID --definitions DEFS]")
_CUT = "[truncated to fit once encoded]"


def encode_text(codec: Codec, text: str, limit: int) -> str:
    """``text`` encoded by ``codec`` if it is a :class:`TextCodec`, in at most
    ``limit`` characters: the start of the text is kept, as much as fits."""
    if not isinstance(codec, TextCodec):
        return text[:limit]
    return _fit(lambda cut: codec.encode_text(text[:cut]), len(text), limit)


def decode_text(codec: Codec, text: str) -> str:
    """``text`` decoded by ``codec``; as it is if ``codec`` can't decode it."""
    if not isinstance(codec, TextCodec):
        return text
    try:
        return codec.decode_text(text)
    except UNCONTAINED:
        raise
    except BaseException:  # noqa: BLE001 - shown encoded rather than not at all
        return text


def is_encoded(error: ErrorInfo) -> bool:
    return error.message == ENCODED_ERROR


def encode_error(codec: Codec, error: ErrorInfo) -> ErrorInfo:
    """``error`` with its message and traceback encoded by ``codec``, if it is
    a :class:`TextCodec` (and ``error`` is not encoded yet).  If encoding fails,
    the error says so and keeps neither, so no plaintext is recorded."""
    if not isinstance(codec, TextCodec) or is_encoded(error):
        return error
    message, traceback = error.message, error.traceback

    def sealed(cut: int) -> str:
        # The message keeps its start and the traceback its end, as ErrorInfo does.
        kept = [message if len(message) <= cut else message[:cut] + _CUT,
                traceback if len(traceback) <= cut else _CUT + traceback[len(traceback) - cut:]]
        return codec.encode_text(json.dumps(kept, ensure_ascii=False))

    try:
        blob = _fit(sealed, max(len(message), len(traceback)), TRACEBACK_LIMIT)
    except UNCONTAINED:
        raise
    except BaseException as exc:  # noqa: BLE001 - a codec may raise anything
        return ErrorInfo(f"[the error could not be encoded by the workflow's codec: "
                         f"{type(exc).__name__}]", error.type_name, "", error.type_mro)
    return ErrorInfo(ENCODED_ERROR, error.type_name, blob, error.type_mro)


def decode_error(codec: Codec, error: ErrorInfo) -> ErrorInfo:
    """``error`` with its message and traceback decoded by ``codec``; as it is
    if it is not encoded, or ``codec`` can't decode it (another workflow's
    codec, a wrong key): its message then says that it is encoded."""
    if not is_encoded(error) or not isinstance(codec, TextCodec):
        return error
    try:
        message, traceback = json.loads(codec.decode_text(error.traceback))
        if isinstance(message, str) and isinstance(traceback, str):
            return ErrorInfo(message, error.type_name, traceback, error.type_mro)
    except UNCONTAINED:
        raise
    except BaseException:  # noqa: BLE001 - shown encoded rather than not at all
        pass
    return error


def _fit(encode: Callable[[int], str], length: int, limit: int) -> str:
    """``encode(cut)`` for the largest ``cut <= length`` found whose result
    fits in ``limit`` characters.  Encoding grows text about linearly (base64,
    a tag, a nonce), so each try scales the cut by how far the last missed."""
    cut = length
    for _ in range(8):
        encoded = encode(cut)
        if len(encoded) <= limit:
            return encoded
        if cut == 0:
            break
        cut = min(cut - 1, int(cut * limit / len(encoded) * 0.95))
        cut = max(cut, 0)
    raise EncodeError(f"the codec can't encode even {cut} characters of text in {limit}")


def decode_arguments(codec: Codec, encoded: str, subject: str
                     ) -> tuple[list[Any], dict[str, Any]]:
    """The ``[args, kwargs]`` that ``encoded`` holds: a run's or an attempt's
    input, named by ``subject`` in the error.  Whatever the codec raises, but what
    :data:`~flowy.core.errors.UNCONTAINED` names, becomes an ``EncodeError``:
    the run or attempt fails, and the loop that decodes goes on."""
    try:
        args, kwargs = codec.decode(encoded)
        return list(args), dict(kwargs)
    except UNCONTAINED:
        raise
    except BaseException as exc:  # noqa: BLE001 - a codec may raise anything
        raise EncodeError(f"{subject} can't be decoded: {exc}") from exc
