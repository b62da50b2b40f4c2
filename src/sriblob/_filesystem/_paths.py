"""Where blobs live under a root, and opening them without following a link.

Every path below the root is made of hex digits only, and every directory and
file is opened relative to its parent's descriptor with ``O_NOFOLLOW``: the
root is the store's boundary, and a symlink planted below it is refused,
never read or written through.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
from typing import TYPE_CHECKING, Final

import attrs

from sriblob._integrity import Integrity
from sriblob.exceptions import InvalidIntegrity, StoreError
from sriblob.keys import integrity_to_key, key_to_integrity

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TEMP_PREFIX: Final = ".tmp-"
#: A temp file older than this is a crashed writer's leftover; younger ones
#: may belong to a live writer (in this or another process).
STALE_TEMP_AGE: Final = 3600.0
#: How many directory entries one worker-thread call of a listing reads.
LIST_BATCH: Final = 256
HEX_PAIR: Final = frozenset(f"{n:02x}" for n in range(256))
#: A cache fill's temp file: ``.tmp-<token>-<bytes it reserved>``.
RESERVED_TEMP: Final = re.compile(r"\.tmp-[0-9a-f]{16}-([0-9]{1,20})")

FILE_MODE: Final = 0o444
DIR_MODE: Final = 0o755
#: ``os.fdatasync`` where the platform has it (not macOS).
fdatasync: Final = getattr(os, "fdatasync", os.fsync)
CLOEXEC: Final = getattr(os, "O_CLOEXEC", 0)
DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | CLOEXEC
#: Opening a blob never follows a symlink, and never blocks on a FIFO.
READ_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC
TEMP_FLAGS: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | CLOEXEC
LEASE_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | CLOEXEC
#: The maintenance lease's lock file, in the root (beside ``blobs/``).
LEASE_FILE: Final = ".lease"
LEASE_MODE: Final = 0o644
#: The running total of a store with a quota, in the root: ``{"total": n}``.
USAGE_FILE: Final = ".usage"
#: errno values that say the file system can't take the operation right now.


class NotABlob(StoreError):
    """Something other than a blob file (a symlink, a directory) is in the way."""


@attrs.frozen
class Location:
    """Where a blob lives: directories below the root, and its file name."""

    dirs: tuple[str, ...]
    name: str
    root: Path

    @property
    def path(self) -> Path:
        """The file's whole path (for messages: I/O goes through ``dirs``)."""
        return self.root.joinpath(*self.dirs, self.name)


def locate(root: Path, integrity: Integrity) -> Location:
    """Where the store rooted at *root* keeps *integrity*'s blob."""
    digest = integrity.digest.hex()
    dirs = ("blobs", digest[:2], digest[2:4])
    name = integrity_to_key(str(integrity), prefix="")
    return Location(dirs, name, root)


def reserved_size(name: str) -> int | None:
    """The bytes a cache fill reserved for the temp file *name*, if it is one.

    A fill's temp file is named ``.tmp-<token>-<bytes>``; only the cache
    that reserved them may remove it (and give them back), so listings leave
    such files alone however old they are.
    """
    match = RESERVED_TEMP.fullmatch(name)
    return None if match is None else int(match[1])


def open_dirs(
    root: Path, dirs: tuple[str, ...], *, create: bool, sync: bool = True
) -> int:
    """Open ``root/dirs...`` and return its descriptor; the caller closes it.

    The root may itself be a symlink (that is the user's choice); nothing
    below it is followed: a symlinked directory raises :class:`NotABlob`.
    Missing directories raise ``FileNotFoundError``, or are created (mode
    :data:`DIR_MODE`, each new entry synced unless *sync* is false) when
    *create* is true.
    """
    try:
        try:
            fd = os.open(root, DIR_FLAGS)
        except FileNotFoundError:
            if not create:
                raise
            make_root(root)
            fd = os.open(root, DIR_FLAGS)
    except (NotADirectoryError, FileExistsError):
        msg = f"The store's root {root} is not a directory; point the store elsewhere."
        raise NotABlob(msg, backend="filesystem") from None
    try:
        for index, part in enumerate(dirs):
            child = open_child(
                fd, part, root, dirs[: index + 1], create=create, sync=sync
            )
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_root(root: Path) -> None:
    """Create *root* and its missing parents, each with :data:`DIR_MODE`."""
    missing = []
    path = root
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # a concurrent writer made it
            directory.mkdir(DIR_MODE)


