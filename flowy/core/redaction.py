"""Saying what a value is without saying what it holds, and text safe to log.

Error messages end up in histories, run records, ``flowy status`` output and
log lines, where whoever reads them may not be entitled to the payloads.  So
an error about a payload names its type, its length and a short hash (enough
to tell two payloads apart, or to find the one meant), never its content.
And an id that came from outside is shown escaped and cut short, so that it
can't forge a log line or fill one.
"""

from __future__ import annotations

import hashlib

_SHOWN = 200  # characters of an outside string shown in a log line or message


def describe(value: object) -> str:
    """``value`` as ``str of 19 characters (sha256 3f2a9c1b)``: its type, its
    length if it has one, and for strings and bytes the start of their SHA-256."""
    kind = type(value).__name__
    if isinstance(value, (str, bytes, bytearray)):
        unit = "character" if isinstance(value, str) else "byte"
        return f"{kind} of {_count(len(value), unit)} (sha256 {digest(value)})"
    try:
        return f"{kind} of {_count(len(value), 'item')}"  # type: ignore[arg-type]
    except TypeError:
        return kind


def digest(value: str | bytes | bytearray, digits: int = 8) -> str:
    """The first ``digits`` hex digits of ``value``'s SHA-256 (a str's of its
    UTF-8, lone surrogates kept): enough to tell payloads apart, not to read one."""
    data = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else bytes(value)
    return hashlib.sha256(data).hexdigest()[:digits]


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" if n == 1 else f"{n} {unit}s"


def printable(text: object, limit: int = _SHOWN) -> str:
    """``text`` with control characters, line breaks and other non-printable
    characters escaped (as ``repr`` does, without its quotes), cut at ``limit``
    characters: an id from outside, fit for one log or output line."""
    shown = str(text)
    clipped = len(shown) > limit
    if clipped:
        shown = shown[:limit]
    if not shown.isprintable():
        shown = repr(shown)[1:-1]  # escapes backslashes too, so that none looks escaped
    return shown + ("..." if clipped else "")
