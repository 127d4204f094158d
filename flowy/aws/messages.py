"""The bodies of the engine's SQS messages, validated on receipt.

A body that does not parse is *poison*: the receiver sends it to the queue's
dead-letter queue with the reason as a message attribute, logs the reason,
and goes on.  Payloads ride inside as ``{"data": ...}`` or ``{"blob": key}``
(see :mod:`flowy.aws.payloads`).
"""

from __future__ import annotations

import hashlib
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..core.errors import FlowyError

TimerKind = Literal["timer", "schedule_to_start", "start_to_close", "heartbeat"]


class MalformedMessage(FlowyError):
    """A message body that is not one of ours; it goes to the dead-letter queue."""


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Notification(_Body):
    """Decision queue: run ``run`` has new facts (or unsent messages)."""

    run: str


class TaskMessage(_Body):
    """Activity queue: run one attempt."""

    run: str
    key: str
    activity: str  # name@version
    input: dict[str, str]
    start_to_close: float | None = None
    heartbeat: float | None = None
    schedule_to_start: float | None = None

    @property
    def watched(self) -> bool:
        """Whether a timer watches this attempt's start or heartbeats."""
        return (self.start_to_close is not None or self.heartbeat is not None
                or self.schedule_to_start is not None)


class TimerMessage(_Body):
    """Timer queue: at ``fire_at``, fire timer ``key`` or check attempt ``key``'s timeout."""

    run: str
    key: str
    kind: TimerKind
    fire_at: float
    limit: float | None = None  # the timeout, in seconds, for heartbeat checks


def parse(model: type[_Body], body: str) -> _Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise MalformedMessage(f"not a {model.__name__}: {problems}") from None


def dedup_id(*parts: str) -> str:
    """A FIFO deduplication id (at most 128 characters) for a message's identity."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
