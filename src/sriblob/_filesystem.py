"""A store of blobs as files in a directory tree: the zero-infrastructure default."""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt
import errno
import fcntl
import functools
import io
import itertools
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, TypeVar

import attrs

from ._integrity import Integrity, IntegrityHasher, coerce_integrity
from ._lease import HOLDER_PAUSE, HOLDER_READS, Lease
from ._lease import UNKNOWN_HOLDER as _UNKNOWN_HOLDER
from ._quota import dump_total, load_total
from ._store import CHUNK_SIZE, BlobBody, BlobInfo, BlobSource, BlobStore
from .exceptions import (
    AccessDenied,
    IntegrityMismatch,
    InvalidIntegrity,
    StoreError,
    StoreUnavailable,
)
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

__all__ = ["FilesystemBlobStore", "LinkMethod"]

_T = TypeVar("_T")

#: Every temp file's name starts with this; listings never show them.
TEMP_PREFIX: Final = ".tmp-"
#: A temp file older than this is a crashed writer's leftover; younger ones
#: may belong to a live writer (in this or another process).
STALE_TEMP_AGE: Final = 3600.0
#: How many directory entries one worker-thread call of a listing reads.
_LIST_BATCH: Final = 256
_HEX_PAIR: Final = frozenset(f"{n:02x}" for n in range(256))
#: A cache fill's temp file: ``.tmp-<token>-<bytes it reserved>``.
_RESERVED_TEMP: Final = re.compile(r"\.tmp-[0-9a-f]{16}-([0-9]{1,20})")
#: While a blob streams in, its temp file is flushed to disk every this many
#: bytes, so the disk works while the rest is hashed (see ``_TempFile``).
FLUSH_INTERVAL: Final = 8 * 1024 * 1024
#: How many bytes of a stream may wait to be written while the next chunks
#: are read and hashed (always at least one chunk).
WRITE_AHEAD: Final = 8 * 1024 * 1024
#: Blob files are read-only, directories open to read; the process umask can
#: only take permissions away from these, never add write access for others.
FILE_MODE: Final = 0o444
DIR_MODE: Final = 0o755
#: ``os.fdatasync`` where the platform has it (not macOS).
_fdatasync: Final = getattr(os, "fdatasync", os.fsync)
_CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | _CLOEXEC
#: Opening a blob never follows a symlink, and never blocks on a FIFO.
_READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC
_LEASE_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
#: The maintenance lease's lock file, in the root (beside ``blobs/``).
LEASE_FILE: Final = ".lease"
LEASE_MODE: Final = 0o644
#: The running total of a store with a quota, in the root: ``{"total": n}``.
USAGE_FILE: Final = ".usage"
#: errno values that say the file system can't take the operation right now.
_UNAVAILABLE_ERRNOS: Final = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EIO,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ESTALE,
        errno.EAGAIN,
    }
)
_DENIED_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM})
_HINTS: Final = {
    errno.ENOSPC: "free some space on that file system or move the store's root",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "check the permissions of the store's root and what is under it",
    errno.EPERM: "check the permissions of the store's root and what is under it",
    errno.EISDIR: "something that isn't a blob sits at the blob's path; remove it",
    errno.ENOTDIR: "something that isn't a directory sits in the blob's path; "
    "remove it",
}


class _NotABlob(StoreError):
    """Something other than a blob file (a symlink, a directory) is in the way."""


@attrs.frozen
class _Location:
    """Where a blob lives: directories below the root, and its file name."""

    dirs: tuple[str, ...]
    name: str
    path: Path


def locate(root: Path, integrity: Integrity) -> _Location:
    """Where the store rooted at *root* keeps *integrity*'s blob."""
    digest = integrity.digest.hex()
    dirs = ("blobs", digest[:2], digest[2:4])
    name = integrity_to_key(str(integrity), prefix="")
    return _Location(dirs, name, root.joinpath(*dirs, name))


def reserved_size(name: str) -> int | None:
    """The bytes a cache fill reserved for the temp file *name*, if it is one.

    A fill's temp file is named ``.tmp-<token>-<bytes>``; only the cache
    that reserved them may remove it (and give them back), so listings leave
    such files alone however old they are.
    """
    match = _RESERVED_TEMP.fullmatch(name)
    return None if match is None else int(match[1])


