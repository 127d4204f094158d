"""Shared fixtures for the LocalWorkflow end-to-end tests (tests/test_local_*.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

# ``tests.activities`` must be importable under that name (in this process and in
# forked pool workers) so that activities pickle by reference and
# ``conf_activity("x", "tests.activities:square")`` resolves.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from flowy import LocalWorkflow  # noqa: E402


@pytest.fixture(params=[ThreadPoolExecutor, ProcessPoolExecutor],
                ids=["threads", "processes"])
def executor(request: pytest.FixtureRequest) -> type[Executor]:
    """The executor class every end-to-end test runs with."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def make_workflow(executor: type[Executor]) -> Iterator[Callable[..., LocalWorkflow]]:
    """``make_workflow(factory, **kwargs)``: a LocalWorkflow on the test's executor.

    Every workflow made is closed after the test, which also shuts its pool
    down, so worker threads and processes don't pile up over the session.
    """
    created: list[LocalWorkflow] = []

    def make(factory: Any, **kwargs: Any) -> LocalWorkflow:
        kwargs.setdefault("executor", executor)
        kwargs.setdefault("activity_workers", 4)
        workflow = LocalWorkflow(factory, **kwargs)
        created.append(workflow)
        return workflow

    yield make
    for workflow in reversed(created):  # parents before the sub-workflows they use
        workflow.close()


@pytest.fixture
def calls_file(tmp_path: Path) -> Callable[[str], str]:
    """``calls_file(name)``: a path (as str) under tmp_path for activities to record calls in."""
    def path(name: str = "calls") -> str:
        return str(tmp_path / f"{name}.txt")
    return path


# -- the AWS engine --------------------------------------------------------------


@pytest.fixture(scope="session")
def aws_endpoint() -> Iterator[str]:
    """The emulator (or AWS) endpoint: $FLOWY_TEST_ENDPOINT, or a moto server started here."""
    from flowy.testing import aws_endpoint as endpoint

    with endpoint() as url:
        yield url


@pytest.fixture
def make_stack(aws_endpoint: str, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_stack(**options)``: a fresh namespace with processes; all stopped after the test."""
    from tests.aws_support import Stack

    stacks: list[Stack] = []

    def make(**options: Any) -> Stack:
        stack = Stack(aws_endpoint, tmp_path, **options)
        stacks.append(stack)
        return stack

    yield make
    for stack in stacks:
        stack.stop()


@pytest.fixture(params=["memory", "aws"])
def backend(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh backend of each kind: in memory, and a new namespace on the AWS endpoint."""
    if request.param == "memory":
        from flowy.backends.memory import memory_backend

        memory = memory_backend()
        yield memory
        memory.close()
        return
    from tests.aws_support import stack_backend

    yield stack_backend(request.getfixturevalue("aws_endpoint"))


@pytest.fixture(scope="module", params=["memory", "aws"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Any]:
    """The engine (a decider and a worker) serving tests.scenarios, on each backend.

    One per module and backend, shared by the module's tests: each looks only
    at runs it started.  A module serves other declarations by naming them in
    ``ENGINE_DEFINITIONS``.  A test that needs a namespace of its own, or other
    deciders and workers, takes ``make_engine``.
    """
    from tests.aws_support import DEFINITIONS
    from tests.engines import EngineUnderTest

    endpoint = request.getfixturevalue("aws_endpoint") if request.param == "aws" else None
    under_test = EngineUnderTest(request.param, endpoint,
                                 tmp_path_factory.mktemp(f"{request.param}-engine"),
                                 definitions=getattr(request.module, "ENGINE_DEFINITIONS",
                                                     DEFINITIONS))
    yield under_test
    under_test.stop()


@pytest.fixture(params=["memory", "aws"])
def make_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """``make_engine(serve=True)``: a fresh engine on each backend (``serve=False``:
    no decider or worker yet, the test starts its own); all stopped after the test."""
    from tests.engines import EngineUnderTest

    endpoint = request.getfixturevalue("aws_endpoint") if request.param == "aws" else None
    engines: list[EngineUnderTest] = []

    def make(*, serve: bool = True) -> EngineUnderTest:
        engines.append(EngineUnderTest(request.param, endpoint, tmp_path, serve=serve))
        return engines[-1]

    yield make
    for under_test in engines:
        under_test.stop()
