"""Running one activity by hand, as a worker runs an attempt, heartbeats recorded.

An activity is a plain function, and a unit test can call it as one; but
then :func:`flowy.heartbeat` does nothing, its arguments and result never go
through the codec, and an error comes back as the bare exception.  An
:class:`ActivityEnvironment` runs it through the worker's own code
(:func:`flowy.worker.activity.execute_activity`): the arguments are encoded
and decoded with the workflow's codec, the heartbeat reporter is wired, and
the outcome is what the workflow would read, a value or a
:class:`flowy.TaskError`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

from ..codec import DEFAULT_CODEC
from ..config import hinted_types
from ..core.codec import Codec, TypedCodec, decode_error, decode_text
from ..core.errors import TaskError
from ..worker.activity import AttemptOutcome, Beat, execute_activity, execute_activity_async

HeartbeatHandler = Callable[[str | None], None]


class ActivityEnvironment:
    """Runs activity functions as a worker would, recording their heartbeats.

    ``heartbeats`` lists the details of every :func:`flowy.heartbeat` call of
    the activities run so far, as a timeout would show them: the string
    given, or the JSON of another value, cut at 2,048 characters (once
    encoded, with a :class:`flowy.PayloadCodec`), decoded again (None for a
    heartbeat without details).  ``on_heartbeat`` is called with each one as it comes,
    in the activity's thread: to check progress mid-way, or to raise there.
    ``codec`` is the workflow's (the default JSON codec if not given); the
    types in the activity's hints are declared to it, as a
    :class:`flowy.Workflow` declares them.
    """

    def __init__(self, *, codec: Codec = DEFAULT_CODEC,
                 on_heartbeat: HeartbeatHandler | None = None) -> None:
        self.codec = codec
        self.on_heartbeat = on_heartbeat
        self.heartbeats: list[str | None] = []
        self._lock = threading.Lock()

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call ``function(*args, **kwargs)`` as one attempt and return its
        result, decoded as the workflow would get it; raises the
        :class:`flowy.TaskError` the workflow would read if it fails.  A
        coroutine function runs on a fresh event loop (use :meth:`run_async`
        from one)."""
        codec, key = self._codec(function), _key(function)
        return self._result(codec, execute_activity(
            function, key, key, self._encode(codec, args, kwargs), codec, _Reporter(self)))

    async def run_async(self, function: Callable[..., Awaitable[Any]], *args: Any,
                        **kwargs: Any) -> Any:
        """:meth:`run` for a coroutine function, on the running event loop."""
        codec, key = self._codec(function), _key(function)
        return self._result(codec, await execute_activity_async(
            function, key, key, self._encode(codec, args, kwargs), codec, _Reporter(self)))

    def _codec(self, function: Callable[..., Any]) -> Codec:
        codec = self.codec
        return codec.with_types(hinted_types(function)) if isinstance(codec, TypedCodec) else codec

    @staticmethod
    def _encode(codec: Codec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        return codec.encode([list(args), kwargs])  # as a decision encodes a task's input

    @staticmethod
    def _result(codec: Codec, outcome: AttemptOutcome) -> Any:
        if outcome.error is not None:
            raise TaskError.from_info(decode_error(codec, outcome.error))
        return codec.decode(outcome.result or "null")

    def _heartbeat(self, details: str | None) -> None:
        with self._lock:
            self.heartbeats.append(details)
        if self.on_heartbeat is not None:
            self.on_heartbeat(details)


def _key(function: Callable[..., Any]) -> str:
    """The attempt's name in messages (an input that can't be decoded...)."""
    return f"{getattr(function, '__name__', 'activity')}-by-hand"


class _Reporter:
    """The reporter the worker hands an attempt (see flowy.worker.activity):
    it gets the attempt's heartbeats."""

    def __init__(self, env: ActivityEnvironment) -> None:
        self._env = env

    def put(self, message: Beat) -> None:
        details = message[1]
        self._env._heartbeat(None if details is None else decode_text(self._env.codec, details))
