"""Files in the root locked with ``flock``: the running total and the lease."""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from typing import TYPE_CHECKING

import attrs

from sriblob._lease import HOLDER_PAUSE, HOLDER_READS, UNKNOWN_HOLDER, Lease
from sriblob._quota import dump_total, load_total

from ._errors import is_read_only
from ._paths import LEASE_FILE, USAGE_FILE, open_root_file

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


@contextlib.contextmanager
def locked_total(root: Path, recount: Callable[[], int]) -> Iterator[Total]:
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
        usage = Total(total)
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


def current_total(
    usage: Callable[[], contextlib.AbstractContextManager[Total]],
    recount: Callable[[], int],
) -> int:
    """The total read under *usage*'s lock; *recount* where the root is read-only."""
    try:
        with usage() as held:
            return held.total
    except OSError as exc:
        if not is_read_only(exc):
            raise
        return recount()


def read_holder(fd: int) -> Lease | None:
    """Who holds the lease, waiting briefly for a holder that just took it."""
    for _ in range(HOLDER_READS):
        held = Lease.from_json(os.pread(fd, 4096, 0))
        if held is not None:
            return held
        time.sleep(HOLDER_PAUSE)
    return None


@attrs.define
class Total:
    """The running total while ``.usage`` is locked."""

    total: int


def take_lease(root: Path, lease: Lease) -> tuple[int | None, Lease | None]:
    """Lock ``root/.lease`` (flock) for *lease*; or read who holds it.

    Returns the locked descriptor (closing it releases the lease), or the
    holder found.
    """
    fd = open_root_file(root, LEASE_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held = read_holder(fd)
            os.close(fd)
            return None, held or UNKNOWN_HOLDER
        # Written over the old holder, then cut to length: a reader sees
        # the old holder, a torn mix (and reads again), or the new one.
        data = lease.to_json()
        os.pwrite(fd, data, 0)
        os.ftruncate(fd, len(data))
    except BaseException:
        os.close(fd)
        raise
    return fd, None
