"""The front's fill locks: 256 lock files, one per first byte of a digest.

A fill holds its blob's stripe (an ``flock`` on ``.fill-locks/<aa>``) from
before its temp file exists until after it is renamed or removed, so a
temp file whose stripe no process holds is an abandoned one. Fills in one
process share a stripe's lock: only other processes' fills are kept out.
The locks are taken without blocking, on the event loop.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from pathlib import Path

    from sriblob._integrity import Integrity

__all__ = ["Stripes"]

LOCK_DIR: Final = ".fill-locks"
_LOCK_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC


class Stripes:
    """The fill locks one front object holds, counted per stripe."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._held: dict[int, tuple[int, int]] = {}  # stripe: (fd, holders)

    def take(self, integrity: Integrity) -> int | None:
        """Take this blob's fill lock: its stripe, or None if another process has it.

        -1 when no lock can be had (a read-only front): the fill will fail.
        """
        stripe = integrity.digest[0]
        held = self._held.get(stripe)
        if held is not None:
            self._held[stripe] = (held[0], held[1] + 1)
            return stripe
        fd = self.lock_if_free(stripe)
        if fd is None:
            return None
        if fd < 0:
            return -1
        self._held[stripe] = (fd, 1)
        return stripe

    def drop(self, stripe: int) -> None:
        """Give back a fill lock :meth:`take` gave."""
        held = self._held.get(stripe)
        if held is None:
            return
        fd, count = held
        if count > 1:
            self._held[stripe] = (fd, count - 1)
            return
        del self._held[stripe]
        os.close(fd)  # closing drops the flock

    def lock_if_free(self, stripe: int) -> int | None:
        """Lock *stripe* for this process alone; None if someone holds it.

        A stripe this object holds counts as taken (its fills are live).
        Returns -1 when the lock file can't be opened.
        """
        if stripe in self._held:
            return None
        directory = self._root / LOCK_DIR
        try:
            directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(directory / f"{stripe:02x}", _LOCK_FLAGS, 0o644)
        except OSError:
            return -1
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        return fd

    def close(self) -> None:
        """Drop every fill lock held."""
        for fd, _ in self._held.values():
            os.close(fd)
        self._held.clear()
