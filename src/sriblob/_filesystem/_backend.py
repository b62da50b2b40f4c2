"""The filesystem backend: blob files under a root, moved by worker threads."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt
import functools
import itertools
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from sriblob._backend import Backend, BlobBody, BlobInfo
from sriblob._source import CHUNK_SIZE

from ._errors import translating
from ._link import link_sync
from ._locks import take_lease
from ._paths import LEASE_FILE, LIST_BATCH, USAGE_FILE, Location
from ._temp import (
    WRITE_AHEAD,
    TempFile,
    acquire,
    cancel_all,
    discard,
    small_buffer,
)
from ._tree import Tree

if TYPE_CHECKING:
    import io
    from collections.abc import AsyncIterator, Callable

    from sriblob._integrity import Integrity
    from sriblob._lease import Lease
    from sriblob._source import BlobSource

    from ._link import LinkMethod

__all__ = ["FilesystemBackend"]

_T = TypeVar("_T")


class FilesystemBackend(Backend):
    """Blobs as files under *root* (see :class:`~sriblob.FilesystemBlobStore`).

    Blocking calls run in worker threads, their ``OSError`` translated
    into the library's errors naming the path; a large stream is written by
    a thread of its own a few chunks behind the stream.
    """

    default_id: ClassVar[str] = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        super().__init__()
        self.tree = Tree(Path(root))
        self._lease_fds: dict[str, int] = {}

    @property
    def root(self) -> Path:
        """The directory the blobs live under."""
        return self.tree.root

    def describe(self) -> str:
        return f"root={str(self.root)!r}"

    # -- errors ---------------------------------------------------------------

    async def _io(
        self, action: str, path: Path, function: Callable[..., _T], *args: object
    ) -> _T:
        """Run *function* in a worker thread, mapping OS errors to store errors."""
        with self._translating(action, path):
            return await asyncio.to_thread(function, *args)

    def _translating(
        self, action: str, path: Path
    ) -> contextlib.AbstractContextManager[None]:
        return translating(self.root, self.id, action, path)

    # -- the maintenance lease ------------------------------------------------

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Lock ``root/.lease`` with ``flock``, and write *lease* into it.

        The kernel drops the lock when the holder's process dies, however it
        dies; every process on the machine that opens the same root sees it
        (not across hosts sharing the directory over NFS, where ``flock`` is
        local to each client).
        """
        path = self.root / LEASE_FILE
        fd, held = await self._io("lock", path, take_lease, self.root, lease)
        if fd is not None:
            self._lease_fds[lease.token] = fd
        return held

    async def release_lease(self, lease: Lease, /) -> None:
        fd = self._lease_fds.pop(lease.token, None)
        if fd is None:
            return

        def release() -> None:
            try:
                os.ftruncate(fd, 0)
            finally:
                os.close(fd)  # closing drops the flock

        await self._io("unlock", self.root / LEASE_FILE, release)

    # -- the running total ----------------------------------------------------

    async def adjust_total(self, delta: int, /) -> int:
        """Change the total in ``root/.usage`` under its lock."""
        return await self._io(
            "count", self.root / USAGE_FILE, self.tree.adjust, delta, self._quota
        )

    async def stored_total(self) -> int:
        return await self._io("count", self.root / "blobs", self.tree.count)

    # -- copying out ----------------------------------------------------------

    @property
    def can_link(self) -> bool:
        return True

    async def link_to(
        self, integrity: Integrity, path: str | os.PathLike[str], /
    ) -> LinkMethod:
        target = Path(path)
        location = self.tree.locate(integrity)
        method = await self._io(
            "link", target, link_sync, self.root, integrity, location, target
        )
        if method is None:
            raise self.not_found(integrity)
        return method

    # -- writing --------------------------------------------------------------

    async def write_blob(self, source: BlobSource, /) -> None:
        known = source.expected
        if known is not None:
            location = self.tree.locate(known)
            # With replace, no stored copy stands: skip looking at it. A copy
            # of the right size stands once it verified: reading and hashing
            # it costs less than writing and syncing the bytes again (and
            # the data isn't read at all then).
            if (
                not source.replace
                and await self._kept(location, source)
                and await source.stored_copy_intact()
            ):
                return
            view = await small_buffer(source)
            if view is not None:
                total = await self._io(
                    "write",
                    location.path,
                    self.tree.write_whole,
                    location,
                    view,
                    self._quota,
                )
                self.noted(total)
                return
            temp = await self._stream_to_temp(source, location.dirs, location.path)
            await self._commit(temp, location, source.bytes_read)
            return
        # The name is known only at the end: stage at the top of the tree,
        # on the same file system, so the rename stays atomic.
        temp = await self._stream_to_temp(source, ("blobs",), self.root / "blobs")
        location = self.tree.locate(source.integrity)
        try:
            # As for put(): a stored copy stands once it verified, so the
            # file (and any hard link link_to made to it) stays the same.
            kept = await self._kept(location, source) and (
                await source.stored_copy_intact()
            )
        except BaseException:
            await discard(temp)
            raise
        if kept:
            await discard(temp)
        else:
            await self._commit(temp, location, source.bytes_read)

    async def _kept(self, location: Location, source: BlobSource) -> bool:
        return await self._io(
            "check", location.path, self.tree.keep_stored, location, source.keeps
        )

    async def _stream_to_temp(
        self, source: BlobSource, dirs: tuple[str, ...], path: Path
    ) -> TempFile:
        """Write *source* to a new temp file; remove it on any error.

        One worker thread of the stream's own writes the chunks in order, up
        to :data:`WRITE_AHEAD` bytes behind the stream, so reading and
        hashing the next chunks overlaps the writes.
        """
        with self._translating("write", path):
            temp = await acquire(
                functools.partial(TempFile.create, self.root, dirs), TempFile.discard
            )
        loop = asyncio.get_running_loop()
        writer = concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix="sriblob-write"
        )
        writes: collections.deque[tuple[asyncio.Future[None], int]] = (
            collections.deque()
        )
        behind = offset = 0
        try:
            async for chunk in source.chunks():
                size = memoryview(chunk).nbytes
                write = loop.run_in_executor(writer, temp.write, chunk, offset)
                writes.append((write, size))
                offset += size
                behind += size
                while behind > WRITE_AHEAD:
                    oldest, written = writes.popleft()
                    behind -= written
                    with self._translating("write", path):
                        await oldest
            while writes:
                with self._translating("write", path):
                    await writes[0][0]
                writes.popleft()
        except BaseException:
            cancel_all(write for write, _ in writes)
            await discard(temp)
            raise
        finally:
            writer.shutdown(wait=False, cancel_futures=True)
        return temp

    async def _commit(self, temp: TempFile, location: Location, size: int) -> None:
        try:
            total = await self._io(
                "write",
                location.path,
                self.tree.commit,
                temp,
                location,
                size,
                self._quota,
            )
        except BaseException:
            await discard(temp)
            raise
        self.noted(total)

    # -- reading --------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        location = self.tree.locate(integrity)
        return await self._io("read", location.path, self.tree.read_whole, location)

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        async with self.read_blob_range(integrity, 0, None) as body:
            yield body

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        location = self.tree.locate(integrity)
        with self._translating("read", location.path):
            opened = await acquire(
                functools.partial(self.tree.open_file, location), _close_opened
            )
        if opened is None:
            raise self.not_found(integrity)
        file, size = opened
        try:
            stop = self.check_range(integrity, start, end, size)
        except BaseException:
            file.close()
            raise
        try:
            yield BlobBody(self._chunks(file, location, start, stop), size)
        finally:
            # Shielded so the file is closed even if the reader is cancelled.
            await asyncio.shield(asyncio.to_thread(file.close))

    async def _chunks(
        self, file: io.FileIO, location: Location, start: int, stop: int
    ) -> AsyncIterator[bytes]:
        position = start
        while position < stop:
            count = min(CHUNK_SIZE, stop - position)
            with self._translating("read", location.path):
                chunk = await asyncio.to_thread(
                    os.pread, file.fileno(), count, position
                )
            if not chunk:
                return  # the file shrank: verification (or the caller) sees it
            position += len(chunk)
            yield chunk

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        """Answer with one ``stat``: the size, and the mtime as ``stored_at``."""
        location = self.tree.locate(integrity)
        result = await self._io("look up", location.path, self.tree.stat, location)
        if result is None:
            return None
        stored_at = dt.datetime.fromtimestamp(result.st_mtime, dt.UTC)
        return BlobInfo(str(integrity), result.st_size, stored_at)

    # -- deleting and listing -------------------------------------------------

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        location = self.tree.locate(integrity)
        before = None if stored_before is None else stored_before.timestamp()
        gone, total = await self._io(
            "delete",
            location.path,
            functools.partial(self.tree.delete, counted=self.keeps_total),
            location,
            before,
        )
        self.noted(total)
        return gone

    async def list_names(self) -> AsyncIterator[str]:
        walk = self.tree.walk()
        # The walk runs in worker threads, one batch at a time; the lock keeps
        # closing it from racing a batch still being read after a cancel.
        lock = threading.Lock()

        def next_batch() -> list[str]:
            with lock:
                return list(itertools.islice(walk, LIST_BATCH))

        def close() -> None:
            with lock:
                walk.close()

        try:
            while True:
                with self._translating("list", self.root / "blobs"):
                    batch = await asyncio.to_thread(next_batch)
                if not batch:
                    return
                for name in batch:
                    yield name
        finally:
            await asyncio.shield(asyncio.to_thread(close))


def _close_opened(opened: tuple[io.FileIO, int] | None) -> None:
    if opened is not None:
        opened[0].close()
