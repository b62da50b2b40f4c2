"""An in-memory store, for tests and throwaway work."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING

from ._store import CHUNK_SIZE, BlobInfo, BlobSource, BlobStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._integrity import Integrity

__all__ = ["MemoryBlobStore"]


class MemoryBlobStore(BlobStore):
    """A store that keeps blobs in a dict: fast, per process, gone on exit.

    Meant for tests and examples; it implements the whole contract,
    verification included. Every blob is held whole in memory.
    :meth:`~BlobStore.stat` reports when each blob was stored.

    Args:
        id: The store's id in a registry.
        verify: See :class:`BlobStore`.
        max_blob_size: See :class:`BlobStore`.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        id: str = "memory",
        verify: bool = True,
        max_blob_size: int | None = None,
    ) -> None:
        super().__init__(id=id, verify=verify, max_blob_size=max_blob_size)
        self._blobs: dict[str, bytes] = {}
        self._stored_at: dict[str, dt.datetime] = {}

    def _repr_details(self) -> str:
        return f"blobs={len(self._blobs)}"

    async def _stop(self) -> None:
        self._blobs.clear()
        self._stored_at.clear()

    def _store(self, name: str, data: bytes) -> None:
        if name not in self._blobs:
            self._blobs[name] = data
            self._stored_at[name] = dt.datetime.now(dt.UTC)

    async def _collect(self, source: BlobSource) -> bytes:
        view = await source.buffer()
        if view is not None:
            return bytes(view)
        buffer = bytearray()
        async for chunk in source.chunks():
            buffer += chunk
        return bytes(buffer)

    async def _put(self, integrity: Integrity, source: BlobSource) -> None:
        if str(integrity) in self._blobs:
            return
        self._store(str(integrity), await self._collect(source))

    async def _add(self, source: BlobSource) -> Integrity:
        data = await self._collect(source)
        self._store(str(source.integrity), data)
        return source.integrity

    async def _get(self, integrity: Integrity) -> bytes | None:
        return self._blobs.get(str(integrity))

    @contextlib.asynccontextmanager
    async def _open(
        self, integrity: Integrity
    ) -> AsyncIterator[tuple[AsyncIterator[bytes], int | None]]:
        data = self._blobs.get(str(integrity))
        if data is None:
            raise self._not_found(integrity)

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), CHUNK_SIZE):
                yield data[start : start + CHUNK_SIZE]

        yield chunks(), len(data)

    async def _stat(self, integrity: Integrity) -> BlobInfo | None:
        name = str(integrity)
        data = self._blobs.get(name)
        if data is None:
            return None
        return BlobInfo(name, len(data), self._stored_at.get(name))

    async def _has(self, integrity: Integrity) -> bool:
        return str(integrity) in self._blobs

    async def _delete(self, integrity: Integrity) -> None:
        self._blobs.pop(str(integrity), None)
        self._stored_at.pop(str(integrity), None)

    async def _list(self) -> AsyncIterator[str]:
        for name in list(self._blobs):
            yield name
