"""The cached store users build: a store of record with a bounded local copy.

See :mod:`._backend` for the rule (the back is the store of record) and how
the cache composes; this module is the class users call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, overload

import attrs

from sriblob._filesystem import FilesystemBlobStore
from sriblob._store import BlobStore

from ._backend import CacheBackend

if TYPE_CHECKING:
    import os
    from pathlib import Path

__all__ = ["CacheStats", "CachedBlobStore"]


@attrs.frozen
class CacheStats:
    """What a cache's front holds, and what this store object has seen.

    Attributes:
        blobs: Blobs in the front now.
        bytes: Bytes in the front now (its running total, fills in progress
            included).
        max_bytes: The cap.
        hits: Reads this object served from the front.
        misses: Reads it served from the back.
        fills: Blobs it copied into the front.
        repairs: Damaged front copies it dropped (and read from the back).
        evictions: Blobs it evicted from the front.
        front_errors: Front failures it worked around (disk full, read-only).

    .. versionadded:: 0.1.0
    """

    blobs: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int
    fills: int
    repairs: int
    evictions: int
    front_errors: int


class CachedBlobStore(BlobStore):
    """A store that reads through a bounded local cache of another store.

    ::

        async with sriblob.CachedBlobStore(s3, directory="/var/cache/sriblob",
                                           max_bytes=2 * 10**9) as store:
            data = await store.get(integrity)  # S3 once, then the disk

    Two forms, told apart by the keyword: ``CachedBlobStore(back,
    directory=..., max_bytes=...)`` keeps its copies in *directory*;
    ``CachedBlobStore(front, back, max_bytes=...)`` keeps them in the
    directory of the :class:`~sriblob.FilesystemBlobStore` *front*.

    **The back is the store of record.** ``has``, ``stat``, ``list``,
    ``usage``, leases and presigned URLs are the back's; so is every
    decision of :func:`~sriblob.migrate`, :func:`~sriblob.verify` and
    :func:`~sriblob.collect_garbage` through the cache. The local copies only
    speed up bytes:

    - **Reads** (``get``, ``open``) come from a local copy that verifies as
      it is read; otherwise from *back*, and the bytes fill the copy as they
      stream (one download), landing only once the whole blob verified. A
      byte range comes from a local copy only if this process verified it
      whole and it hasn't changed since; otherwise from *back*.
    - **Writes** go to *back* first, then the copy (a blob counts as stored
      once *back* holds it); ``delete`` removes from both.
    - **Bounded**: the copies never take more than *max_bytes*, fills in
      progress included; a larger blob is streamed through, not kept.
    - **Single flight**: concurrent reads of one missing blob in a process
      fetch it from *back* once; across processes a lock file per stripe
      lets one fill it while the others read *back*.
    - **Self-repair**: a damaged copy is dropped, logged at WARNING and read
      from *back*, without an error for the caller; a failing disk (full,
      read-only) is read around.

    The cache verifies like *back* (``verify``, ``max_blob_size`` and the
    quota levels are *back*'s), and opens and closes *back* (``async with``).

    Args:
        front: The local cache: a :class:`~sriblob.FilesystemBlobStore` that
            verifies (its directory holds the copies).
        back: The store the blobs live in.
        directory: Instead of *front*: the directory for the copies.
        max_bytes: The most bytes the copies may take (0 caches nothing).
        id: The store's id; defaults to *back*'s, so the cache can stand in
            for it in a registry.

    Raises:
        TypeError: *front* is not a :class:`~sriblob.FilesystemBlobStore`, or
            the stores are given in neither form.
        ValueError: *front* doesn't verify, or *max_bytes* is not an int >= 0.

    .. versionadded:: 0.1.0
    """

    @overload
    def __init__(
        self,
        front: FilesystemBlobStore,
        back: BlobStore,
        /,
        *,
        max_bytes: int,
        id: str | None = None,
    ) -> None: ...

    @overload
    def __init__(
        self,
        back: BlobStore,
        /,
        *,
        directory: str | os.PathLike[str],
        max_bytes: int,
        id: str | None = None,
    ) -> None: ...

    def __init__(
        self,
        *stores: BlobStore,
        max_bytes: int,
        directory: str | os.PathLike[str] | None = None,
        id: str | None = None,
    ) -> None:
        front, back = _front_and_back(stores, directory)
        if (
            isinstance(max_bytes, bool)
            or not isinstance(max_bytes, int)
            or max_bytes < 0
        ):
            msg = f"max_bytes must be an int >= 0, not {max_bytes!r}."
            raise ValueError(msg)
        cache = CacheBackend(front, back, max_bytes=max_bytes)
        super().__init__(
            cache,
            id=back.id if id is None else id,
            verify=back.verify,
            max_blob_size=back.max_blob_size,
            max_total_size=back.max_total_size,
            warn_total_size=back.warn_total_size,
        )
        self._cache = cache

    @property
    def backend(self) -> CacheBackend:
        """The store's backend."""
        return self._cache

    @property
    def front(self) -> FilesystemBlobStore:
        """The filesystem store whose directory holds the local copies."""
        return self._cache.front_store

    @property
    def back(self) -> BlobStore:
        """The store the blobs live in (the store of record)."""
        return self._cache.store_of_record

    @property
    def directory(self) -> Path:
        """The directory that holds the local copies.

        .. versionadded:: 0.1.0
        """
        return self._cache.front_store.root

    @property
    def max_bytes(self) -> int:
        """The most bytes the local copies may take."""
        return self._cache.max_bytes

    async def stats(self) -> CacheStats:
        """What the front holds, and this object's hit and fill counts.

        Counting the front's files also reaps the temp files of fills whose
        writer is gone (a killed process), giving back what they reserved.
        """
        self._check_usable()
        front = self._cache.front
        entries = await front.scan()
        total = await front.usage()
        counters = self._cache.counters
        return CacheStats(
            blobs=len(entries),
            bytes=total,
            max_bytes=self.max_bytes,
            hits=counters.hits,
            misses=counters.misses,
            fills=counters.fills,
            repairs=counters.repairs,
            evictions=front.evictions,
            front_errors=counters.front_errors,
        )

    async def prune(self, *, max_bytes: int | None = None) -> int:
        """Evict least recently used blobs until the front holds *max_bytes*.

        *max_bytes* defaults to the cap (nothing to evict unless the cap was
        lowered); 0 empties the front. The temp files of fills whose writer
        is gone are removed too. Returns the number of blobs evicted.
        """
        self._check_usable()
        limit = self.max_bytes if max_bytes is None else max_bytes
        return await self._cache.front.evict_to(limit)

    def path_of(self, integrity: str | object, /) -> Path:
        """Return the path a blob's local copy is (or would be) kept at.

        .. versionadded:: 0.1.0
        """
        return self.front.path_of(integrity)  # type: ignore[arg-type]


def _front_and_back(
    stores: tuple[BlobStore, ...], directory: str | os.PathLike[str] | None
) -> tuple[FilesystemBlobStore, BlobStore]:
    """Which form the cache was built with: (front, back) or (back, directory=)."""
    if directory is not None:
        if len(stores) != 1:
            msg = (
                "CachedBlobStore(back, directory=..., max_bytes=...) takes one "
                f"store, the back, not {len(stores)}."
            )
            raise TypeError(msg)
        front: BlobStore = FilesystemBlobStore(directory)
        back = stores[0]
    elif len(stores) == 2:  # noqa: PLR2004 -- (front, back)
        front, back = stores
    else:
        msg = (
            "CachedBlobStore takes (front, back, max_bytes=...) or (back, "
            f"directory=..., max_bytes=...); got {len(stores)} stores."
        )
        raise TypeError(msg)
    if not isinstance(front, FilesystemBlobStore):
        msg = (
            "CachedBlobStore's front must be a FilesystemBlobStore, not "
            f"{type(front).__name__}."
        )
        raise TypeError(msg)
    if not isinstance(back, BlobStore):
        msg = f"CachedBlobStore's back must be a BlobStore, not {back!r}."
        raise TypeError(msg)
    if not front.verify:
        msg = "The cache's front must verify (verify=True): that is how it repairs."
        raise ValueError(msg)
    return front, back
