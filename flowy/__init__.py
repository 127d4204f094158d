"""Flowy: workflows as plain Python, run locally or on SQS and DynamoDB.

A workflow class receives one proxy per dependency; calling a proxy returns a
lazy result at once, and Flowy runs in parallel every call made before the
workflow first needs a value.
"""

from .codec import DEFAULT_CODEC, JSONCodec
from .config import activity
from .core.codec import Codec
from .core.combinators import finish_order, first, first_n, parallel_reduce, restart, wait
from .core.errors import (
    ConfigurationError,
    EncodeError,
    FlowyError,
    LoopDied,
    NondeterminismError,
    RunCancelled,
    TaskError,
    TaskTimedout,
)
from .core.result import Result
from .core.spec import RetryPolicy
from .engines.local import LocalRun, LocalWorkflow
from .worker.activity import heartbeat

__version__ = "0.5.0"

__all__ = [
    "DEFAULT_CODEC",
    "Codec",
    "ConfigurationError",
    "EncodeError",
    "FlowyError",
    "JSONCodec",
    "LocalRun",
    "LocalWorkflow",
    "LoopDied",
    "NondeterminismError",
    "Result",
    "RetryPolicy",
    "RunCancelled",
    "TaskError",
    "TaskTimedout",
    "activity",
    "finish_order",
    "first",
    "first_n",
    "heartbeat",
    "parallel_reduce",
    "restart",
    "wait",
]
