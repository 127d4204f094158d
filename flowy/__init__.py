"""Flowy: workflows as plain Python, run locally or on SQS and DynamoDB.

A workflow class receives one proxy per dependency; calling a proxy returns a
lazy result at once, and Flowy runs in parallel every call made before the
workflow first needs a value.
"""

from .client import FlowyClient, RunHandle
from .codec import DEFAULT_CODEC, JSONCodec
from .config import activity
from .core.codec import Codec
from .core.combinators import finish_order, first, first_n, parallel_reduce, restart, wait
from .core.errors import (
    ConfigurationError,
    DecisionLimitError,
    EncodeError,
    FlowyError,
    HistoryError,
    HistoryLimitError,
    LimitError,
    LoopDied,
    MalformedMessage,
    NondeterminismError,
    PayloadError,
    RunCancelled,
    RunNotFound,
    ServiceError,
    TaskError,
    TaskTimedout,
    UnsupportedFormatError,
)
from .core.limits import Limits
from .core.result import Result
from .core.spec import RetryPolicy
from .declaration import Registry, Workflow, load_registry
from .engines.local import LocalWorkflow
from .payload_codec import PayloadCodec
from .worker.activity import current_attempt, heartbeat

__version__ = "0.5.0"

__all__ = [
    "Codec",
    "ConfigurationError",
    "DEFAULT_CODEC",
    "DecisionLimitError",
    "EncodeError",
    "FlowyClient",
    "FlowyError",
    "HistoryError",
    "HistoryLimitError",
    "JSONCodec",
    "LimitError",
    "Limits",
    "LocalWorkflow",
    "LoopDied",
    "MalformedMessage",
    "NondeterminismError",
    "PayloadCodec",
    "PayloadError",
    "Registry",
    "Result",
    "RetryPolicy",
    "RunCancelled",
    "RunHandle",
    "RunNotFound",
    "ServiceError",
    "TaskError",
    "TaskTimedout",
    "UnsupportedFormatError",
    "Workflow",
    "activity",
    "current_attempt",
    "finish_order",
    "first",
    "first_n",
    "heartbeat",
    "load_registry",
    "parallel_reduce",
    "restart",
    "wait",
]
