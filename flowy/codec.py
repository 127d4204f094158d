"""The default codec: compact, deterministic JSON that keeps Python types.

``JSONCodec`` writes ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``
and never sorts keys, so dict order is kept and the same value always gives the
same string (replay compares encoded inputs byte for byte).  Set elements are
written sorted by their encoding, so sets are deterministic across processes.

Values JSON can't express are written as ``{"__flowy__": TAG, "v": PAYLOAD}``:
``tuple``, ``set`` and ``frozenset`` (a list), ``bytes`` (base64), ``float``
(``"nan"``, ``"inf"``, ``"-inf"``), ``uuid``, ``datetime``, ``date`` and ``time``
(``isoformat()``), ``timedelta`` (``[days, seconds, microseconds]``), ``decimal``
(``str(d)``) and ``dict`` (``[key, value]`` pairs, for dicts whose keys aren't
all ``str`` or that contain the key ``"__flowy__"`` themselves).  ``enum`` (the
member's value) and ``model`` (a pydantic v2 model's ``model_dump(mode="json")``)
also carry ``"cls": "module:QualName"``, and decode as ``cls(value)`` and
``cls.model_validate(payload)`` after importing the class.

These round-trip exactly, nested anywhere: None, bool, int, float (nan and inf
too), str, list, tuple, dict (any hashable encodable keys), set, frozenset,
bytes, UUID, datetime, date, time, timedelta, Decimal, Enum members and pydantic
models.  What changes: ``bytearray`` comes back as ``bytes``; subclasses of
str, int, float, list, tuple (named tuples too), dict, datetime and the other
types above come back as the base type; a ``tzinfo`` comes back as a fixed-offset
``datetime.timezone`` (same offset, so aware values stay equal) and ``fold`` is
dropped; a model comes back as whatever ``model_validate`` makes of its JSON dump.
Enum and model classes must be importable by ``module:QualName`` (defined at
module level, not inside a function) in the process that decodes.

Anything else raises :class:`flowy.EncodeError` naming the type and where it was
found; so do circular or too deeply nested values and, on decode, invalid JSON,
unknown tags and classes that can't be imported.  Lazy result proxies (values
whose type has ``__flowy_value__``) are unwrapped and their value is encoded.
"""

from __future__ import annotations

import base64
import datetime as dt
import importlib
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from decimal import Decimal
from enum import Enum
from math import isfinite
from typing import Any

from flowy.core.errors import EncodeError

__all__ = ["DEFAULT_CODEC", "JSONCodec"]

_TAG = "__flowy__"
_PLAIN = frozenset({str, int, bool, type(None)})
_SUPPORTED = ("None, bool, int, float, str, list, tuple, dict, set, frozenset, bytes, "
              "bytearray, UUID, datetime, date, time, timedelta, Decimal, Enum members "
              "and pydantic models")


