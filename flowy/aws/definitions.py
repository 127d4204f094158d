"""Declaring workflows for AWS: names, versions, task lists, outside the workflow code.

An :class:`AWSWorkflow` wraps the same factory that ``LocalWorkflow`` runs
and binds each dependency to an activity (by name and version, on a task
list) or to another ``AWSWorkflow``.  Deciders and workers load the
declarations from a module (:func:`load_registry`); the decider needs the
workflow code, the worker the activity functions.
"""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from ..codec import DEFAULT_CODEC
from ..config import Declaration, check_dependency_name, make_spec, resolve, sub_workflow_spec
from ..core.codec import Codec
from ..core.errors import ConfigurationError
from ..core.replay import WorkflowDefinition
from ..core.spec import RetryPolicy
from ..core.workflow import WorkflowFactory
from .settings import DEFAULT_TASK_LIST, check_task_list


@dataclass(frozen=True)
class ActivityBinding:
    """One activity implementation, as workers know it: ``name@version`` on a task list."""

    name: str
    version: str
    task_list: str
    function: Callable[..., Any]
    workflow: AWSWorkflow = field(compare=False)  # the declaring one: its codec encodes inputs

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def codec(self) -> Codec:
        return self.workflow.codec

    @property
    def is_async(self) -> bool:
        return asyncio.iscoroutinefunction(self.function)


class AWSWorkflow(Declaration):
    """A workflow declared for the AWS engine.

    ``name`` and ``version`` identify it in the table and the CLI; change the
    version when the workflow code changes in a way that would break replay
    of runs in flight.
    """

    def __init__(self, factory: WorkflowFactory, *, name: str, version: str = "1",
                 codec: Codec = DEFAULT_CODEC) -> None:
        for label, value in (("name", name), ("version", version)):
            if not value or "@" in value or "#" in value:
                raise ConfigurationError(
                    f"workflow {label} {value!r} must be non-empty, without '@' or '#'")
        super().__init__(factory, codec)
        self.name = name
        self.version = version
        self.activities: dict[str, ActivityBinding] = {}
        self.children: dict[str, AWSWorkflow] = {}

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    def conf_activity(self, dependency: str, function: Callable[..., Any] | str, *,
                      name: str | None = None, version: str = "1",
                      task_list: str = DEFAULT_TASK_LIST, retry: RetryPolicy | None = None,
                      timeout: float | None = None, heartbeat: float | None = None,
                      schedule_to_start: float | None = None) -> AWSWorkflow:
        """Bind ``dependency`` to activity ``name@version`` (``name`` defaults to
        the dependency), run by workers of ``task_list``."""
        check_dependency_name(dependency, self._specs)
        target = resolve(function)
        activity_name = name or dependency
        if "@" in activity_name or "@" in version:
            raise ConfigurationError(f"activity name and version can't contain '@': "
                                     f"{activity_name!r}, {version!r}")
        spec = make_spec("activity", target, retry=retry, timeout=timeout, heartbeat=heartbeat,
                         schedule_to_start=schedule_to_start)
        self.activities[dependency] = ActivityBinding(activity_name, version,
                                                      check_task_list(task_list), target, self)
        return self._configured(dependency, spec)

    def conf_workflow(self, dependency: str, workflow: AWSWorkflow, *,
                      retry: RetryPolicy | None = None,
                      timeout: float | None = None) -> AWSWorkflow:
        """Bind ``dependency`` to a sub-workflow, called like an activity."""
        spec = sub_workflow_spec(self, dependency, workflow, self._specs, retry=retry,
                                 timeout=timeout)
        self.children[dependency] = workflow
        return self._configured(dependency, spec)

    def _activity_functions(self) -> Iterable[object]:
        return [binding.function for binding in self.activities.values()]

    def _sub_workflows(self) -> Iterable[AWSWorkflow]:
        return self.children.values()

    @property
    def definition(self) -> WorkflowDefinition:
        return WorkflowDefinition(self.factory, dict(self._specs), self.codec)

    def __repr__(self) -> str:
        return f"<AWSWorkflow {self.ref} dependencies={sorted(self._specs)}>"


class Registry:
    """Every workflow and activity a decider or worker process knows, by reference."""

    def __init__(self, workflows: Iterable[AWSWorkflow], source: str = "<registry>") -> None:
        self.source = source
        self.workflows: dict[str, AWSWorkflow] = {}
        self.activities: dict[str, ActivityBinding] = {}
        pending = list(workflows)
        while pending:
            workflow = pending.pop()
            known = self.workflows.setdefault(workflow.ref, workflow)
            if known is not workflow:
                if known.factory is not workflow.factory:
                    raise ConfigurationError(
                        f"{source}: workflow {workflow.ref} is declared twice with different "
                        "code; give one of them another name or version")
                continue
            pending.extend(workflow.children.values())
            for binding in workflow.activities.values():
                other = self.activities.setdefault(binding.ref, binding)
                if (other.function, other.task_list, other.workflow.declared_codec) != (
                        binding.function, binding.task_list, binding.workflow.declared_codec):
                    raise ConfigurationError(
                        f"{source}: activity {binding.ref} is bound to two different functions, "
                        "task lists or codecs; give one of them another name or version")

    def workflow(self, ref: str) -> AWSWorkflow:
        try:
            return self.workflows[ref]
        except KeyError:
            raise ConfigurationError(
                f"workflow {ref} is not declared in {self.source}; {self._known()}") from None

    def latest(self, name: str) -> AWSWorkflow:
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
        return sorted({binding.task_list for binding in self.activities.values()})

    def activities_on(self, task_lists: Iterable[str]) -> Mapping[str, ActivityBinding]:
        wanted = set(task_lists)
        return {ref: b for ref, b in self.activities.items() if b.task_list in wanted}


def _version_key(version: str) -> list[tuple[int, int | str]]:
    """Orders versions as people read them: "10" after "9", "1.10" after "1.9"."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.findall(r"\d+|\D+", version)]


def load_registry(target: str) -> Registry:
    """The registry named by ``package.module`` (every AWSWorkflow at its top
    level) or ``package.module:attribute`` (an AWSWorkflow, a list of them, or
    a Registry)."""
    module_name, _, attribute = target.partition(":")
    try:
        module: ModuleType = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigurationError(
            f"can't import the definitions module {module_name!r}: {exc}. Run from the "
            "directory that holds it, or add that directory to PYTHONPATH") from exc
    if not attribute:
        found = [v for v in vars(module).values() if isinstance(v, AWSWorkflow)]
        if not found:
            raise ConfigurationError(f"module {module_name} declares no AWSWorkflow at its top "
                                     "level; name one with MODULE:ATTRIBUTE")
        return Registry(found, module_name)
    value: Any = getattr(module, attribute, None)
    if isinstance(value, Registry):
        return value
    if isinstance(value, AWSWorkflow):
        return Registry([value], target)
    if isinstance(value, (list, tuple)) and all(isinstance(v, AWSWorkflow) for v in value):
        return Registry(value, target)
    raise ConfigurationError(f"{target} is not an AWSWorkflow, a list of them or a Registry")
