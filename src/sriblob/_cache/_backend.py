"""The cache as a backend: local verified copies in front of a backend of record.

**The back is the store of record.** Everything that decides whether a blob
exists, when it was stored, or whether data may be deleted comes from the
back, always: ``has_blob``, ``stat_blob`` (and its ``stored_at``), listings,
the running total, leases and presigned URLs; :func:`~sriblob.migrate`'s
skip and read-back, :func:`~sriblob.verify` and garbage collection ask the
back's store (:attr:`CacheBackend.store_of_record`). A front copy only
speeds up bytes, and only bytes verified as they are read.

The cache composes: it wraps the back's backend and the front
(:class:`~._front.Front`), and the store around it verifies, limits and logs
as for any store. It checks whole-blob reads itself
(:attr:`~sriblob.backend.Backend.verifies_reads`), because a damaged front
copy must be repaired from the back before any of its bytes go out; the one
hash of a cold read serves both the reader and the fill.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Final

import attrs

from sriblob import _telemetry as telemetry
from sriblob._backend import Backend, BlobBody, BlobInfo, chunks_of
from sriblob._integrity import PipelinedHasher, hash_buffer
from sriblob.exceptions import (
    BlobNotFound,
    IntegrityMismatch,
    SriblobError,
    StoreError,
)

from ._counters import Counters
from ._fill import check_and_fill
from ._front import Front, FrontFile
from ._spool import Spool

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, AsyncIterator

    from sriblob._filesystem import FilesystemBlobStore
    from sriblob._integrity import Integrity
    from sriblob._lease import Lease
    from sriblob._options import StoreOptions
    from sriblob._source import BlobSource
    from sriblob._store import BlobStore

__all__ = ["CacheBackend", "Counters"]

logger = logging.getLogger("sriblob")

#: Front hits up to this size are read whole (one verified read) by a whole
#: read; larger ones are checked in one pass, then streamed in a second, both
#: from the descriptor opened once.
_WHOLE_READ: Final = 16 * 1024 * 1024
#: Chunks a fill may lag behind the reader it tees from.
_FILL_QUEUE: Final = 8


@attrs.define
class _Flight:
    """One read of a missing blob from the back, that others may wait for.

    ``data`` is the blob when the flight was a whole read into memory
    (waiters take it as it is, cached or not); ``filled`` says whether the
    front got a copy.
    """

    done: asyncio.Event = attrs.Factory(asyncio.Event)
    data: bytes | None = None
    filled: bool = False


class CacheBackend(Backend):
    """A bounded local copy of another store's blobs, in front of its backend.

    Args:
        front: The filesystem store whose directory holds the copies.
        back: The store of record; its backend moves the bytes.
        max_bytes: The most bytes the front may hold, fills included.
    """

    requires_startup: ClassVar[bool] = True
    verifies_reads: ClassVar[bool] = True

    def __init__(
        self, front: FilesystemBlobStore, back: BlobStore, *, max_bytes: int
    ) -> None:
        super().__init__()
        #: The store whose answers decide what exists.
        self.store_of_record = back
        self.front_store = front
        self.max_bytes = max_bytes
        self.counters = Counters()
        self._back = back.backend
        self._front: Front | None = None
        self._flights: dict[Integrity, _Flight] = {}
        self._stack: contextlib.AsyncExitStack | None = None

    def bind(self, options: StoreOptions, /) -> None:
        super().bind(options)
        self._front = Front(self.front_store.root, max_bytes=self.max_bytes, id=self.id)

    @property
    def front(self) -> Front:
        """The front's files, total, fill locks and verified copies."""
        front = self._front
        if front is None:
            raise RuntimeError("Build a CachedBlobStore around this backend first.")
        return front

    def describe(self) -> str:
        return (
            f"front={self.front_store!r} back={self.store_of_record!r} "
            f"max_bytes={self.max_bytes}"
        )

    # -- lifecycle -------------------------------------------------------------

    async def startup(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.store_of_record)
            await stack.enter_async_context(self.front_store)
            self._stack = stack.pop_all()

    async def shutdown(self) -> None:
        self.front.close()
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    # -- what the back decides -------------------------------------------------

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        return await self._back.stat_blob(integrity)

    async def has_blob(self, integrity: Integrity, /) -> bool:
        return await self._back.has_blob(integrity)

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        gone = await self._back.delete_blob(integrity, stored_before=stored_before)
        if gone:
            try:
                await self.front.drop(integrity)
            except (StoreError, OSError) as error:
                self.counters.front_failed(self.id, "delete", integrity, error)
        return gone

    def list_names(self) -> AsyncIterator[str]:
        return self._back.list_names()

    async def stored_total(self) -> int:
        return await self._back.stored_total()

    async def adjust_total(self, delta: int, /) -> int:
        return await self._back.adjust_total(delta)

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        return await self._back.try_lease(lease)

    async def release_lease(self, lease: Lease, /) -> None:
        await self._back.release_lease(lease)

    async def check_lease(self, lease: Lease, /) -> None:
        await self._back.check_lease(lease)

    @property
    def can_presign(self) -> bool:
        return self._back.can_presign

    async def presign(
        self, integrity: Integrity, /, *, expires_in: int, method: str
    ) -> str:
        return await self._back.presign(integrity, expires_in=expires_in, method=method)

    # -- the front -------------------------------------------------------------

    async def _repair(self, integrity: Integrity, why: str) -> None:
        self.counters.repairs += 1
        logger.warning(
            "cache backend=%s: the front's copy of integrity=%s is corrupt (%s); "
            "dropping it and reading the back",
            self.id,
            integrity,
            why,
            extra=telemetry.fields(self.id, "repair", integrity),
        )
        try:
            await self.front.drop(integrity)
        except (SriblobError, OSError) as error:
            self.counters.front_failed(self.id, "drop", integrity, error)

    async def _open_front(
        self, integrity: Integrity, *, read_up_to: int | None = 0
    ) -> FrontFile | None:
        """The front's copy, open (or read whole and hashed); None: absent, failing."""
        try:
            return await self.front.open(
                integrity, read_up_to=read_up_to, hash_it=self.options.verify
            )
        except (StoreError, OSError) as error:
            self.counters.front_failed(self.id, "read", integrity, error)
            return None

    async def _checked(self, integrity: Integrity, file: FrontFile) -> bytes | None:
        """The bytes of a front copy read whole, if they are the blob's."""
        assert file.data is not None  # noqa: S101 -- read whole
        data = file.data
        if self.options.verify:
            hashed = file.hashed
            if hashed is None:  # pragma: no cover -- open() hashes when verifying
                hashed = (await hash_buffer(data, integrity.algorithm)).integrity()
            if hashed != integrity:
                await self._repair(integrity, f"{len(data)} bytes that don't match")
                return None
            if file.unchanged:
                self.front.trust(integrity, file.after)
        self.counters.hit(self.id)
        return data

    def _cacheable(self, size: int | None) -> bool:
        # Bytes nobody verifies (a store with verify=False names derived
        # bytes) could never verify as a copy: read through, never kept.
        return size is not None and size <= self.max_bytes and self.options.verify

    async def _fill(
        self, integrity: Integrity, data: Any, size: int, *, verified: bool
    ) -> bool:
        """Put *data* into the front; False (logged) if it can't be cached."""
        try:
            filled = await self.front.fill_with_room(
                integrity, data, size, verified=verified
            )
        except (StoreError, OSError, IntegrityMismatch) as error:
            self.counters.front_failed(self.id, "store", integrity, error)
            return False
        self.counters.fills += filled
        return filled

    async def _fill_locked(
        self, integrity: Integrity, data: Any, size: int, *, verified: bool
    ) -> bool:
        """:meth:`_fill` under the blob's fill lock, if no other process holds it."""
        stripe = self.front.stripes.take(integrity)
        if stripe is None:
            return False
        try:
            return await self._fill(integrity, data, size, verified=verified)
        finally:
            self.front.stripes.drop(stripe)

    # -- reading ---------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        file = await self._open_front(integrity, read_up_to=None)
        if file is not None:
            data = await self._checked(integrity, file)
            if data is not None:
                return data
        flight = self._flights.get(integrity)
        if flight is not None:
            # Another reader is fetching it: take its bytes, or its copy.
            await flight.done.wait()
            if flight.data is not None:
                return flight.data
            return await self._after_flight(integrity, flight)
        flight = self._flights[integrity] = _Flight()
        try:
            self.counters.miss(self.id)
            data = await self._back.read_blob_bytes(integrity)
            if data is not None:
                flight.filled = await self._check_and_fill(integrity, data)
            flight.data = data
            return data
        finally:
            if self._flights.get(integrity) is flight:
                del self._flights[integrity]
            flight.done.set()

    async def _check_and_fill(self, integrity: Integrity, data: bytes) -> bool:
        """Check the back's *data* and copy it into the front, at once.

        Whether the front got it. The bytes are checked whatever becomes of
        the copy: :class:`~sriblob.IntegrityMismatch` if they aren't the blob.
        """
        if not self.options.verify:
            return False
        cacheable = self._cacheable(len(data))
        outcome = await check_and_fill(self.front, integrity, data, cacheable=cacheable)
        if isinstance(outcome, Exception):
            self.counters.front_failed(self.id, "store", integrity, outcome)
            return False
        self.counters.fills += outcome
        return outcome

    async def _after_flight(
        self, integrity: Integrity, flight: _Flight
    ) -> bytes | None:
        if flight.filled:
            file = await self._open_front(integrity, read_up_to=None)
            if file is not None:
                data = await self._checked(integrity, file)
                if data is not None:
                    return data
        return await self._from_back(integrity)

    async def _from_back(self, integrity: Integrity) -> bytes | None:
        """The back's bytes, checked against the integrity (when verifying)."""
        self.counters.miss(self.id)
        data = await self._back.read_blob_bytes(integrity)
        if data is not None and self.options.verify:
            (await hash_buffer(data, integrity.algorithm)).verify(integrity)
        return data

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
            async with self._back.read_blob(integrity) as back:
                self.counters.miss(self.id)
                yield BlobBody(
                    _checked(self.options.verify, integrity, back), back.size
                )
            return
        # Registered before the first byte is read, so readers that come
        # meanwhile wait for this fill instead of fetching again.
        flight = self._flights[integrity] = _Flight()
        try:
            async with self._back.read_blob(integrity) as back:
                self.counters.miss(self.id)
                tee = self._tee(integrity, back, flight)
                try:
                    yield BlobBody(tee, back.size)
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
            data = await self._checked(integrity, file)
            return None if data is None else BlobBody(chunks_of(data), len(data))
        if self.options.verify:
            try:
                intact = await file.check(integrity)
            except OSError as error:
                await file.close()
                self.counters.front_failed(self.id, "read", integrity, error)
                return None
            if not intact:
                await file.close()
                await self._repair(integrity, f"{file.size} bytes that don't match")
                return None
            self.front.trust(integrity, file.after)
        self.counters.hit(self.id)
        return BlobBody(self._front_stream(integrity, file), file.size)

    async def _front_stream(
        self, integrity: Integrity, file: FrontFile
    ) -> AsyncIterator[bytes]:
        """Stream a checked front copy from its descriptor, checking it again.

        If it changes while it streams, the stream ends in
        :class:`~sriblob.IntegrityMismatch` and the copy is dropped, instead
        of passing for the blob.
        """
        try:
            async for chunk in _checked(
                self.options.verify,
                integrity,
                BlobBody(file.chunks(0, file.size), file.size),
            ):
                yield chunk
        except IntegrityMismatch:
            await self._repair(integrity, "it changed while it streamed")
            raise
        finally:
            await file.close()

    async def _tee(
        self, integrity: Integrity, back: BlobBody, flight: _Flight
    ) -> AsyncGenerator[bytes]:
        """Yield the back's chunks, checked, filling the front as they pass.

        The fill writes the same chunks and ends only once they verified,
        so one hash serves the reader and the fill; a reader that stops
        early, or a blob too large for the cap, leaves nothing in the front.
        """
        stream = _checked(self.options.verify, integrity, back)
        stripe = None
        if self._cacheable(back.size):
            stripe = self.front.stripes.take(integrity)
        if stripe is None:
            async for chunk in stream:
                yield chunk
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(_FILL_QUEUE)
        fill = asyncio.ensure_future(
            self._fill(integrity, _drain(queue), back.size or 0, verified=True)
        )
        complete = False
        try:
            async for chunk in stream:
                await _hand_over(queue, chunk, fill)
                yield chunk
            complete = True  # the stream verified: the fill may commit
            await _hand_over(queue, None, fill)
        finally:
            if not complete:
                fill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                flight.filled = await fill
            self.front.stripes.drop(stripe)

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        file = await self._open_front(integrity)
        if file is not None and not self.front.trusted(integrity, file):
            await file.close()
            file = None
        if file is None:
            async with self._back.read_blob_range(integrity, start, end) as back:
                self.counters.miss(self.id)
                yield back
            return
        try:
            stop = self.check_range(integrity, start, end, file.size)
            self.counters.hit(self.id)
            yield BlobBody(file.chunks(start, stop), file.size)
        finally:
            await file.close()

    # -- writing ---------------------------------------------------------------

    async def write_blob(self, source: BlobSource, /) -> None:
        """Write to the back, then copy what it took into the front.

        The copy is best effort: a stream is spooled as it passes (memory up
        to 8 MiB, then a temp file) and kept only if the back read it whole.
        """
        if source.view is not None:
            await self._back.write_blob(source)
            await self._write_through(source, source.view, source.view.nbytes)
            return
        with Spool(limit=self.max_bytes, store=self.id) as spool:
            source.tap(spool.keep)
            await self._back.write_blob(source)
            # A back that holds the blob may stop reading early: no copy then.
            size = await spool.finish() if source.finished else None
            if size is not None:
                await self._write_through(source, spool.chunks(), size)

    async def _write_through(self, source: BlobSource, data: Any, size: int) -> None:
        if not self._cacheable(size):
            return
        integrity = source.integrity
        if source.replace:
            with contextlib.suppress(SriblobError, OSError):
                await self.front.drop(integrity)
        # Bytes the source verified on their way to the back aren't hashed
        # again; bytes-like data the back didn't read (it kept its copy) are.
        verified = source.finished and self.options.verify
        await self._fill_locked(integrity, data, size, verified=verified)

    # -- copying out -----------------------------------------------------------

    @property
    def can_link(self) -> bool:
        return True

    async def link_to(
        self, integrity: Integrity, path: str | os.PathLike[str], /
    ) -> str:
        """Link from the front, filling it first; a damaged copy is read again."""
        try:
            method = await self.front.link(integrity, path)
        except IntegrityMismatch as error:
            await self._repair(integrity, str(error))
            method = None
        if method is not None:
            return method
        data = await self.read_blob_bytes(integrity)
        if data is None:
            raise self.not_found(integrity)
        with contextlib.suppress(BlobNotFound, IntegrityMismatch):
            method = await self.front.link(integrity, path)
        # Not cacheable (too large, or the front failed), or changed
        # meanwhile: copy out the verified bytes.
        return method or await _write_file(path, data)


async def _checked(
    verify: bool,
    integrity: Integrity,
    body: BlobBody,
) -> AsyncIterator[bytes]:
    """Yield *body*'s chunks; at its end, raise unless they are the blob."""
    if not verify:
        async for chunk in body.chunks:
            yield chunk
        return
    hasher = PipelinedHasher(integrity.algorithm)
    try:
        async for chunk in body.chunks:
            await hasher.update(chunk)
            yield chunk
        (await hasher.finish()).verify(integrity)
    finally:
        hasher.close()


async def _hand_over(
    queue: asyncio.Queue[bytes | None], chunk: bytes | None, fill: asyncio.Future[bool]
) -> None:
    """Queue *chunk* for *fill*, waiting for room only while the fill runs.

    A fill may end without taking the rest (no room after all, a failed
    write): then the chunk is dropped, where a plain ``put`` on a full
    queue would park the reader for good.
    """
    if fill.done():
        return
    try:
        queue.put_nowait(chunk)
    except asyncio.QueueFull:
        put = asyncio.ensure_future(queue.put(chunk))
        try:
            await asyncio.wait((put, fill), return_when=asyncio.FIRST_COMPLETED)
        finally:
            put.cancel()


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
