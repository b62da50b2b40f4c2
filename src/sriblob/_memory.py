"""An in-memory store, for tests and throwaway work."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import TYPE_CHECKING, ClassVar, Unpack

from ._backend import Backend, BlobBody, BlobInfo, chunks_of
from ._source import read_all
from ._store import BlobStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._integrity import Integrity
    from ._options import StoreKeywords
    from ._source import BlobSource

__all__ = ["MemoryBackend", "MemoryBlobStore"]


class MemoryBackend(Backend):
    """Blobs in a dict, with the time each was stored (or put again)."""

    default_id: ClassVar[str] = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.stored_at: dict[str, dt.datetime] = {}

    def describe(self) -> str:
        return f"blobs={len(self.blobs)}"

    async def shutdown(self) -> None:
        self.blobs.clear()
        self.stored_at.clear()

    async def write_blob(self, source: BlobSource, /) -> None:
        # A stored copy of the right size stands only once it verified: a
        # hash of bytes in memory, and the data isn't read at all then.
        known = source.expected
        if (
            known is not None
            and self._kept(str(known), source)
            and await source.stored_copy_intact()
        ):
            return
        data = await read_all(source)
        name = str(source.integrity)
        # The data is verified and in memory: comparing it with the stored
        # copy is cheaper than hashing that copy.
        if self._kept(name, source) and (
            not self.options.verify or self.blobs.get(name) == data
        ):
            return
        stored = self.blobs.get(name)
        await source.admit(replacing=0 if stored is None else len(stored))
        if self.blobs.get(name) is not stored:
            # Another put of the same blob landed while this one was charged.
            await source.unadmit()
            if self._kept(name, source):
                return
            stored = self.blobs.get(name)
            await source.admit(replacing=0 if stored is None else len(stored))
        self.blobs[name] = data
        self.stored_at[name] = dt.datetime.now(dt.UTC)

    def _kept(self, name: str, source: BlobSource) -> bool:
        """Whether a stored copy may stand (its storage time renewed)."""
        stored = self.blobs.get(name)
        if stored is None or not source.keeps(len(stored)):
            return False
        self.stored_at[name] = dt.datetime.now(dt.UTC)
        return True

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        return self.blobs.get(str(integrity))

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        data = self.blobs.get(str(integrity))
        if data is None:
            raise self.not_found(integrity)
        yield BlobBody(chunks_of(data), len(data))

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        data = self.blobs.get(str(integrity))
        if data is None:
            raise self.not_found(integrity)
        stop = self.check_range(integrity, start, end, len(data))
        yield BlobBody(chunks_of(data, start, stop), len(data))

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        name = str(integrity)
        data = self.blobs.get(name)
        if data is None:
            return None
        return BlobInfo(name, len(data), self.stored_at.get(name))

    async def has_blob(self, integrity: Integrity, /) -> bool:
        return str(integrity) in self.blobs

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        name = str(integrity)
        stored_at = self.stored_at.get(name)
        if (
            stored_before is not None
            and stored_at is not None
            and stored_at > stored_before
        ):
            return False
        data = self.blobs.pop(name, None)
        self.stored_at.pop(name, None)
        if data is not None:
            await self.space_freed(len(data))
        return True

    async def list_names(self) -> AsyncIterator[str]:
        for name in list(self.blobs):
            yield name

    async def stored_total(self) -> int:
        return sum(map(len, self.blobs.values()))


class MemoryBlobStore(BlobStore):
    """A store that keeps blobs in a dict: fast, per process, gone on exit.

    Meant for tests and examples; it implements the whole contract,
    verification included. Every blob is held whole in memory.
    :meth:`~BlobStore.stat` reports when each blob was stored; putting a
    stored blob again renews that time.

    Args:
        id: The store's id in a registry.
        options: ``verify``, ``max_blob_size``, ``max_total_size`` and
            ``warn_total_size``, as for :class:`~sriblob.BlobStore`; the
            running total is kept in the store object.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, id: str = "memory", **options: Unpack[StoreKeywords]) -> None:
        self._memory = MemoryBackend()
        super().__init__(self._memory, id=id, **options)

    @property
    def backend(self) -> MemoryBackend:
        """The store's backend."""
        return self._memory

    @property
    def blobs(self) -> dict[str, bytes]:
        """The stored bytes by canonical integrity, unverified.

        For tests that arrange or damage blobs behind the store's back;
        changing this dict bypasses verification, limits and the quota.

        .. versionadded:: 0.1.0
        """
        return self._memory.blobs
