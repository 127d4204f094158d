"""The codec protocol: how inputs and results become the strings in a history,
and the one way a run's or an attempt's arguments are decoded."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable

from .errors import UNCONTAINED, EncodeError


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
