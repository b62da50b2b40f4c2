"""A store of blobs as files in a directory tree: the zero-infrastructure default."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt
import functools
import itertools
import os
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final, TypeVar

from ._integrity import Integrity, coerce_integrity
from ._store import CHUNK_SIZE, BlobInfo, BlobSource, BlobStore
from .exceptions import InvalidIntegrity
from .keys import integrity_to_key, key_to_integrity

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Generator,
        Iterable,
        Iterator,
    )

    from ._compat import Buffer

__all__ = ["FilesystemBlobStore"]

_T = TypeVar("_T")

#: Every temp file's name starts with this; listings never show them.
TEMP_PREFIX: Final = ".tmp-"
#: A temp file older than this is a crashed writer's leftover; younger ones
#: may belong to a live writer (in this or another process).
STALE_TEMP_AGE: Final = 3600.0
#: How many directory entries one worker-thread call of a listing reads.
_LIST_BATCH: Final = 256
_HEX_PAIR: Final = frozenset(f"{n:02x}" for n in range(256))
#: While a blob streams in, its temp file is flushed to disk every this many
#: bytes, so the disk works while the rest is hashed (see ``_TempFile``).
FLUSH_INTERVAL: Final = 8 * 1024 * 1024
#: How many bytes of a stream may wait to be written while the next chunks
#: are read and hashed (always at least one chunk).
WRITE_AHEAD: Final = 8 * 1024 * 1024
#: ``os.fdatasync`` where the platform has it (not macOS).
_fdatasync: Final = getattr(os, "fdatasync", os.fsync)


def _fsync_dir(path: Path) -> None:
    """Make *path*'s entries (a new name, a new subdirectory) durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path, top: Path) -> None:
    """Create *path* and its parents, syncing each new entry below *top*."""
    if path.is_dir():
        return
    if path == top:
        path.mkdir(parents=True, exist_ok=True)
        return
    _make_dirs(path.parent, top)
    try:
        path.mkdir()
    except FileExistsError:
        return  # a concurrent writer made it
    _fsync_dir(path.parent)


class _TempFile:
    """A temp file that ends renamed over its final name, or removed.

    Its methods block; the store calls them in worker threads. A lock
    serialises them, so removal after a cancelled write waits for the write
    the thread is still doing instead of racing it, and no write ever uses
    the descriptor after it was closed.

    Writes are positional (``pwrite``), so they may run in any order. Every
    :data:`FLUSH_INTERVAL` bytes a write also flushes the file to disk
    (``fdatasync``): while a large blob streams in, the disk keeps up with
    the hashing, and the ``fsync`` at commit only has the tail left to do.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self._lock = threading.Lock()
        self._finished = False
        self._unflushed = 0

    @classmethod
    def create(cls, directory: Path, top: Path) -> _TempFile:
        _make_dirs(directory, top)
        while True:
            path = directory / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(path, flags, 0o666)  # the umask applies, as for any file
            except FileExistsError:  # pragma: no cover -- 64 random bits collided
                continue
            return cls(path, fd)

    def _check_open(self) -> None:
        if self._finished or self._fd < 0:
            msg = "The temp file was already committed or discarded."
            raise RuntimeError(msg)

    def write(self, data: Buffer, offset: int = 0) -> None:
        """Write *data* at *offset*."""
        view = memoryview(data).cast("B")
        with self._lock:
            self._check_open()
            while view:
                written = os.pwrite(self._fd, view, offset)
                view = view[written:]
                offset += written
                self._unflushed += written
            if self._unflushed >= FLUSH_INTERVAL:
                _fdatasync(self._fd)
                self._unflushed = 0

    def commit(self, final: Path, top: Path) -> None:
        """Sync and rename the file to *final*, then sync its directory."""
        with self._lock:
            self._check_open()
            os.fsync(self._fd)
            self._close()
            _make_dirs(final.parent, top)
            self.path.replace(final)
            self._finished = True
        _fsync_dir(final.parent)

    def discard(self) -> None:
        """Close and remove the file, unless it was committed."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
            with contextlib.suppress(OSError):
                self._close()
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    def _close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


async def _acquire(acquire: Callable[[], _T], release: Callable[[_T], None]) -> _T:
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


async def _small_buffer(source: BlobSource) -> memoryview | None:
    """Return *source*'s bytes, verified, if they are bytes-like and small.

    A small blob is written in one worker-thread call; larger ones stream
    in chunks, so that hashing one chunk overlaps writing the previous one.
    """
    size = source.size
    if size is None or size > CHUNK_SIZE:
        return None
    return await source.buffer()


def _cancel_all(futures: Iterable[asyncio.Future[None]]) -> None:
    """Cancel *futures*, marking the failed ones' errors as seen."""
    for future in futures:
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()


