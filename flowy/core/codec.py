"""The codec protocol: how inputs and results become the strings in a history."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol, runtime_checkable


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
