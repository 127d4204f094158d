"""A reversible, deterministic, authenticated stand-in for encryption, for tests.

NOT a cipher to use: it is built from the standard library so that the tests
need no crypto dependency, and nobody has vetted it.  It has the shape that
:class:`flowy.PayloadCodec` needs (a deterministic AEAD, like AES-SIV): the
tag is an HMAC of the plaintext, the keystream comes from the key and the
tag, and opening checks the tag, so a wrong key or altered bytes raise.  In
production use e.g. ``cryptography``'s ``AESSIV`` (see the README).
"""

from __future__ import annotations

import hashlib
import hmac

from flowy import JSONCodec, PayloadCodec

_TAG = 16


def _stream(key: bytes, tag: bytes, size: int) -> bytes:
    return hashlib.shake_256(b"keystream" + key + tag).digest(size)


def _xor(data: bytes, stream: bytes) -> bytes:
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(len(data), "big")


class ToySealer:
    """``seal`` and ``open`` with one key; picklable, for process pools."""

    def __init__(self, key: bytes) -> None:
        self.key = key

    def seal(self, data: bytes) -> bytes:
        tag = hmac.new(self.key, data, hashlib.sha256).digest()[:_TAG]
        return tag + _xor(data, _stream(self.key, tag, len(data)))

    def open(self, data: bytes) -> bytes:
        tag, body = data[:_TAG], data[_TAG:]
        plain = _xor(body, _stream(self.key, tag, len(body)))
        if len(tag) != _TAG or not hmac.compare_digest(
                hmac.new(self.key, plain, hashlib.sha256).digest()[:_TAG], tag):
            raise ValueError("not sealed with this key, or altered")
        return plain

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ToySealer) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)


KEY = b"k" * 32


def sealed_codec(key: bytes = KEY, codec: JSONCodec | None = None) -> PayloadCodec:
    """A PayloadCodec over ``codec`` (JSON by default) that seals with ``key``."""
    sealer = ToySealer(key)
    return PayloadCodec(codec or JSONCodec(), encode=sealer.seal, decode=sealer.open)


class SealingCodec(PayloadCodec):
    """The same, as a subclass that defines encode_bytes and decode_bytes."""

    def __init__(self, key: bytes = KEY, codec: JSONCodec | None = None) -> None:
        super().__init__(codec or JSONCodec())
        self.sealer = ToySealer(key)

    def encode_bytes(self, data: bytes) -> bytes:
        return self.sealer.seal(data)

    def decode_bytes(self, data: bytes) -> bytes:
        return self.sealer.open(data)


# -- what the end-to-end tests run -------------------------------------------------------

SECRET = "4111-1111-1111-1111"


def declines(card: str) -> str:
    """An activity whose error quotes its input, as real ones do."""
    raise ValueError(f"card {card} declined")


class Guarded:
    """Calls ``task``; returns the message and type of the error it raised."""

    def __init__(self, task: object) -> None:
        self.task = task

    def __call__(self, *args: object) -> list[str]:
        from flowy import TaskError

        try:
            self.task(*args).__index__()  # type: ignore[operator]
        except TaskError as error:
            return [str(error), error.type_name]
        return []
