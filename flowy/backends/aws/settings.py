"""Where a namespace's resources live: names of the table, queues and bucket.

Everything the AWS engine touches is named from one *namespace*, so two
namespaces in one account never see each other's runs.  Nothing is read at
import time; :meth:`AWSSettings.from_env` reads the environment when asked.
boto3 honours ``AWS_ENDPOINT_URL`` itself, so pointing the
engine at an emulator needs no code change; ``endpoint_url`` here only
overrides it.
"""

from __future__ import annotations

import os
import re

import boto3
from botocore.exceptions import ProfileNotFound
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ...core.errors import ConfigurationError
from ..base import DECISIONS, DEFAULT_MAX_RECEIVES, TASKS, TIMERS

# A namespace is words of a-z0-9 joined by single '-' (no "--", no '-' at
# either end), and task queues are flowy-NS--tasks-TASKLIST: the first "--"
# of a queue name ends its namespace, so that an IAM pattern
# flowy-NS--tasks-* can't match a queue of another namespace (with prod-tasks-x
# allowed, flowy-prod-tasks-* matched flowy-prod-tasks-x-decisions.fifo).
# infra/*.yaml hold the same patterns.
NAMESPACE_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
NAMESPACE_MAX = 30
# Not ending in -dlq: the queue of task list "x-dlq" would be the dead-letter
# queue of task list "x", and IAM patterns tell them apart by that suffix.
TASK_LIST_PATTERN = r"^(?!.*-dlq$)[A-Za-z0-9_-]{1,40}$"
TASK_SEPARATOR = "--tasks-"
QUEUE_NAME_MAX = 80  # characters, SQS's limit
_NAMESPACE = re.compile(NAMESPACE_PATTERN)
_TASK_LIST = re.compile(TASK_LIST_PATTERN)

DEFAULT_TASK_LIST = "default"
FALLBACK_REGION = "us-east-1"


def default_region() -> str:
    """The region when none is given: ``AWS_REGION``, else boto3's
    (``AWS_DEFAULT_REGION``, then the profile's ``region``), else us-east-1.

    boto3 does not read ``AWS_REGION``, which the other AWS SDKs, the AWS CLI
    v2 and Lambda use (before ``AWS_DEFAULT_REGION``), so it is read here
    first; the rest is boto3's own chain, not a copy of it.
    """
    try:
        found = os.environ.get("AWS_REGION") or boto3.session.Session().region_name
    except ProfileNotFound as exc:
        raise ConfigurationError(f"{exc}: set AWS_PROFILE to a profile of your AWS config "
                                 "file, or unset it") from None
    return found or FALLBACK_REGION


def check_task_list(name: str) -> str:
    if not _TASK_LIST.match(name):
        raise ConfigurationError(
            f"task list {name!r} can't name an SQS queue: use 1 to 40 letters, digits, "
            "'-' or '_', not ending in '-dlq' (the suffix of dead-letter queues)")
    return name


