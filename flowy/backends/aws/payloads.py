"""Payloads too large for a queue message or a table item go to S3, by content hash.

An SQS message holds at most 1 MiB (256 KiB on older emulators) and a
DynamoDB item 400 KB.  Anything larger than :data:`INLINE_LIMIT` is written
to the namespace's bucket under its SHA-256 and referenced instead, so a
large result never fails a run; without a bucket, the error names the limit.

What comes back is not trusted (every role may write the bucket): a
reference must name a key of that form, the object must be no larger than
:data:`MAX_PAYLOAD` (checked before it is read), and its content must hash
to its key.  Anything else raises :class:`~flowy.core.errors.PayloadError`.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from botocore.exceptions import ClientError

from ...core.errors import PayloadError

INLINE_LIMIT = 200_000  # bytes of UTF-8; leaves room for the rest of an item or message
# The largest payload read back from S3: far above SWF's 32 KB and Temporal's
# 2 MB, enough for a history batch of a 100,000-task fan-out (about 23 MB),
# and a bound on what one reference can make a process load into memory.
MAX_PAYLOAD = 64 * 1024 * 1024
PREFIX = "payloads/"
_KEY = re.compile(r"^payloads/[0-9a-f]{64}$")


class Payloads:
    """Store and fetch large payloads in ``bucket`` with an S3 client."""

    def __init__(self, s3: Any, bucket: str, max_payload: int = MAX_PAYLOAD) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._max_payload = max_payload

    def pack(self, text: str) -> dict[str, str]:
        """``{"data": text}`` if it is small, else ``{"blob": key}`` after storing it."""
        raw = text.encode()
        if len(raw) <= INLINE_LIMIT:
            return {"data": text}
        key = PREFIX + hashlib.sha256(raw).hexdigest()
        try:
            self._s3.put_object(Bucket=self._bucket, Key=key, Body=raw)
        except ClientError as exc:
            raise PayloadError(
                f"a payload of {len(raw)} bytes is over the {INLINE_LIMIT}-byte inline limit "
                f"and could not be stored in S3 bucket {self._bucket}: {exc}. Create the bucket "
                "(flowy setup does) or keep payloads smaller") from exc
        return {"blob": key}

    def unpack(self, packed: dict[str, str]) -> str:
        if "data" in packed:
            return packed["data"]
        key = packed.get("blob")
        if not isinstance(key, str) or not _KEY.match(key):
            raise PayloadError(f"not a packed payload: a reference must be {PREFIX} and a "
                               f"SHA-256 in hex, not {str(key)[:100]!r}")
        try:
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except ClientError as exc:
            raise PayloadError(f"payload {key} is missing from S3 bucket {self._bucket}: "
                               f"{exc}") from exc
        size = int(response.get("ContentLength", 0))
        if size > self._max_payload:
            response["Body"].close()
            raise PayloadError(f"payload {key} is {size} bytes, over the {self._max_payload}-"
                               "byte limit: it was not read")
        body = response["Body"].read(self._max_payload + 1)
        if len(body) > self._max_payload or hashlib.sha256(body).hexdigest() != key[len(PREFIX):]:
            raise PayloadError(f"payload {key} is corrupt: its content does not match its "
                               f"hash (S3 bucket {self._bucket}); restore it, or give up the "
                               "run it belongs to")
        return bytes(body).decode()  # the hash matched: what pack wrote, UTF-8
