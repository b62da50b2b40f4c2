"""The stream of a stored blob, verified as it goes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Self

from ._integrity import Integrity, PipelinedHasher
from .exceptions import IntegrityMismatch

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

__all__ = ["BlobReader"]


class BlobReader:
    """The chunks of a stored blob, as :meth:`~sriblob.BlobStore.open` yields them.

    An async iterator of ``bytes``. With verification on (the default) the
    blob is checked as it streams and :class:`~sriblob.IntegrityMismatch` is
    raised instead of the end of iteration, so **don't trust or publish the
    data before the iterator is exhausted**.

    A reader of a byte range (``open(..., start=..., end=...)``) that isn't
    the whole blob can't be verified: a range has no integrity of its own.
    :attr:`verifies` says which kind a reader is.

    Attributes:
        integrity: The blob's integrity.
        size: The whole blob's size in bytes when the backend knows it, else
            None (always known for a range).
        store_id: The id of the store the bytes come from (the one that
            answered, for :meth:`~sriblob.BlobStoreRegistry.open_with_fallback`).
        start: The first byte this reader yields (0 for the whole blob).
        end: The byte after the last one it yields, or None for the blob's
            end when the size isn't known.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        integrity: Integrity,
        size: int | None,
        verify: bool,
        checked: bool = False,
        store_id: str,
        on_mismatch: Callable[[Integrity], None] | None = None,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self.integrity = integrity
        self.size = size
        self.store_id = store_id
        self.start = start
        self.end = size if end is None else end
        self._chunks = chunks
        self._hasher = PipelinedHasher(integrity.algorithm) if verify else None
        #: Checked as they stream by the backend itself (a cache's own copies).
        self._checked = checked
        self._on_mismatch = on_mismatch
        self._done = False
        #: The bytes this reader has yielded so far.
        self.bytes_read = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._chunks)
        except IntegrityMismatch:
            # The backend checked its bytes itself and found them corrupt.
            self._done = True
            if self._on_mismatch is not None:
                self._on_mismatch(self.integrity)
            raise
        except StopAsyncIteration:
            self._done = True
            if self._hasher is not None:
                hasher = await self._hasher.finish()
                try:
                    hasher.verify(self.integrity)
                except IntegrityMismatch:
                    if self._on_mismatch is not None:
                        self._on_mismatch(self.integrity)
                    raise
            raise
        if self._hasher is not None:
            await self._hasher.update(chunk)
        self.bytes_read += len(chunk)
        return chunk

    @property
    def verifies(self) -> bool:
        """Whether the bytes are checked against the integrity as they stream."""
        return self._hasher is not None or self._checked

    async def read(self) -> bytes:
        """Read (and verify) the rest of the blob into memory."""
        return b"".join([chunk async for chunk in self])

    def _close(self) -> None:
        if self._hasher is not None:
            self._hasher.close()

    def __repr__(self) -> str:
        span = (
            ""
            if self.start == 0 and self.end == self.size
            else (f" range={self.start}-{self.end}")
        )
        return (
            f"<BlobReader {self.integrity} size={self.size}{span} "
            f"store={self.store_id}>"
        )
