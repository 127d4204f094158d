"""The codec protocol: how inputs and results become the strings in a history."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Codec(Protocol):
    """Turns values into strings and back.

    ``encode`` and ``decode`` raise :class:`flowy.EncodeError` for a value or a
    string they can't handle; they must be pure and deterministic (the same
    value always gives the same string), because replay compares encoded inputs.
    """

    def encode(self, value: Any) -> str: ...

    def decode(self, data: str) -> Any: ...
