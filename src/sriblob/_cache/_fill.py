"""Bytes held in memory, into the front: checked, and landed only if whole.

A read through the cache that missed holds the back's bytes, unverified;
they must be hashed before the caller gets them, and copied into the front.
Done one after the other, the copy would add its write to every cold read,
so the two share the work:

- up to :data:`PARALLEL_CHECK` bytes, one worker-thread call hashes them,
  reserves their size, writes the temp file and renames it into place (one
  hop instead of four);
- larger ones are hashed and written at once, on two worker threads; the
  rename waits for both and happens only if the hash matched.

Either way the bytes are checked first: :class:`~sriblob.IntegrityMismatch`
means they aren't the blob (and nothing was stored), any other error means
they are, and the front failed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Final

from sriblob._filesystem._paths import locate
from sriblob._integrity import IntegrityHasher, hash_buffer
from sriblob.exceptions import IntegrityMismatch, QuotaExceeded, StoreError

if TYPE_CHECKING:
    from sriblob._filesystem._paths import Location
    from sriblob._filesystem._temp import TempFile
    from sriblob._integrity import Integrity

    from ._front import Front, Identity

__all__ = ["PARALLEL_CHECK", "check_and_fill", "fill_bytes", "wrong_size"]

#: Bytes from which the hash and the write run on two threads at once.
PARALLEL_CHECK: Final = 1024 * 1024


def wrong_size(integrity: Integrity, written: int, size: int) -> IntegrityMismatch:
    """The error for a fill that got *written* bytes where *size* were reserved."""
    msg = (
        f"The cache's fill of {integrity} got {written} bytes, not {size}; "
        "nothing was cached."
    )
    return IntegrityMismatch(msg, expected=str(integrity), actual="")


async def check_and_fill(
    front: Front, integrity: Integrity, data: bytes, *, cacheable: bool
) -> bool | Exception:
    """Check a read's *data* and copy it into the front, sharing the work.

    True if the front got the copy; False if it didn't (not *cacheable*,
    no room, another process's fill lock); the front's error if it failed.

    Raises:
        IntegrityMismatch: *data* isn't the blob (checked whatever becomes
            of the copy); nothing was stored.
    """
    stripe = front.stripes.take(integrity) if cacheable else None
    if stripe is None:
        await _check(integrity, data)
        return False
    try:
        return await _fill_locked(front, integrity, data)
    finally:
        front.stripes.drop(stripe)


async def _check(integrity: Integrity, data: bytes) -> None:
    (await hash_buffer(data, integrity.algorithm)).verify(integrity)


async def _fill_locked(
    front: Front, integrity: Integrity, data: bytes
) -> bool | Exception:
    """:func:`check_and_fill`, the blob's fill lock held."""
    size = len(data)
    try:
        roomy = await front.make_room(size)
    except (StoreError, OSError) as error:
        await _check(integrity, data)
        return error
    if not roomy:
        await _check(integrity, data)
        return False
    try:
        identity = await _fill_retrying(front, integrity, memoryview(data))
    except IntegrityMismatch:
        raise
    except (StoreError, OSError) as error:
        return error
    if identity is None:
        return False
    front.trust(integrity, identity)
    return True


async def _fill_retrying(
    front: Front, integrity: Integrity, view: memoryview
) -> Identity | None:
    """:func:`fill_bytes`; once more if the reservation was refused, else None."""
    try:
        return await fill_bytes(front, integrity, view, verified=False)
    except QuotaExceeded:
        # Other processes filled the front since this one looked (the bytes
        # passed): evict by the real total and try once more.
        if not await front.make_room(view.nbytes, fresh=True):
            return None
    try:
        return await fill_bytes(front, integrity, view, verified=True)
    except QuotaExceeded:
        return None


async def fill_bytes(
    front: Front, integrity: Integrity, view: memoryview, *, verified: bool
) -> Identity:
    """Copy *view* (immutable) into the front as the blob; its file's identity.

    With *verified*, the caller checked these very bytes: they aren't hashed
    again. Cancelling the caller doesn't stop the worker threads: the copy
    lands, or its temp file is removed and its reservation given back.

    Raises:
        IntegrityMismatch: *view* isn't the blob; nothing was stored.
        QuotaExceeded: The front has no room for it now (the bytes were
            checked first).
        OSError, StoreError: The front failed (the bytes were checked first).
    """
    location = locate(front.root, integrity)
    if verified or view.nbytes < PARALLEL_CHECK:
        checking = None if verified else integrity
        return await asyncio.to_thread(_fill_sync, front, location, view, checking)
    hashing = asyncio.ensure_future(hash_buffer(view, integrity.algorithm))
    writing = asyncio.ensure_future(
        asyncio.to_thread(_write_sync, front, location, view)
    )
    try:
        await asyncio.wait((hashing, writing))
        hashing.result().verify(integrity)
        temp = writing.result()
    except BaseException:
        await asyncio.shield(_undo(front, writing, view.nbytes))
        raise
    try:
        return await asyncio.to_thread(front.commit_sync, temp, location)
    except BaseException:
        await asyncio.shield(_undo(front, writing, view.nbytes))
        raise


def _fill_sync(
    front: Front, location: Location, view: memoryview, integrity: Integrity | None
) -> Identity:
    """Hash (unless *integrity* is None), reserve, write and rename, in one call."""
    if integrity is not None:
        hasher = IntegrityHasher(integrity.algorithm)
        hasher.update(view)
        hasher.verify(integrity)
    temp = _write_sync(front, location, view)
    try:
        return front.commit_sync(temp, location)
    except BaseException:
        temp.discard()
        front.release_sync(view.nbytes)
        raise


def _write_sync(front: Front, location: Location, view: memoryview) -> TempFile:
    """Reserve *view*'s size and write it to a temp file beside its place."""
    size = view.nbytes
    front.reserve_sync(size)
    try:
        temp = front.temp_for(location, size)
        try:
            temp.write(view)
        except BaseException:
            temp.discard()
            raise
    except BaseException:
        front.release_sync(size)
        raise
    return temp


async def _undo(front: Front, writing: asyncio.Future[TempFile], size: int) -> None:
    """Once the write is done, remove its temp file and give its bytes back."""
    with contextlib.suppress(BaseException):
        await asyncio.wait((writing,))
    if writing.cancelled() or writing.exception() is not None:
        return  # _write_sync gave back what it took
    temp = writing.result()
    await asyncio.to_thread(temp.discard)
    await asyncio.to_thread(front.release_sync, size)
