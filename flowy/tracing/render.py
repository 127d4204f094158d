"""Drawing DOT source to a file, without ever failing the caller over Graphviz.

Tracing is a diagnostic: a missing ``graphviz`` package, a missing ``dot``
program or a ``dot`` crash must not fail the run being traced, so they are
logged as a warning that says what to do, and :func:`render` returns ``None``.
Only a wrong file suffix, a mistake in the calling code, raises.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..core.errors import UnsupportedFormatError

__all__ = ["SUFFIXES", "UnsupportedFormatError", "render"]

logger = logging.getLogger("flowy.tracing")

#: The file suffixes :func:`render` writes; ``.dot`` needs no Graphviz.
SUFFIXES = (".svg", ".png", ".pdf", ".dot")

_INSTALL = ("install it (apt-get install graphviz / brew install graphviz) "
            "or write .dot instead")


def render(dot_source: str, path: str | Path) -> Path | None:
    """Write ``dot_source`` drawn to ``path``, in the format its suffix names.

    ``.dot`` writes the source itself; ``.svg``, ``.png`` and ``.pdf`` run
    Graphviz's ``dot``.  Returns the path written, or ``None`` after logging a
    warning on the ``flowy.tracing`` logger if it couldn't be written.  Raises
    :class:`UnsupportedFormatError` (a ``ValueError``) for any other suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise UnsupportedFormatError(
            f"can't render a trace to {path.name}: unsupported suffix {suffix or '(none)'!r}; "
            f"use one of {', '.join(SUFFIXES)}")
    if suffix == ".dot":
        data = dot_source.encode("utf-8")
    else:
        drawn = _draw(dot_source, suffix[1:], path)
        if drawn is None:
            return None
        data = drawn
    try:
        path.write_bytes(data)
    except OSError as exc:
        logger.warning("can't write trace to %s: %s", path, exc)
        return None
    return path


def _draw(dot_source: str, format: str, path: Path) -> bytes | None:
    """``dot_source`` laid out by ``dot`` in ``format``, or ``None`` with a warning."""
    # Imported here so that flowy works, and writes .dot traces, without it.
    try:
        import graphviz
    except ImportError:
        logger.warning("can't render trace to %s: the 'graphviz' Python package is not "
                       "installed; pip install graphviz (it needs Graphviz's 'dot' program: "
                       "apt-get install graphviz / brew install graphviz) or write .dot "
                       "instead", path.name)
        return None
    try:
        # Piping keeps Graphviz away from the file system (no source file left
        # next to the output) and never opens a viewer.
        data: bytes = graphviz.pipe("dot", format, dot_source.encode("utf-8"), quiet=True)
    except graphviz.ExecutableNotFound:
        logger.warning("can't render trace to %s: Graphviz's 'dot' program is not "
                       "installed; %s", path.name, _INSTALL)
        return None
    except graphviz.CalledProcessError as exc:
        stderr = exc.stderr.decode("utf-8", "replace").strip() if exc.stderr else ""
        logger.warning("can't render trace to %s: Graphviz's 'dot' failed (exit %s): %s; "
                       "write .dot instead to inspect the source", path.name,
                       exc.returncode, stderr or "no message")
        return None
    except OSError as exc:  # 'dot' exists but can't be run, e.g. not executable
        logger.warning("can't render trace to %s: can't run Graphviz's 'dot': %s; %s",
                       path.name, exc, _INSTALL)
        return None
    return data