class AWSSettings(BaseModel):
    """How to reach one namespace of Flowy resources.

    ``namespace`` prefixes every resource name (at most 30 lower-case letters,
    digits and single '-' between them).  ``bucket`` holds payloads too large for a
    queue message or a table item; S3 bucket names are global, so set it when
    deploying to a real account.
    """

    model_config = ConfigDict(frozen=True)

    namespace: str = "dev"
    # Resolved when the settings are made, so that a profile's region is not
    # overridden by a default of ours.
    region: str = Field(default_factory=default_region)
    endpoint_url: str | None = None
    bucket: str | None = None
    # Seconds a worker or decider keeps a received message hidden before it
    # extends the lease again.
    visibility_timeout: int = Field(default=60, ge=10, le=43200)
    # Deliveries after which a message goes to its dead-letter queue.
    max_receives: int = Field(default=DEFAULT_MAX_RECEIVES, ge=2, le=999)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if len(value) > NAMESPACE_MAX or not _NAMESPACE.match(value):
            raise ValueError(
                f"namespace {value!r} must be 1 to {NAMESPACE_MAX} lower-case letters, digits "
                "or '-', with no '--' and no '-' at either end")
        return value

    @classmethod
    def from_env(cls, **overrides: object) -> AWSSettings:
        """Settings from ``FLOWY_NAMESPACE``, ``FLOWY_BUCKET``,
        ``FLOWY_VISIBILITY_TIMEOUT``, ``FLOWY_MAX_RECEIVES`` and
        ``AWS_ENDPOINT_URL``, the region from :func:`default_region`;
        ``overrides`` win where they are not None."""
        values: dict[str, object] = {
            "namespace": os.environ.get("FLOWY_NAMESPACE"),
            "bucket": os.environ.get("FLOWY_BUCKET"),
            "visibility_timeout": os.environ.get("FLOWY_VISIBILITY_TIMEOUT"),
            "max_receives": os.environ.get("FLOWY_MAX_RECEIVES"),
            "endpoint_url": os.environ.get("AWS_ENDPOINT_URL"),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})  # type: ignore[arg-type]
        except ConfigurationError:  # the region's own, which says what to do
            raise
        except ValueError as exc:
            raise ConfigurationError(f"bad Flowy AWS settings: {exc}") from exc

    # -- resource names -------------------------------------------------------

    @property
    def prefix(self) -> str:
        return f"flowy-{self.namespace}"

    @property
    def table(self) -> str:
        return self.prefix

    @property
    def payload_bucket(self) -> str:
        return self.bucket or f"{self.prefix}-payloads"

    @property
    def decision_queue(self) -> str:
        return f"{self.prefix}-decisions.fifo"

    @property
    def timer_queue(self) -> str:
        return f"{self.prefix}-timers"

    def task_queue(self, task_list: str) -> str:
        name = f"{self.prefix}{TASK_SEPARATOR}{check_task_list(task_list)}"
        if len(self.dead_letter_queue(name)) > QUEUE_NAME_MAX:
            raise ConfigurationError(
                f"task list {task_list!r} is too long for namespace {self.namespace!r}: its "
                f"dead-letter queue {self.dead_letter_queue(name)} would be over SQS's "
                f"{QUEUE_NAME_MAX} characters")
        return name

    def queue_name(self, logical: str) -> str:
        """The SQS queue behind one of the engine's logical queue names
        (:data:`~flowy.backends.base.DECISIONS`, ``TIMERS``, ``task_queue(x)``)."""
        if logical == DECISIONS:
            return self.decision_queue
        if logical == TIMERS:
            return self.timer_queue
        if logical.startswith(TASKS):
            return self.task_queue(logical[len(TASKS):])
        raise ConfigurationError(
            f"{logical!r} is not a Flowy queue: expected {DECISIONS!r}, {TIMERS!r} or "
            f"{TASKS!r} followed by a task list")

    @staticmethod
    def dead_letter_queue(queue_name: str) -> str:
        """The dead-letter queue of ``queue_name`` (FIFO queues keep the suffix)."""
        if queue_name.endswith(".fifo"):
            return queue_name[: -len(".fifo")] + "-dlq.fifo"
        return f"{queue_name}-dlq"

    @property
    def how_to_create(self) -> str:
        """What to do about a missing table or queue of the namespace."""
        return (f"create the namespace's resources with 'flowy setup --namespace "
                f"{self.namespace}' (or deploy infra/flowy.yaml)")

    @property
    def location(self) -> str:
        """Where the namespace lives, for logs: endpoint (or AWS), region, namespace."""
        return (f"{self.endpoint_url or 'AWS'}, region {self.region}, "
                f"namespace {self.namespace}")

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``boto3.client``."""
        kwargs = {"region_name": self.region}
        if self.endpoint_url:
            kwargs["endpoint_url"] = self.endpoint_url
        return kwargs
