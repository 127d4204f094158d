"""The distributed engine: deciders and activity workers on SQS and DynamoDB.

Needs the ``aws`` extra (``pip install 'flowy[aws]'``).  Declare workflows
with :class:`AWSWorkflow`, run ``flowy decider`` and ``flowy worker``
processes, and start runs with :class:`FlowyClient` or ``flowy start``.
"""

try:
    import aioboto3  # noqa: F401 - checked here so that the error says what to install
    import boto3  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(f"the AWS engine needs the aws extra ({exc}): "
                      "pip install 'flowy[aws]'") from None

from .client import FlowyClient, RunHandle, RunNotFound
from .definitions import AWSWorkflow, Registry, load_registry
from .settings import AWSSettings

__all__ = ["AWSSettings", "AWSWorkflow", "FlowyClient", "Registry", "RunHandle", "RunNotFound",
           "load_registry"]
