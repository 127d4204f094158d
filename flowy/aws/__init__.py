"""The distributed engine: deciders and activity workers on SQS and DynamoDB.

Needs the ``aws`` extra (``pip install 'flowy[aws]'``).  Declare workflows
with :class:`AWSWorkflow`, run ``flowy decider`` and ``flowy worker``
processes, and start runs with :class:`FlowyClient` or ``flowy start``.
"""

from .client import FlowyClient, RunHandle, RunNotFound
from .definitions import AWSWorkflow, Registry, load_registry
from .settings import AWSSettings

__all__ = ["AWSSettings", "AWSWorkflow", "FlowyClient", "Registry", "RunHandle", "RunNotFound",
           "load_registry"]
