"""The quota's running total in a bucket: one object, changed compare-and-swap.

The total is the object ``<key_prefix>.usage`` (not lowercase hex, so the
key codec and ``list()`` skip it), holding ``{"total": n}``. A change reads
it, checks the quota, and writes the new total with ``If-Match`` of the ETag
it read; a writer that lost the race (412) reads again and retries, so
concurrent puts on every replica are counted once each and none takes the
total past the quota. A missing object (a new store, or one whose total was
deleted to recount it) is created from a listing with ``If-None-Match: *``.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Final

from sriblob._quota import CAS_ATTEMPTS, dump_total, load_total
from sriblob.exceptions import StoreUnavailable

from ._conditional import ConditionalObject

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sriblob.exceptions import QuotaExceeded

    from ._bucket import Bucket

__all__ = ["USAGE_NAME", "BucketTotal"]

#: The running total's object name under the key prefix.
USAGE_NAME: Final = ".usage"
#: The longest pause between two tries of a contended update, in seconds.
_MAX_BACKOFF: Final = 0.2


class BucketTotal:
    """Keep a store's running total in one object of its bucket.

    Args:
        bucket: The bucket, through the store's open client.
        key: The total's key.
        count: Counts the stored bytes (a listing), for a missing total.
        fits: Whether *size* more bytes fit on top of *total*.
        exceeded: The error for a blob that doesn't fit.
    """

    def __init__(
        self,
        *,
        bucket: Bucket,
        key: str,
        count: Callable[[], Awaitable[int]],
        fits: Callable[[int, int], bool],
        exceeded: Callable[[int, int], QuotaExceeded],
    ) -> None:
        self._object = ConditionalObject(bucket=bucket, key=key, purpose="usage")
        self._where = bucket.where
        self._count = count
        self._fits = fits
        self._exceeded = exceeded

    async def adjust(self, delta: int) -> int:
        """Add *delta* to the total (0 reads it); return the new total.

        Raises:
            QuotaExceeded: A positive *delta* doesn't fit; nothing changed.
            StoreUnavailable: Other writers won every one of the tries.
        """
        for _ in range(CAS_ATTEMPTS):
            current = await self._object.read()
            total = None if current is None else load_total(current.data)
            if total is not None and delta == 0:
                return total
            if total is None:
                total = await self._count()
            if delta > 0 and not self._fits(total, delta):
                raise self._exceeded(total, delta)
            new = max(0, total + delta)
            data = dump_total(new)
            if current is None:
                written = await self._object.create(data)
            else:
                written = await self._object.replace(data, current.etag)
            if written is not None:
                return new
            # Another writer changed it since it was read: read it again.
            await asyncio.sleep(random.uniform(0, _MAX_BACKOFF))  # noqa: S311
        msg = (
            f"S3 bucket {self._where.bucket!r} at {self._where.endpoint}: the "
            f"running total {self._object.key!r} changed under every one of "
            f"{CAS_ATTEMPTS} tries to update it; try again."
        )
        raise self._where.error(StoreUnavailable, msg)