async def _discard(temp: _TempFile) -> None:
    # Shielded: even if the caller is cancelled again, the worker thread
    # still removes the file.
    await asyncio.shield(asyncio.to_thread(temp.discard))


class FilesystemBlobStore(BlobStore):
    """A store that keeps each blob in a file under a root directory.

    Needs no server: the default backend. Blobs live at
    ``root/blobs/<aa>/<bb>/<key>``, where ``aa`` and ``bb`` are the first two
    bytes of the digest in hex and ``key`` is the hex key
    :func:`sriblob.keys.integrity_to_key` gives with an empty prefix. Every
    path is made of hex digits only, so no integrity can name a path outside
    the root.

    Writes are atomic: the data goes to a ``.tmp-*`` file next to its final
    name, is synced, and renamed into place only after it verified, so a
    reader (or a crash) never sees a partial blob under its final name.
    Concurrent writers of one blob, in any number of processes, are safe.

    A blob's storage time (:attr:`~sriblob.BlobInfo.stored_at`, from
    :meth:`~sriblob.BlobStore.stat`) is its file's modification time.
    Putting (or adding) a blob that is already stored writes nothing but
    renews that time, so :func:`~sriblob.collect_garbage`'s grace period
    protects a blob a writer has just reused as it protects a new one. (If
    the file's time can't be changed, a read-only store for instance, the
    put still succeeds.)

    File I/O runs in worker threads and never blocks the event loop; streams
    are written chunk by chunk, never held whole in memory. A large blob is
    written by a thread of its own a few chunks behind the stream while
    another thread hashes it, and synced to disk every 8 MiB on the way, so
    writing, hashing and the final ``fsync`` overlap.

    The root is created on the first write. The store needs no ``async
    with``, though it supports it; :meth:`aclose` releases nothing.

    Args:
        root: The directory to keep blobs in.
        id: The store's id in a registry.
        verify: See :class:`~sriblob.BlobStore`.
        max_blob_size: See :class:`~sriblob.BlobStore`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        id: str = "filesystem",
        verify: bool = True,
        max_blob_size: int | None = None,
    ) -> None:
        super().__init__(id=id, verify=verify, max_blob_size=max_blob_size)
        self._root = Path(root)
        self._blobs = self._root / "blobs"

    @property
    def root(self) -> Path:
        """The directory the store keeps its blobs under."""
        return self._root

    def _repr_details(self) -> str:
        return f"root={str(self._root)!r}"

    def path_of(self, integrity: str | Integrity, /) -> Path:
        """Return the path a blob is (or would be) stored at.

        Raises:
            InvalidIntegrity: *integrity* is malformed.
        """
        wanted = coerce_integrity(integrity)
        digest = wanted.digest.hex()
        key = integrity_to_key(str(wanted), prefix="")
        return self._blobs / digest[:2] / digest[2:4] / key

    # -- writing --------------------------------------------------------------

    def _write_whole(self, final: Path, data: Buffer) -> None:
        temp = _TempFile.create(final.parent, self._root)
        try:
            temp.write(data)
            temp.commit(final, self._root)
        finally:
            temp.discard()

    async def _stream_to_temp(self, source: BlobSource, directory: Path) -> _TempFile:
        """Write *source* to a new temp file; remove it on any error.

        One worker thread of the stream's own writes the chunks in order, up
        to :data:`WRITE_AHEAD` bytes behind the stream, so reading and
        hashing the next chunks overlaps the writes.
        """
        temp = await _acquire(
            functools.partial(_TempFile.create, directory, self._root),
            _TempFile.discard,
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
                    await oldest
            while writes:
                await writes[0][0]
                writes.popleft()
        except BaseException:
            _cancel_all(write for write, _ in writes)
            await _discard(temp)
            raise
        finally:
            writer.shutdown(wait=False, cancel_futures=True)
        return temp

    async def _commit(self, temp: _TempFile, final: Path) -> None:
        try:
            await asyncio.to_thread(temp.commit, final, self._root)
        except BaseException:
            await _discard(temp)
            raise

    @staticmethod
    def _renew(path: Path) -> bool:
        """Return whether *path* is a stored blob, renewing its mtime if so.

        The mtime is the blob's storage time: a put of a stored blob renews
        it, so garbage collection's grace period covers a reused blob too.
        """
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        except OSError:  # read-only, not ours: the blob is still there to serve
            pass
        return path.is_file()

    async def _put(self, integrity: Integrity, source: BlobSource) -> None:
        final = self.path_of(integrity)
        if await asyncio.to_thread(self._renew, final):
            return
        view = await _small_buffer(source)
        if view is not None:
            await asyncio.to_thread(self._write_whole, final, view)
            return
        temp = await self._stream_to_temp(source, final.parent)
        await self._commit(temp, final)

    async def _add(self, source: BlobSource) -> Integrity:
        view = await _small_buffer(source)
        if view is not None:
            final = self.path_of(source.integrity)
            if not await asyncio.to_thread(self._renew, final):
                await asyncio.to_thread(self._write_whole, final, view)
            return source.integrity
        # The name is known only at the end: stage at the top of the tree,
        # on the same file system, so the rename stays atomic.
        temp = await self._stream_to_temp(source, self._blobs)
        final = self.path_of(source.integrity)
        if await asyncio.to_thread(self._renew, final):
            await _discard(temp)
        else:
            await self._commit(temp, final)
        return source.integrity

    # -- reading --------------------------------------------------------------

    async def _get(self, integrity: Integrity) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path_of(integrity).read_bytes)
        except FileNotFoundError:
            return None

    @staticmethod
    def _open_sized(path: Path) -> tuple[IO[bytes], int]:
        file = path.open("rb")
        try:
            return file, os.fstat(file.fileno()).st_size
        except BaseException:  # pragma: no cover -- fstat of an open file
            file.close()
            raise

    @contextlib.asynccontextmanager
    async def _open(
        self, integrity: Integrity
    ) -> AsyncIterator[tuple[AsyncIterator[bytes], int | None]]:
        try:
            file, size = await _acquire(
                functools.partial(self._open_sized, self.path_of(integrity)),
                lambda opened: opened[0].close(),
            )
        except FileNotFoundError:
            raise self._not_found(integrity) from None

        async def chunks() -> AsyncIterator[bytes]:
            while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
                yield chunk

        try:
            yield chunks(), size
        finally:
            # Shielded so the file is closed even if the reader is cancelled.
            await asyncio.shield(asyncio.to_thread(file.close))

    async def _has(self, integrity: Integrity) -> bool:
        return await asyncio.to_thread(self.path_of(integrity).is_file)

    async def _stat(self, integrity: Integrity) -> BlobInfo | None:
        """Answer with one ``os.stat``: the size, and the mtime as ``stored_at``."""
        try:
            result = await asyncio.to_thread(os.stat, self.path_of(integrity))
        except (FileNotFoundError, NotADirectoryError):
            return None
        if not stat.S_ISREG(result.st_mode):
            return None
        stored_at = dt.datetime.fromtimestamp(result.st_mtime, dt.UTC)
        return BlobInfo(str(integrity), result.st_size, stored_at)

    async def _delete(self, integrity: Integrity) -> None:
        await asyncio.to_thread(self.path_of(integrity).unlink, missing_ok=True)

    # -- listing --------------------------------------------------------------

    def _walk(self) -> Generator[str, None, None]:
        """Yield each stored integrity, one directory open at a time.

        Removes stale temp files on the way.
        """
        for first in self._scan(self._blobs):
            if first.name not in _HEX_PAIR or not first.is_dir(follow_symlinks=False):
                continue
            for second in self._scan(Path(first.path)):
                if second.name not in _HEX_PAIR or not second.is_dir(
                    follow_symlinks=False
                ):
                    continue
                prefix = first.name + second.name
                for entry in self._scan(Path(second.path)):
                    name = self._blob_name(entry, prefix)
                    if name is not None:
                        yield name

    @staticmethod
    def _blob_name(entry: os.DirEntry[str], fan_out: str) -> str | None:
        decoded = key_to_integrity(entry.name, prefix="")
        if decoded is None or not entry.is_file(follow_symlinks=False):
            return None
        try:
            parsed = Integrity.parse(decoded)
        except InvalidIntegrity:
            return None
        # A file in the wrong directory is not reachable by its name.
        return decoded if parsed.digest.hex().startswith(fan_out) else None

    @staticmethod
    def _scan(directory: Path) -> Iterator[os.DirEntry[str]]:
        """Yield *directory*'s entries, reaping stale temp files."""
        try:
            entries = os.scandir(directory)
        except (FileNotFoundError, NotADirectoryError):
            return
        with entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX):
                    _reap(entry)
                    continue
                yield entry

    async def _list(self) -> AsyncIterator[str]:
        walk = self._walk()
        # The walk runs in worker threads, one batch at a time; the lock keeps
        # closing it from racing a batch still being read after a cancel.
        lock = threading.Lock()

        def next_batch() -> list[str]:
            with lock:
                return list(itertools.islice(walk, _LIST_BATCH))

        def close() -> None:
            with lock:
                walk.close()

        try:
            while batch := await asyncio.to_thread(next_batch):
                for name in batch:
                    yield name
        finally:
            await asyncio.shield(asyncio.to_thread(close))


def _reap(entry: os.DirEntry[str]) -> None:
    """Remove a temp file a crashed writer left, once it is old enough."""
    with contextlib.suppress(OSError):
        if not entry.is_file(follow_symlinks=False):
            return
        if time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_AGE:
            Path(entry.path).unlink()
