"""A read-through cache: a bounded filesystem store in front of another store.

:class:`CachedBlobStore` is a :class:`~sriblob.BlobStore` whose reads come
from a local :class:`~sriblob.FilesystemBlobStore` (the *front*) when it
holds the blob, and otherwise from the store behind it (the *back*), filling
the front as the bytes stream by. Blobs never change, so a cached copy is
always right, and both stores verify what they read, so a corrupt front copy
is caught, dropped and read again from the back.

The bound is the front's own running total (``<front root>/.usage``, changed
under ``flock`` in the same step as each rename or unlink): the cache gives
the front a quota of ``max_bytes``, so however many processes share it the
front never holds more. Recency is each file's mtime, renewed by every read
(``os.utime`` on the open descriptor), so every process sharing the front
sees it; eviction removes the least recently used files until the new blob
fits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final, Self, cast

import attrs

from ._filesystem import FilesystemBlobStore
from ._integrity import Algorithm, Integrity, coerce_integrity
from ._quota import Quota
from ._store import (
    CHUNK_SIZE,
    BlobBody,
    BlobInfo,
    BlobReader,
    BlobSource,
    BlobStore,
    _as_buffer,
    chunks_of,
)
from .exceptions import (
    BlobNotFound,
    IntegrityMismatch,
    QuotaExceeded,
    SriblobError,
    StoreError,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

    from ._compat import Buffer
    from ._lease import Lease
    from ._quota import Usage
    from ._store import Data

__all__ = ["CacheStats", "CachedBlobStore"]

logger = logging.getLogger("sriblob")

#: Front hits up to this size are read whole (one verified read) by open();
#: larger ones are checked in one pass, then streamed in a second.
_WHOLE_READ: Final = 16 * 1024 * 1024
#: Chunks a fill may lag behind the reader it tees from.
_FILL_QUEUE: Final = 8
#: Eviction frees room for the new blob and this share of the cap more, so
#: the next fills don't each scan the front again.
_SLACK: Final = 0.1
#: Cross-process fill locks: one of this many lock files, by the digest.
_STRIPES: Final = 256
_LOCK_DIR: Final = ".fill-locks"
#: A write-through of a stream spools to memory up to this, then to a file.
_SPOOL: Final = 8 * 1024 * 1024


@attrs.frozen
class CacheStats:
    """What a cache's front holds, and what this store object has seen.

    Attributes:
        blobs: Blobs in the front now.
        bytes: Bytes in the front now (its running total).
        max_bytes: The cap.
        hits: Reads this object served from the front.
        misses: Reads it served from the back.
        fills: Blobs it copied into the front.
        repairs: Corrupt front copies it dropped (and read from the back).
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


