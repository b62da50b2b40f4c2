"""Placing a verified blob at a path: a reflink, else a hardlink, else a copy."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from sriblob._integrity import IntegrityHasher
from sriblob._source import CHUNK_SIZE

from ._paths import DIR_FLAGS, FILE_MODE, TEMP_FLAGS, Location, open_blob, open_dirs

if TYPE_CHECKING:
    from pathlib import Path

    from sriblob._integrity import Integrity

LinkMethod: TypeAlias = Literal["reflink", "hardlink", "copy"]
#: Linux's FICLONE ioctl: clone a whole file's extents (copy-on-write).
FICLONE: Final = 0x40049409


def place(
    integrity: Integrity, directory: int, name: str, fd: int, target: Path
) -> LinkMethod:
    """Put the verified bytes of *fd* at *target*: reflink, hardlink or copy."""
    parent = target.parent
    temp = parent / f".sriblob-{secrets.token_hex(8)}"
    out = os.open(temp, TEMP_FLAGS, FILE_MODE)
    try:
        method: LinkMethod = "reflink"
        try:
            fcntl.ioctl(out, FICLONE, fd)
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
                out = os.open(temp, TEMP_FLAGS, FILE_MODE)
        if method == "copy":
            copy_verified(integrity, fd, out)
        else:
            check_file(integrity, temp)
        # The placed bytes are durable before they take the name: a copy's
        # or a reflink's file, or a hardlink's shared inode (a cache's front
        # doesn't sync its fills, so a link from it must).
        os.fsync(out if out >= 0 else fd)
        temp.replace(target)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    finally:
        if out >= 0:
            os.close(out)
    with contextlib.suppress(OSError):
        parent_fd = os.open(parent, DIR_FLAGS)
        try:
            os.fsync(parent_fd)
        finally:
            os.close(parent_fd)
    return method


def copy_verified(integrity: Integrity, fd: int, out: int) -> None:
    hasher = IntegrityHasher(integrity.algorithm)
    offset = 0
    while chunk := os.pread(fd, CHUNK_SIZE, offset):
        hasher.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(out, view) :]
        offset += len(chunk)
    hasher.verify(integrity)


def check_file(integrity: Integrity, path: Path) -> None:
    hasher = IntegrityHasher(integrity.algorithm)
    with path.open("rb", buffering=0) as file:
        while chunk := file.read(CHUNK_SIZE):
            hasher.update(chunk)
    hasher.verify(integrity)


def link_sync(
    root: Path, integrity: Integrity, location: Location, target: Path
) -> LinkMethod | None:
    """Place the blob at *location* under *root* at *target*; None if absent."""
    try:
        directory = open_dirs(root, location.dirs, create=False)
    except FileNotFoundError:
        return None
    try:
        try:
            fd = open_blob(directory, location)
        except FileNotFoundError:
            return None
        try:
            return place(integrity, directory, location.name, fd, target)
        finally:
            os.close(fd)
    finally:
        os.close(directory)