class _Unsupported(Exception):
    """Raised inside the walk; each container on the way out adds its part of the path."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(what)
        self.what, self.reason = what, reason
        self.path: list[str] = []


def _type_name(t: type) -> str:
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _tagged(tag: str, payload: Any) -> dict[str, Any]:
    return {_TAG: tag, "v": payload}


def _enc(v: Any, seen: set[int]) -> Any:
    t = type(v)
    if t in _PLAIN:
        return v
    encoder = _BY_TYPE.get(t)
    return encoder(v, seen) if encoder is not None else _enc_other(v, t, seen)


def _enter(v: Any, seen: set[int]) -> int:
    # Only containers can form cycles; ids are dropped on the way out, and a
    # failed walk is abandoned whole, so no try/finally is needed.
    key = id(v)
    if key in seen:
        raise _Unsupported("a circular reference", "the value contains itself; break the cycle")
    seen.add(key)
    return key


def _enc_items(v: Iterable[Any], seen: set[int], in_set: bool = False) -> list[Any]:
    key = _enter(v, seen)
    out: list[Any] = []
    try:
        for x in v:
            out.append(x if type(x) in _PLAIN else _enc(x, seen))
    except _Unsupported as e:
        # The failing item is the one after those already encoded; a set's order means nothing.
        e.path.append("{...}" if in_set else f"[{len(out)}]")
        raise
    seen.discard(key)
    return out


def _enc_dict(d: dict[Any, Any], seen: set[int]) -> Any:
    if _TAG in d:
        return _enc_pairs(d, seen)
    key = _enter(d, seen)
    out: dict[str, Any] = {}
    for k, x in d.items():
        if type(k) is not str:
            seen.discard(key)
            return _enc_pairs(d, seen)
        if type(x) in _PLAIN:
            out[k] = x
            continue
        try:
            out[k] = _enc(x, seen)
        except _Unsupported as e:
            e.path.append(f"[{k!r}]")
            raise
    seen.discard(key)
    return out


def _enc_pairs(d: dict[Any, Any], seen: set[int]) -> Any:
    key = _enter(d, seen)
    pairs: list[Any] = []
    for k, x in d.items():
        where = ".keys()"
        try:
            ek = _enc(k, seen)
            # repr() of an arbitrary key can be huge or raise, so only plain ones are shown.
            where = f"[{k!r}]" if type(k) in _PLAIN else f"[<{_type_name(type(k))} key>]"
            pairs.append([ek, _enc(x, seen)])
        except _Unsupported as e:
            e.path.append(where)
            raise
    seen.discard(key)
    return _tagged("dict", pairs)


def _enc_set(s: set[Any] | frozenset[Any], seen: set[int]) -> Any:
    items = _enc_items(s, seen, in_set=True)
    # Set iteration order depends on hashing (randomized for str per process).
    items.sort(key=_dumps)
    return _tagged("frozenset" if isinstance(s, frozenset) else "set", items)


def _class_path(t: type, kind: str) -> str:
    """``module:QualName`` of ``t``, checked to import back to ``t`` itself."""
    path = f"{t.__module__}:{t.__qualname__}"
    obj: Any = sys.modules.get(t.__module__)
    for part in t.__qualname__.split("."):
        obj = getattr(obj, part, None)
    if obj is not t:
        raise _Unsupported(f"value of type {_type_name(t)!r}", f"{kind} are decoded by importing "
                           f"their class, and {path} can't be imported; define the class at "
                           "module level, or pass a custom codec= to handle it")
    return path


def _enc_other(v: Any, t: type, seen: set[int]) -> Any:
    # Proxies forward isinstance() and attribute access, so look at the type first.
    unwrap = getattr(t, "__flowy_value__", None)
    if unwrap is not None:
        return _enc(unwrap(v), seen)
    # Before the base types below: IntEnum and StrEnum members are ints and strs too.
    if isinstance(v, Enum):
        return {_TAG: "enum", "cls": _class_path(t, "enums"), "v": _enc(v.value, seen)}
    pydantic_main = sys.modules.get("pydantic.main")  # no model exists unless it's loaded
    if pydantic_main is not None and isinstance(v, pydantic_main.BaseModel):
        cls = _class_path(t, "pydantic models")
        try:
            dump = v.model_dump(mode="json")
        except ValueError as e:  # pydantic's PydanticSerializationError
            raise _Unsupported(f"value of type {_type_name(t)!r}",
                               f"model_dump(mode='json') failed: {e}") from e
        return {_TAG: "model", "cls": cls, "v": _enc(dump, seen)}
    for base, encoder in _BY_TYPE.items():
        if isinstance(v, base):
            return encoder(v, seen)
    raise _Unsupported(f"value of type {_type_name(t)!r}",
                       f"the JSON codec supports {_SUPPORTED}; pass a custom codec= to handle it")


# Checked in order by _enc_other for subclasses: datetime must come before date.
_BY_TYPE: dict[type, Callable[[Any, set[int]], Any]] = {
    # Only subclasses get here (exact str and int are _PLAIN); json writes their base value.
    str: lambda v, seen: v,
    int: lambda v, seen: v,
    float: lambda v, seen: v if isfinite(v) else _tagged("float", repr(float(v))),
    list: _enc_items,
    dict: _enc_dict,
    tuple: lambda v, seen: _tagged("tuple", _enc_items(v, seen)),
    set: _enc_set,
    frozenset: _enc_set,
    bytes: lambda v, seen: _tagged("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v, seen: _tagged("bytes", base64.b64encode(v).decode("ascii")),
    dt.datetime: lambda v, seen: _tagged("datetime", v.isoformat()),
    dt.date: lambda v, seen: _tagged("date", v.isoformat()),
    dt.time: lambda v, seen: _tagged("time", v.isoformat()),
    dt.timedelta: lambda v, seen: _tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    uuid.UUID: lambda v, seen: _tagged("uuid", str(v)),
    Decimal: lambda v, seen: _tagged("decimal", str(v)),
}


def _import(path: str, base: type) -> Any:
    module, _, qualname = path.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError, ValueError) as e:
        raise EncodeError(f"can't decode a value of class {path!r}: it can't be imported ({e}); "
                          "make sure its module is importable where the value is decoded") from e
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise EncodeError(f"can't decode a value of class {path!r}: it is not a subclass "
                          f"of {_type_name(base)}")
    return obj


def _decode_model(d: dict[str, Any]) -> Any:
    # Imported only when a model is met, so that pydantic stays optional.
    from pydantic import BaseModel

    return _import(d["cls"], BaseModel).model_validate(d["v"])


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "tuple": lambda d: tuple(d["v"]),
    "set": lambda d: set(d["v"]),
    "frozenset": lambda d: frozenset(d["v"]),
    "bytes": lambda d: base64.b64decode(d["v"], validate=True),
    "float": lambda d: float(d["v"]),
    "uuid": lambda d: uuid.UUID(d["v"]),
    "datetime": lambda d: dt.datetime.fromisoformat(d["v"]),
    "date": lambda d: dt.date.fromisoformat(d["v"]),
    "time": lambda d: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d: dt.timedelta(*d["v"]),
    "decimal": lambda d: Decimal(d["v"]),
    "dict": lambda d: dict(d["v"]),
    "enum": lambda d: _import(d["cls"], Enum)(d["v"]),
    "model": _decode_model,
}


def _hook(d: dict[str, Any]) -> Any:
    # json calls this bottom-up, so payloads arrive with their contents decoded.
    if _TAG not in d:
        return d
    tag = d[_TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise EncodeError(f"can't decode a value tagged {tag!r}: unknown tag; was it encoded "
                          "by a newer Flowy or a different codec?")
    try:
        return decoder(d)
    except EncodeError:
        raise
    except Exception as e:  # model validators and constructors may raise anything
        raise EncodeError(f"can't decode a value tagged {tag!r}: {type(e).__name__}: {e}; "
                          "was it encoded by a different codec or class version?") from e


def _dumps(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class JSONCodec:
    """The default :class:`flowy.core.codec.Codec`; see the module docstring for what it keeps."""

    def encode(self, value: Any) -> str:
        try:
            return _dumps(_enc(value, set()))
        except _Unsupported as e:
            path = "value" + "".join(reversed(e.path))
            raise EncodeError(f"can't encode {e.what} at {path}: {e.reason}") from None
        except RecursionError:
            raise EncodeError("can't encode value: it is nested too deeply; flatten it or pass "
                              "a custom codec= to handle it") from None
        except ValueError as e:  # e.g. an int longer than sys.get_int_max_str_digits()
            raise EncodeError(f"can't encode value: {e}; pass a custom codec= to handle it") from e

    def decode(self, data: str) -> Any:
        try:
            return json.loads(data, object_hook=_hook)
        except EncodeError:
            raise
        except (ValueError, TypeError, RecursionError) as e:
            raise EncodeError(f"can't decode {type(data).__name__} as JSON ({e}); the history "
                              "was not written by JSONCodec, or is corrupt") from e


DEFAULT_CODEC = JSONCodec()
