"""The one error hierarchy of Flowy.

Every error Flowy raises derives from :class:`FlowyError`.  The public classes
report ``flowy`` as their module so that their qualified type names, which are
recorded in histories, read ``flowy.TaskError`` wherever they were raised.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass

# Bounds on a recorded error, so that a run can always record its failure and
# close (an item holds 400 KB): SWF keeps 32,768 characters of details.  A
# message keeps its start, a traceback its end, where the error was raised.
ERROR_MESSAGE_LIMIT = 32_768
TRACEBACK_LIMIT = 32_768


def _bounded(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    cut = f"[{len(text) - limit} characters truncated]"
    return cut + text[-limit:] if keep_end else text[:limit] + cut


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception turned into data, so that it can cross processes and histories.

    ``type_mro`` holds the qualified names of the exception's class and its bases;
    retry policies match non-retryable types against it without importing them.
    The message and traceback are truncated to :data:`ERROR_MESSAGE_LIMIT` and
    :data:`TRACEBACK_LIMIT` characters, however the error is made.
    """

    message: str
    type_name: str
    traceback: str = ""
    type_mro: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "message", _bounded(self.message, ERROR_MESSAGE_LIMIT))
        object.__setattr__(self, "traceback",
                           _bounded(self.traceback, TRACEBACK_LIMIT, keep_end=True))

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, TaskError):
            # A task error that escapes the workflow keeps the original cause.
            return exc.info
        tb = "".join(_traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(
            message=str(exc) or type(exc).__name__,
            type_name=qualified_name(type(exc)),
            traceback=tb,
            type_mro=tuple(qualified_name(t) for t in type(exc).__mro__ if t is not object),
        )

    def to_dict(self) -> dict[str, object]:
        return {"message": self.message, "type_name": self.type_name,
                "traceback": self.traceback, "type_mro": list(self.type_mro)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ErrorInfo:
        mro = data.get("type_mro") or ()
        return cls(message=str(data["message"]), type_name=str(data["type_name"]),
                   traceback=str(data.get("traceback", "")),
                   type_mro=tuple(str(t) for t in mro))  # type: ignore[attr-defined]


def qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class SimulatedCrash(BaseException):
    """The in-memory backend's fault injection crashing a process at a named
    step: like a SIGKILL, nothing in the engine may contain it."""


UNCONTAINED: tuple[type[BaseException], ...] = (KeyboardInterrupt, SimulatedCrash)
"""What no loop contains.  Everything else that decoding or user code raises
(``SystemExit`` included) fails the task or run it came from, and the decider
threads, timer keeper and worker go on; these pass, to stop the process."""


class FlowyError(Exception):
    """The root of every error raised by Flowy."""


class ConfigurationError(FlowyError, ValueError):
    """A workflow or a dependency is configured wrongly; the message says how to fix it."""


class ServiceError(FlowyError):
    """A backing service (DynamoDB, SQS, S3) refused or failed a request we can't retry."""


class RunNotFound(FlowyError, LookupError):
    """No run has this id where the client looks (the backend, the namespace)."""


class LoopDied(FlowyError):
    """A thread or task that a decider or worker process needs has died: the
    process stops (with exit status 1) for its supervisor to restart it,
    rather than go on half alive."""


class MalformedMessage(FlowyError):
    """A queue message that is not one of the engine's: it goes to the
    queue's dead-letter queue, with this as its reason."""


class PayloadError(FlowyError):
    """A large payload could not be stored in, or fetched from, S3."""


class HistoryError(FlowyError, ValueError):
    """A history (a file from ``flowy history``, a list of events) that is not
    one Flowy wrote."""


class UnsupportedFormatError(ConfigurationError):
    """A trace can't be rendered to a file with this suffix."""


class EncodeError(FlowyError, TypeError):
    """A value can't be encoded or decoded by the codec in use."""


class TaskError(FlowyError):
    """A task (activity, sub-workflow or the workflow itself) failed.

    ``str(error)`` is the original message; ``type_name`` is the qualified name
    of the original exception's type (for example ``builtins.ValueError``) and
    ``traceback`` its formatted traceback, as the worker saw it.
    """

    def __init__(self, message: str, type_name: str = "", traceback: str = "",
                 type_mro: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        own_mro = tuple(qualified_name(t) for t in type(self).__mro__ if t is not object)
        self.info = ErrorInfo(message, type_name or own_mro[0], traceback, type_mro or own_mro)

    @property
    def type_name(self) -> str:
        return self.info.type_name

    @property
    def traceback(self) -> str:
        return self.info.traceback

    @classmethod
    def from_info(cls, info: ErrorInfo) -> TaskError:
        """The most specific public error class for a recorded error."""
        error_cls = _ERRORS_BY_NAME.get(info.type_name, cls)
        return error_cls(info.message, info.type_name, info.traceback, info.type_mro)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.info.message, self.info.type_name, self.info.traceback,
                             self.info.type_mro))


class TaskTimedout(TaskError):
    """A task's last attempt timed out (start-to-close, schedule-to-start or heartbeat)."""


class NondeterminismError(TaskError):
    """On replay, the workflow made different calls than its history recorded.

    Workflow code must make the same calls, with the same arguments, in the same
    order, every time it runs: don't read clocks, random numbers or files in it.
    """


class RunCancelled(TaskError):
    """The run was cancelled (``RunHandle.cancel``, ``FlowyClient.cancel``, ``flowy cancel``)."""


# Every error of the hierarchy is public, and reads as flowy's own.
for _cls in [value for value in list(globals().values())
             if isinstance(value, type) and issubclass(value, FlowyError)]:
    _cls.__module__ = "flowy"

_ERRORS_BY_NAME: dict[str, type[TaskError]] = {
    qualified_name(c): c for c in (TaskError, TaskTimedout, NondeterminismError,
                                    RunCancelled)
}


class LimitError(TaskError):
    """A run went past one of its limits (:class:`flowy.Limits`) and failed;
    the message names the limit, the figure, and what to do."""


class HistoryLimitError(LimitError):
    """A decision would have taken the run's history past its limit of events
    or of payload size: a long-lived workflow continues as a new run, with a
    fresh history, by returning ``flowy.restart(...)``."""


class DecisionLimitError(LimitError):
    """One decision would have started more tasks and timers than the limit."""


# Added after the loop above: they read as flowy's own too, and a recorded one
# is raised as its own class.
for _cls in (LimitError, HistoryLimitError, DecisionLimitError):
    _cls.__module__ = "flowy"
    _ERRORS_BY_NAME[qualified_name(_cls)] = _cls
