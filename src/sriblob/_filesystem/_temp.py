"""Temp files that end renamed over a blob's name, or removed: atomic writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import stat
import threading
from typing import TYPE_CHECKING, Final, TypeVar

from sriblob._source import CHUNK_SIZE

from ._paths import (
    FILE_MODE,
    TEMP_FLAGS,
    TEMP_PREFIX,
    Location,
    file_size,
    not_a_file,
    open_dirs,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from pathlib import Path

    from sriblob._compat import Buffer
    from sriblob._source import BlobSource

_T = TypeVar("_T")

FLUSH_INTERVAL: Final = 8 * 1024 * 1024
#: How many bytes of a stream may wait to be written while the next chunks
#: are read and hashed (always at least one chunk).
WRITE_AHEAD: Final = 8 * 1024 * 1024
#: Blob files are read-only, directories open to read; the process umask can
#: only take permissions away from these, never add write access for others.
fdatasync: Final = getattr(os, "fdatasync", os.fsync)


class TempFile:
    """A temp file that ends renamed over its final name, or removed.

    Its methods block; the store calls them in worker threads. A lock
    serialises them, so removal after a cancelled write waits for the write
    the thread is still doing instead of racing it, and no write ever uses
    the descriptor after it was closed. The file is created and renamed
    relative to its directory's descriptor, so no symlink in the path is
    ever followed.

    Writes are positional (``pwrite``), so they may run in any order. Every
    :data:`FLUSH_INTERVAL` bytes a write also flushes the file to disk
    (``fdatasync``): while a large blob streams in, the disk keeps up with
    the hashing, and the ``fsync`` at commit only has the tail left to do.
    """

    def __init__(
        self,
        root: Path,
        dirs: tuple[str, ...],
        directory: int,
        *,
        sync_names: bool,
        sync_data: bool = True,
        tag: str = "",
    ) -> None:
        self._root = root
        self._dirs = dirs
        self._directory = directory
        self._sync_names = sync_names
        self._sync_data = sync_data
        self._lock = threading.Lock()
        self._finished = False
        self._unflushed = 0
        self._synced = False  # fsynced since the last write
        while True:
            self.name = f"{TEMP_PREFIX}{secrets.token_hex(8)}{tag}"
            try:
                self._fd = os.open(self.name, TEMP_FLAGS, FILE_MODE, dir_fd=directory)
            except FileExistsError:  # pragma: no cover -- 64 random bits collided
                continue
            break

    @classmethod
    def create(
        cls,
        root: Path,
        dirs: tuple[str, ...],
        *,
        sync_names: bool = True,
        sync_data: bool = True,
        tag: str = "",
    ) -> TempFile:
        """A new temp file in ``root/dirs``, created if missing.

        With *sync_names* false, new directories and the final rename are
        not synced: after a power loss the blob is whole or absent, and may
        be absent. With *sync_data* false too, the bytes aren't synced
        either: after a power loss the file may be torn under its name (a
        cache's front, whose copies are verified before use and fetched
        again when they fail). *tag* ends the file's name (a cache fill's
        reservation, see :func:`reserved_size`).
        """
        directory = open_dirs(root, dirs, create=True, sync=sync_names)
        try:
            return cls(
                root,
                dirs,
                directory,
                sync_names=sync_names,
                sync_data=sync_data,
                tag=tag,
            )
        except BaseException:
            os.close(directory)
            raise

    def _check_open(self) -> None:
        if self._finished or self._fd < 0:
            msg = "The temp file was already committed or discarded."
            raise RuntimeError(msg)

    def write(self, data: Buffer, offset: int = 0) -> None:
        """Write *data* at *offset*."""
        view = memoryview(data).cast("B")
        with self._lock:
            self._check_open()
            self._synced = False
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
                self._unflushed += written
            if self._sync_data and self._unflushed >= FLUSH_INTERVAL:
                fdatasync(self._fd)
                self._unflushed = 0

    def sync(self) -> None:
        """Flush the file to disk (so a commit under a lock has little left)."""
        with self._lock:
            self._check_open()
            if self._sync_data:
                os.fsync(self._fd)
            self._unflushed = 0
            self._synced = True

    def commit(self, final: Location) -> None:
        """Sync and rename the file to *final*, then sync its directory."""
        self.sync_directory(self.rename(final))

    def size_beside(self, final: Location) -> int | None:
        """The size of the file at *final* (0 if none), if it is beside this one.

        None when *final* is in another directory (ask the store).
        """
        if final.dirs != self._dirs:
            return None
        with self._lock:
            self._check_open()
            return file_size(self._directory, final.name)

    def sync_directory(self, fd: int) -> None:
        """Sync the directory *fd* that :meth:`rename` returned; close it."""
        try:
            if self._sync_names:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, final: Location) -> int:
        """Sync and rename the file to *final*; return its directory, unsynced.

        The caller must pass the descriptor to :meth:`sync_directory` before
        the blob counts as stored: a store with a quota renames under its
        usage lock and syncs the directory after, so the lock isn't held
        across a second journal commit.
        """
        with self._lock:
            self._check_open()
            if self._sync_data and not self._synced:
                os.fsync(self._fd)
            self._close_file()
            if final.dirs == self._dirs:
                target = os.dup(self._directory)
            else:
                target = open_dirs(
                    self._root, final.dirs, create=True, sync=self._sync_names
                )
            try:
                os.rename(
                    self.name,
                    final.name,
                    src_dir_fd=self._directory,
                    dst_dir_fd=target,
                )
            except IsADirectoryError:
                os.close(target)
                raise not_a_file(final.path, stat.S_IFDIR) from None
            except BaseException:
                os.close(target)
                raise
            self._finished = True
            self._close_directory()
            return target

    def discard(self) -> None:
        """Close and remove the file, unless it was committed."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            with contextlib.suppress(OSError):
                self._close_file()
            with contextlib.suppress(OSError):
                os.unlink(self.name, dir_fd=self._directory)
            self._close_directory()

    def _close_file(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def _close_directory(self) -> None:
        fd, self._directory = self._directory, -1
        if fd >= 0:
            os.close(fd)


async def acquire(acquire: Callable[[], _T], release: Callable[[_T], None]) -> _T:
    """Run *acquire* in a worker thread and return what it returns.

    A worker thread can't be stopped: if the caller is cancelled meanwhile,
    the thread still creates its file, and *release* (in a thread too)
    removes or closes it once the thread is done.
    """
    acquiring = asyncio.ensure_future(asyncio.to_thread(acquire))
    try:
        return await asyncio.shield(acquiring)
    except asyncio.CancelledError:

        def release_later(done: asyncio.Future[_T]) -> None:
            if not done.cancelled() and done.exception() is None:
                loop = asyncio.get_running_loop()
                loop.run_in_executor(None, release, done.result())

        acquiring.add_done_callback(release_later)
        raise


async def small_buffer(source: BlobSource) -> memoryview | None:
    """Return *source*'s bytes, verified, if they are bytes-like and small.

    A small blob is written in one worker-thread call; larger ones stream
    in chunks, so that hashing one chunk overlaps writing the previous one.
    """
    size = source.size
    if size is None or size > CHUNK_SIZE:
        return None
    return await source.buffer()


def cancel_all(futures: Iterable[asyncio.Future[None]]) -> None:
    """Cancel *futures*, marking the failed ones' errors as seen."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


async def discard(temp: TempFile) -> None:
    # Shielded: even if the caller is cancelled again, the worker thread
    # still removes the file.
    await asyncio.shield(asyncio.to_thread(temp.discard))
