"""Payloads too large for a queue message or a table item go to S3, by content hash.

An SQS message holds at most 1 MiB (256 KiB on older emulators) and a
DynamoDB item 400 KB.  Anything larger than :data:`INLINE_LIMIT` is written
to the namespace's bucket under its SHA-256 and referenced instead, so a
large result never fails a run; without a bucket, the error names the limit.
"""

from __future__ import annotations

import hashlib
from typing import Any

from botocore.exceptions import ClientError

from ...core.errors import PayloadError

INLINE_LIMIT = 200_000  # bytes of UTF-8; leaves room for the rest of an item or message


class Payloads:
    """Store and fetch large payloads in ``bucket`` with an S3 client."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self._s3 = s3
        self._bucket = bucket

    def pack(self, text: str) -> dict[str, str]:
        """``{"data": text}`` if it is small, else ``{"blob": key}`` after storing it."""
        raw = text.encode()
        if len(raw) <= INLINE_LIMIT:
            return {"data": text}
        key = "payloads/" + hashlib.sha256(raw).hexdigest()
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
        if key is None:
            raise PayloadError(f"not a packed payload: {sorted(packed)}")
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise PayloadError(f"payload {key} is missing from S3 bucket {self._bucket}: "
                               f"{exc}") from exc
        return body.decode()  # type: ignore[no-any-return]
