"""The bucket an S3 store talks to, as one value: its open client and its name.

Every S3 helper (uploads, downloads, the lease, the running total, the
writer) is handed one :class:`Bucket`, the way httpx passes ``Limits`` and
``Timeout`` whole, instead of a client, a bucket name, a :class:`Where` and
a store id each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from ._errors import Where

__all__ = ["Bucket"]


@attrs.frozen
class Bucket:
    """One bucket, reached through one open client.

    Attributes:
        client: The store's open aiobotocore S3 client (shared, not owned).
        where: The bucket name, its endpoint and the store's id: what
            messages and log lines name (never a credential).
    """

    client: S3Client = attrs.field(repr=False)
    where: Where

    @property
    def name(self) -> str:
        """The bucket's name."""
        return self.where.bucket

    @property
    def backend(self) -> str:
        """The id of the store that uses the bucket, for log lines."""
        return self.where.backend
