"""The bodies of the engine's queue messages, validated on receipt.

A body that does not parse is *poison*: the receiver sends it to the queue's
dead-letter queue with the reason, logs it, and goes on.
"""

from __future__ import annotations

import functools
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..backends.base import Outgoing
from ..core.errors import MalformedMessage
from ..core.protocol import Timer, TimerKind
from ..core.spec import IDENTIFIER_PATTERN, MAX_IDENTIFIER, MAX_TIMEOUT


class _Body(BaseModel):
    # No NaN or infinity: a NaN fire time compares as due at once.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Seconds a timeout may last, the latest time a timer may be due, and what
# an id, name or key may be (see flowy.core.spec): beyond them a message is
# malformed.
Seconds = Annotated[float, Field(ge=0, le=MAX_TIMEOUT)]
Instant = Annotated[float, Field(ge=0, le=1e11)]
Identifier = Annotated[str, Field(min_length=1, max_length=MAX_IDENTIFIER,
                                  pattern=IDENTIFIER_PATTERN)]
# An attempt's token (empty for attempts scheduled before tokens).
Token = Annotated[str, Field(max_length=64, pattern=r"^[0-9a-f]*$")]


class Notification(_Body):
    """Decision queue: run ``run`` has new facts (or unsent messages)."""

    run: Identifier


class TaskMessage(_Body):
    """Activity queue: run one attempt of ``workflow``'s activity ``dependency``."""

    run: Identifier
    key: Identifier
    workflow: Identifier  # name@version: its declaration binds the dependency to a function
    dependency: Identifier
    input: str
    token: Token = ""  # the attempt's: its claim and outcome must carry it
    start_to_close: Seconds | None = None
    heartbeat: Seconds | None = None
    schedule_to_start: Seconds | None = None

    @property
    def watched(self) -> bool:
        """Whether a timer watches this attempt's start or heartbeats."""
        return (self.start_to_close is not None or self.heartbeat is not None
                or self.schedule_to_start is not None)


class TimerMessage(_Body):
    """Timer queue: at ``fire_at``, fire timer ``key`` or check attempt ``key``'s timeout."""

    run: Identifier
    key: Identifier
    kind: TimerKind
    fire_at: Instant
    limit: Seconds | None = None  # the timeout, in seconds, for heartbeat checks
    token: Token = ""  # of the attempt a timeout check is about


def timer_message(run: str, timer: Timer, limit: float | None = None) -> TimerMessage:
    return TimerMessage(run=run, key=timer.key, kind=timer.kind, fire_at=timer.fire_at,
                        limit=limit, token=timer.token)


def parse(model: type[_Body], body: str) -> _Body:
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}"
                             for e in exc.errors()[:3])
        raise MalformedMessage(f"not a {model.__name__}: {problems}") from None


def notification(run: str, why: str) -> Outgoing:
    """A decision-queue message saying that run ``run`` has news; ``why``
    identifies the news, so that a re-sent notification is deduplicated."""
    return Outgoing(_notification_body(run), group=run, dedup=f"{run}\x1f{why}")


@functools.lru_cache(maxsize=4096)
def _notification_body(run: str) -> str:
    # A run is notified at every step it takes: its body is made once.
    return Notification(run=run).model_dump_json()


def timer_delay(fire_at: float, now: float, max_delay: float) -> float:
    """Seconds to delay a timer message, at most ``max_delay``: a later timer
    is re-armed when it arrives early.  (Backends round up, never down.)"""
    return max(0.0, min(max_delay, fire_at - now))


def timer_outgoing(timer: TimerMessage, now: float, max_delay: float) -> Outgoing:
    return Outgoing(timer.model_dump_json(), delay=timer_delay(timer.fire_at, now, max_delay))
