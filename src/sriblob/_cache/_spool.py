"""A copy of a streamed write, kept on its way to the back for the front after."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from typing import TYPE_CHECKING, Final, Self

import attrs

from sriblob import _telemetry as telemetry
from sriblob._source import CHUNK_SIZE

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob._compat import Buffer

__all__ = ["Spool"]

logger = logging.getLogger("sriblob")

#: A write-through of a stream spools to memory up to this, then to a file.
_SPOOL: Final = 8 * 1024 * 1024


class Spool:
    """Keep a copy of a stream as it goes to the back, for the front after.

    The copy is best effort. It counts only if the back read the stream to
    its end (a back that already holds the blob may stop early); past
    *limit* bytes (the blob won't be cached) or after a failed write (a full
    temp directory) it stops, and the stream goes on to the back untouched.
    ``size`` is the copy's size, or ``None`` when there is no whole copy.
    Up to ``_SPOOL`` bytes stay in memory; past that, writes and the
    read-back go through a worker thread, at least ``CHUNK_SIZE`` at a time.
    """

    def __init__(self, *, limit: int, store: str | None = None) -> None:
        self._store = store
        self._file = tempfile.SpooledTemporaryFile(_SPOOL)  # noqa: SIM115
        self._limit = limit
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._seen = 0
        self._copying = True
        self._complete = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()

    @property
    def size(self) -> int | None:
        return self._seen if self._copying and self._complete else None

    @property
    def in_memory(self) -> bool:
        return self._seen <= _SPOOL

    async def keep(self, chunk: Buffer) -> None:
        """Copy *chunk* (a :meth:`~sriblob.backend.BlobSource.tap` observer)."""
        if not self._copying:
            return
        size = memoryview(chunk).nbytes
        if self._seen + size > self._limit:
            self._stop()
            return
        self._seen += size
        if self.in_memory:
            self._file.write(chunk)
            return
        self._pending.append(bytes(chunk))
        self._pending_size += size
        if self._pending_size >= CHUNK_SIZE:
            await self._flush()

    async def _flush(self) -> None:
        pending, self._pending, self._pending_size = self._pending, [], 0
        if not pending:
            return
        try:
            await asyncio.to_thread(self._file.writelines, pending)
        except OSError as error:
            logger.warning(
                "cache: can't keep a copy of a streamed write for the front "
                "(%s); the blob goes to the back only",
                error,
                extra=telemetry.fields(self._store, "put"),
            )
            self._stop()

    def _stop(self) -> None:
        self._copying = False
        self._pending, self._pending_size = [], 0

    async def finish(self) -> int | None:
        """Say the stream ended whole; the copy's size, or None if there is none."""
        if self._copying:
            await self._flush()
        self._complete = True
        return self.size

    def chunks(self) -> SpoolChunks:
        return SpoolChunks(self)


@attrs.define
class SpoolChunks:
    _spool: Spool

    @property
    def size(self) -> int | None:
        return self._spool.size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        spool = self._spool._file  # noqa: SLF001 -- its own spool
        in_memory = self._spool.in_memory
        spool.seek(0)
        while True:
            chunk = (
                spool.read(CHUNK_SIZE)
                if in_memory
                else await asyncio.to_thread(spool.read, CHUNK_SIZE)
            )
            if not chunk:
                return
            yield chunk
