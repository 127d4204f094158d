"""A workflow declared once, outside its code, and the registry of what a process knows.

A :class:`Workflow` wraps a workflow factory (usually a class) with a name,
a version and a codec, and binds each of its dependencies: to an activity
function on a task list, to another workflow, to a durable timer or to a
signal, with retries and timeouts.  The same declaration runs on either
backend: ``LocalWorkflow`` (a ``Workflow``) runs it in this process on the
in-memory backend; ``flowy decider`` and ``flowy worker`` run it on AWS,
loading the declarations from a module (:func:`load_registry`).
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, TypeVar

from .codec import DEFAULT_CODEC
from .config import check_dependency_name, hinted_types, make_spec, resolve
from .core.codec import Codec, TypedCodec
from .core.errors import ConfigurationError
from .core.limits import DEFAULT_LIMITS, Limits
from .core.replay import WorkflowDefinition
from .core.spec import RetryPolicy, TaskSpec, check_name

DEFAULT_TASK_LIST = "default"
_TASK_LIST = re.compile(r"^[A-Za-z0-9_-]{1,40}$")

W = TypeVar("W", bound="Workflow")


def check_task_list(name: str) -> str:
    if not isinstance(name, str) or not _TASK_LIST.match(name):
        raise ConfigurationError(
            f"task list {name!r} can't name a queue: use 1 to 40 letters, digits, '-' or '_'")
    return name


@dataclass(frozen=True)
class ActivityBinding:
    """One activity dependency of a workflow: its function and task list."""

    dependency: str
    task_list: str
    function: Callable[..., Any]
    workflow: Workflow = field(compare=False)  # the declaring one: its codec encodes inputs

    @property
    def codec(self) -> Codec:
        return self.workflow.codec

    @functools.cached_property  # asked for every attempt; inspecting the function is not free
    def is_async(self) -> bool:
        return asyncio.iscoroutinefunction(self.function)


class Workflow:
    """A workflow declared with its dependencies.

    ``name`` (by default the factory's qualified name) and ``version``
    identify it in the store and the CLI; change the version when the
    workflow code changes in a way that would break the replay of runs in
    flight.  ``codec`` encodes inputs and results (see :class:`flowy.JSONCodec`).
    ``limits`` bound each run's history and decisions (see :class:`flowy.Limits`).
    """

    def __init__(self, factory: Callable[..., Any], *, name: str | None = None,
                 version: str = "1", codec: Codec = DEFAULT_CODEC,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        name = name or getattr(factory, "__qualname__", None) or "workflow"
        for label, value in (("name", name), ("version", version)):
            check_name(f"workflow {label}", value, forbidden="@#")
        if not isinstance(limits, Limits):
            raise ConfigurationError(f"limits must be a flowy.Limits, got {limits!r}")
        self.factory = factory
        self.name = name
        self.version = version
        self.declared_codec = codec
        self.limits = limits
        self.activities: dict[str, ActivityBinding] = {}
        self.children: dict[str, Workflow] = {}
        self._specs: dict[str, TaskSpec] = {}
        self._codec: Codec | None = None
        self._definition: WorkflowDefinition | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    # -- configuration --------------------------------------------------------

    def conf_activity(self: W, name: str, function: Callable[..., Any] | str, *,
                      task_list: str = DEFAULT_TASK_LIST, retry: RetryPolicy | None = None,
                      timeout: float | None = None, heartbeat: float | None = None,
                      schedule_to_start: float | None = None) -> W:
        """Bind dependency ``name`` to an activity function (or ``"module:function"``),
        run by the workers of ``task_list``.

        ``timeout`` is start-to-close in seconds; ``heartbeat`` the longest
        silence between two :func:`flowy.heartbeat` calls; ``schedule_to_start``
        the longest wait for a free worker.  Unset values fall back to the
        function's ``@flowy.activity`` defaults.
        """
        check_dependency_name(name, self._specs)
        target = resolve(function)
        spec = make_spec("activity", target, retry=retry, timeout=timeout,
                         heartbeat=heartbeat, schedule_to_start=schedule_to_start)
        self.activities[name] = ActivityBinding(name, check_task_list(task_list), target, self)
        return self._configured(name, spec)

    def conf_workflow(self: W, name: str, workflow: Workflow, *,
                      retry: RetryPolicy | None = None, timeout: float | None = None) -> W:
        """Bind dependency ``name`` to a sub-workflow, called like an activity."""
        check_dependency_name(name, self._specs)
        if not isinstance(workflow, Workflow):
            raise ConfigurationError(f"conf_workflow({name!r}, ...) takes a workflow "
                                     f"declaration (a flowy.Workflow), got {workflow!r}")
        if workflow is self:
            raise ConfigurationError(f"{self!r} can't be its own sub-workflow")
        self.children[name] = workflow
        return self._configured(name, make_spec("workflow", None, retry=retry, timeout=timeout))

    def conf_timer(self: W, name: str) -> W:
        """Bind dependency ``name`` to a durable timer: ``self.NAME(seconds)``
        returns a result that finishes, with ``None``, that many seconds later,
        so ``first(self.task(), self.NAME(60))`` waits at most a minute."""
        return self._conf_wait("timer", name)

    def conf_signal(self: W, name: str) -> W:
        """Bind dependency ``name`` to the signals of that name: the n-th call
        of ``self.NAME()`` returns a result that finishes with the value of the
        n-th such signal sent to the run (``RunHandle.signal``, ``flowy signal``)."""
        return self._conf_wait("signal", name)

    def _conf_wait(self: W, kind: Literal["timer", "signal"], name: str) -> W:
        check_dependency_name(name, self._specs)
        return self._configured(name, TaskSpec(kind=kind))

    def _configured(self: W, name: str, spec: TaskSpec) -> W:
        self._specs[name] = spec
        self._codec = None  # a new dependency may declare new types
        self._definition = None
        return self

    # -- what runs use --------------------------------------------------------

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
        for workflow in self.tree():
            for target in (workflow.factory,
                           *(b.function for b in workflow.activities.values())):
                types |= hinted_types(target)
        return types

    @property
    def definition(self) -> WorkflowDefinition:
        """What the core needs to run this workflow (cached until the next ``conf_*``)."""
        if self._definition is None:
            self._definition = WorkflowDefinition(self.factory, dict(self._specs), self.codec,
                                                  self.limits)
        return self._definition

    def tree(self) -> list[Workflow]:
        """This workflow and its sub-workflows, all the way down, each once."""
        found: dict[int, Workflow] = {}
        pending: list[Workflow] = [self]
        while pending:
            workflow = pending.pop()
            if id(workflow) not in found:
                found[id(workflow)] = workflow
                pending.extend(workflow.children.values())
        return list(found.values())

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref} dependencies={sorted(self._specs)}>"


class Registry:
    """Every workflow a decider, worker or client knows, by ``name@version``.

    Two declarations can't share a ``name@version``: a process would not know
    which one a run means.  Only an in-process engine, which holds the very
    objects, may tell them apart itself (``rename_clashes``): the second
    ``LocalWorkflow(Parent)`` nested in a first is ``Parent@1~2``.
    """

    def __init__(self, workflows: Iterable[Workflow] = (), source: str = "<registry>", *,
                 rename_clashes: bool = False) -> None:
        self.source = source
        self.workflows: dict[str, Workflow] = {}
        self._refs: dict[int, str] = {}  # by id() of the declaration
        self._rename_clashes = rename_clashes
        for top in workflows:
            self.add(top)

    def add(self, top: Workflow) -> str:
        """Register ``top`` and its sub-workflows (those not registered yet);
        the ref under which ``top`` is known."""
        for workflow in top.tree():
            if id(workflow) in self._refs:
                continue
            ref, clashes = workflow.ref, 1
            while ref in self.workflows:
                if not self._rename_clashes:
                    raise ConfigurationError(
                        f"{self.source}: workflow {workflow.ref} is declared twice; declare it "
                        "once and reuse the declaration, or give one of them another name= "
                        "or version=")
                clashes += 1
                ref = f"{workflow.ref}~{clashes}"
            self.workflows[ref] = workflow
            self._refs[id(workflow)] = ref
        return self._refs[id(top)]

    def ref_of(self, workflow: Workflow) -> str:
        """The ref under which this declaration is registered."""
        return self._refs[id(workflow)]

    def workflow(self, ref: str) -> Workflow:
        try:
            return self.workflows[ref]
        except KeyError:
            raise ConfigurationError(
                f"workflow {ref} is not declared in {self.source}; {self._known()}") from None

    def latest(self, name: str) -> Workflow:
        """The workflow ``name`` at its highest version, ``name@version`` as given."""
        if "@" in name:
            return self.workflow(name)
        versions = [w for w in self.workflows.values() if w.name == name]
        if not versions:
            raise ConfigurationError(f"no workflow named {name!r} in {self.source}; "
                                     f"{self._known()}")
        return max(versions, key=lambda w: _version_key(w.version))

    def _known(self) -> str:
        return f"known: {', '.join(sorted(self.workflows)) or 'none'}"

    def task_lists(self) -> list[str]:
        return sorted({binding.task_list for workflow in self.workflows.values()
                       for binding in workflow.activities.values()})


def _version_key(version: str) -> list[tuple[int, int | str]]:
    """Orders versions as people read them: "10" after "9", "1.10" after "1.9"."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.findall(r"\d+|\D+", version)]


def load_registry(target: str) -> Registry:
    """The registry named by ``package.module`` (every Workflow at its top
    level) or ``package.module:attribute`` (a Workflow, a list of them, or a
    Registry)."""
    module_name, _, attribute = target.partition(":")
    try:
        module: ModuleType = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"can't import the definitions module {module_name!r}: {exc}. Run from the "
            "directory that holds it, or add that directory to PYTHONPATH") from exc
    if not attribute:
        found = [v for v in vars(module).values() if isinstance(v, Workflow)]
        if not found:
            raise ConfigurationError(f"module {module_name} declares no Workflow at its top "
                                     "level; name one with MODULE:ATTRIBUTE")
        return Registry(found, module_name)
    value: Any = getattr(module, attribute, None)
    if isinstance(value, Registry):
        return value
    if isinstance(value, Workflow):
        return Registry([value], target)
    if isinstance(value, (list, tuple)) and all(isinstance(v, Workflow) for v in value):
        return Registry(value, target)
    raise ConfigurationError(f"{target} is not a Workflow, a list of them or a Registry")
