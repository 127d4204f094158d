"""pytest fixtures for testing workflows, registered by Flowy's ``pytest11``
entry point: a project that installs Flowy has them, with no import and no
conftest.py.

``flowy_env``
    A fresh :class:`~flowy.testing.WorkflowEnvironment` (the engine on a
    manual clock that skips time), closed after the test.
``flowy_activity_env``
    A fresh :class:`~flowy.testing.ActivityEnvironment`, recording heartbeats.
``flowy_aws_endpoint``
    The URL of an AWS endpoint for the session: ``$FLOWY_TEST_ENDPOINT``, or a
    moto server started on first use and stopped at the end (see
    :func:`flowy.testing.aws_endpoint`).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import ActivityEnvironment, WorkflowEnvironment, aws_endpoint


@pytest.fixture
def flowy_env() -> Iterator[WorkflowEnvironment]:
    """A fresh WorkflowEnvironment (the engine on a clock that skips idle time), closed after."""
    with WorkflowEnvironment() as env:
        yield env


@pytest.fixture
def flowy_activity_env() -> ActivityEnvironment:
    """A fresh ActivityEnvironment: run activities as a worker does, heartbeats recorded."""
    return ActivityEnvironment()


@pytest.fixture(scope="session")
def flowy_aws_endpoint() -> Iterator[str]:
    """An AWS endpoint URL for the session: $FLOWY_TEST_ENDPOINT, or a moto server started."""
    with aws_endpoint() as endpoint:
        yield endpoint
