"""What the core needs to know about each dependency: its kind, retries and timeouts."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import ConfigurationError, ErrorInfo, qualified_name
from .events import DependencyKind


def _as_tuple(types: Iterable[type[BaseException] | str] | type[BaseException] | str
              ) -> tuple[type[BaseException] | str, ...]:
    if isinstance(types, (str, type)):
        return (types,)
    return tuple(types)


def _type_name(t: type[BaseException] | str) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, type) and issubclass(t, BaseException):
        return qualified_name(t)
    raise ConfigurationError(
        f"RetryPolicy.non_retryable takes exception classes or their qualified names, got {t!r}")


# The longest timeout: SWF's longest execution.  Messages carrying a longer
# one are malformed (flowy.worker.messages).
MAX_TIMEOUT = 366 * 24 * 3600.0
# Ids, names and keys in messages: no whitespace or control characters (none
# can forge a log line), at most SWF's 256 characters.  A declared name is
# shorter, leaving room for what keys add to it ("-0-1.backoff").
IDENTIFIER_PATTERN = r"^[^\s\x00-\x1f\x7f-\x9f]+$"
MAX_IDENTIFIER = 256
MAX_NAME = 200


def check_name(label: str, value: object, *, forbidden: str = "",
               limit: int = MAX_NAME) -> str:
    """``value``, if it can be a declared name (or, with ``limit`` =
    :data:`MAX_IDENTIFIER`, an id given from outside): non-empty, at most
    ``limit`` characters, no whitespace, control characters or ``forbidden``."""
    if (not isinstance(value, str) or not value or len(value) > limit
            or not re.match(IDENTIFIER_PATTERN, value) or any(c in value for c in forbidden)):
        raise ConfigurationError(
            f"{label} {str(value)[:100]!r} must be 1 to {limit} characters, without spaces "
            f"or control characters" + (f" or any of {forbidden!r}" if forbidden else ""))
    return value


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often, and how long apart, a failed or timed-out task is tried again.

    The vocabulary follows tenacity's: ``max_attempts`` is ``stop_after_attempt``,
    ``initial_delay``/``backoff``/``max_delay`` are ``wait_exponential``'s
    multiplier, base and max, and ``non_retryable`` is
    ``retry_if_not_exception_type``.  The delay before attempt ``n + 1`` is
    ``min(max_delay, initial_delay * backoff ** (n - 1))``.  There is no jitter,
    because the delay is part of the history and must be the same on replay.

    ``non_retryable`` takes exception classes or their qualified names
    (``"builtins.ValueError"``); an error whose type is one of them, or a
    subclass, is not retried.  A timeout is a ``flowy.TaskTimedout``: list that
    class to stop retrying timeouts.
    """

    max_attempts: int = 3
    initial_delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 60.0
    non_retryable: tuple[type[BaseException] | str, ...] = ()
    _non_retryable_names: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise ConfigurationError(
                f"RetryPolicy.max_attempts must be an integer >= 1, got {self.max_attempts!r}")
        if self.initial_delay < 0 or self.max_delay < 0:
            raise ConfigurationError("RetryPolicy delays must be >= 0 seconds")
        if self.backoff < 1:
            raise ConfigurationError(f"RetryPolicy.backoff must be >= 1, got {self.backoff!r}")
        names = frozenset(_type_name(t) for t in _as_tuple(self.non_retryable))
        object.__setattr__(self, "non_retryable", _as_tuple(self.non_retryable))
        object.__setattr__(self, "_non_retryable_names", names)

    def delay(self, attempt: int) -> float:
        """Seconds to wait after attempt ``attempt`` failed, before the next one."""
        return float(min(self.max_delay, self.initial_delay * self.backoff ** (attempt - 1)))

    def should_retry(self, attempt: int, error: ErrorInfo) -> bool:
        if attempt >= self.max_attempts:
            return False
        return self._non_retryable_names.isdisjoint(error.type_mro or (error.type_name,))


NO_RETRY = RetryPolicy(max_attempts=1)


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """The configuration of one dependency, as the decider applies it.

    Timeouts are in seconds, ``None`` for no limit: ``start_to_close`` bounds
    one attempt once a worker has started it, ``schedule_to_start`` the time it
    may wait in the queue, and ``heartbeat`` the time between two heartbeats.
    A ``timer`` dependency is called with a number of seconds and finishes (with
    ``None``) that long after; a ``signal`` dependency is called with nothing and
    finishes with the value of the next signal of its name.  Neither retries.
    """

    kind: DependencyKind = "activity"
    retry: RetryPolicy = NO_RETRY
    start_to_close: float | None = None
    schedule_to_start: float | None = None
    heartbeat: float | None = None

    def __post_init__(self) -> None:
        for name in ("start_to_close", "schedule_to_start", "heartbeat"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= MAX_TIMEOUT:
                raise ConfigurationError(
                    f"timeout {name} must be a number of seconds > 0 and at most "
                    f"{MAX_TIMEOUT:.0f} (a year), or None, got {value!r}")