class CachedBlobStore(BlobStore):
    """A store that reads through a bounded local cache of another store.

    ::

        cache = sriblob.FilesystemBlobStore("/var/cache/sriblob")
        async with sriblob.CachedBlobStore(cache, s3, max_bytes=2 * 10**9) as store:
            data = await store.get(integrity)  # S3 once, then the disk

    - **Reads** (``get``, ``open``, ``has``, ``stat``) come from *front* when
      it holds the blob; otherwise from *back*, and the bytes fill *front* as
      they stream (one download); the copy lands in *front* only once the
      whole blob verified. A byte range of a blob not in *front* is read
      from *back* without filling.
    - **Writes** go to *back* first, then *front* (a blob counts as stored
      once *back* holds it); ``delete`` removes from both; ``list`` is
      *back*'s, and so are leases, quotas and presigned URLs.
    - **Bounded**: *front* never holds more than *max_bytes* (its quota; see
      the module). A blob larger than *max_bytes* is streamed through and
      not cached.
    - **Single flight**: concurrent reads of one missing blob in a process
      fetch it from *back* once; across processes a lock file per blob
      (striped) lets one fill it while the others read *back* without
      writing a second copy.
    - **Self-repair**: a corrupt copy in *front* is dropped, logged at
      WARNING and read from *back*, without an error for the caller.
    - A failing *front* (full, read-only) is logged at WARNING and read
      around; the caller never sees its error when *back* can answer.

    The cache opens and closes both stores (``async with``).

    Args:
        front: The local cache: a :class:`~sriblob.FilesystemBlobStore` that
            verifies, used only by caches (its quota becomes *max_bytes*).
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
        # The base class's own hashing is off: front and back verify what
        # they read, and the cache hands on only what they verified.
        super().__init__(
            id=back.id if id is None else id,
            verify=False,
            max_blob_size=back.max_blob_size,
        )
        self._front = front
        self._back = back
        self._max_bytes = max_bytes
        front._quota = Quota(front.id, max_bytes, None)  # noqa: SLF001 -- the cap
        # A fill is whole or absent after a power loss, and absent is only a
        # miss: the front needn't sync its renames and new directories.
        front._sync_names = False  # noqa: SLF001
        # Every read renews the file's mtime, its recency (in the read's own
        # worker-thread call, on the open descriptor).
        front._touch_reads = True  # noqa: SLF001
        self._fills: dict[Integrity, asyncio.Future[bool]] = {}
        self._counters = _Counters()
        self._stripes: dict[int, tuple[int, int]] = {}  # stripe: (fd, fills)
        #: The front's total when this object last read or changed it.
        self._front_total: int | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def front(self) -> FilesystemBlobStore:
        """The local cache."""
        return self._front

    @property
    def back(self) -> BlobStore:
        """The store the blobs live in."""
        return self._back

    @property
    def max_bytes(self) -> int:
        """The most bytes the front may hold."""
        return self._max_bytes

    @property
    def verify(self) -> bool:
        """Whether reads are verified: the back's setting (the front always is)."""
        return self._back.verify

    def _repr_details(self) -> str:
        return f"front={self._front!r} back={self._back!r} max_bytes={self._max_bytes}"

    # -- lifecycle -------------------------------------------------------------

    async def startup(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self._back)
            await stack.enter_async_context(self._front)
            self._stack = stack.pop_all()

    async def shutdown(self) -> None:
        for fill in list(self._fills.values()):
            fill.cancel()
        for fd, _ in self._stripes.values():
            os.close(fd)
        self._stripes.clear()
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

    async def _repair(self, integrity: Integrity, error: IntegrityMismatch) -> None:
        self._counters.repairs += 1
        logger.warning(
            "cache backend=%s: the front's copy of integrity=%s is corrupt (%s); "
            "dropping it and reading the back",
            self.id,
            integrity,
            error,
        )
        with contextlib.suppress(SriblobError, OSError):
            await self._front.delete(integrity)

    async def _from_front(self, integrity: Integrity) -> bytes | None:
        """The verified front copy, or None (absent, corrupt or failing)."""
        try:
            data = await self._front.get(integrity)
        except IntegrityMismatch as error:
            await self._repair(integrity, error)
            return None
        except (StoreError, OSError) as error:
            self._front_failed("read", integrity, error)
            return None
        if data is not None:
            self._counters.hits += 1
        return data

    async def _make_room(self, size: int, *, fresh: bool = False) -> bool:
        """Evict least recently used front blobs until *size* more fit.

        The front's total as this object last saw it saves reading it again
        while there is room; it misses other processes' fills, so a fill it
        lets through may still be refused by the commit (which counts under
        the lock), and is then tried again with *fresh*.
        """
        if size > self._max_bytes:
            return False
        known = self._front_total
        if not fresh and known is not None and known + size <= self._max_bytes:
            return True
        usage = await self._front.usage()
        self._front_total = usage.total
        if usage.total + size <= self._max_bytes:
            return True
        target = max(0, self._max_bytes - size - int(self._max_bytes * _SLACK))
        entries: list[tuple[float, int, str]] = []
        async for name in self._front.list():
            info = await self._front.stat(name)
            if info is not None and info.stored_at is not None:
                entries.append((info.stored_at.timestamp(), info.size, name))
        entries.sort()
        total = usage.total
        for _, blob_size, name in entries:
            if total <= target:
                break
            if await self._front.delete(name):
                total -= blob_size
                self._counters.evictions += 1
                logger.debug("cache backend=%s evicted integrity=%s", self.id, name)
        self._front_total = total
        return total + size <= self._max_bytes

    async def _fill(self, integrity: Integrity, data: Data, size: int) -> bool:
        """Put *data* into the front; False (logged) if it can't be cached.

        ``replace=True``: a fill follows a miss under the blob's fill lock,
        so there is no stored copy to keep, and the front skips looking.
        """
        try:
            if not await self._make_room(size):
                return False
            try:
                await self._front.put(integrity, data, replace=True)
            except QuotaExceeded:
                # Other processes filled the front since this one looked.
                self._front_total = None
                if not _reiterable(data) or not await self._make_room(size, fresh=True):
                    raise
                await self._front.put(integrity, data, replace=True)
            if self._front_total is not None:
                self._front_total += size
        except QuotaExceeded:
            logger.debug(
                "cache backend=%s: no room for integrity=%s (other processes "
                "filled the front meanwhile)",
                self.id,
                integrity,
            )
            return False
        except (StoreError, OSError, IntegrityMismatch) as error:
            # IntegrityMismatch: the copy kept for the front was damaged
            # (the back verified the same bytes); the front just lacks it.
            self._front_failed("store", integrity, error)
            return False
        self._counters.fills += 1
        return True

    def _take_stripe(self, integrity: Integrity) -> int | None:
        """Take this blob's fill lock; its stripe, or None if another process has it.

        A stripe is one of :data:`_STRIPES` lock files. Fills in this process
        share a stripe's ``flock`` (counted), so only other processes'
        fills of blobs on the same stripe are kept out, never this one's.
        Non-blocking calls only, so it runs on the event loop.
        """
        stripe = hashlib.sha256(str(integrity).encode()).digest()[0] % _STRIPES
        held = self._stripes.get(stripe)
        if held is not None:
            self._stripes[stripe] = (held[0], held[1] + 1)
            return stripe
        directory = self._front.root / _LOCK_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(
                directory / f"{stripe:02x}",
                os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                0o644,
            )
        except OSError:
            return -1  # no lock to be had (a read-only front): the put will fail
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        self._stripes[stripe] = (fd, 1)
        return stripe

    def _drop_stripe(self, stripe: int) -> None:
        held = self._stripes.get(stripe)
        if held is None:
            return
        fd, count = held
        if count > 1:
            self._stripes[stripe] = (fd, count - 1)
            return
        del self._stripes[stripe]
        os.close(fd)  # closing drops the flock

    # -- reading ---------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        data = await self._from_front(integrity)
        if data is not None:
            return data
        waiting = self._fills.get(integrity)
        # Another reader is fetching it: wait for its fill, then the front.
        if waiting is not None and await asyncio.shield(waiting):
            data = await self._from_front(integrity)
            if data is not None:
                return data
        flight: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._fills[integrity] = flight
        filled = False
        try:
            self._counters.misses += 1
            data = await self._back.get(integrity)
            if data is not None:
                stripe = self._take_stripe(integrity)
                if stripe is not None:
                    try:
                        filled = await self._fill(integrity, data, len(data))
                    finally:
                        self._drop_stripe(stripe)
            return data
        finally:
            del self._fills[integrity]
            if not flight.done():
                flight.set_result(filled)

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        front = await self._open_front(integrity)
        if front is not None:
            yield front
            return
        waiting = self._fills.get(integrity)
        if waiting is not None and await asyncio.shield(waiting):
            front = await self._open_front(integrity)
            if front is not None:
                yield front
                return
        # Registered before the first byte is read, so readers that come
        # meanwhile wait for this fill instead of fetching again.
        flight: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._fills[integrity] = flight
        try:
            async with self._back.open(integrity) as reader:
                self._counters.misses += 1
                tee = self._tee(integrity, reader, flight)
                try:
                    yield BlobBody(tee, reader.size)
                finally:
                    await tee.aclose()
        finally:
            if self._fills.get(integrity) is flight:
                del self._fills[integrity]
            if not flight.done():
                flight.set_result(False)

    async def _open_front(self, integrity: Integrity) -> BlobBody | None:
        """A verified front copy to stream, or None (absent, corrupt, failing)."""
        try:
            info = await self._front.stat(integrity)
        except (StoreError, OSError) as error:
            self._front_failed("read", integrity, error)
            return None
        if info is None:
            return None
        if info.size <= _WHOLE_READ:
            data = await self._from_front(integrity)
            return None if data is None else BlobBody(chunks_of(data), len(data))
        if not await self._check_front(integrity):
            return None
        self._counters.hits += 1
        return BlobBody(self._stream_front(integrity), info.size)

    async def _check_front(self, integrity: Integrity) -> bool:
        """Read the front copy through once: whether it is there and intact."""
        try:
            # One pass checks it, so a corrupt copy never reaches the caller.
            async with self._front.open(integrity) as reader:
                async for _ in reader:
                    pass
        except IntegrityMismatch as error:
            await self._repair(integrity, error)
            return False
        except BlobNotFound:
            return False
        except (StoreError, OSError) as error:
            self._front_failed("read", integrity, error)
            return False
        return True

    async def _stream_front(self, integrity: Integrity) -> AsyncIterator[bytes]:
        async with self._front.open(integrity) as reader:
            async for chunk in reader:
                yield chunk

    async def _tee(
        self,
        integrity: Integrity,
        reader: BlobReader,
        flight: asyncio.Future[bool],
    ) -> AsyncGenerator[bytes]:
        """Yield the back's chunks, filling the front with them as they pass.

        The fill is a put of the same chunks (verified again by the front,
        renamed into place only when whole); a reader that stops early, or
        a blob too large for the cap, leaves nothing in the front. *flight*
        gets whether the blob was cached.
        """
        size = reader.size
        stripe = None
        if size is not None and size <= self._max_bytes:
            stripe = self._take_stripe(integrity)
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
            filled = False
            with contextlib.suppress(asyncio.CancelledError):
                filled = await fill
            if not flight.done():
                flight.set_result(filled)
            self._drop_stripe(stripe)

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        store: BlobStore = self._back
        with contextlib.suppress(StoreError, OSError):
            if await self._front.has(integrity):
                store = self._front
        async with store.open(integrity, start=start, end=end) as reader:
            assert reader.size is not None  # noqa: S101 -- known for a range
            yield BlobBody(reader, reader.size)

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        with contextlib.suppress(StoreError, OSError):
            info = await self._front.stat(integrity)
            if info is not None:
                return BlobInfo(str(integrity), info.size, None)
        return await self._back.stat(integrity)

    async def has_blob(self, integrity: Integrity, /) -> bool:
        with contextlib.suppress(StoreError, OSError):
            if await self._front.has(integrity):
                return True
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
        with _Spool(limit=self._max_bytes) as spool:
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
        if _as_buffer(data) is not None:
            stored = await self._back.add(data, algorithm=algorithm, replace=replace)
            await self._write_through(stored, data, replace=replace)
            return stored
        with _Spool(limit=self._max_bytes) as spool:
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
        if size is None:
            size = getattr(data, "size", None)
        if size is None or size > self._max_bytes:
            return
        if replace:
            with contextlib.suppress(SriblobError, OSError):
                await self._front.delete(integrity)
        stripe = self._take_stripe(integrity)
        if stripe is None:
            return
        try:
            await self._fill(integrity, data, size)
        finally:
            self._drop_stripe(stripe)

    async def write_blob(self, source: BlobSource, /) -> None:
        # put() and add() go to the back themselves; this is for completeness.
        await self._back.put(source.integrity, source.chunks())

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        gone = await self._back.delete(integrity, stored_before=stored_before)
        if gone:
            try:
                await self._front.delete(integrity)
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
        """What the front holds, and this object's hit and fill counts."""
        self._check_usable()
        usage = await self._front.usage()
        blobs = 0
        async for _ in self._front.list():
            blobs += 1
        counters = self._counters
        return CacheStats(
            blobs=blobs,
            bytes=usage.total,
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

        *max_bytes* defaults to the cap (nothing to do unless the cap was
        lowered); 0 empties the front. Returns the number evicted.
        """
        self._check_usable()
        limit = self._max_bytes if max_bytes is None else max_bytes
        before = self._counters.evictions
        saved, self._max_bytes = self._max_bytes, limit
        try:
            await self._make_room(0)
            if limit == 0:
                async for name in self._front.list():
                    if await self._front.delete(name):
                        self._counters.evictions += 1
        finally:
            self._max_bytes = saved
        return self._counters.evictions - before

    async def link_to(
        self, integrity: str | Integrity, path: str | os.PathLike[str]
    ) -> str:
        """Place the blob at *path* from the front (filling it first if needed).

        See :meth:`FilesystemBlobStore.link_to`; returns how it was placed.

        Raises:
            BlobNotFound: Neither store holds the blob.
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        if not await self._front.has(wanted):
            data = await self.get(wanted)
            if data is None:
                raise self.not_found(wanted)
            if not await self._front.has(wanted):
                # Not cacheable (too large, or the front failed): copy it out.
                return await _write_file(path, data)
        return await self._front.link_to(wanted, path)


async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    while True:
        chunk = await queue.get()
        if chunk is None:
            return
        yield chunk


class _Spool:
    """Keep a copy of a stream as it goes to the back, for the front after.

    The copy is best effort. It counts only if the back read the stream to
    its end (a back that already holds the blob may stop early); past
    *limit* bytes (the blob won't be cached) or after a failed write (a full
    temp directory) it stops, and the stream goes on to the back untouched.
    ``size`` is the copy's size, or ``None`` when there is no whole copy.
    Up to ``_SPOOL`` bytes stay in memory; past that, writes and the
    read-back go through a worker thread, at least ``CHUNK_SIZE`` at a time.
    """

    def __init__(self, *, limit: int) -> None:
        self._file = tempfile.SpooledTemporaryFile(_SPOOL)  # noqa: SIM115
        self._limit = limit
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._seen = 0
        self._copying = True
        self._complete = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()

    @property
    def size(self) -> int | None:
        return self._seen if self._copying and self._complete else None

    @property
    def in_memory(self) -> bool:
        return self._seen <= _SPOOL

    async def tee(self, data: AsyncIterable[Buffer]) -> AsyncIterator[Buffer]:
        async for chunk in data:
            if self._copying:
                await self._keep(chunk)
            yield chunk
        if self._copying:
            await self._flush()
        self._complete = True

    async def _keep(self, chunk: Buffer) -> None:
        size = memoryview(chunk).nbytes
        if self._seen + size > self._limit:
            self._stop()
            return
        self._seen += size
        if self.in_memory:
            self._file.write(chunk)
            return
        self._pending.append(bytes(chunk))
        self._pending_size += size
        if self._pending_size >= CHUNK_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending, self._pending_size = self._pending, [], 0
        if not pending:
            return
        try:
            await asyncio.to_thread(self._file.writelines, pending)
        except OSError as error:
            logger.warning(
                "cache: can't keep a copy of a streamed write for the front "
                "(%s); the blob goes to the back only",
                error,
            )
            self._stop()

    def _stop(self) -> None:
        self._copying = False
        self._pending, self._pending_size = [], 0

    def chunks(self) -> _SpoolChunks:
        return _SpoolChunks(self)


@attrs.define
class _SpoolChunks:
    _spool: _Spool

    @property
    def size(self) -> int | None:
        return self._spool.size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        spool = self._spool._file  # noqa: SLF001 -- its own spool
        in_memory = self._spool.in_memory
        spool.seek(0)
        while True:
            chunk = (
                spool.read(CHUNK_SIZE)
                if in_memory
                else await asyncio.to_thread(spool.read, CHUNK_SIZE)
            )
            if not chunk:
                return
            yield chunk


def _reiterable(data: Data) -> bool:
    """Whether *data* can be put again after a refused put (not a stream)."""
    return _as_buffer(data) is not None or isinstance(data, _SpoolChunks)


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
