"""The default codec: compact, deterministic JSON that keeps Python types.

``JSONCodec`` writes ``json.dumps(..., separators=(",", ":"), ensure_ascii=False)``
and never sorts keys, so dict order is kept and the same value always gives the
same string (replay compares encoded inputs byte for byte).  Set elements are
written sorted by their encoding, so sets are deterministic across processes.

Values JSON can't express are written as ``{"__flowy__": TAG, "v": PAYLOAD}``:
``tuple``, ``set`` and ``frozenset`` (a list), ``bytes`` (base64), ``float``
(``"nan"``, ``"inf"``, ``"-inf"``), ``uuid``, ``datetime``, ``date`` and
``time`` (``isoformat()``), ``timedelta`` (``[days, seconds, microseconds]``),
``decimal`` (``str(d)``, at most :data:`DECIMAL_LIMIT` digits and exponent) and
``dict`` (``[key, value]`` pairs, for dicts whose keys aren't all ``str`` or
that contain the key ``"__flowy__"`` themselves). ``enum`` (the member's value)
and ``model`` (a pydantic v2 model's ``model_dump(mode="json")``) also carry the
type's name, ``"cls": "module:QualName"``, and decode as
``cls(value)`` and ``cls.model_validate(payload)``.

**Decoding never imports.**  A name in a payload is looked up among the types
the codec was given, and nowhere else: ``JSONCodec(types=[Order, Color])``, plus
the Enum and model types that a workflow declaration finds in the type hints of
its workflow's ``__call__``, its activities and its sub-workflows (see
:meth:`JSONCodec.with_types`).  So whoever can write a payload (a start input,
a signal, a task message, an item in the table) can't make a process import a
module or build an object of a type the program did not declare.  An unknown
name is an :class:`flowy.EncodeError` that names it and says how to declare
it; encoding a value of an undeclared Enum or model type fails the same way, so
the mistake shows where the value is made, not where it is read.

These round-trip exactly, nested anywhere: None, bool, int, float (nan and inf
too), str, list, tuple, dict (any hashable encodable keys), set, frozenset,
bytes, UUID, datetime, date, time, timedelta, Decimal, and members and instances
of the declared Enum and model types.  What changes: ``bytearray`` comes back as
``bytes``; subclasses of str, int, float, list, tuple (named tuples too), dict,
datetime and the other types above come back as the base type; a ``tzinfo``
comes back as a fixed-offset ``datetime.timezone`` (same offset, so aware values
stay equal) and ``fold`` is dropped; a model comes back as whatever
``model_validate`` makes of its JSON dump.

Anything else raises :class:`flowy.EncodeError` naming the type and where it was
found; so do circular or too deeply nested values and, on decode, invalid JSON,
unknown tags and unknown type names.  Decoding is total: whatever a model's
validator or an Enum's ``_missing_`` raises (``SystemExit`` included) becomes an
``EncodeError``; only :data:`flowy.core.errors.UNCONTAINED` (``KeyboardInterrupt``)
passes.  An error about a payload names its type, length and a short hash,
never its content (see :mod:`flowy.core.redaction`).  Lazy result proxies
(values whose type has ``__flowy_value__``) are unwrapped and their value is
encoded.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
import sys
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from enum import Enum
from math import isfinite
from typing import Any

from flowy.core.errors import UNCONTAINED, ConfigurationError, EncodeError
from flowy.core.redaction import describe, printable

__all__ = ["DEFAULT_CODEC", "JSONCodec"]

_TAG = "__flowy__"
_PLAIN = frozenset({str, int, bool, type(None)})
_SUPPORTED = ("None, bool, int, float, str, list, tuple, dict, set, frozenset, bytes, "
              "bytearray, UUID, datetime, date, time, timedelta, Decimal, and declared Enum "
              "and pydantic model types")
_NAME_SHOWN = 120  # characters of an unknown type name quoted in an error
_KEY_SHOWN = 64  # characters of a dict key named in an error's path
# A Decimal has at most this many digits, and an exponent of at most this
# size either way: Python's limit on int digits.  int() of a bigger one takes
# quadratic time (int(Decimal("1e1000000")) runs for minutes), and a payload
# of 40 bytes could ask for it.  A fixed number, not sys.get_int_max_str_digits(),
# so that every process accepts the same payloads.
DECIMAL_LIMIT = 4300


def _base_model() -> Any:
    # No model exists unless pydantic is loaded, and the codec must not load it.
    main = sys.modules.get("pydantic.main")
    return None if main is None else main.BaseModel


def _is_named_type(t: Any) -> bool:
    """Whether values of ``t`` are written with its name: Enums and pydantic models."""
    model = _base_model()
    try:
        return issubclass(t, Enum) or (model is not None and issubclass(t, model))
    except TypeError:  # not a class (list[int] passes isinstance(_, type) on Python 3.10)
        return False


def _clip(text: str) -> str:
    """``text``, cut short if a hostile payload made it long."""
    return text if len(text) <= _NAME_SHOWN else text[:_NAME_SHOWN] + "..."


def _key_shown(key: Any) -> str:
    """A dict key as a step of the path in an error: a field-like name is
    shown, other keys are payload (and their repr may be huge, or raise)."""
    if type(key) is str and len(key) <= _KEY_SHOWN and key.isidentifier():
        return f"[{key!r}]"
    # Small ints are structure; a long one may be an account or card number.
    if key is None or type(key) is bool or (type(key) is int and -10**6 < key < 10**6):
        return f"[{key!r}]"
    return f"[<{_type_name(type(key))} key>]"


def _wire_name(t: type) -> str:
    return f"{t.__module__}:{t.__qualname__}"


def _declaration_hint(short_name: str) -> str:
    return (f"declare it: pass codec=JSONCodec(types=[{short_name}]) to the workflow, or "
            "name the type in the type hints of the activity or workflow that receives it")


class _Walk(set[int]):
    """The state of one encode: the ids of the containers on the path (to
    catch cycles), and the names of the types this codec writes by name."""

    __slots__ = ("names",)

    def __init__(self, names: Mapping[type, str]) -> None:
        super().__init__()
        self.names = names


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


def _enc(v: Any, walk: _Walk) -> Any:
    t = type(v)
    if t in _PLAIN:
        return v
    encoder = _BY_TYPE.get(t)
    return encoder(v, walk) if encoder is not None else _enc_other(v, t, walk)


def _enter(v: Any, walk: _Walk) -> int:
    # Only containers can form cycles; ids are dropped on the way out, and a
    # failed walk is abandoned whole, so no try/finally is needed.
    key = id(v)
    if key in walk:
        raise _Unsupported("a circular reference", "the value contains itself; break the cycle")
    walk.add(key)
    return key


def _enc_items(v: Iterable[Any], walk: _Walk, in_set: bool = False) -> list[Any]:
    key = _enter(v, walk)
    out: list[Any] = []
    try:
        for x in v:
            out.append(x if type(x) in _PLAIN else _enc(x, walk))
    except _Unsupported as e:
        # The failing item is the one after those already encoded; a set's order means nothing.
        e.path.append("{...}" if in_set else f"[{len(out)}]")
        raise
    walk.discard(key)
    return out


def _enc_dict(d: dict[Any, Any], walk: _Walk) -> Any:
    if _TAG in d:
        return _enc_pairs(d, walk)
    key = _enter(d, walk)
    out: dict[str, Any] = {}
    for k, x in d.items():
        if type(k) is not str:
            walk.discard(key)
            return _enc_pairs(d, walk)
        if type(x) in _PLAIN:
            out[k] = x
            continue
        try:
            out[k] = _enc(x, walk)
        except _Unsupported as e:
            e.path.append(_key_shown(k))
            raise
    walk.discard(key)
    return out


def _enc_pairs(d: dict[Any, Any], walk: _Walk) -> Any:
    key = _enter(d, walk)
    pairs: list[Any] = []
    for k, x in d.items():
        where = ".keys()"
        try:
            ek = _enc(k, walk)
            where = _key_shown(k)
            pairs.append([ek, _enc(x, walk)])
        except _Unsupported as e:
            e.path.append(where)
            raise
    walk.discard(key)
    return _tagged("dict", pairs)


def _enc_set(s: set[Any] | frozenset[Any], walk: _Walk) -> Any:
    items = _enc_items(s, walk, in_set=True)
    # Set iteration order depends on hashing (randomized for str per process).
    items.sort(key=_dumps)
    return _tagged("frozenset" if isinstance(s, frozenset) else "set", items)


def _name_of(t: type, walk: _Walk) -> str:
    name = walk.names.get(t)
    if name is None:
        raise _Unsupported(f"value of type {_type_name(t)!r}",
                           "Enum and pydantic model values are written with their type's name, "
                           f"and this codec does not know {_type_name(t)}; "
                           + _declaration_hint(t.__name__))
    return name


def _enc_other(v: Any, t: type, walk: _Walk) -> Any:
    # Proxies forward isinstance() and attribute access, so look at the type first.
    unwrap = getattr(t, "__flowy_value__", None)
    if unwrap is not None:
        return _enc(unwrap(v), walk)
    # Before the base types below: IntEnum and StrEnum members are ints and strs too.
    if isinstance(v, Enum):
        return {_TAG: "enum", "cls": _name_of(t, walk), "v": _enc(v.value, walk)}
    model = _base_model()
    if model is not None and isinstance(v, model):
        name = _name_of(t, walk)
        try:
            dump = v.model_dump(mode="json")
        except ValueError as e:  # pydantic's PydanticSerializationError
            raise _Unsupported(f"value of type {_type_name(t)!r}",
                               f"model_dump(mode='json') failed: {e}") from e
        return {_TAG: "model", "cls": name, "v": _enc(dump, walk)}
    for base, encoder in _BY_TYPE.items():
        if isinstance(v, base):
            return encoder(v, walk)
    raise _Unsupported(f"value of type {_type_name(t)!r}",
                       f"the JSON codec supports {_SUPPORTED}; pass a custom codec= to handle it")


# Checked in order by _enc_other for subclasses: datetime must come before date.
_BY_TYPE: dict[type, Callable[[Any, _Walk], Any]] = {
    # Only subclasses get here (exact str and int are _PLAIN); json writes their base value.
    str: lambda v, walk: v,
    int: lambda v, walk: v,
    float: lambda v, walk: v if isfinite(v) else _tagged("float", repr(float(v))),
    list: _enc_items,
    dict: _enc_dict,
    tuple: lambda v, walk: _tagged("tuple", _enc_items(v, walk)),
    set: _enc_set,
    frozenset: _enc_set,
    bytes: lambda v, walk: _tagged("bytes", base64.b64encode(v).decode("ascii")),
    bytearray: lambda v, walk: _tagged("bytes", base64.b64encode(v).decode("ascii")),
    dt.datetime: lambda v, walk: _tagged("datetime", v.isoformat()),
    dt.date: lambda v, walk: _tagged("date", v.isoformat()),
    dt.time: lambda v, walk: _tagged("time", v.isoformat()),
    dt.timedelta: lambda v, walk: _tagged("timedelta", [v.days, v.seconds, v.microseconds]),
    uuid.UUID: lambda v, walk: _tagged("uuid", str(v)),
    Decimal: lambda v, walk: _tagged("decimal", str(_bounded_decimal(v, _Unsupported))),
}


def _bounded_decimal(d: Decimal, error: Callable[[str, str], Exception]) -> Decimal:
    """``d``, unless it has more than :data:`DECIMAL_LIMIT` digits or a larger
    exponent: then ``error(what, reason)``."""
    if d.is_finite():
        sign, digits, exponent = d.as_tuple()
        assert isinstance(exponent, int)  # finite
        if len(digits) > DECIMAL_LIMIT or abs(exponent) > DECIMAL_LIMIT:
            raise error(f"a Decimal of {len(digits)} digit(s) and exponent {exponent}",
                        f"Flowy takes at most {DECIMAL_LIMIT} digits and an exponent of at "
                        f"most {DECIMAL_LIMIT} either way (as Python limits ints); round it "
                        "(Decimal.quantize) or send it as a string")
    return d


def _decimal_refused(what: str, reason: str) -> EncodeError:
    return EncodeError(f"can't decode {what}: {reason}")


def _decode_decimal(text: Any) -> Decimal:
    # Longer than any bounded Decimal's str(): refused before it is parsed.
    if not isinstance(text, str) or len(text) > DECIMAL_LIMIT + 20:
        raise EncodeError(f"can't decode a value tagged 'decimal', a {describe(text)}: it is "
                          f"not the string of a Decimal of at most {DECIMAL_LIMIT} digits")
    return _bounded_decimal(Decimal(text), _decimal_refused)


def _declared(d: dict[str, Any], classes: Mapping[str, type], kind: str) -> Any:
    """The declared type that ``d`` names; never an import."""
    name = d.get("cls")
    cls = classes.get(name) if isinstance(name, str) else None
    shown = _clip(repr(name))
    if cls is None:
        short = name.rpartition(":")[2].rpartition(".")[2] if isinstance(name, str) else ""
        raise EncodeError(f"can't decode a value of type {shown}: this codec does not know "
                          "that type, and Flowy never imports a module that a payload names; "
                          f"if the type is yours, {_declaration_hint(_clip(short) or '...')}")
    if kind == "enum" and not issubclass(cls, Enum):
        raise EncodeError(f"can't decode a value tagged 'enum' of type {shown}: it is not an Enum")
    if kind == "model" and issubclass(cls, Enum):
        raise EncodeError(f"can't decode a value tagged 'model' of type {shown}: it is an Enum")
    return cls


_DECODERS: dict[str, Callable[[dict[str, Any], Mapping[str, type]], Any]] = {
    "tuple": lambda d, classes: tuple(d["v"]),
    "set": lambda d, classes: set(d["v"]),
    "frozenset": lambda d, classes: frozenset(d["v"]),
    "bytes": lambda d, classes: base64.b64decode(d["v"], validate=True),
    "float": lambda d, classes: float(d["v"]),
    "uuid": lambda d, classes: uuid.UUID(d["v"]),
    "datetime": lambda d, classes: dt.datetime.fromisoformat(d["v"]),
    "date": lambda d, classes: dt.date.fromisoformat(d["v"]),
    "time": lambda d, classes: dt.time.fromisoformat(d["v"]),
    "timedelta": lambda d, classes: dt.timedelta(*d["v"]),
    "decimal": lambda d, classes: _decode_decimal(d["v"]),
    "dict": lambda d, classes: dict(d["v"]),
    "enum": lambda d, classes: _declared(d, classes, "enum")(d["v"]),
    "model": lambda d, classes: _declared(d, classes, "model").model_validate(d["v"]),
}


def _hook(classes: Mapping[str, type], d: dict[str, Any]) -> Any:
    # json calls this bottom-up, so payloads arrive with their contents decoded.
    if _TAG not in d:
        return d
    tag = d[_TAG]
    decoder = _DECODERS.get(tag) if isinstance(tag, str) else None
    if decoder is None:
        raise EncodeError(f"can't decode a value tagged {_clip(repr(tag))}: unknown tag; was it "
                          "encoded by a newer Flowy or a different codec?")
    try:
        return decoder(d, classes)
    except EncodeError:
        raise
    except UNCONTAINED:
        raise
    except BaseException as e:  # noqa: BLE001 - validators and _missing_ may raise anything
        raise EncodeError(f"can't decode a value tagged {tag!r}, a {describe(d.get('v'))}: "
                          f"{_reason(e)}; was it encoded by a different codec or class "
                          "version?") from e


def _reason(e: BaseException) -> str:
    """Why decoding failed, without the payload, which exception messages
    quote (pydantic's ``input_value=...``, ``fromisoformat``'s, an Enum's
    "'x' is not a valid Color"): a model's errors by place and message, or
    the exception's type."""
    errors = getattr(e, "errors", None)
    if callable(errors):  # a pydantic ValidationError
        try:
            problems = errors(include_input=False, include_url=False)
            return f"{type(e).__name__}: " + "; ".join(
                f"{printable('.'.join(map(str, p['loc'])) or 'value', 60)}: {p['msg']}"
                for p in problems[:3])
        except Exception:  # noqa: BLE001 - not pydantic's after all: the type will do
            pass
    return type(e).__name__


