"""Testing workflows: what a user imports to test theirs.

* :class:`WorkflowEnvironment`: the real engine in this process, on a
  :class:`ManualClock` that skips through timers, retry delays and timeouts
  while the test waits for a result, so that an hour's wait takes no time.
* :func:`replay` (and :func:`load_history`): replay a recorded history
  against today's workflow code; raises :class:`flowy.NondeterminismError`
  naming the call that changed.
* :mod:`flowy.testing.history`: build histories by hand (:class:`HistoryBuilder`)
  and drive the pure core with them.
* :class:`ActivityEnvironment`: run an activity as a worker would, recording
  its heartbeats.
* :func:`aws_endpoint` and :class:`LocalAWS`: a moto server (or the endpoint
  ``FLOWY_TEST_ENDPOINT`` names) for tests that need AWS itself.
* :mod:`flowy.testing.simulation`: the deterministic simulation of the
  engine under faults (``flowy simulate``).
* pytest fixtures, registered by Flowy's ``pytest11`` entry point
  (:mod:`flowy.testing.pytest_plugin`): ``flowy_env``,
  ``flowy_activity_env``, ``flowy_aws_endpoint``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..backends.clocks import ManualClock
from .activity import ActivityEnvironment
from .aws import aws_endpoint
from .environment import SkippingRunHandle, WorkflowEnvironment
from .history import HistoryBuilder
from .replayer import load_history, replay

if TYPE_CHECKING:
    from ..backends.aws.emulator import LocalAWS

__all__ = ["ActivityEnvironment", "HistoryBuilder", "LocalAWS", "ManualClock",
           "SkippingRunHandle", "WorkflowEnvironment", "aws_endpoint", "load_history", "replay"]


def __getattr__(name: str) -> Any:
    """``LocalAWS`` on first use: it lives with the AWS backend, which needs boto3."""
    if name == "LocalAWS":
        from ..backends.aws.emulator import LocalAWS

        return LocalAWS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
