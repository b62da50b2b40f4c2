"""The blocking file operations on a store's tree (run in worker threads).

A :class:`Tree` is a root directory in the store's layout; its methods open,
stat, keep, commit and unlink blob files relative to directory descriptors
(never following a link) and keep the running total in ``root/.usage`` under
``flock`` in the same step as each rename or unlink it counts.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import stat
from typing import TYPE_CHECKING

from sriblob._integrity import Integrity
from sriblob.exceptions import InvalidIntegrity

from ._locks import Total, current_total, locked_total
from ._paths import (
    HEX_PAIR,
    Location,
    NotABlob,
    blob_name,
    exists,
    file_size,
    find_blob,
    locate,
    not_a_file,
    open_blob,
    open_dirs,
    same_file,
    scan,
    subdir,
)
from ._temp import TempFile

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from pathlib import Path

    from sriblob._compat import Buffer
    from sriblob._quota import Quota

__all__ = ["Tree"]


class Tree:
    """A store's root directory and the blob files under it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def locate(self, integrity: Integrity) -> Location:
        """Where *integrity*'s blob lives."""
        return locate(self.root, integrity)

    # -- the running total ----------------------------------------------------

    @contextlib.contextmanager
    def usage(self) -> Iterator[Total]:
        """Hold ``root/.usage`` locked; yield the total, written back after."""
        with locked_total(self.root, self.count) as usage:
            yield usage

    def count(self) -> int:
        """Add up the sizes of every stored blob."""
        total = 0
        for name in self.walk():
            try:
                integrity = Integrity.parse(name)
            except InvalidIntegrity:
                continue
            total += self.size_at(self.locate(integrity))
        return total

    def size_at(self, location: Location) -> int:
        """The size of the blob file at *location*, or 0 if there is none."""
        try:
            directory = open_dirs(self.root, location.dirs, create=False)
        except (FileNotFoundError, NotABlob):
            return 0
        try:
            return file_size(directory, location.name)
        finally:
            os.close(directory)

    def adjust(self, delta: int, quota: Quota | None) -> int:
        """Add *delta* to the total (refusing what passes *quota*); the new total."""
        if delta == 0:
            return current_total(self.usage, self.count)
        with self.usage() as usage:
            if delta > 0 and quota is not None and not quota.fits(usage.total, delta):
                raise quota.exceeded(usage.total, delta)
            usage.total = max(0, usage.total + delta)
            return usage.total

    # -- writing --------------------------------------------------------------

    def keep_stored(self, location: Location, keeps: Callable[[int], bool]) -> bool:
        """Return whether a stored copy stands, renewing its mtime if so.

        The mtime is the blob's storage time: a put of a stored blob renews
        it, so garbage collection's grace period covers a reused blob too.
        The renewal holds a shared lock on the file; a collection deletes
        under an exclusive one and checks the time under it (see
        :meth:`unlink`), so a renewed blob is never deleted.
        """
        try:
            directory = open_dirs(self.root, location.dirs, create=False)
        except FileNotFoundError:
            return False
        try:
            try:
                fd = open_blob(directory, location)
            except (FileNotFoundError, NotABlob):
                return False  # the write replaces whatever sits there
            try:
                if not keeps(os.fstat(fd).st_size):
                    return False
                fcntl.flock(fd, fcntl.LOCK_SH)
                if not same_file(directory, location.name, fd):
                    # Deleted (or replaced by a new copy) meanwhile.
                    return exists(directory, location.name)
                with contextlib.suppress(OSError):  # read-only: still a blob
                    os.utime(fd)
                return True
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    def write_whole(
        self, location: Location, data: Buffer, quota: Quota | None
    ) -> int | None:
        """Write *data* to a temp file and commit it; the new total, if kept."""
        temp = TempFile.create(self.root, location.dirs)
        try:
            temp.write(data)
            return self.commit(temp, location, memoryview(data).nbytes, quota)
        finally:
            temp.discard()

    def commit(
        self, temp: TempFile, location: Location, size: int, quota: Quota | None
    ) -> int | None:
        """Rename *temp* to *location*; with a *quota*, counted under the usage lock.

        Returns the new running total (None without one). A blob that doesn't
        fit raises :class:`~sriblob.QuotaExceeded` before the rename, so
        nothing is stored (the caller removes the temp file).
        """
        if quota is None:
            temp.commit(location)
            return None
        temp.sync()
        directory = None
        try:
            with self.usage() as usage:
                stored = temp.size_beside(location)
                if stored is None:
                    stored = self.size_at(location)
                delta = size - stored
                if delta > 0 and not quota.fits(usage.total, delta):
                    raise quota.exceeded(usage.total, delta)
                directory = temp.rename(location)
                usage.total += delta
                total = usage.total
        finally:
            if directory is not None:
                temp.sync_directory(directory)
        return total

    # -- reading --------------------------------------------------------------

    def open_file(self, location: Location) -> tuple[io.FileIO, int] | None:
        """Open the blob for reading; None when it isn't stored."""
        fd = find_blob(self.root, location)
        if fd is None:
            return None
        return io.FileIO(fd, "rb", closefd=True), os.fstat(fd).st_size

    def read_whole(self, location: Location) -> bytes | None:
        """The blob file's bytes, or None when it isn't stored."""
        opened = self.open_file(location)
        if opened is None:
            return None
        with opened[0] as file:
            return file.readall()

    def stat(self, location: Location) -> os.stat_result | None:
        """The blob file's ``stat``, or None; refuses what isn't a regular file."""
        try:
            directory = open_dirs(self.root, location.dirs, create=False)
        except FileNotFoundError:
            return None
        try:
            result = os.stat(location.name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            return None
        finally:
            os.close(directory)
        if not stat.S_ISREG(result.st_mode):
            raise not_a_file(location.path, result.st_mode)
        return result

    # -- deleting -------------------------------------------------------------

    def delete(
        self, location: Location, stored_before: float | None, *, counted: bool
    ) -> tuple[bool, int | None]:
        """Delete the blob; whether it's gone, and the new total (when *counted*)."""
        if not counted:
            return self.unlink(location, stored_before, None), None
        with self.usage() as usage:
            gone = self.unlink(location, stored_before, usage)
            return gone, usage.total

    def unlink(
        self, location: Location, stored_before: float | None, usage: Total | None
    ) -> bool:
        """Unlink the blob unless renewed since *stored_before*; count it in *usage*."""
        try:
            directory = open_dirs(self.root, location.dirs, create=False)
        except FileNotFoundError:
            return True
        try:
            if stored_before is None:
                try:
                    if usage is not None:
                        usage.total -= self.size_at(location)
                    os.unlink(location.name, dir_fd=directory)
                except FileNotFoundError:
                    pass
                except IsADirectoryError:
                    raise not_a_file(location.path, stat.S_IFDIR) from None
                return True
            try:
                fd = open_blob(directory, location)
            except FileNotFoundError:
                return True
            try:
                # Exclusive against a put's renewal (see keep_stored): the
                # time read under the lock is final until the file is gone.
                fcntl.flock(fd, fcntl.LOCK_EX)
                if os.fstat(fd).st_mtime > stored_before:
                    return False
                if not same_file(directory, location.name, fd):
                    # A new copy took the name meanwhile: it is fresh.
                    return not exists(directory, location.name)
                os.unlink(location.name, dir_fd=directory)
                if usage is not None:
                    usage.total -= os.fstat(fd).st_size
                return True
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    # -- listing --------------------------------------------------------------

    def walk(self) -> Generator[str, None, None]:
        """Yield each stored name, one directory open at a time.

        Removes stale temp files on the way. A symlink or file where a
        fan-out directory belongs is yielded as its relative path (which is
        no integrity, so ``list()`` reports it as skipped); a symlink or
        other non-file under a blob's name is yielded as that name, so
        reading it fails loudly instead of the entry going unnoticed.
        """
        try:
            top = open_dirs(self.root, ("blobs",), create=False)
        except FileNotFoundError:
            return
        try:
            for first in scan(top):
                if first.name not in HEX_PAIR:
                    continue
                if not first.is_dir(follow_symlinks=False):
                    yield f"blobs/{first.name}"
                    continue
                with subdir(top, first.name) as middle:
                    for second in scan(middle):
                        if second.name not in HEX_PAIR:
                            continue
                        if not second.is_dir(follow_symlinks=False):
                            yield f"blobs/{first.name}/{second.name}"
                            continue
                        prefix = first.name + second.name
                        with subdir(middle, second.name) as leaf:
                            for entry in scan(leaf):
                                yield blob_name(entry, prefix)
        finally:
            os.close(top)
