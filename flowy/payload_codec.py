"""A codec that passes what another codec writes through a function of bytes:
encryption, compression, a key-management service.

``PayloadCodec(JSONCodec(), encode=seal, decode=open_)`` writes each payload
as ``sealed:`` and the base64 of ``seal(json_bytes)``, and reads it back with
``open_``.  It also encodes the text that the engine records beside payloads
(see :class:`flowy.core.codec.TextCodec`): error messages and tracebacks,
and heartbeat details.  So with an encrypting ``seal``, histories, run
records and ``flowy status``/``history`` output hold no plaintext of a run's
inputs, results, signals, errors or heartbeats; workflow code and a client
that has the declaration see them decoded.

``seal`` must be deterministic: replay compares a task's encoded input with
the recorded one byte for byte, so the same bytes must always seal the same.
Use a deterministic authenticated cipher (AES-SIV, or AES-GCM-SIV with a
fixed nonce; both only reveal that two payloads are equal).  The first
payload a codec encodes is sealed twice to check this.
"""

from __future__ import annotations

import base64
import binascii
import copy
from collections.abc import Callable, Iterable
from typing import Any

from .core.codec import Codec, TypedCodec
from .core.errors import UNCONTAINED, ConfigurationError, EncodeError
from .core.redaction import describe

__all__ = ["PayloadCodec"]

_MARK = "sealed:"

Transform = Callable[[bytes], bytes]


class PayloadCodec:
    """Wraps ``codec``: what it writes goes through ``encode`` (bytes to bytes)
    on the way out, and ``decode`` on the way in.

    Give ``encode`` and ``decode``, or subclass and define ``encode_bytes`` and
    ``decode_bytes``.  ``decode`` must raise (anything) for bytes ``encode`` did
    not make, as an authenticated cipher does for a wrong key or altered data.
    In a process pool the codec is pickled: give module-level functions, or
    an object whose state pickles.  The Enum and model types a declaration
    finds in its type hints are declared to the wrapped codec.
    """

    def __init__(self, codec: Codec, encode: Transform | None = None,
                 decode: Transform | None = None) -> None:
        if not isinstance(codec, Codec):
            raise ConfigurationError(f"PayloadCodec wraps a codec (such as JSONCodec()), "
                                     f"got {type(codec).__name__}")
        overridden = type(self).encode_bytes is not PayloadCodec.encode_bytes
        if (encode is None) != (decode is None) or (encode is None and not overridden):
            raise ConfigurationError(
                "PayloadCodec needs both encode= and decode= (functions of bytes to bytes), "
                "or a subclass that defines encode_bytes and decode_bytes")
        self.codec = codec
        self._encode, self._decode = encode, decode
        self._checked = False

    # -- what a subclass may define -----------------------------------------

    def encode_bytes(self, data: bytes) -> bytes:
        """The bytes that are written for ``data``; the same every time."""
        assert self._encode is not None
        return self._encode(data)

    def decode_bytes(self, data: bytes) -> bytes:
        """The ``data`` that :meth:`encode_bytes` was given; raises for bytes it did not make."""
        assert self._decode is not None
        return self._decode(data)

    # -- the codec ----------------------------------------------------------

    def encode(self, value: Any) -> str:
        return self._seal(self.codec.encode(value), check=True)

    def decode(self, data: str) -> Any:
        if not isinstance(data, str) or not data.startswith(_MARK):
            raise EncodeError(
                f"can't decode a {describe(data)}: it was not written by a PayloadCodec "
                "(runs started before the codec was declared must finish under the old "
                "declaration: give the new one another version)")
        return self.codec.decode(self._open(data))

    def encode_text(self, text: str) -> str:
        return self._seal(text, check=False)

    def decode_text(self, text: str) -> str:
        # Text recorded in the clear (a worker's own error) is shown as it is.
        return self._open(text) if text.startswith(_MARK) else text

    def with_types(self, types: Iterable[type]) -> PayloadCodec:
        """This codec, its wrapped codec told of ``types`` (see
        :meth:`flowy.JSONCodec.with_types`)."""
        if not isinstance(self.codec, TypedCodec):
            return self
        inner = self.codec.with_types(types)
        if inner is self.codec:
            return self
        other = copy.copy(self)  # a subclass keeps its own state (a key, a client)
        other.codec = inner
        return other

    def _seal(self, text: str, *, check: bool) -> str:
        data = text.encode("utf-8")
        sealed = self._call(self.encode_bytes, data, "encode")
        if check and not self._checked:
            if self._call(self.encode_bytes, data, "encode") != sealed:
                raise ConfigurationError(
                    "PayloadCodec's encode must give the same bytes for the same bytes, "
                    "since replay compares encoded inputs: use a deterministic cipher "
                    "(AES-SIV, or AES-GCM-SIV with a fixed nonce), not one with a random nonce")
            self._checked = True
        return _MARK + base64.b64encode(sealed).decode("ascii")

    def _open(self, text: str) -> str:
        try:
            data = base64.b64decode(text[len(_MARK):], validate=True)
        except (binascii.Error, ValueError):
            raise EncodeError(f"can't decode a {describe(text)}: it is not base64 after "
                              f"{_MARK!r}; the record is corrupt") from None
        opened = self._call(self.decode_bytes, data, "decode")
        try:
            return opened.decode("utf-8")
        except UnicodeDecodeError:
            raise EncodeError("PayloadCodec's decode gave bytes that are not UTF-8: it does "
                              "not undo its encode") from None

    def _call(self, transform: Transform, data: bytes, name: str) -> bytes:
        try:
            out = transform(data)
        except UNCONTAINED:
            raise
        except BaseException as exc:  # noqa: BLE001 - a cipher may raise anything
            # Not the cipher's message: it may quote the data.
            raise EncodeError(f"PayloadCodec's {name} failed on {describe(data)} "
                              f"({type(exc).__name__}): a wrong key, or data that this "
                              "codec did not write?") from exc
        if not isinstance(out, bytes):
            raise ConfigurationError(f"PayloadCodec's {name} must return bytes, "
                                     f"not {type(out).__name__}")
        return out

    def __eq__(self, other: object) -> bool:
        # Same class, same wrapped codec, same functions or state (a subclass's key).
        return type(other) is type(self) and _state(other) == _state(self)

    def __hash__(self) -> int:
        return hash((type(self), self.codec))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.codec!r})"


def _state(codec: object) -> dict[str, Any]:
    return {name: value for name, value in vars(codec).items() if name != "_checked"}
