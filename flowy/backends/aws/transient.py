"""Which AWS failures are the service's, not the request's.

botocore's standard retry mode has already retried these by the time the
engine sees them; they still say nothing about the message being handled,
so they never count toward its poison.  A validation error (an item too
large, say) does: repeating the request fails the same way.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from ...core.errors import ServiceError

_TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "ProvisionedThroughputExceededException",
    "RequestLimitExceeded", "LimitExceededException", "InternalServerError",
    "InternalFailure", "ServiceUnavailable", "TransactionConflict",
    "TransactionInProgressException", "RequestThrottled", "KMSThrottlingException",
    "SlowDown"})


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (ServiceError, BotoCoreError)):  # BotoCoreError: connections, timeouts
        return True
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error.get("Code") in _TRANSIENT_CODES or status >= 500
    return False
