"""Configuration that lives outside workflow code: dependency names, defaults, specs."""

from __future__ import annotations

import functools
import importlib
import inspect
import keyword
import typing
from collections.abc import Callable, Container, Iterable
from typing import Any, Literal, TypeVar

from .core.codec import Codec, TypedCodec
from .core.errors import ConfigurationError
from .core.events import TaskKind
from .core.spec import NO_RETRY, RetryPolicy, TaskSpec

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


D = TypeVar("D", bound="Declaration")


class Declaration:
    """What ``LocalWorkflow`` and ``AWSWorkflow`` share: the workflow code, its
    dependencies, ``conf_timer`` and ``conf_signal``, and the codec its runs use."""

    factory: Callable[..., Any]
    _specs: dict[str, TaskSpec]

    def __init__(self, factory: Callable[..., Any], codec: Codec) -> None:
        self.factory = factory
        self.declared_codec = codec
        self._specs = {}
        self._codec: Codec | None = None

    @property
    def codec(self) -> Codec:
        """The codec that runs of this workflow use: the declared one, told (if
        it takes them, as :class:`flowy.JSONCodec` does) the types named in the
        type hints of the workflow's ``__call__`` and of its activities, and of
        its sub-workflows', so that values of those types need no other
        declaring."""
        if self._codec is None:
            codec = self.declared_codec
            if isinstance(codec, TypedCodec):
                codec = codec.with_types(self._hinted_types())
            self._codec = codec
        return self._codec

    def _hinted_types(self) -> set[type]:
        """The types in the hints of this workflow's code and activities, and of
        its sub-workflows' (all the way down: a parent encodes a child's input
        and decodes its result)."""
        types: set[type] = set()
        seen: set[int] = set()
        pending: list[Declaration] = [self]
        while pending:
            declaration = pending.pop()
            if id(declaration) not in seen:
                seen.add(id(declaration))
                for target in (declaration.factory, *declaration._activity_functions()):
                    types |= hinted_types(target)
                pending.extend(declaration._sub_workflows())
        return types

    def _activity_functions(self) -> Iterable[object]:
        raise NotImplementedError

    def _sub_workflows(self) -> Iterable[Declaration]:
        raise NotImplementedError

    def _configured(self: D, name: str, spec: TaskSpec) -> D:
        self._specs[name] = spec
        self._codec = None  # a new dependency may declare new types
        return self

    def conf_timer(self: D, name: str) -> D:
        """Bind dependency ``name`` to a durable timer: ``self.NAME(seconds)``
        returns a result that finishes, with ``None``, that many seconds later,
        so ``first(self.task(), self.NAME(60))`` waits at most a minute."""
        return self._conf_wait("timer", name)

    def conf_signal(self: D, name: str) -> D:
        """Bind dependency ``name`` to the signals of that name: the n-th call
        of ``self.NAME()`` returns a result that finishes with the value of the
        n-th such signal sent to the run (``LocalRun.signal``,
        ``FlowyClient.signal``)."""
        return self._conf_wait("signal", name)

    def _conf_wait(self: D, kind: Literal["timer", "signal"], name: str) -> D:
        check_dependency_name(name, self._specs)
        return self._configured(name, TaskSpec(kind=kind))


def sub_workflow_spec(owner: object, dependency: str, workflow: object,
                      configured: Container[str], *, retry: RetryPolicy | None,
                      timeout: float | None) -> TaskSpec:
    """The spec of a sub-workflow dependency, after checking the name and that
    ``workflow`` is a workflow of the owner's own kind, and not the owner."""
    check_dependency_name(dependency, configured)
    kind = type(owner)
    if not isinstance(workflow, kind):
        raise ConfigurationError(f"conf_workflow({dependency!r}, ...) takes a {kind.__name__}, "
                                 f"got {workflow!r}")
    if workflow is owner:
        raise ConfigurationError(f"{owner!r} can't be its own sub-workflow")
    return make_spec("workflow", None, retry=retry, timeout=timeout)