def open_child(
    parent: int,
    part: str,
    root: Path,
    shown: tuple[str, ...],
    *,
    create: bool,
    sync: bool,
) -> int:
    flags = DIR_FLAGS | os.O_NOFOLLOW
    try:
        return os.open(part, flags, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise
    except OSError as exc:
        if is_refused_link(exc, directory=True):
            raise not_a_directory(root.joinpath(*shown)) from None
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
        if is_refused_link(exc, directory=True):
            raise not_a_directory(root.joinpath(*shown)) from None
        raise


def is_refused_link(exc: OSError, *, directory: bool) -> bool:
    """Whether *exc* is ``O_NOFOLLOW`` (or ``O_DIRECTORY``) refusing a path.

    Opening a symlink with ``O_NOFOLLOW`` fails with ``ELOOP``; a directory
    open of something that isn't one (a file, a symlink) with ``ENOTDIR``.
    """
    refused = {errno.ELOOP, errno.ENOTDIR} if directory else {errno.ELOOP}
    return exc.errno in refused


def file_size(directory: int, name: str) -> int:
    """The size of the regular file *name* in *directory*; 0 if there is none."""
    try:
        found = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return found.st_size if stat.S_ISREG(found.st_mode) else 0


def not_a_directory(path: Path) -> NotABlob:
    msg = (
        f"{path} is a symlink or not a directory; the filesystem store never "
        "creates symlinks under its root and won't follow one. Remove it."
    )
    return NotABlob(msg, backend="filesystem")


def not_a_file(path: Path, mode: int) -> NotABlob:
    what = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
    msg = (
        f"{path} is {what}, not a blob; the filesystem store never creates one "
        "and won't read through it. Remove it, or put the blob again to "
        "replace it."
    )
    return NotABlob(msg, backend="filesystem")


def check_regular(fd: int, path: Path) -> None:
    """Refuse *fd* unless it is a regular file (a FIFO or device is not ours)."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise not_a_file(path, mode)


def open_blob(directory: int, location: Location) -> int:
    """Open the blob file read-only, refusing symlinks and non-regular files."""
    try:
        fd = os.open(location.name, READ_FLAGS, dir_fd=directory)
    except OSError as exc:
        if is_refused_link(exc, directory=False):
            raise not_a_file(location.path, stat.S_IFLNK) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_a_file(location.path, mode)
    return fd


def find_blob(root: Path, location: Location) -> int | None:
    """Open the blob file at *location* read-only; None when it isn't stored.

    A missing fan-out directory or file is None; anything else in the way
    raises as :func:`open_dirs` and :func:`open_blob` do.
    """
    try:
        directory = open_dirs(root, location.dirs, create=False)
    except FileNotFoundError:
        return None
    try:
        return open_blob(directory, location)
    except FileNotFoundError:
        return None
    finally:
        os.close(directory)


def open_root_file(root: Path, name: str) -> int:
    """Open (creating) the regular file *name* in *root*, never a symlink."""
    directory = open_dirs(root, (), create=True)
    try:
        fd = os.open(name, LEASE_FLAGS, LEASE_MODE, dir_fd=directory)
    finally:
        os.close(directory)
    try:
        check_regular(fd, root / name)
    except BaseException:
        os.close(fd)
        raise
    return fd


def same_file(directory: int, name: str, fd: int) -> bool:
    """Whether *name* in *directory* is still the file open as *fd*."""
    try:
        current = os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)


def exists(directory: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=directory, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


@contextlib.contextmanager
def subdir(parent: int, name: str) -> Iterator[int]:
    try:
        fd = os.open(name, DIR_FLAGS | os.O_NOFOLLOW, dir_fd=parent)
    except FileNotFoundError:
        fd = -1
    try:
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)


def blob_name(entry: os.DirEntry[str], fan_out: str) -> str:
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


def scan(directory: int) -> Iterator[os.DirEntry[str]]:
    """Yield the entries of the directory open as *directory*, reaping temp files."""
    if directory < 0:
        return
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(TEMP_PREFIX):
                reap(directory, entry)
                continue
            yield entry


def reap(directory: int, entry: os.DirEntry[str]) -> None:
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
