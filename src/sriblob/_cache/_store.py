"""A read-through cache: verified local copies in front of a store of record.

**The back is the store of record.** Everything that decides whether a blob
exists, when it was stored, or whether data may be deleted comes from the
back, always: ``has``, ``stat`` (and its ``stored_at``), ``list``, usage,
leases, :func:`~sriblob.migrate`'s skip and read-back, :func:`~sriblob.verify`,
and garbage collection's listing and freshness. A front copy only speeds up
bytes, and only bytes verified as they are read.

:class:`CachedBlobStore` reads a blob from its front (a directory on local
disk, see :mod:`._front`) when the front holds a copy that verifies, and
otherwise from the back, filling the front as the bytes stream by. The bound
is the front's running total (``<front root>/.usage``, changed under
``flock`` in the same step as each rename or unlink, with fills reserving
their size before they write): however many processes share the front, it
never holds more than ``max_bytes``. Recency is each file's mtime, renewed
by every read, so every process sharing the front sees it; eviction removes
the least recently used files until the new blob fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, cast

import attrs

from sriblob._filesystem import FilesystemBlobStore
from sriblob._integrity import Algorithm, Integrity, IntegrityHasher, coerce_integrity
from sriblob._store import (
    BlobBody,
    BlobInfo,
    BlobReader,
    BlobSource,
    BlobStore,
    _as_buffer,
    _PipelinedHasher,
    chunks_of,
    hash_buffer,
)
from sriblob.exceptions import (
    BlobNotFound,
    IntegrityMismatch,
    QuotaExceeded,
    SriblobError,
    StoreError,
)

from ._front import Front, FrontFile
from ._spool import Spool, SpoolChunks

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

    from sriblob._compat import Buffer
    from sriblob._lease import Lease
    from sriblob._quota import Usage
    from sriblob._store import Data

__all__ = ["CacheStats", "CachedBlobStore"]

logger = logging.getLogger("sriblob")

#: Front hits up to this size are read whole (one verified read) by open();
#: larger ones are checked in one pass, then streamed in a second, both from
#: the descriptor opened once.
_WHOLE_READ: Final = 16 * 1024 * 1024
#: Chunks a fill may lag behind the reader it tees from.
_FILL_QUEUE: Final = 8
#: Eviction frees room for the new blob and this share of the cap more, so
#: the next fills don't each scan the front again.
_SLACK: Final = 0.1


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


@attrs.define
class _Counters:
    hits: int = 0
    misses: int = 0
    fills: int = 0
    repairs: int = 0
    evictions: int = 0
    front_errors: int = 0


@attrs.define
class _Flight:
    """One read of a missing blob from the back, that others may wait for.

    ``data`` is the blob when the flight was a ``get()`` (waiters take it
    as it is, cached or not); ``filled`` says whether the front got a copy.
    """

    done: asyncio.Event = attrs.Factory(asyncio.Event)
    data: bytes | None = None
    filled: bool = False


class CachedBlobStore(BlobStore):
    """A store that reads through a bounded local cache of another store.

    ::

        cache = sriblob.FilesystemBlobStore("/var/cache/sriblob")
        async with sriblob.CachedBlobStore(cache, s3, max_bytes=2 * 10**9) as store:
            data = await store.get(integrity)  # S3 once, then the disk

    **The back is the store of record.** ``has``, ``stat``, ``list``,
    ``usage``, leases and presigned URLs are the back's; so is every
    decision of :func:`~sriblob.migrate`, :func:`~sriblob.verify` and
    :func:`~sriblob.collect_garbage` through the cache. The front only
    speeds up bytes:

    - **Reads** (``get``, ``open``) come from *front* when it holds a copy
      that verifies as it is read; otherwise from *back*, and the bytes
      fill *front* as they stream (one download), the copy landing in
      *front* only once the whole blob verified. A byte range comes from
      *front* only from a copy this process verified whole and that hasn't
      changed since; otherwise from *back*.
    - **Writes** go to *back* first, then *front* (a blob counts as stored
      once *back* holds it); ``delete`` removes from both.
    - **Bounded**: *front* never holds more than *max_bytes*, fills in
      progress included. A blob larger than *max_bytes* is streamed through
      and not cached.
    - **Single flight**: concurrent reads of one missing blob in a process
      fetch it from *back* once; across processes a lock file per stripe
      lets one fill it while the others read *back* without writing a
      second copy.
    - **Self-repair**: a damaged copy in *front* is dropped, logged at
      WARNING and read from *back*, without an error for the caller.
    - A failing *front* (full, read-only) is logged at WARNING and read
      around; the caller never sees its error when *back* can answer.

    The cache opens and closes both stores (``async with``).

    Args:
        front: The local cache: a :class:`~sriblob.FilesystemBlobStore` that
            verifies, used only by caches (the cache keeps its own bound on
            it, *max_bytes*).
        back: The store the blobs live in.
        max_bytes: The most bytes *front* may hold (0 caches nothing).
        id: The store's id; defaults to *back*'s, so the cache can stand in
            for it in a registry.

    Raises:
        TypeError: *front* is not a :class:`~sriblob.FilesystemBlobStore`.
        ValueError: *front* doesn't verify, or *max_bytes* is not an int >= 0.

    .. versionadded:: 0.1.0
    """

    requires_startup: ClassVar[bool] = True

    def __init__(
        self,
        front: FilesystemBlobStore,
        back: BlobStore,
        *,
        max_bytes: int,
        id: str | None = None,
    ) -> None:
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
        if (
            isinstance(max_bytes, bool)
            or not isinstance(max_bytes, int)
            or max_bytes < 0
        ):
            msg = f"max_bytes must be an int >= 0, not {max_bytes!r}."
            raise ValueError(msg)
        # The cache verifies what it hands out, as the back does: a reader
        # of the whole blob checks it, whichever store the bytes came from.
        super().__init__(
            id=back.id if id is None else id,
            verify=back.verify,
            max_blob_size=back.max_blob_size,
        )
        self._front_store = front
        self._front = Front(front.root, max_bytes=max_bytes, id=self.id)
        self._back = back
        self._max_bytes = max_bytes
        self._flights: dict[Integrity, _Flight] = {}
        self._counters = _Counters()
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def front(self) -> FilesystemBlobStore:
        """The local cache."""
        return self._front_store

    @property
    def back(self) -> BlobStore:
        """The store the blobs live in."""
        return self._back

    @property
    def max_bytes(self) -> int:
        """The most bytes the front may hold."""
        return self._max_bytes

    def _repr_details(self) -> str:
        return (
            f"front={self._front_store!r} back={self._back!r} "
            f"max_bytes={self._max_bytes}"
        )

    def _store_of_record(self) -> BlobStore:
        return self._back._store_of_record()  # noqa: SLF001 -- a store's own hook

    # -- lifecycle -------------------------------------------------------------

    async def startup(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._back)
            await stack.enter_async_context(self._front_store)
            self._stack = stack.pop_all()

    async def shutdown(self) -> None:
        self._front.close()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- the front -------------------------------------------------------------

    def _front_failed(
        self, action: str, integrity: Integrity, error: Exception
    ) -> None:
        self._counters.front_errors += 1
        logger.warning(
            "cache backend=%s: the front failed to %s integrity=%s (%s); "
            "using the back",
            self.id,
            action,
            integrity,
            error,
        )

    async def _repair(self, integrity: Integrity, why: str) -> None:
        self._counters.repairs += 1
        logger.warning(
            "cache backend=%s: the front's copy of integrity=%s is corrupt (%s); "
            "dropping it and reading the back",
            self.id,
            integrity,
            why,
        )
        try:
            await self._front.drop(integrity)
        except (SriblobError, OSError) as error:
            self._front_failed("drop", integrity, error)

    async def _front_bytes(self, integrity: Integrity) -> bytes | None:
        """The front's copy, read and verified whole; None (absent, damaged...)."""
        file = await self._open_front(integrity, read_up_to=None)
        return None if file is None else await self._verified(integrity, file)

    async def _verified(self, integrity: Integrity, file: FrontFile) -> bytes | None:
        """The bytes of a front copy read whole, if they are the blob's."""
        assert file.data is not None  # noqa: S101 -- read whole
        data = file.data
        hasher = await hash_buffer(data, integrity.algorithm)
        if hasher.integrity() != integrity:
            await self._repair(integrity, f"{len(data)} bytes that don't match")
            return None
        if file.unchanged:
            self._front.trust(integrity, file.after)
        self._counters.hits += 1
        return data

    async def _open_front(
        self, integrity: Integrity, *, read_up_to: int | None = 0
    ) -> FrontFile | None:
        """The front's copy, open (or read); None (absent or failing)."""
        try:
            return await self._front.open(integrity, read_up_to=read_up_to)
        except (StoreError, OSError) as error:
            self._front_failed("read", integrity, error)
            return None

    async def _make_room(self, size: int, *, fresh: bool = False) -> bool:
        """Evict least recently used front blobs until *size* more fit.

        The front's total as this object last saw it saves reading it again
        while there is room; it misses other processes' fills, so a fill it
        lets through may still be refused by the reservation (which counts
        under the lock), and is then tried again with *fresh*.
        """
        if size > self._max_bytes:
            return False
        known = self._front.total
        if not fresh and known is not None and known + size <= self._max_bytes:
            return True
        if await self._front.usage() + size <= self._max_bytes:
            return True
        target = max(0, self._max_bytes - size - int(self._max_bytes * _SLACK))
        await self._evict_to(target)
        total = self._front.total
        return total is not None and total + size <= self._max_bytes

    async def _evict_to(self, target: int) -> None:
        """Evict least recently used blobs until the front holds at most *target*.

        The scan also reaps the temp files of fills whose writer is gone.
        """
        entries = await self._front.scan()
        total = await self._front.usage()
        for entry in sorted(entries, key=lambda entry: entry.used):
            if total <= target:
                break
            freed = await self._front.evict(entry.location)
            if freed:
                total = self._front.total or 0
                self._counters.evictions += 1
                logger.debug(
                    "cache backend=%s evicted %s", self.id, entry.location.name
                )

    async def _fill(self, integrity: Integrity, data: Any, size: int) -> bool:
        """Put *data* into the front; False (logged) if it can't be cached.

        The caller holds the blob's fill lock. The fill reserves *size*
        bytes before it reads *data*, so a refused reservation (other
        processes filled the front since this one looked) can evict by the
        real total and try once more, whatever *data* is.
        """
        try:
            if not await self._make_room(size):
                return False
            try:
                await self._front.fill(integrity, data, size)
            except QuotaExceeded:
                if not await self._make_room(size, fresh=True):
                    raise
                await self._front.fill(integrity, data, size)
        except QuotaExceeded:
            logger.debug(
                "cache backend=%s: no room for integrity=%s (other processes "
                "filled the front meanwhile)",
                self.id,
                integrity,
            )
            return False
        except (StoreError, OSError, IntegrityMismatch) as error:
            # IntegrityMismatch: what reached the fill wasn't the blob (the
            # reader stopped early, say); the front just lacks it.
            self._front_failed("store", integrity, error)
            return False
        self._counters.fills += 1
        return True

    async def _fill_locked(self, integrity: Integrity, data: Any, size: int) -> bool:
        """:meth:`_fill` under the blob's fill lock, if no other process holds it."""
        stripe = self._front.take_stripe(integrity)
        if stripe is None:
            return False
        try:
            return await self._fill(integrity, data, size)
        finally:
            self._front.drop_stripe(stripe)

    def _cacheable(self, size: int | None) -> bool:
        # A back that doesn't verify names bytes that may not hash to their
        # name (derived archives): no copy of those could ever verify.
        return size is not None and size <= self._max_bytes and self._back.verify

    # -- reading ---------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        data = await self._front_bytes(integrity)
        if data is not None:
            return data
        flight = self._flights.get(integrity)
        if flight is not None:
            # Another reader is fetching it: take its bytes, or its copy.
            await flight.done.wait()
            if flight.data is not None:
                return flight.data
            if flight.filled:
                data = await self._front_bytes(integrity)
                if data is not None:
                    return data
            self._counters.misses += 1
            return await self._back.get(integrity)
        flight = self._flights[integrity] = _Flight()
        try:
            self._counters.misses += 1
            flight.data = data = await self._back.get(integrity)
            flight.done.set()  # waiters needn't wait for the fill
            if data is not None and self._cacheable(len(data)):
                flight.filled = await self._fill_locked(integrity, data, len(data))
            return data
        finally:
            if self._flights.get(integrity) is flight:
                del self._flights[integrity]
            flight.done.set()

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        body = await self._whole_from_front(integrity)
        if body is not None:
            yield body
            return
        flight = self._flights.get(integrity)
        if flight is not None:
            await flight.done.wait()
            if flight.data is not None:
                yield BlobBody(chunks_of(flight.data), len(flight.data))
                return
            if flight.filled:
                body = await self._whole_from_front(integrity)
                if body is not None:
                    yield body
                    return
            async with self._back.open(integrity) as reader:
                self._counters.misses += 1
                yield BlobBody(reader, reader.size)
            return
        # Registered before the first byte is read, so readers that come
        # meanwhile wait for this fill instead of fetching again.
        flight = self._flights[integrity] = _Flight()
        try:
            async with self._back.open(integrity) as reader:
                self._counters.misses += 1
                tee = self._tee(integrity, reader, flight)
                try:
                    yield BlobBody(tee, reader.size)
                finally:
                    await tee.aclose()
        finally:
            if self._flights.get(integrity) is flight:
                del self._flights[integrity]
            flight.done.set()

    async def _whole_from_front(self, integrity: Integrity) -> BlobBody | None:
        """The front's copy to stream, verified before any byte goes out; or None."""
        file = await self._open_front(integrity, read_up_to=_WHOLE_READ)
        if file is None:
            return None
        if file.data is not None:
            data = await self._verified(integrity, file)
            return None if data is None else BlobBody(chunks_of(data), len(data))
        try:
            intact = await file.check(integrity)
        except OSError as error:
            await file.close()
            self._front_failed("read", integrity, error)
            return None
        if not intact:
            await file.close()
            await self._repair(integrity, f"{file.size} bytes that don't match")
            return None
        self._front.trust(integrity, file.after)
        self._counters.hits += 1
        return BlobBody(self._stream_checked(integrity, file), file.size)

    async def _stream_checked(
        self, integrity: Integrity, file: FrontFile
    ) -> AsyncIterator[bytes]:
        """Stream a checked front copy from its descriptor, checking it again.

        The file was verified whole a moment ago; if it changes while it
        streams, the stream ends in :class:`~sriblob.IntegrityMismatch`
        (the copy is dropped) instead of passing for the blob.
        """
        hasher = _PipelinedHasher(integrity.algorithm)
        size = 0
        try:
            async for chunk in file.chunks(0, file.size):
                size += len(chunk)
                await hasher.update(chunk)
                yield chunk
            digest = (await hasher.finish()).integrity()
        finally:
            hasher.close()
            await file.close()
        if size != file.size or digest != integrity:
            self._front.distrust(integrity)
            await self._repair(integrity, "it changed while it streamed")
            msg = (
                f"The cache's copy of {integrity} changed while it streamed "
                f"({size} bytes); it was dropped, and the next read comes from "
                "the back."
            )
            raise IntegrityMismatch(msg, expected=str(integrity), actual=str(digest))

    async def _tee(
        self,
        integrity: Integrity,
        reader: BlobReader,
        flight: _Flight,
    ) -> AsyncGenerator[bytes]:
        """Yield the back's chunks, filling the front with them as they pass.

        The fill writes the same chunks (hashed again, renamed into place
        only when whole); a reader that stops early, or a blob too large for
        the cap, leaves nothing in the front. *flight* learns whether the
        blob was cached.
        """
        size = reader.size
        stripe = None
        if self._cacheable(size):
            stripe = self._front.take_stripe(integrity)
        if stripe is None:
            async for chunk in reader:
                yield chunk
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(_FILL_QUEUE)
        fill = asyncio.ensure_future(self._fill(integrity, _drain(queue), size or 0))
        complete = False
        try:
            async for chunk in reader:
                if not fill.done():
                    await queue.put(chunk)
                yield chunk
            complete = True
            if not fill.done():
                await queue.put(None)
        finally:
            if not complete:
                fill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                flight.filled = await fill
            self._front.drop_stripe(stripe)

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        file = await self._open_front(integrity)
        if file is not None and not self._front.trusted(integrity, file):
            await file.close()
            file = None
        if file is None:
            async with self._back.open(integrity, start=start, end=end) as reader:
                assert reader.size is not None  # noqa: S101 -- known for a range
                self._counters.misses += 1
                yield BlobBody(reader, reader.size)
            return
        try:
            stop = self.check_range(integrity, start, end, file.size)
            self._counters.hits += 1
            yield BlobBody(file.chunks(start, stop), file.size)
        finally:
            await file.close()

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        return await self._back.stat(integrity)

    async def has_blob(self, integrity: Integrity, /) -> bool:
        return await self._back.has(integrity)

    # -- writing ---------------------------------------------------------------

    async def put(
        self, integrity: str | Integrity, data: Data, /, *, replace: bool = False
    ) -> str:
        """Put the blob into the back, then the front (see the class)."""
        self._check_usable()
        if _as_buffer(data) is not None:
            stored = await self._back.put(integrity, data, replace=replace)
            await self._write_through(stored, data, replace=replace)
            return stored
        with Spool(limit=self._max_bytes) as spool:
            stream = cast("AsyncIterable[Buffer]", data)
            stored = await self._back.put(integrity, spool.tee(stream), replace=replace)
            await self._write_through(stored, spool.chunks(), replace=replace)
        return stored

    async def add(
        self,
        data: Data,
        /,
        *,
        algorithm: Algorithm = "sha512",
        replace: bool = False,
    ) -> str:
        """Add the blob to the back, then the front (see the class)."""
        self._check_usable()
        IntegrityHasher(algorithm)  # validates the algorithm before any I/O
        if _as_buffer(data) is not None:
            stored = await self._back.add(data, algorithm=algorithm, replace=replace)
            await self._write_through(stored, data, replace=replace)
            return stored
        with Spool(limit=self._max_bytes) as spool:
            stream = cast("AsyncIterable[Buffer]", data)
            stored = await self._back.add(
                spool.tee(stream), algorithm=algorithm, replace=replace
            )
            await self._write_through(stored, spool.chunks(), replace=replace)
        return stored

    async def _write_through(self, name: str, data: Any, *, replace: bool) -> None:
        integrity = coerce_integrity(name)
        view = _as_buffer(data)
        size = view.nbytes if view is not None else None
        if size is None and isinstance(data, SpoolChunks):
            size = data.size
        if not self._cacheable(size):
            return
        assert size is not None  # noqa: S101 -- cacheable sizes are known
        if replace:
            with contextlib.suppress(SriblobError, OSError):
                await self._front.drop(integrity)
        await self._fill_locked(integrity, data, size)

    async def write_blob(self, source: BlobSource, /) -> None:
        # put() and add() go to the back themselves; this is for completeness.
        await self._back.put(source.integrity, source.chunks())

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        gone = await self._back.delete(integrity, stored_before=stored_before)
        if gone:
            try:
                await self._front.drop(integrity)
            except (StoreError, OSError) as error:
                self._front_failed("delete", integrity, error)
        return gone

    async def list_names(self) -> AsyncIterator[str]:
        async for name in self._back.list_names():
            yield name

    # -- what the back decides -------------------------------------------------

    async def usage(self) -> Usage:
        """The back's usage (the front's is in :meth:`stats`)."""
        self._check_usable()
        return await self._back.usage()

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        return await self._back.try_lease(lease)

    async def release_lease(self, lease: Lease, /) -> None:
        await self._back.release_lease(lease)

    async def check_lease(self, lease: Lease, /) -> None:
        await self._back.check_lease(lease)

    @property
    def can_presign(self) -> bool:
        """Whether the back can presign (the front is local)."""
        return self._back.can_presign

    async def presign(
        self,
        integrity: str | Integrity,
        /,
        *,
        expires_in: int = 3600,
        method: str = "GET",
    ) -> str:
        """A presigned URL of the back's copy."""
        return await self._back.presign(integrity, expires_in=expires_in, method=method)

    # -- the cache itself --------------------------------------------------------

    async def stats(self) -> CacheStats:
        """What the front holds, and this object's hit and fill counts.

        Counting the front's files also reaps the temp files of fills whose
        writer is gone (a killed process), giving back what they reserved.
        """
        self._check_usable()
        entries = await self._front.scan()
        total = await self._front.usage()
        counters = self._counters
        return CacheStats(
            blobs=len(entries),
            bytes=total,
            max_bytes=self._max_bytes,
            hits=counters.hits,
            misses=counters.misses,
            fills=counters.fills,
            repairs=counters.repairs,
            evictions=counters.evictions,
            front_errors=counters.front_errors,
        )

    async def prune(self, *, max_bytes: int | None = None) -> int:
        """Evict least recently used blobs until the front holds *max_bytes*.

        *max_bytes* defaults to the cap (nothing to evict unless the cap was
        lowered); 0 empties the front. The temp files of fills whose writer
        is gone are removed too. Returns the number of blobs evicted.
        """
        self._check_usable()
        limit = self._max_bytes if max_bytes is None else max_bytes
        before = self._counters.evictions
        await self._evict_to(limit)
        return self._counters.evictions - before

    async def link_to(
        self, integrity: str | Integrity, path: str | os.PathLike[str]
    ) -> str:
        """Place the blob at *path* from the front (filling it first if needed).

        See :meth:`FilesystemBlobStore.link_to`; returns how it was placed. A
        damaged front copy is dropped and the blob read from the back again.

        Raises:
            BlobNotFound: Neither store holds the blob.
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        try:
            return await self._front_store.link_to(wanted, path)
        except BlobNotFound:
            pass
        except IntegrityMismatch as error:
            await self._repair(wanted, str(error))
        data = await self.get(wanted)
        if data is None:
            raise self.not_found(wanted)
        try:
            return await self._front_store.link_to(wanted, path)
        except (BlobNotFound, IntegrityMismatch):
            # Not cacheable (too large, or the front failed), or changed
            # meanwhile: copy out the verified bytes.
            return await _write_file(path, data)


async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        chunk = await queue.get()
        if chunk is None:
            return
        yield chunk


async def _write_file(path: str | os.PathLike[str], data: bytes) -> str:
    def write() -> None:
        target = Path(path)
        fd, name = tempfile.mkstemp(dir=target.resolve().parent, prefix=".sriblob-")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            temp.chmod(0o444)
            temp.replace(target)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise

    await asyncio.to_thread(write)
    return "copy"
