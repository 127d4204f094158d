"""Configuration that lives outside workflow code: dependency names, defaults, specs, hints."""

from __future__ import annotations

import functools
import importlib
import inspect
import keyword
import typing
from collections.abc import Callable, Container
from typing import Any, Literal, TypeVar

from .core.errors import ConfigurationError
from .core.events import TaskKind
from .core.spec import NO_RETRY, RetryPolicy, TaskSpec, check_name

F = TypeVar("F", bound=Callable[..., Any])

_DEFAULTS_ATTRIBUTE = "__flowy_defaults__"
_OPTIONS = ("retry", "timeout", "heartbeat", "schedule_to_start")


def activity(function: F | None = None, *, retry: RetryPolicy | None = None,
             timeout: float | None = None, heartbeat: float | None = None,
             schedule_to_start: float | None = None) -> Any:
    """Give an activity function default retry and timeout settings.

    Use it as ``@activity`` or ``@activity(retry=RetryPolicy(...), timeout=30)``.
    The function itself is returned unchanged (so it stays picklable and
    callable by hand); ``conf_activity`` arguments override these defaults.
    """
    defaults = {"retry": retry, "timeout": timeout, "heartbeat": heartbeat,
                "schedule_to_start": schedule_to_start}

    def decorate(fn: F) -> F:
        setattr(fn, _DEFAULTS_ATTRIBUTE, {k: v for k, v in defaults.items() if v is not None})
        return fn

    return decorate(function) if function is not None else decorate


def check_dependency_name(name: object, configured: Container[str]) -> str:
    """The name, if it can be a keyword argument of a workflow factory."""
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
        raise ConfigurationError(
            f"dependency name {name!r} is not a valid Python identifier: workflows receive "
            "their dependencies as keyword arguments, so use a name like 'send_email'")
    check_name("dependency name", name)
    if name in configured:
        raise ConfigurationError(
            f"dependency {name!r} is configured twice: configure each name once")
    return name


def resolve(function_or_ref: Callable[..., Any] | str) -> Callable[..., Any]:
    """A callable, or one named by ``"package.module:attribute"``."""
    if callable(function_or_ref):
        return function_or_ref
    if not isinstance(function_or_ref, str) or ":" not in function_or_ref:
        raise ConfigurationError(
            f"{function_or_ref!r} is neither a callable nor a reference like "
            "'package.module:function'")
    module_name, _, attribute = function_or_ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"can't import {function_or_ref!r}: {exc}") from exc
    if not callable(target):
        raise ConfigurationError(f"{function_or_ref!r} is not callable")
    return target  # type: ignore[no-any-return]


def make_spec(kind: TaskKind, function: object, **options: Any) -> TaskSpec:
    """A TaskSpec from explicit options, falling back to the function's @activity defaults."""
    defaults = getattr(function, _DEFAULTS_ATTRIBUTE, {})
    merged = {k: options[k] if options.get(k) is not None else defaults.get(k) for k in _OPTIONS}
    retry = merged["retry"] or NO_RETRY
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a flowy.RetryPolicy, got {retry!r}")
    return TaskSpec(kind=kind, retry=retry, start_to_close=merged["timeout"],
                    schedule_to_start=merged["schedule_to_start"], heartbeat=merged["heartbeat"])


def hinted_types(target: object) -> set[type]:
    """The classes named in the parameter and return hints of ``target``: a
    function, a workflow class (its ``__call__``), a callable object or a partial.

    Unresolvable hints (a name only imported under ``TYPE_CHECKING``, say) are
    skipped: they only mean fewer declared types.
    """
    if isinstance(target, functools.partial):
        return hinted_types(target.func)
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        # A workflow class: its instances are what is called; a callable object: its class's.
        cls = target if isinstance(target, type) else type(target)
        target = next((k.__dict__["__call__"] for k in cls.__mro__ if "__call__" in k.__dict__),
                      None)
    if target is None:
        return set()
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # noqa: BLE001 - any failure to evaluate them: no hints
        return set()
    found: set[type] = set()
    pending: list[Any] = list(hints.values())
    while pending:
        hint = pending.pop()
        args = typing.get_args(hint)
        if typing.get_origin(hint) is Literal:  # Literal[Color.RED] names Color
            found.update(type(value) for value in args)
            continue
        if isinstance(hint, type):
            found.add(hint)
        elif isinstance(hint, list):  # the arguments of Callable[[A, B], C]
            pending.extend(hint)
        pending.extend(args)
    return found
