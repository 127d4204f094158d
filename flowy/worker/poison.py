"""Poison: a message whose processing keeps failing, told apart from bad luck.

A delivery is no evidence against a message: its receiver may have died
holding it, or the service failed.  What counts is a failure to process it
that says something about the message (deciding on it raised, a timer could
not be handled), and only a failure the backend does not call transient.
After :data:`POISON_LIMIT` such failures in one process, the message goes to
its queue's dead-letter queue with the last one as its reason, for an
operator to see and redrive once its cause is fixed; at the first failure
if it is one that no retry can mend (:data:`PERMANENT`).  Counts are kept in
memory: a process that dies forgets them, as it should, since dying is no
failure of the message.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from ..backends.base import Backend, Received
from ..core.errors import ConfigurationError, HistoryError, PayloadError

log = logging.getLogger("flowy.poison")

POISON_LIMIT = 5
# Failures a retry can't mend: a workflow this process does not declare (the
# message waits in the dead-letter queue for a redrive after the deploy), a
# payload that is missing or corrupt, a stored history that does not decode.
PERMANENT = (ConfigurationError, PayloadError, HistoryError)
_REMEMBERED = 10_000  # messages whose failures are counted, the least recent forgotten


class PoisonCounter:
    """Counts each message's processing failures; dead-letters it at the limit."""

    def __init__(self, backend: Backend, limit: int = POISON_LIMIT) -> None:
        self._backend = backend
        self._limit = limit
        self._failures: OrderedDict[str, int] = OrderedDict()

    def failed(self, queue: str, message: Received, what: str, exc: BaseException) -> bool:
        """Record that processing ``message`` (``what``: "the decision for run X")
        failed with ``exc``; True if it was dead-lettered for it."""
        if self._backend.transient(exc):
            log.warning("%s failed (%s: %s); its message will come back", what,
                        type(exc).__name__, exc)
            return False
        failures = self._failures.pop(message.id, 0) + 1
        if failures < self._limit and not isinstance(exc, PERMANENT):
            self._failures[message.id] = failures
            while len(self._failures) > _REMEMBERED:
                self._failures.popitem(last=False)
            log.error("%s failed (%d of %d times before its message is set aside)", what,
                      failures, self._limit, exc_info=exc)
            return False
        times = "once, for good" if failures == 1 else f"{failures} times; the last"
        reason = f"{what} failed {times}: {type(exc).__name__}: {exc}"
        log.error("%s: message %s moved to the dead-letter queue of %s", reason, message.id,
                  queue, exc_info=exc)
        self._backend.queues.dead_letter(queue, message, reason)
        return True

    def succeeded(self, message: Received) -> None:
        self._failures.pop(message.id, None)