def _open_dirs(
    root: Path, dirs: tuple[str, ...], *, create: bool, sync: bool = True
) -> int:
    """Open ``root/dirs...`` and return its descriptor; the caller closes it.

    The root may itself be a symlink (that is the user's choice); nothing
    below it is followed: a symlinked directory raises :class:`_NotABlob`.
    Missing directories raise ``FileNotFoundError``, or are created (mode
    :data:`DIR_MODE`, each new entry synced unless *sync* is false) when
    *create* is true.
    """
    try:
        try:
            fd = os.open(root, _DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            _make_root(root)
            fd = os.open(root, _DIR_FLAGS)
    except (NotADirectoryError, FileExistsError):
        msg = f"The store's root {root} is not a directory; point the store elsewhere."
        raise _NotABlob(msg, backend="filesystem") from None
    try:
        for index, part in enumerate(dirs):
            child = _open_child(
                fd, part, root, dirs[: index + 1], create=create, sync=sync
            )
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_root(root: Path) -> None:
    """Create *root* and its missing parents, each with :data:`DIR_MODE`."""
    missing = []
    path = root
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it
            directory.mkdir(DIR_MODE)


def _open_child(
    parent: int,
    part: str,
    root: Path,
    shown: tuple[str, ...],
    *,
    create: bool,
    sync: bool,
) -> int:
    flags = _DIR_FLAGS | os.O_NOFOLLOW
    try:
        return os.open(part, flags, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_a_directory(root.joinpath(*shown)) from None
        raise
    try:
        os.mkdir(part, DIR_MODE, dir_fd=parent)
    except FileExistsError:
        pass  # a concurrent writer made it
    else:
        if sync:
            os.fsync(parent)
    try:
        return os.open(part, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise _not_a_directory(root.joinpath(*shown)) from None
        raise


def _file_size(directory: int, name: str) -> int:
    """The size of the regular file *name* in *directory*; 0 if there is none."""
    try:
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return found.st_size if stat.S_ISREG(found.st_mode) else 0


def _not_a_directory(path: Path) -> _NotABlob:
    msg = (
        f"{path} is a symlink or not a directory; the filesystem store never "
        "creates symlinks under its root and won't follow one. Remove it."
    )
    return _NotABlob(msg, backend="filesystem")


def _not_a_file(path: Path, mode: int) -> _NotABlob:
    what = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
    msg = (
        f"{path} is {what}, not a blob; the filesystem store never creates one "
        "and won't read through it. Remove it, or put the blob again to "
        "replace it."
    )
    return _NotABlob(msg, backend="filesystem")


def _check_regular(fd: int, path: Path) -> None:
    """Refuse *fd* unless it is a regular file (a FIFO or device is not ours)."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise _not_a_file(path, mode)


def _open_blob(directory: int, location: _Location) -> int:
    """Open the blob file read-only, refusing symlinks and non-regular files."""
    try:
        fd = os.open(location.name, _READ_FLAGS, dir_fd=directory)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _not_a_file(location.path, stat.S_IFLNK) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise _not_a_file(location.path, mode)
    return fd


class _TempFile:
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
        tag: str = "",
    ) -> None:
        self._root = root
        self._dirs = dirs
        self._directory = directory
        self._sync_names = sync_names
        self._lock = threading.Lock()
        self._finished = False
        self._unflushed = 0
        self._synced = False  # fsynced since the last write
        while True:
            self.name = f"{TEMP_PREFIX}{secrets.token_hex(8)}{tag}"
            try:
                self._fd = os.open(self.name, _TEMP_FLAGS, FILE_MODE, dir_fd=directory)
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
        tag: str = "",
    ) -> _TempFile:
        """A new temp file in ``root/dirs``, created if missing.

        With *sync_names* false, new directories and the final rename are
        not synced: after a power loss the blob is whole or absent, and may
        be absent (a cache's front, which can fetch it again). *tag* ends
        the file's name (a cache fill's reservation, see :func:`reserved_size`).
        """
        directory = _open_dirs(root, dirs, create=True, sync=sync_names)
        try:
            return cls(root, dirs, directory, sync_names=sync_names, tag=tag)
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
            if self._unflushed >= FLUSH_INTERVAL:
                _fdatasync(self._fd)
                self._unflushed = 0

    def sync(self) -> None:
        """Flush the file to disk (so a commit under a lock has little left)."""
        with self._lock:
            self._check_open()
            os.fsync(self._fd)
            self._unflushed = 0
            self._synced = True

    def commit(self, final: _Location) -> None:
        """Sync and rename the file to *final*, then sync its directory."""
        self.sync_directory(self.rename(final))

    def size_beside(self, final: _Location) -> int | None:
        """The size of the file at *final* (0 if none), if it is beside this one.

        None when *final* is in another directory (ask the store).
        """
        if final.dirs != self._dirs:
            return None
        with self._lock:
            self._check_open()
            return _file_size(self._directory, final.name)

    def sync_directory(self, fd: int) -> None:
        """Sync the directory *fd* that :meth:`rename` returned; close it."""
        try:
            if self._sync_names:
                os.fsync(fd)
        finally:
            os.close(fd)

    def rename(self, final: _Location) -> int:
        """Sync and rename the file to *final*; return its directory, unsynced.

        The caller must pass the descriptor to :meth:`sync_directory` before
        the blob counts as stored: a store with a quota renames under its
        usage lock and syncs the directory after, so the lock isn't held
        across a second journal commit.
        """
        with self._lock:
            self._check_open()
            if not self._synced:
                os.fsync(self._fd)
            self._close_file()
            if final.dirs == self._dirs:
                target = os.dup(self._directory)
            else:
                target = _open_dirs(
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
                raise _not_a_file(final.path, stat.S_IFDIR) from None
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

    **The root is the store's boundary.** The root itself may be a symlink;
    nothing below it is ever followed: directories and blob files are opened
    relative to their parent's descriptor with ``O_NOFOLLOW``, so a symlink
    planted under the root is refused (:class:`~sriblob.StoreError`), never
    read or written through. A put of the blob replaces a symlinked blob
    file. Blob files are created read-only (mode ``0o444``) and directories
    with mode ``0o755``; the process umask may take permissions away, never
    add them.

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
    put still succeeds.) The renewal and a collection's deletion lock the
    blob file (``flock``), so one never undoes the other.

    File I/O runs in worker threads and never blocks the event loop; streams
    are written chunk by chunk, never held whole in memory. A large blob is
    written by a thread of its own a few chunks behind the stream while
    another thread hashes it, and synced to disk every 8 MiB on the way, so
    writing, hashing and the final ``fsync`` overlap.

    Failures of the file system raise the library's errors, naming the path
    and what to do: :class:`~sriblob.StoreUnavailable` for a full, read-only
    or failing disk, :class:`~sriblob.AccessDenied` for permissions, and
    :class:`~sriblob.StoreError` for anything else in the way.

    The root is created on the first write. The store needs no ``async
    with``, though it supports it; :meth:`aclose` releases nothing.

    Args:
        root: The directory to keep blobs in.
        id: The store's id in a registry.
        verify: See :class:`~sriblob.BlobStore`.
        max_blob_size: See :class:`~sriblob.BlobStore`.
        max_total_size: See :class:`~sriblob.BlobStore`. The running total
            is kept in ``root/.usage``, changed under an exclusive ``flock``
            on it in the same step as the rename or unlink it counts, so
            every process on the machine keeps it exact.
        warn_total_size: See :class:`~sriblob.BlobStore`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        id: str = "filesystem",
        verify: bool = True,
        max_blob_size: int | None = None,
        max_total_size: int | None = None,
        warn_total_size: int | None = None,
    ) -> None:
        super().__init__(
            id=id,
            verify=verify,
            max_blob_size=max_blob_size,
            max_total_size=max_total_size,
            warn_total_size=warn_total_size,
        )
        self._root = Path(root)
        #: False for a cache's front: renames and new directories unsynced.
        self._sync_names = True
        #: True for a cache's front: every read renews the mtime (recency).
        self._touch_reads = False
        self._blobs = self._root / "blobs"
        self._lease_fds: dict[str, int] = {}

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
        return self._locate(coerce_integrity(integrity)).path

    def _locate(self, integrity: Integrity) -> _Location:
        return locate(self._root, integrity)

    # -- errors ---------------------------------------------------------------

    def _error(self, exc: OSError, action: str, path: Path) -> StoreError:
        """Describe *exc*, met while trying to *action* *path*, as a store error."""
        number = exc.errno or 0
        reason = os.strerror(number) if number else (str(exc) or type(exc).__name__)
        code = errno.errorcode.get(number)
        hint = _HINTS.get(number)
        msg = (
            f"The filesystem store at {self._root} could not {action} {path}: "
            f"{reason}{f' ({code})' if code else ''}"
            f"{f'; {hint}' if hint else ''}."
        )
        kind: type[StoreError] = StoreError
        if number in _UNAVAILABLE_ERRNOS:
            kind = StoreUnavailable
        elif number in _DENIED_ERRNOS:
            kind = AccessDenied
        return kind(msg, backend=self._id)

    async def _io(
        self, action: str, path: Path, function: Callable[..., _T], *args: object
    ) -> _T:
        """Run *function* in a worker thread, mapping OS errors to store errors."""
        try:
            return await asyncio.to_thread(function, *args)
        except _NotABlob as exc:
            exc.backend = self._id
            raise
        except OSError as exc:
            raise self._error(exc, action, path) from exc

    @contextlib.contextmanager
    def _translating(self, action: str, path: Path) -> Iterator[None]:
        try:
            yield
        except _NotABlob as exc:
            exc.backend = self._id
            raise
        except OSError as exc:
            raise self._error(exc, action, path) from exc

    # -- the maintenance lease ------------------------------------------------

    def _take_lease(self, lease: Lease) -> tuple[int | None, Lease | None]:
        """Lock ``root/.lease`` (flock) for *lease*; or read who holds it."""
        fd = open_root_file(self._root, LEASE_FILE)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = _read_holder(fd)
                os.close(fd)
                return None, held or _UNKNOWN_HOLDER
            # Written over the old holder, then cut to length: a reader sees
            # the old holder, a torn mix (and reads again), or the new one.
            data = lease.to_json()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        except BaseException:
            os.close(fd)
            raise
        return fd, None

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Lock ``root/.lease`` with ``flock``, and write *lease* into it.

        The kernel drops the lock when the holder's process dies, however it
        dies; every process on the machine that opens the same root sees it
        (not across hosts sharing the directory over NFS, where ``flock`` is
        local to each client).
        """
        path = self._root / LEASE_FILE
        fd, held = await self._io("lock", path, self._take_lease, lease)
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

        await self._io("unlock", self._root / LEASE_FILE, release)

    # -- copying out ----------------------------------------------------------

    async def link_to(
        self, integrity: str | Integrity, path: str | os.PathLike[str], /
    ) -> LinkMethod:
        """Place the blob at *path* without copying where the filesystem allows.

        Tries, in order: a **reflink** (``FICLONE``: a copy-on-write clone
        sharing the blob's extents, on Btrfs, XFS and the like), a
        **hardlink** (the same file as the store's: read-only, and must stay
        unmodified, on the same filesystem), else a **copy**. Whichever it
        is, the bytes are verified against the integrity first (a clone or
        link is checked by reading it; a copy as it is written), the file is
        made beside *path* under a temporary name and renamed over it, so
        *path* never holds a partial or unverified file; a file already at
        *path* is replaced (a symlink there is replaced, not followed).

        Returns:
            ``"reflink"``, ``"hardlink"`` or ``"copy"``: how it was placed.

        Raises:
            BlobNotFound: The store doesn't hold the blob.
            IntegrityMismatch: The stored copy is corrupt; nothing is placed.
            StoreError: *path* can't be written (its message names it).

        .. versionadded:: 0.1.0
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        target = Path(path)
        try:
            method = await self._io(
                "link", target, self._link_sync, wanted, self._locate(wanted), target
            )
        except IntegrityMismatch:
            self._saw_corrupt(wanted)
            raise
        if method is None:
            raise self.not_found(wanted)
        return method

    def _link_sync(
        self, integrity: Integrity, location: _Location, target: Path
    ) -> LinkMethod | None:
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except FileNotFoundError:
            return None
        try:
            try:
                fd = _open_blob(directory, location)
            except FileNotFoundError:
                return None
            try:
                return _place(integrity, directory, location.name, fd, target)
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    # -- the running total ----------------------------------------------------

    @contextlib.contextmanager
    def _usage(self) -> Iterator[_Total]:
        """Hold ``root/.usage`` locked; yield the total, written back after."""
        with locked_total(self._root, self._count_sync) as usage:
            yield usage

    def _count_sync(self) -> int:
        total = 0
        for name in self._walk():
            try:
                integrity = Integrity.parse(name)
            except InvalidIntegrity:
                continue
            total += self._size_at(self._locate(integrity))
        return total

    def _size_at(self, location: _Location) -> int:
        """The size of the blob file at *location*, or 0 if there is none."""
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except (FileNotFoundError, _NotABlob):
            return 0
        try:
            return _file_size(directory, location.name)
        finally:
            os.close(directory)

    def _adjust_sync(self, delta: int) -> int:
        if delta == 0:
            try:
                with self._usage() as usage:
                    return usage.total
            except OSError as exc:
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
                    raise
                return self._count_sync()  # a read-only root: count instead
        with self._usage() as usage:
            if delta > 0 and not self.fits(usage.total, delta):
                raise self.quota_exceeded(usage.total, delta)
            usage.total = max(0, usage.total + delta)
            return usage.total

    async def adjust_total(self, delta: int, /) -> int:
        """Change the total in ``root/.usage`` under its lock (see the class)."""
        return await self._io(
            "count", self._root / USAGE_FILE, self._adjust_sync, delta
        )

    async def stored_total(self) -> int:
        return await self._io("count", self._blobs, self._count_sync)

    # -- writing --------------------------------------------------------------

    def _keep_stored(self, location: _Location, keeps: Callable[[int], bool]) -> bool:
        """Return whether a stored copy stands, renewing its mtime if so.

        The mtime is the blob's storage time: a put of a stored blob renews
        it, so garbage collection's grace period covers a reused blob too.
        The renewal holds a shared lock on the file; a collection deletes
        under an exclusive one and checks the time under it (see
        :meth:`_delete_sync`), so a renewed blob is never deleted.
        """
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except FileNotFoundError:
            return False
        try:
            try:
                fd = _open_blob(directory, location)
            except (FileNotFoundError, _NotABlob):
                return False  # the write replaces whatever sits there
            try:
                if not keeps(os.fstat(fd).st_size):
                    return False
                fcntl.flock(fd, fcntl.LOCK_SH)
                if not _same_file(directory, location.name, fd):
                    # Deleted (or replaced by a new copy) meanwhile.
                    return _exists(directory, location.name)
                with contextlib.suppress(OSError):  # read-only: still a blob
                    os.utime(fd)
                return True
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    def _write_whole(self, location: _Location, data: Buffer) -> int | None:
        temp = _TempFile.create(self._root, location.dirs, sync_names=self._sync_names)
        try:
            temp.write(data)
            return self._commit_sync(temp, location, memoryview(data).nbytes)
        finally:
            temp.discard()

    def _commit_sync(
        self, temp: _TempFile, location: _Location, size: int
    ) -> int | None:
        """Rename *temp* to *location*; with a quota, counted under the usage lock.

        Returns the new running total (None without a quota). A blob that
        doesn't fit raises :class:`~sriblob.QuotaExceeded` before the
        rename, so nothing is stored (the caller removes the temp file).
        """
        if self._quota is None:
            temp.commit(location)
            return None
        temp.sync()
        directory = None
        try:
            with self._usage() as usage:
                stored = temp.size_beside(location)
                if stored is None:
                    stored = self._size_at(location)
                delta = size - stored
                if delta > 0 and not self.fits(usage.total, delta):
                    raise self.quota_exceeded(usage.total, delta)
                directory = temp.rename(location)
                usage.total += delta
                total = usage.total
        finally:
            if directory is not None:
                temp.sync_directory(directory)
        return total

    async def _stream_to_temp(
        self, source: BlobSource, dirs: tuple[str, ...], path: Path
    ) -> _TempFile:
        """Write *source* to a new temp file; remove it on any error.

        One worker thread of the stream's own writes the chunks in order, up
        to :data:`WRITE_AHEAD` bytes behind the stream, so reading and
        hashing the next chunks overlaps the writes.
        """
        with self._translating("write", path):
            temp = await _acquire(
                functools.partial(
                    _TempFile.create, self._root, dirs, sync_names=self._sync_names
                ),
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
                    with self._translating("write", path):
                        await oldest
            while writes:
                with self._translating("write", path):
                    await writes[0][0]
                writes.popleft()
        except BaseException:
            _cancel_all(write for write, _ in writes)
            await _discard(temp)
            raise
        finally:
            writer.shutdown(wait=False, cancel_futures=True)
        return temp

    async def _commit(self, temp: _TempFile, location: _Location, size: int) -> None:
        try:
            total = await self._io(
                "write", location.path, self._commit_sync, temp, location, size
            )
        except BaseException:
            await _discard(temp)
            raise
        self._noted(total)

    def _noted(self, total: int | None) -> None:
        if total is not None and self._quota is not None:
            self._quota.note(total)

    async def _kept(self, location: _Location, source: BlobSource) -> bool:
        return await self._io(
            "check", location.path, self._keep_stored, location, source.keeps
        )

    async def write_blob(self, source: BlobSource, /) -> None:
        known = source.expected
        if known is not None:
            location = self._locate(known)
            # With replace, no stored copy stands: skip looking at it. A copy
            # of the right size stands once it verified: reading and hashing
            # it costs less than writing and syncing the bytes again (and
            # the data isn't read at all then).
            if (
                not source.replace
                and await self._kept(location, source)
                and await self._stored_copy_intact(known)
            ):
                return
            view = await _small_buffer(source)
            if view is not None:
                total = await self._io(
                    "write", location.path, self._write_whole, location, view
                )
                self._noted(total)
                return
            temp = await self._stream_to_temp(source, location.dirs, location.path)
            await self._commit(temp, location, source.bytes_read)
            return
        # The name is known only at the end: stage at the top of the tree,
        # on the same file system, so the rename stays atomic.
        temp = await self._stream_to_temp(source, ("blobs",), self._blobs)
        location = self._locate(source.integrity)
        try:
            # As for put(): a stored copy stands once it verified, so the
            # file (and any hard link link_to made to it) stays the same.
            kept = await self._kept(location, source) and (
                await self._stored_copy_intact(source.integrity)
            )
        except BaseException:
            await _discard(temp)
            raise
        if kept:
            await _discard(temp)
        else:
            await self._commit(temp, location, source.bytes_read)

    # -- reading --------------------------------------------------------------

    def _open_file(self, location: _Location) -> tuple[io.FileIO, int] | None:
        """Open the blob for reading; None when it isn't stored."""
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except FileNotFoundError:
            return None
        try:
            fd = _open_blob(directory, location)
        except FileNotFoundError:
            return None
        finally:
            os.close(directory)
        file = io.FileIO(fd, "rb", closefd=True)
        if self._touch_reads:
            with contextlib.suppress(OSError):  # read-only, or not the owner's
                os.utime(fd)
        return file, os.fstat(fd).st_size

    def _read_whole(self, location: _Location) -> bytes | None:
        opened = self._open_file(location)
        if opened is None:
            return None
        with opened[0] as file:
            return file.readall()

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        location = self._locate(integrity)
        return await self._io("read", location.path, self._read_whole, location)

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        async with self.read_blob_range(integrity, 0, None) as body:
            yield body

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        location = self._locate(integrity)
        with self._translating("read", location.path):
            opened = await _acquire(
                functools.partial(self._open_file, location), _close_opened
            )
        if opened is None:
            raise self.not_found(integrity)
        file, size = opened
        try:
            stop = self.check_range(integrity, start, end, size)
        except BaseException:
            file.close()
            raise

        async def chunks() -> AsyncIterator[bytes]:
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

        try:
            yield BlobBody(chunks(), size)
        finally:
            # Shielded so the file is closed even if the reader is cancelled.
            await asyncio.shield(asyncio.to_thread(file.close))

    def _stat_sync(self, location: _Location) -> os.stat_result | None:
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except FileNotFoundError:
            return None
        try:
            result = os.stat(location.name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(directory)
        if not stat.S_ISREG(result.st_mode):
            raise _not_a_file(location.path, result.st_mode)
        return result

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        """Answer with one ``stat``: the size, and the mtime as ``stored_at``."""
        location = self._locate(integrity)
        result = await self._io("look up", location.path, self._stat_sync, location)
        if result is None:
            return None
        stored_at = dt.datetime.fromtimestamp(result.st_mtime, dt.UTC)
        return BlobInfo(str(integrity), result.st_size, stored_at)

    # -- deleting -------------------------------------------------------------

    def _delete_sync(
        self, location: _Location, stored_before: float | None
    ) -> tuple[bool, int | None]:
        """Delete the blob; return whether it's gone, and the new total (quota)."""
        if self._quota is None:
            return self._unlink(location, stored_before, None), None
        with self._usage() as usage:
            gone = self._unlink(location, stored_before, usage)
            return gone, usage.total

    def _unlink(
        self, location: _Location, stored_before: float | None, usage: _Total | None
    ) -> bool:
        """Unlink the blob unless renewed since *stored_before*; count it in *usage*."""
        try:
            directory = _open_dirs(self._root, location.dirs, create=False)
        except FileNotFoundError:
            return True
        try:
            if stored_before is None:
                try:
                    if usage is not None:
                        usage.total -= self._size_at(location)
                    os.unlink(location.name, dir_fd=directory)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    raise _not_a_file(location.path, stat.S_IFDIR) from None
                return True
            try:
                fd = _open_blob(directory, location)
            except FileNotFoundError:
                return True
            try:
                # Exclusive against a put's renewal (see _keep_stored): the
                # time read under the lock is final until the file is gone.
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_mtime > stored_before:
                    return False
                if not _same_file(directory, location.name, fd):
                    # A new copy took the name meanwhile: it is fresh.
                    return not _exists(directory, location.name)
                os.unlink(location.name, dir_fd=directory)
                if usage is not None:
                    usage.total -= os.fstat(fd).st_size
                return True
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        location = self._locate(integrity)
        before = None if stored_before is None else stored_before.timestamp()
        gone, total = await self._io(
            "delete", location.path, self._delete_sync, location, before
        )
        self._noted(total)
        return gone

    # -- listing --------------------------------------------------------------

    def _walk(self) -> Generator[str, None, None]:
        """Yield each stored name, one directory open at a time.

        Removes stale temp files on the way. A symlink or file where a
        fan-out directory belongs is yielded as its relative path (which is
        no integrity, so :meth:`list` reports it as skipped); a symlink or
        other non-file under a blob's name is yielded as that name, so
        reading it fails loudly instead of the entry going unnoticed.
        """
        try:
            top = _open_dirs(self._root, ("blobs",), create=False)
        except FileNotFoundError:
            return
        try:
            for first in _scan(top):
                if first.name not in _HEX_PAIR:
                    continue
                if not first.is_dir(follow_symlinks=False):
                    yield f"blobs/{first.name}"
                    continue
                with _subdir(top, first.name) as middle:
                    for second in _scan(middle):
                        if second.name not in _HEX_PAIR:
                            continue
                        if not second.is_dir(follow_symlinks=False):
                            yield f"blobs/{first.name}/{second.name}"
                            continue
                        prefix = first.name + second.name
                        with _subdir(middle, second.name) as leaf:
                            for entry in _scan(leaf):
                                yield _blob_name(entry, prefix)
        finally:
            os.close(top)

    async def list_names(self) -> AsyncIterator[str]:
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
            while True:
                with self._translating("list", self._blobs):
                    batch = await asyncio.to_thread(next_batch)
                if not batch:
                    return
                for name in batch:
                    yield name
        finally:
            await asyncio.shield(asyncio.to_thread(close))


#: How :meth:`FilesystemBlobStore.link_to` placed a blob.
LinkMethod: TypeAlias = Literal["reflink", "hardlink", "copy"]
#: Linux's FICLONE ioctl: clone a whole file's extents (copy-on-write).
_FICLONE: Final = 0x40049409


def _place(
    integrity: Integrity, directory: int, name: str, fd: int, target: Path
) -> LinkMethod:
    """Put the verified bytes of *fd* at *target*: reflink, hardlink or copy."""
    parent = target.parent
    temp = parent / f".sriblob-{secrets.token_hex(8)}"
    out = os.open(temp, _TEMP_FLAGS, FILE_MODE)
    try:
        method: LinkMethod = "reflink"
        try:
            fcntl.ioctl(out, _FICLONE, fd)
        except OSError:
            os.close(out)
            out = -1
            temp.unlink()
            method = "hardlink"
            try:
                os.link(name, temp, src_dir_fd=directory, follow_symlinks=False)
                if not os.path.samestat(temp.lstat(), os.fstat(fd)):
                    temp.unlink()  # replaced meanwhile: copy what was opened
                    raise OSError(errno.ESTALE, "replaced")  # noqa: TRY301
            except OSError:
                method = "copy"
                out = os.open(temp, _TEMP_FLAGS, FILE_MODE)
        if method == "copy":
            _copy_verified(integrity, fd, out)
        else:
            _check_file(integrity, temp)
        if out >= 0:
            os.fsync(out)
        temp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    finally:
        if out >= 0:
            os.close(out)
    with contextlib.suppress(OSError):
        parent_fd = os.open(parent, _DIR_FLAGS)
        try:
            os.fsync(parent_fd)
        finally:
            os.close(parent_fd)
    return method


def _copy_verified(integrity: Integrity, fd: int, out: int) -> None:
    hasher = IntegrityHasher(integrity.algorithm)
    offset = 0
    while chunk := os.pread(fd, CHUNK_SIZE, offset):
        hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]
        offset += len(chunk)
    hasher.verify(integrity)


def _check_file(integrity: Integrity, path: Path) -> None:
    hasher = IntegrityHasher(integrity.algorithm)
    with path.open("rb", buffering=0) as file:
        while chunk := file.read(CHUNK_SIZE):
            hasher.update(chunk)
    hasher.verify(integrity)


@contextlib.contextmanager
def locked_total(root: Path, recount: Callable[[], int]) -> Iterator[_Total]:
    """Hold ``root/.usage`` locked (flock); yield the total, written back after.

    A missing or unreadable file (a crash mid-write, or a store that had no
    quota before) is counted again with *recount*, under the lock.
    """
    fd = open_root_file(root, USAGE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        total = load_total(os.pread(fd, 4096, 0))
        recounted = total is None
        if total is None:
            total = recount()
        usage = _Total(total)
        yield usage
        if recounted or usage.total != total:
            # Over the old bytes, then cut to length: no blocks freed and
            # allocated again. A crash between leaves JSON that doesn't
            # parse, which is recounted.
            data = dump_total(usage.total)
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
    finally:
        os.close(fd)  # closing drops the flock


def open_root_file(root: Path, name: str) -> int:
    """Open (creating) the regular file *name* in *root*, never a symlink."""
    directory = _open_dirs(root, (), create=True)
    try:
        fd = os.open(name, _LEASE_FLAGS, LEASE_MODE, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        _check_regular(fd, root / name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_holder(fd: int) -> Lease | None:
    """Who holds the lease, waiting briefly for a holder that just took it."""
    for _ in range(HOLDER_READS):
        held = Lease.from_json(os.pread(fd, 4096, 0))
        if held is not None:
            return held
        time.sleep(HOLDER_PAUSE)
    return None


@attrs.define
class _Total:
    """The running total while ``.usage`` is locked."""

    total: int


def _close_opened(opened: tuple[io.FileIO, int] | None) -> None:
    if opened is not None:
        opened[0].close()


def _same_file(directory: int, name: str, fd: int) -> bool:
    """Whether *name* in *directory* is still the file open as *fd*."""
    try:
        current = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def _exists(directory: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def _subdir(parent: int, name: str) -> Iterator[int]:
    try:
        fd = os.open(name, _DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        fd = -1
    try:
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def _blob_name(entry: os.DirEntry[str], fan_out: str) -> str:
    """Return the name an entry stores a blob under, else its relative path.

    The relative path of a foreign entry (or of a blob file in the wrong
    directory, which its name can't reach) is never an integrity, so
    :meth:`BlobStore.list` reports it as skipped.
    """
    where = f"blobs/{fan_out[:2]}/{fan_out[2:]}/{entry.name}"
    decoded = key_to_integrity(entry.name, prefix="")
    if decoded is None:
        return where
    try:
        parsed = Integrity.parse(decoded)
    except InvalidIntegrity:
        return where
    return decoded if parsed.digest.hex().startswith(fan_out) else where


def _scan(directory: int) -> Iterator[os.DirEntry[str]]:
    """Yield the entries of the directory open as *directory*, reaping temp files."""
    if directory < 0:
        return
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                _reap(directory, entry)
                continue
            yield entry


def _reap(directory: int, entry: os.DirEntry[str]) -> None:
    """Remove a temp file a crashed writer left, once it is old enough.

    A cache fill's temp file is its cache's to reap (it holds a reservation
    in the front's total), never a listing's.
    """
    if reserved_size(entry.name) is not None:
        return
    with contextlib.suppress(OSError):
        if not entry.is_file(follow_symlinks=False):
            return
        if time.time() - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_AGE:
            os.unlink(entry.name, dir_fd=directory)