# One encoder for every call: json.dumps with these options would build one per call.
_dumps: Callable[[Any], str] = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False,
                                                allow_nan=False).encode


class JSONCodec:
    """The default :class:`flowy.core.codec.Codec`; see the module docstring for what it keeps.

    ``types`` are the Enum and pydantic model classes whose values it encodes
    and decodes, by the name ``module:QualName``.  Two types with the same name
    can't both be declared.
    """

    def __init__(self, types: Iterable[type] = ()) -> None:
        declared = tuple(types)
        for t in declared:
            if not _is_named_type(t):
                raise ConfigurationError(
                    f"JSONCodec(types=...) takes Enum and pydantic model classes, got {t!r}; "
                    "other values need no declaring, or a custom codec")
        self._classes: dict[str, type] = {}
        for t in declared:
            other = self._classes.setdefault(_wire_name(t), t)
            if other is not t:
                raise ConfigurationError(
                    f"two different types are named {_wire_name(t)}: a payload could not tell "
                    "them apart; declare only one of them, or rename one")
        self._names: dict[type, str] = {t: name for name, t in self._classes.items()}
        self._hook = functools.partial(_hook, self._classes)
        # One decoder for every str: json.loads with a hook would build one per call.
        self._decoder = json.JSONDecoder(object_hook=self._hook)

    def __getstate__(self) -> dict[str, Any]:
        # Pickled for a process pool: the decoder holds a scanner, which does not pickle.
        return {name: value for name, value in self.__dict__.items() if name != "_decoder"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._decoder = json.JSONDecoder(object_hook=self._hook)

    @property
    def types(self) -> frozenset[type]:
        """The Enum and model types this codec knows."""
        return frozenset(self._names)

    def with_types(self, types: Iterable[type]) -> JSONCodec:
        """This codec, also knowing those of ``types`` that are Enums or pydantic
        models (the others are ignored: they need no declaring)."""
        more = {t for t in types if _is_named_type(t)} - self._names.keys()
        if not more:
            return self
        return type(self)(types=[*self._names, *sorted(more, key=_wire_name)])

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, JSONCodec) and type(other) is type(self)
                and other.types == self.types)

    def __hash__(self) -> int:
        return hash((type(self), self.types))

    def __repr__(self) -> str:
        names = ", ".join(sorted(t.__qualname__ for t in self._names))
        return f"JSONCodec(types=[{names}])" if names else "JSONCodec()"

    def encode(self, value: Any) -> str:
        try:
            if type(value) in _PLAIN:  # nothing to walk: most results are plain
                return _dumps(value)
            return _dumps(_enc(value, _Walk(self._names)))
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
            if type(data) is str:
                return self._decoder.decode(data)
            return json.loads(data, object_hook=self._hook)  # bytes, or what fails as it does
        except EncodeError:
            raise
        except UNCONTAINED:
            raise
        except json.JSONDecodeError as e:  # its message says where, not what
            raise EncodeError(f"can't decode a {describe(data)} as JSON ({e.msg} at character "
                              f"{e.pos}); the history was not written by JSONCodec, or is "
                              "corrupt") from e
        except (ValueError, TypeError, RecursionError) as e:
            raise EncodeError(f"can't decode a {describe(data)} as JSON ({type(e).__name__}); "
                              "the history was not written by JSONCodec, or is corrupt") from e
        except BaseException as e:  # noqa: BLE001 - decoding must never end a loop
            raise EncodeError(f"can't decode a {describe(data)}: {type(e).__name__}") from e


DEFAULT_CODEC = JSONCodec()
