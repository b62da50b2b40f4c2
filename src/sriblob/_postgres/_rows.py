"""Blobs as chunk rows: cutting a source into rows, reading rows back as bytes."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, cast

import attrs

from ._errors import Errors, Passthrough

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from sriblob._compat import Buffer
    from sriblob._integrity import Integrity
    from sriblob._source import BlobSource

__all__ = ["Rows", "fixed_chunks"]


async def fixed_chunks(source: BlobSource, chunk_size: int) -> AsyncGenerator[Buffer]:
    """Re-cut the source's chunks (any sizes) into rows of *chunk_size* bytes.

    The source's own errors (a broken producer's OSError, a mismatch) come
    out wrapped in :class:`Passthrough`, so they aren't mistaken for ours.
    """
    pending = bytearray()
    # BlobSource.chunks() is an async generator; close it when we stop early.
    chunks = cast("AsyncGenerator[Buffer]", source.chunks(chunk_size))
    async with contextlib.aclosing(chunks):
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except Exception as exc:
                raise Passthrough(exc) from exc
            view = memoryview(chunk)
            if not pending and view.nbytes == chunk_size:
                yield view
                continue
            pending += view
            while len(pending) >= chunk_size:
                yield bytes(pending[:chunk_size])
                del pending[:chunk_size]
    if pending:
        yield bytes(pending)


@attrs.frozen
class Rows:
    """Reads one store's chunk rows back, refusing a blob they don't hold whole.

    Attributes:
        errors: The store's error translator.
        read_ahead: Rows fetched per round trip.
        verify: Whether the store verifies (a short blob is caught by its
            hash then; without, by its size here).
    """

    errors: Errors
    read_ahead: int
    verify: bool

    def check_size(self, integrity: Integrity, received: int, size: int) -> None:
        """Refuse a blob whose chunk rows don't add up to its recorded size.

        A store that verifies reports such a blob as corrupt when its hash is
        checked; this holds for ``verify=False`` too, so a truncated blob
        never passes as whole.
        """
        if received == size or self.verify:
            return
        raise self.errors.damaged(
            integrity, f"its chunk rows hold {received} of its {size} bytes"
        )

    async def whole(
        self, integrity: Integrity, cursor: Any, size: int
    ) -> AsyncGenerator[bytes]:
        """Yield every chunk row; check the total before the last one.

        So a short blob never passes as whole, even with ``verify=False``.
        """
        received = 0
        while True:
            with self.errors.translate("read a blob"):
                rows = await cursor.fetch(self.read_ahead)
            if not rows:
                break
            for _, data in rows[:-1]:
                received += len(data)
                yield data
            last: bytes = rows[-1][1]
            received += len(last)
            if len(rows) < self.read_ahead:
                self.check_size(integrity, received, size)
                yield last
                return
            yield last
        self.check_size(integrity, received, size)

    async def range(
        self, integrity: Integrity, cursor: Any, seq: int, skip: int, length: int
    ) -> AsyncGenerator[bytes]:
        """Yield *length* bytes from the rows from *seq* on, after *skip* bytes.

        A range isn't verified, so a missing row (a gap in ``seq``) or rows
        that end too soon are always refused.
        """
        left = length
        while left > 0:
            with self.errors.translate("read a blob"):
                rows = await cursor.fetch(self.read_ahead)
            if not rows:
                break
            for row_seq, data in rows:
                if row_seq != seq:
                    raise self.errors.damaged(
                        integrity, f"its chunk row {seq} is missing"
                    )
                seq += 1
                piece = data[skip : skip + left]
                skip = max(skip - len(data), 0)
                left -= len(piece)
                if piece:
                    yield piece
                if left <= 0:
                    return
        if left > 0:
            raise self.errors.damaged(
                integrity, f"its chunk rows end {left} bytes short of the range"
            )
