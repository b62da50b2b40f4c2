"""One small object in a bucket, read and replaced with conditional writes.

The maintenance lease (``<key_prefix>.lease``) and the quota's running total
(``<key_prefix>.usage``) are each one small object that several processes
change. Both are created with ``If-None-Match: *`` and replaced only with
``If-Match`` of the ETag that was read, so of two writers that read the same
version one wins and the other learns it lost (412) and reads again.

Servers differ: Ceph RGW 16 matches ``If-Match`` on a PUT only against the
bare ETag (AWS, moto and SeaweedFS take it quoted, as answers give it), and
s3rver ignores both headers, so there the last writer wins.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import attrs
from botocore.exceptions import ClientError

from sriblob import _telemetry as telemetry

from ._errors import is_condition_failed, is_missing, is_not_implemented

if TYPE_CHECKING:
    from ._bucket import Bucket

__all__ = ["ConditionalObject", "Version"]

logger = logging.getLogger("sriblob")


@attrs.frozen
class Version:
    """The object as read: its bytes, its ETag and the whole answer."""

    data: bytes
    etag: str
    response: Any


class ConditionalObject:
    """Read, create, replace and delete one key with conditional requests.

    Args:
        bucket: The bucket, through the store's open client.
        key: The object's key.
        purpose: What the object is ("lease", "usage"), for log lines.
    """

    def __init__(self, *, bucket: Bucket, key: str, purpose: str) -> None:
        self._bucket = bucket
        self.key = key
        self._purpose = purpose
        self._quoted = True

    async def read(self) -> Version | None:
        """Return the object, or None if there is none."""
        with self._bucket.where.translate("GetObject"):
            try:
                response = await self._bucket.client.get_object(
                    Bucket=self._bucket.name, Key=self.key
                )
            except ClientError as error:
                if is_missing(error):
                    return None
                raise
            async with response["Body"] as body:
                data = await body.read()
        return Version(data, str(response.get("ETag", "")), response)

    async def create(self, data: bytes) -> str | None:
        """Write *data* unless the object exists; its ETag, or None if it did."""
        return await self._put(data, IfNoneMatch="*")

    async def replace(self, data: bytes, etag: str) -> str | None:
        """Overwrite the object if it is still the one with *etag*.

        Returns the new ETag, or None if the object changed (or is gone).
        """
        written = await self._put(data, IfMatch=self._form(etag))
        if written is None and self._quoted:
            current = await self.read()
            if current is not None and current.etag == etag:
                # Refused though unchanged: a server that wants it bare.
                self._quoted = False
                written = await self._put(data, IfMatch=self._form(etag))
        return written

    async def delete(self, etag: str) -> None:
        """Delete the object if it is still the one with *etag* (quietly if not)."""
        with self._bucket.where.translate("DeleteObject"):
            try:
                await self._bucket.client.delete_object(
                    Bucket=self._bucket.name, Key=self.key, IfMatch=self._form(etag)
                )
            except ClientError as error:
                if not (is_condition_failed(error) or is_missing(error)):
                    raise

    async def _put(self, data: bytes, **condition: str) -> str | None:
        with self._bucket.where.translate("PutObject"):
            try:
                response = await self._bucket.client.put_object(
                    Bucket=self._bucket.name,
                    Key=self.key,
                    Body=data,
                    **condition,  # type: ignore[arg-type]
                )
            except ClientError as error:
                if is_condition_failed(error):
                    return None
                if not is_not_implemented(error):
                    raise
                # No conditional writes here: a plain write, guarded only by
                # the read before it (narrowly).
                logger.warning(
                    "%s backend=%s: the server has no conditional writes (501); "
                    "the %s object is best-effort here",
                    self._purpose,
                    self._bucket.backend,
                    self._purpose,
                    extra=telemetry.fields(self._bucket.backend, self._purpose),
                )
                response = await self._bucket.client.put_object(
                    Bucket=self._bucket.name, Key=self.key, Body=data
                )
        return str(response.get("ETag", ""))

    def _form(self, etag: str) -> str:
        return etag if self._quoted else etag.strip('"')
