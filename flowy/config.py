"""Configuration that lives outside workflow code: dependency names, defaults, specs."""

from __future__ import annotations

import importlib
import keyword
from collections.abc import Callable, Container
from typing import Any, Literal, TypeVar

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


W = TypeVar("W", bound="WaitDependencies")


class WaitDependencies:
    """``conf_timer`` and ``conf_signal``, for LocalWorkflow and AWSWorkflow alike."""

    _specs: dict[str, TaskSpec]

    def conf_timer(self: W, name: str) -> W:
        """Bind dependency ``name`` to a durable timer: ``self.NAME(seconds)``
        returns a result that finishes, with ``None``, that many seconds later,
        so ``first(self.task(), self.NAME(60))`` waits at most a minute."""
        return self._conf_wait("timer", name)

    def conf_signal(self: W, name: str) -> W:
        """Bind dependency ``name`` to the signals of that name: the n-th call
        of ``self.NAME()`` returns a result that finishes with the value of the
        n-th such signal sent to the run (``LocalRun.signal``,
        ``FlowyClient.signal``)."""
        return self._conf_wait("signal", name)

    def _conf_wait(self: W, kind: Literal["timer", "signal"], name: str) -> W:
        check_dependency_name(name, self._specs)
        self._specs[name] = TaskSpec(kind=kind)
        return self


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

