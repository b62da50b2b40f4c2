"""The cache's front: local copies, each trusted only as far as it was verified.

The front is a directory in the filesystem store's layout
(``blobs/<aa>/<bb>/<key>``), so a :class:`~sriblob.FilesystemBlobStore` on
the same root sees the same blobs. What only a cache needs lives here:

- **One descriptor per read.** A copy is opened once and every pass over it
  (the check, the stream, a range) reads that descriptor, so another process
  evicting the file meanwhile changes nothing for this reader.
- **What this process verified.** Each copy read whole and verified here (or
  written here by a verified fill) is remembered by its file's identity
  (device, inode, size, ctime). A byte range is served from a copy only
  while its file still has that identity: a copy changed since, or never
  verified by this process, isn't trusted for a range.
- **Reservations.** A fill reserves its blob's size in the front's running
  total (``.usage``) before it writes a byte, so a fill in progress counts
  against the cap like the blob it will become. Its temp file is named
  ``.tmp-<token>-<bytes>``; once no process holds the fill lock of its
  stripe, its writer is gone, and the next scan removes it and gives the
  bytes back.
- **Stripes.** Fill locks are 256 lock files in ``.fill-locks/``, one per
  first byte of the digest (the ``<aa>`` directory); see :mod:`._stripes`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import io
import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from sriblob import _telemetry as telemetry
from sriblob._filesystem._errors import os_error
from sriblob._filesystem._link import LinkMethod, link_sync
from sriblob._filesystem._locks import Total, current_total, locked_total
from sriblob._filesystem._paths import (
    Location,
    NotABlob,
    find_blob,
    locate,
    open_dirs,
    reserved_size,
)
from sriblob._filesystem._temp import TempFile, acquire, discard
from sriblob._integrity import THREAD_HASH_THRESHOLD, IntegrityHasher, hash_buffer
from sriblob._quota import Quota
from sriblob._source import CHUNK_SIZE, as_buffer
from sriblob.exceptions import QuotaExceeded

from ._fill import fill_bytes, wrong_size
from ._stripes import Stripes

if TYPE_CHECKING:
    from collections.abc import AsyncIterable, AsyncIterator, Iterator

    from sriblob._compat import Buffer
    from sriblob._integrity import Algorithm, Integrity

__all__ = ["Front", "FrontFile", "Identity"]

logger = logging.getLogger("sriblob")

#: How many verified copies a process remembers.
_REMEMBERED: Final = 65536
_FANOUT: Final = frozenset(f"{n:02x}" for n in range(256))
#: Eviction frees room for the new blob and this share of the cap more, so
#: the next fills don't each scan the front again.
_SLACK: Final = 0.1


@attrs.frozen
class Identity:
    """What says a file is the one a process read: any write changes it."""

    device: int
    inode: int
    size: int
    ctime_ns: int

    @classmethod
    def of(cls, found: os.stat_result) -> Identity:
        """The identity of a stat result."""
        return cls(found.st_dev, found.st_ino, found.st_size, found.st_ctime_ns)


@attrs.frozen
class Entry:
    """A blob file in the front, for eviction."""

    used: float  # mtime: renewed by every read
    size: int
    location: Location


class FrontFile:
    """One opened front copy: every pass reads this descriptor.

    Attributes:
        size: The file's size when it was opened.
        before: Its identity as opened, before this read renewed its recency.
        after: Its identity once renewed (what a later read will see).
        data: The whole file, when it was read at once (then the descriptor
            is already closed), else None.
        unchanged: With *data*: whether the file kept its identity while it
            was read (so the bytes are the file's, whole).
        hashed: With *data* read for a given algorithm: the integrity of
            *data*, hashed in the same worker-thread call.
    """

    def __init__(
        self,
        file: io.FileIO,
        before: Identity,
        after: Identity,
        data: bytes | None = None,
        *,
        unchanged: bool = False,
        hashed: Integrity | None = None,
    ) -> None:
        self._file = file
        self.size = before.size
        self.before = before
        self.after = after
        self.data = data
        self.unchanged = unchanged
        self.hashed = hashed

    async def check(self, integrity: Integrity) -> bool:
        """Hash the whole file (one worker-thread call); whether it is the blob."""
        return await asyncio.to_thread(self._check_sync, integrity)

    def _check_sync(self, integrity: Integrity) -> bool:
        hasher = IntegrityHasher(integrity.algorithm)
        offset = 0
        while chunk := os.pread(self._file.fileno(), CHUNK_SIZE, offset):
            hasher.update(chunk)
            offset += len(chunk)
        return offset == self.size and hasher.integrity() == integrity

    async def chunks(self, start: int, stop: int) -> AsyncIterator[bytes]:
        """Yield bytes *start* to *stop* - 1 (a short file ends the stream early)."""
        position = start
        while position < stop:
            count = min(CHUNK_SIZE, stop - position)
            chunk = await asyncio.to_thread(
                os.pread, self._file.fileno(), count, position
            )
            if not chunk:
                return
            position += len(chunk)
            yield chunk

    async def close(self) -> None:
        """Close the descriptor (shielded: a cancelled reader still closes it)."""
        if not self._file.closed:
            await asyncio.shield(asyncio.to_thread(self._file.close))


class Front:
    """The front's files, running total, fill locks and verified copies.

    Blocking calls run in worker threads; the fill locks
    (:attr:`stripes`) are taken without blocking, on the event loop.
    """

    def __init__(self, root: Path, *, max_bytes: int, id: str) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.id = id
        #: Blobs this object evicted.
        self.evictions = 0
        self._quota = Quota(id, max_bytes, None)
        #: The running total as this object last read or changed it.
        self.total: int | None = None
        self._verified: collections.OrderedDict[str, Identity] = (
            collections.OrderedDict()
        )
        #: The fill locks (see :mod:`._stripes`).
        self.stripes = Stripes(root)

    def close(self) -> None:
        """Drop the fill locks this object holds."""
        self.stripes.close()

    # -- what this process verified ---------------------------------------------

    def trusted(self, integrity: Integrity, file: FrontFile) -> bool:
        """Whether *file* is a copy this process verified whole, unchanged since.

        A trusted file stays trusted under its renewed identity.
        """
        name = str(integrity)
        if self._verified.get(name) != file.before:
            return False
        self.trust(integrity, file.after)
        return True

    def trust(self, integrity: Integrity, identity: Identity) -> None:
        """Remember that the file with *identity* holds the blob, verified."""
        name = str(integrity)
        self._verified[name] = identity
        self._verified.move_to_end(name)
        while len(self._verified) > _REMEMBERED:
            self._verified.popitem(last=False)

    def distrust(self, integrity: Integrity) -> None:
        """Forget the blob's verified copy (it was dropped or found damaged)."""
        self._verified.pop(str(integrity), None)

    # -- reading ----------------------------------------------------------------

    async def open(
        self,
        integrity: Integrity,
        *,
        read_up_to: int | None = 0,
        hash_it: bool = False,
    ) -> FrontFile | None:
        """Open the blob's copy and renew its recency; None when there is none.

        A copy of at most *read_up_to* bytes (None: any size) is read whole
        in the same worker-thread call (:attr:`FrontFile.data`), unverified;
        with *hash_it*, that call also hashes what it read
        (:attr:`FrontFile.hashed`), off the event loop.

        Raises:
            OSError: The front failed (a full or read-only disk, say).
            StoreError: Something other than a blob file is at its name.
        """
        location = locate(self.root, integrity)
        algorithm = integrity.algorithm if hash_it else None
        return await acquire(
            functools.partial(self._open_sync, location, read_up_to, algorithm),
            _close_front_file,
        )

    def _open_sync(
        self, location: Location, read_up_to: int | None, algorithm: Algorithm | None
    ) -> FrontFile | None:
        fd = find_blob(self.root, location)
        if fd is None:
            return None
        file = io.FileIO(fd, "rb", closefd=True)
        try:
            before = Identity.of(os.fstat(fd))
            with contextlib.suppress(OSError):  # read-only, or not the owner's
                os.utime(fd)  # recency, seen by every process sharing the front
            after = Identity.of(os.fstat(fd))
            if read_up_to is not None and after.size > read_up_to:
                return FrontFile(file, before, after)
            with file:
                data = file.readall()
                end = Identity.of(os.fstat(fd))
        except BaseException:
            file.close()
            raise
        unchanged = end == after and len(data) == end.size
        hashed = None
        if algorithm is not None:
            hasher = IntegrityHasher(algorithm)
            hasher.update(data)  # hashlib lets go of the GIL: the loop runs on
            hashed = hasher.integrity()
        return FrontFile(file, before, after, data, unchanged=unchanged, hashed=hashed)

    # -- the running total ------------------------------------------------------

    @contextlib.contextmanager
    def _usage(self) -> Iterator[Total]:
        with locked_total(self.root, self._count_sync) as usage:
            yield usage
            self.total = usage.total

    async def usage(self) -> int:
        """The front's running total: its blobs and the fills in progress."""
        return await asyncio.to_thread(self._usage_sync)

    def _usage_sync(self) -> int:
        return current_total(self._usage, self._count_sync)

    def _count_sync(self) -> int:
        """Count what the total should hold: blob files and reservations."""
        total = 0
        for _, _, entry in _walk(self.root):
            reserved = reserved_size(entry.name)
            if reserved is not None:
                total += reserved
            elif _is_blob_file(entry):
                total += entry.stat(follow_symlinks=False).st_size
        return total

    def reserve_sync(self, size: int) -> None:
        with self._usage() as usage:
            if not self._quota.fits(usage.total, size):
                raise self._quota.exceeded(usage.total, size)
            usage.total += size

    def release_sync(self, size: int) -> None:
        with self._usage() as usage:
            usage.total = max(0, usage.total - size)

    # -- filling ----------------------------------------------------------------

    async def fill(
        self,
        integrity: Integrity,
        data: Buffer | AsyncIterable[Buffer],
        size: int,
        *,
        verified: bool = False,
    ) -> None:
        """Copy the blob into the front, verified, within the cap.

        *size* bytes are reserved first; the copy is hashed as it is written
        and renamed into place only if it is the blob, of *size* bytes. With
        *verified*, the caller has checked these very bytes (immutable ones)
        against the integrity, and ends a stream only once they passed: they
        aren't hashed again. The caller holds the blob's fill lock.

        Raises:
            QuotaExceeded: The front has no room for *size* more bytes now
                (nothing was read from *data*).
            IntegrityMismatch: *data* isn't the blob; nothing was stored.
        """
        view = as_buffer(data)
        if view is not None:
            if not view.readonly:
                view = memoryview(bytes(view))  # what is hashed is what is written
            if view.nbytes != size:
                raise wrong_size(integrity, view.nbytes, size)
            identity = await fill_bytes(self, integrity, view, verified=verified)
            self.trust(integrity, identity)
            return
        await asyncio.to_thread(self.reserve_sync, size)
        try:
            identity = await self._write(integrity, data, size, verified=verified)
        except BaseException:
            await asyncio.shield(asyncio.to_thread(self.release_sync, size))
            raise
        self.trust(integrity, identity)

    def temp_for(self, location: Location, size: int) -> TempFile:
        # Nothing synced: a copy torn by a power loss fails the verification
        # every copy gets before this process uses it, and is fetched again.
        return TempFile.create(
            self.root, location.dirs, sync_names=False, sync_data=False, tag=f"-{size}"
        )

    async def _write(
        self,
        integrity: Integrity,
        data: Buffer | AsyncIterable[Buffer],
        size: int,
        *,
        verified: bool,
    ) -> Identity:
        location = locate(self.root, integrity)
        temp = await acquire(
            functools.partial(self.temp_for, location, size), TempFile.discard
        )
        try:
            await _write_hashed(temp, integrity, data, size, verified=verified)
            return await asyncio.to_thread(self.commit_sync, temp, location)
        except BaseException:
            await discard(temp)
            raise

    def commit_sync(self, temp: TempFile, location: Location) -> Identity:
        """Rename the temp file into place: its reservation becomes the blob."""
        temp.sync()  # outside the lock: the commit holds it only for the rename
        directory = None
        try:
            with self._usage() as usage:
                replaced = temp.size_beside(location) or 0
                directory = temp.rename(location)
                usage.total = max(0, usage.total - replaced)
            found = os.stat(location.name, dir_fd=directory, follow_symlinks=False)
        finally:
            if directory is not None:
                temp.sync_directory(directory)
        return Identity.of(found)

    # -- evicting ---------------------------------------------------------------

    async def evict(self, location: Location) -> int:
        """Remove the blob file at *location*; the bytes freed (0 if none)."""
        return await asyncio.to_thread(self._evict_sync, location)

    async def drop(self, integrity: Integrity) -> int:
        """Remove the blob's copy (damaged, or its blob deleted); the bytes freed."""
        self.distrust(integrity)
        return await self.evict(locate(self.root, integrity))

    def _evict_sync(self, location: Location) -> int:
        with self._usage() as usage:
            try:
                directory = open_dirs(self.root, location.dirs, create=False)
            except FileNotFoundError:
                return 0
            try:
                try:
                    found = os.stat(
                        location.name, dir_fd=directory, follow_symlinks=False
                    )
                except FileNotFoundError:
                    return 0
                if stat.S_ISDIR(found.st_mode):
                    return 0
                os.unlink(location.name, dir_fd=directory)
            finally:
                os.close(directory)
            size = found.st_size if stat.S_ISREG(found.st_mode) else 0
            usage.total = max(0, usage.total - size)
            return size

    async def scan(self) -> list[Entry]:
        """List the blob files, reaping the temp files of fills whose writer is gone."""
        return await asyncio.to_thread(self._scan_sync)

    def _scan_sync(self) -> list[Entry]:
        entries: list[Entry] = []
        abandoned: dict[int, list[tuple[str, int]]] = {}
        for first, second, entry in _walk(self.root):
            reserved = reserved_size(entry.name)
            if reserved is not None:
                abandoned.setdefault(int(first, 16), []).append((entry.path, reserved))
            elif _is_blob_file(entry):
                found = entry.stat(follow_symlinks=False)
                dirs = ("blobs", first, second)
                location = Location(dirs, entry.name, self.root)
                entries.append(Entry(found.st_mtime, found.st_size, location))
        self._reap_sync(abandoned)
        return entries

    def _reap_sync(self, abandoned: dict[int, list[tuple[str, int]]]) -> None:
        """Remove the temp files of stripes no fill holds, and free their bytes."""
        freed = 0
        for stripe, temps in abandoned.items():
            fd = self.stripes.lock_if_free(stripe)
            if fd is None or fd < 0:
                continue  # a writer (in some process) may still be filling
            try:
                for path, reserved in temps:
                    with contextlib.suppress(FileNotFoundError):
                        Path(path).unlink()
                        freed += reserved
            finally:
                os.close(fd)
        if freed:
            self.release_sync(freed)

    # -- room ----------------------------------------------------------------------

    async def fill_with_room(
        self,
        integrity: Integrity,
        data: Buffer | AsyncIterable[Buffer],
        size: int,
        *,
        verified: bool,
    ) -> bool:
        """:meth:`fill`, evicting first; False when the blob can't fit now.

        A refused reservation (other processes filled the front since this
        one looked) evicts by the real total and tries once more: nothing
        was read from *data* yet, so that works for a stream too.
        """
        try:
            if not await self.make_room(size):
                return False
            try:
                await self.fill(integrity, data, size, verified=verified)
            except QuotaExceeded:
                if not await self.make_room(size, fresh=True):
                    raise
                await self.fill(integrity, data, size, verified=verified)
        except QuotaExceeded:
            logger.debug(
                "cache backend=%s: no room for integrity=%s (other processes "
                "filled the front meanwhile)",
                self.id,
                integrity,
                extra=telemetry.fields(self.id, "fill", integrity),
            )
            return False
        return True

    async def make_room(self, size: int, *, fresh: bool = False) -> bool:
        """Evict least recently used blobs until *size* more fit; whether they do.

        The total as this object last saw it saves reading it again while
        there is room; it misses other processes' fills, so a fill it lets
        through may still have its reservation refused, and then asks again
        with *fresh*.
        """
        if size > self.max_bytes:
            return False
        known = self.total
        if not fresh and known is not None and known + size <= self.max_bytes:
            return True
        if await self.usage() + size <= self.max_bytes:
            return True
        target = max(0, self.max_bytes - size - int(self.max_bytes * _SLACK))
        await self.evict_to(target)
        total = self.total
        return total is not None and total + size <= self.max_bytes

    async def evict_to(self, target: int) -> int:
        """Evict least recently used blobs until at most *target* bytes are held.

        The scan also reaps the temp files of fills whose writer is gone.
        Returns how many blobs were evicted.
        """
        entries = await self.scan()
        total = await self.usage()
        evicted = 0
        for entry in sorted(entries, key=lambda entry: entry.used):
            if total <= target:
                break
            if await self.evict(entry.location):
                total = self.total or 0
                evicted += 1
                logger.debug(
                    "cache backend=%s evicted %s",
                    self.id,
                    entry.location.name,
                    extra=telemetry.fields(self.id, "evict"),
                )
        self.evictions += evicted
        return evicted

    # -- copying out ------------------------------------------------------------

    async def link(
        self, integrity: Integrity, path: str | os.PathLike[str]
    ) -> LinkMethod | None:
        """Place the blob's copy at *path*, verified (see ``link_to``); None if absent.

        Raises:
            IntegrityMismatch: The copy is damaged; nothing is placed.
            StoreError: *path* can't be written, or the front failed.
        """
        target = Path(path)
        location = locate(self.root, integrity)
        try:
            return await asyncio.to_thread(
                link_sync, self.root, integrity, location, target
            )
        except NotABlob:
            raise
        except OSError as exc:
            raise os_error(
                exc, root=self.root, action="link", path=target, backend=self.id
            ) from exc


def _walk(root: Path) -> Iterator[tuple[str, str, os.DirEntry[str]]]:
    """Yield every entry of the front's leaf directories, with their fan-out."""
    top = root / "blobs"
    for first in _subdirs(top):
        for second in _subdirs(top / first):
            with (
                contextlib.suppress(FileNotFoundError),
                os.scandir(top / first / second) as found,
            ):
                yield from ((first, second, entry) for entry in found)


def _subdirs(path: Path) -> list[str]:
    """The fan-out directories (two hex digits) in *path*, never a symlink."""
    try:
        with os.scandir(path) as found:
            return [
                entry.name
                for entry in found
                if entry.name in _FANOUT and entry.is_dir(follow_symlinks=False)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _is_blob_file(entry: os.DirEntry[str]) -> bool:
    """Whether *entry* is a regular file with a blob's name (hex, never a dot).

    Temp files and anything else planted in the front (a symlink, a decoy)
    are neither counted nor evicted as blobs.
    """
    return not entry.name.startswith(".") and entry.is_file(follow_symlinks=False)


def _close_front_file(opened: FrontFile | None) -> None:
    if opened is not None:
        opened._file.close()  # noqa: SLF001 -- its own file


async def _write_hashed(
    temp: TempFile,
    integrity: Integrity,
    data: Buffer | AsyncIterable[Buffer],
    size: int,
    *,
    verified: bool,
) -> None:
    """Write *data* to *temp* while hashing it; raise unless it is the blob.

    The blob must also have the *size* its fill reserved. *verified* bytes
    were checked by the caller and are only written.
    """
    written = await _write_chunks(temp, None if verified else integrity, data)
    if written != size:
        raise wrong_size(integrity, written, size)


async def _write_chunks(
    temp: TempFile, integrity: Integrity | None, data: Buffer | AsyncIterable[Buffer]
) -> int:
    """Write *data* to *temp*, hashing it unless *integrity* is None; the bytes.

    Raises:
        IntegrityMismatch: The bytes aren't *integrity*'s.
    """
    view = as_buffer(data)
    if view is not None:
        if not view.readonly:
            view = memoryview(bytes(view))  # what is hashed is what is written
        if integrity is not None:
            (await hash_buffer(view, integrity.algorithm)).verify(integrity)
        await asyncio.to_thread(temp.write, view)
        return view.nbytes
    hasher = None if integrity is None else IntegrityHasher(integrity.algorithm)
    offset = 0
    async for chunk in data:  # type: ignore[union-attr]
        piece = memoryview(chunk)
        if not piece.readonly:
            piece = memoryview(bytes(piece))
        if hasher is not None and piece.nbytes < THREAD_HASH_THRESHOLD:
            hasher.update(piece)
            await asyncio.to_thread(temp.write, piece, offset)
        else:
            await asyncio.to_thread(_hash_and_write, hasher, temp, piece, offset)
        offset += piece.nbytes
    if hasher is not None:
        assert integrity is not None  # noqa: S101 -- hashed only then
        hasher.verify(integrity)
    return offset


def _hash_and_write(
    hasher: IntegrityHasher | None, temp: TempFile, piece: memoryview, offset: int
) -> None:
    if hasher is not None:
        hasher.update(piece)
    temp.write(piece, offset)
