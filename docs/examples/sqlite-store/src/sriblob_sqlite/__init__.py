"""A sriblob backend on SQLite: one row a blob, from the standard library.

The worked example of sriblob's "Writing a backend" guide. It implements the
public backend interface, :class:`sriblob.backend.Backend`, and nothing more:
argument checks, verification, size limits, the quota and repairs are the
job of the :class:`sriblob.BlobStore` built around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import sriblob
from sriblob.backend import Backend, BlobBody, BlobInfo, BlobSource, chunks_of

if TYPE_CHECKING:
    import logging
    import os
    from collections.abc import AsyncIterator, Callable, Mapping

__all__ = ["SQLiteBackend", "SQLiteBlobStore", "register"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS blobs (
    integrity TEXT PRIMARY KEY,
    data BLOB NOT NULL,
    stored_at REAL NOT NULL
)
"""


class SQLiteBackend(Backend):
    """Blobs in one SQLite file, one row each (so: small blobs).

    Args:
        path: The database file; created on first use.
    """

    #: The id a store built around it gets unless it names one.
    default_id = "sqlite"
    #: The connection is made by startup(): ``async with`` is required.
    requires_startup = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__()
        self._path = path
        self._db: sqlite3.Connection | None = None
        # One connection, used from worker threads one call at a time.
        self._lock = threading.Lock()

    def describe(self) -> str:
        """What the store's repr() shows."""
        return f"path={str(self._path)!r}"

    def _run(self, call: Callable[[sqlite3.Connection], Any]) -> Any:
        db = self._db
        if db is None:  # the store refuses calls before startup()
            msg = f"{self!r} is not open"
            raise sriblob.StoreClosed(msg)
        with self._lock, db:  # one transaction per call
            return call(db)

    async def _do(self, call: Callable[[sqlite3.Connection], Any]) -> Any:
        """Run *call* with the connection in a worker thread, off the loop."""
        try:
            return await asyncio.to_thread(self._run, call)
        except sqlite3.Error as exc:
            msg = f"SQLite failed: {exc}"
            raise sriblob.StoreError(msg, backend=self.id) from exc

    # -- lifecycle ---------------------------------------------------------------

    async def startup(self) -> None:
        """Open the database and create the table."""
        self._db = await asyncio.to_thread(
            sqlite3.connect, self._path, check_same_thread=False
        )
        await self._do(lambda db: db.execute(_SCHEMA))

    async def shutdown(self) -> None:
        """Close the database."""
        if self._db is not None:
            await asyncio.to_thread(self._db.close)

    # -- writing -------------------------------------------------------------

    async def write_blob(self, source: BlobSource, /) -> None:
        """Store the source's bytes, unless a stored copy may stand."""
        # A blob already stored may stand, if the source says so for its size
        # and the stored copy still verifies (a put of the good bytes repairs
        # a copy damaged in place).
        known = source.expected
        if (
            known is not None
            and await self._kept(str(known), source)
            and await source.stored_copy_intact()
        ):
            return
        data = bytearray()
        async for chunk in source.chunks():  # raises on a mismatch, at the end
            data += chunk
        name = str(source.integrity)  # known now, even for add() of a stream
        if not await self._kept(name, source):
            now = dt.datetime.now(dt.UTC).timestamp()
            await self._do(
                lambda db: db.execute(
                    "INSERT OR REPLACE INTO blobs VALUES (?, ?, ?)",
                    (name, bytes(data), now),
                )
            )

    async def _kept(self, name: str, source: BlobSource) -> bool:
        """Whether a stored copy stands; a put renews its storage time."""
        info = await self.stat_blob(sriblob.Integrity.parse(name))
        if info is None or not source.keeps(info.size):
            return False
        now = dt.datetime.now(dt.UTC).timestamp()
        await self._do(
            lambda db: db.execute(
                "UPDATE blobs SET stored_at = ? WHERE integrity = ?", (now, name)
            )
        )
        return True

    # -- reading -------------------------------------------------------------

    async def read_blob_bytes(self, integrity: sriblob.Integrity, /) -> bytes | None:
        """Return the stored bytes unverified, or None."""
        row = await self._do(
            lambda db: db.execute(
                "SELECT data FROM blobs WHERE integrity = ?", (str(integrity),)
            ).fetchone()
        )
        return None if row is None else bytes(row[0])

    @contextlib.asynccontextmanager
    async def read_blob(
        self, integrity: sriblob.Integrity, /
    ) -> AsyncIterator[BlobBody]:
        """Yield the stored bytes in chunks; BlobNotFound when absent."""
        data = await self.read_blob_bytes(integrity)
        if data is None:
            raise self.not_found(integrity)
        yield BlobBody(chunks_of(data), len(data))

    async def stat_blob(self, integrity: sriblob.Integrity, /) -> BlobInfo | None:
        """Return size and storage time without reading the bytes."""
        row = await self._do(
            lambda db: db.execute(
                "SELECT length(data), stored_at FROM blobs WHERE integrity = ?",
                (str(integrity),),
            ).fetchone()
        )
        if row is None:
            return None
        stored_at = dt.datetime.fromtimestamp(row[1], dt.UTC)
        return BlobInfo(str(integrity), row[0], stored_at)

    # -- deleting and listing ------------------------------------------------

    async def delete_blob(
        self, integrity: sriblob.Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        """Delete the blob, only if stored no later than stored_before."""
        before = None if stored_before is None else stored_before.timestamp()

        def delete(db: sqlite3.Connection) -> bool:
            # One statement: a renewal can't slip between check and delete.
            deleted = db.execute(
                "DELETE FROM blobs WHERE integrity = ?"
                " AND (? IS NULL OR stored_at <= ?)",
                (str(integrity), before, before),
            ).rowcount
            if deleted:
                return True
            exists = db.execute(
                "SELECT 1 FROM blobs WHERE integrity = ?", (str(integrity),)
            ).fetchone()
            return exists is None

        result: bool = await self._do(delete)
        return result

    async def list_names(self) -> AsyncIterator[str]:
        """Yield every stored name."""
        rows = await self._do(
            lambda db: db.execute("SELECT integrity FROM blobs").fetchall()
        )
        for (name,) in rows:
            yield name


class SQLiteBlobStore(sriblob.BlobStore):
    """A store in one SQLite file: :class:`SQLiteBackend` in a BlobStore.

    Args:
        path: The database file; created on first use.
        id: The store's id in a registry.
        options: ``verify``, ``max_blob_size``, ``max_total_size`` and
            ``warn_total_size``, as for :class:`sriblob.BlobStore`.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, id: str = "sqlite", **options: Any
    ) -> None:
        super().__init__(SQLiteBackend(path), id=id, **options)


def register(
    registry: sriblob.BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """The ``sriblob.stores`` plugin: a store when SRIBLOB_SQLITE_PATH is set."""
    path = env.get("SRIBLOB_SQLITE_PATH", "").strip()
    if not path:
        registry.set_status("sqlite", "not configured (SRIBLOB_SQLITE_PATH is unset)")
        return
    registry.register(SQLiteBlobStore(path))
    registry.set_status("sqlite", f"database {path}")
    logger.debug("Registered the sqlite store at %s", path)
