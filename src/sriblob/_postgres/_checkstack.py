"""The original TypeScript system's PostgreSQL table, as a store to migrate off.

The original script-package store keeps every blob in one row of
``"plugin_script-packages-store-postgres".script_package_blob_data``::

    integrity  text PRIMARY KEY      -- the integrity as given
    data       text NOT NULL         -- the bytes, base64
    size_bytes bigint NOT NULL
    created_at timestamp NOT NULL DEFAULT now()

``PostgresBlobStore(dsn, layout="checkstack")`` builds a
:class:`~sriblob._postgres.CheckstackLayout`, whose backend is
:class:`CheckstackBackend`: the same backend (pool, errors, lease) over that
table. It reads, lists, stats, deletes and writes it, and never
creates or alters it. Each blob is one base64 value, so a read holds the
whole blob in memory (the original system kept blobs small: 300 MB in all by
default).
"""

from __future__ import annotations

import binascii
import contextlib
import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any, Final

from sriblob._backend import BlobBody, BlobInfo, chunks_of
from sriblob._source import read_all
from sriblob.exceptions import StoreError

from ._backend import PostgresBackend
from ._errors import Passthrough

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob._integrity import Integrity
    from sriblob._lease import Lease
    from sriblob._source import BlobSource

    from ._pool import Database

__all__ = ["CHECKSTACK_SCHEMA", "CHECKSTACK_TABLE", "CheckstackBackend"]

CHECKSTACK_SCHEMA: Final = "plugin_script-packages-store-postgres"
CHECKSTACK_TABLE: Final = "script_package_blob_data"
_TABLE: Final = f'"{CHECKSTACK_SCHEMA}"."{CHECKSTACK_TABLE}"'
#: ``created_at`` is a timestamp without time zone, written by ``now()`` in
#: the writer's session time zone; read back in the reader's (the same
#: server's setting, unless a client changed it).
_CREATED: Final = "created_at AT TIME ZONE current_setting('TimeZone')"
_LEASE_KEY: Final = int.from_bytes(
    hashlib.sha256(f"sriblob-lease:{_TABLE}".encode()).digest()[:8],
    "big",
    signed=True,
)
_QUOTA_KEY: Final = int.from_bytes(
    hashlib.sha256(f"sriblob-quota:{_TABLE}".encode()).digest()[:8],
    "big",
    signed=True,
)


class CheckstackBackend(PostgresBackend):
    """The PostgreSQL backend over the original system's table.

    Built by ``PostgresBlobStore(dsn, layout="checkstack")`` (or a
    :class:`~sriblob.PostgresStoreConfig` with ``layout="checkstack"``);
    *schema*, *table_prefix* and *chunk_size* don't apply. Opening it checks
    that the table exists (it is never created). A row whose ``data`` isn't
    valid base64, or decodes to other than ``size_bytes`` bytes, reads as a
    :class:`~sriblob.StoreError` naming its integrity, so :func:`~sriblob.migrate`
    records it as a failure and goes on.

    The maintenance lease is a PostgreSQL advisory lock of this table (its
    holder isn't recorded: the table has nowhere to put it). A quota is
    checked against ``sum(size_bytes)`` under a transaction lock, one put at
    a time.

    .. versionadded:: 0.1.0
    """

    def describe(self) -> str:
        where = (
            f"dsn={self._endpoint!r}"
            if self._endpoint is not None
            else "pool=<host pool>"
        )
        return f"{where} layout='checkstack'"

    # -- lifecycle -----------------------------------------------------------

    async def _migrate(self, db: Database) -> None:
        """Check the table is there; never create or change it."""
        async with db.connection("find the table", prepare=False) as conn:
            missing = await conn.fetchval("SELECT to_regclass($1) IS NULL", _TABLE)
        if missing:
            msg = (
                f"There is no table {_TABLE} in this database, so it holds no "
                "blobs of the original system (layout='checkstack' reads that "
                "table and never creates it). Check the DSN."
            )
            raise self._errors.error(StoreError, msg)

    # -- the lease -----------------------------------------------------------

    @property
    def _lease_key(self) -> int:
        return _LEASE_KEY

    async def _write_holder(self, conn: Any, lease: Lease) -> None:  # noqa: ARG002
        return None  # the table has nowhere to record who holds it

    async def _clear_holder(self, conn: Any, lease: Lease) -> None:  # noqa: ARG002
        return None

    async def _read_holder(self, conn: Any) -> Any:  # noqa: ARG002
        return None  # the holder is unknown: StoreBusy says so

    # -- the quota -----------------------------------------------------------

    async def stored_total(self) -> int:
        with self._errors.translate("count blobs"):
            async with self._db.connection("count blobs") as conn:
                total: int = await conn.fetchval(
                    f"SELECT coalesce(sum(size_bytes), 0) FROM {_TABLE}"
                )
        return total

    async def adjust_total(self, delta: int, /) -> int:  # noqa: ARG002
        """The total is the table's ``sum(size_bytes)``; puts check it themselves."""
        return await self.stored_total()

    # -- writing -------------------------------------------------------------

    async def write_blob(self, source: BlobSource, /) -> None:
        """Insert (or repair) the blob's row: its bytes as one base64 value."""
        if await self._stored_copy_stands(source):
            return
        data = await read_all(source)
        text = binascii.b2a_base64(data, newline=False).decode("ascii")
        failure: Exception | None = None
        try:
            with self._errors.translate("store a blob"):
                async with (
                    self._db.connection("store a blob") as conn,
                    conn.transaction(),
                ):
                    await self._write_row(conn, source, text, len(data))
        except Passthrough as passthrough:
            failure = passthrough.error
        if failure is not None:
            raise failure

    async def _write_row(
        self, conn: Any, source: BlobSource, text: str, size: int
    ) -> None:
        name = str(source.integrity)
        # The server compares the stored row with the verified bytes: a
        # damaged row (same size, other bytes) is replaced, unread.
        row = await conn.fetchrow(
            f"SELECT size_bytes, data = $2 AS same FROM {_TABLE}"
            " WHERE integrity = $1 FOR UPDATE",
            name,
            text,
        )
        stored = None if row is None else row["size_bytes"]
        intact = row is not None and (row["same"] or not self.options.verify)
        if stored is not None and intact and source.keeps(stored):
            await conn.execute(
                f"UPDATE {_TABLE} SET created_at = clock_timestamp()::timestamp"
                " WHERE integrity = $1",
                name,
            )
            return
        if self.keeps_total:
            # One put at a time checks the sum: no two can both fit.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _QUOTA_KEY)
            total = await conn.fetchval(
                f"SELECT coalesce(sum(size_bytes), 0) FROM {_TABLE}"
            )
            delta = size - (stored or 0)
            if delta > 0 and not self.fits(total, delta):
                raise Passthrough(self.quota_exceeded(total, delta))
        # A concurrent writer of the same blob makes this wait for its
        # commit, then replace its row with the same verified bytes.
        await conn.execute(
            f"INSERT INTO {_TABLE} (integrity, data, size_bytes, created_at)"
            " VALUES ($1, $2, $3, clock_timestamp()::timestamp)"
            " ON CONFLICT (integrity) DO UPDATE SET data = excluded.data,"
            " size_bytes = excluded.size_bytes, created_at = excluded.created_at",
            name,
            text,
            size,
        )
        if self.keeps_total:
            total = await conn.fetchval(
                f"SELECT coalesce(sum(size_bytes), 0) FROM {_TABLE}"
            )
            self.noted(total)

    async def _renew(self, integrity: Integrity) -> int | None:
        """Renew a stored row's ``created_at``; return its size, or None."""
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                size: int | None = await conn.fetchval(
                    f"UPDATE {_TABLE} SET created_at = clock_timestamp()::timestamp"
                    " WHERE integrity = $1 RETURNING size_bytes",
                    str(integrity),
                )
        return size

    # -- reading -------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        with self._errors.translate("read a blob"):
            async with self._db.connection("read a blob") as conn:
                row = await conn.fetchrow(
                    f"SELECT data, size_bytes FROM {_TABLE} WHERE integrity = $1",
                    str(integrity),
                )
        if row is None:
            return None
        try:
            data = binascii.a2b_base64(row["data"], strict_mode=True)
        except (binascii.Error, ValueError):
            raise self._errors.damaged(
                integrity, "its data column is not valid base64"
            ) from None
        if len(data) != row["size_bytes"]:
            raise self._errors.damaged(
                integrity,
                f"its data decodes to {len(data)} bytes, not its size_bytes "
                f"{row['size_bytes']}",
            )
        return data

    async def _whole(self, integrity: Integrity) -> bytes:
        data = await self.read_blob_bytes(integrity)
        if data is None:
            raise self.not_found(integrity)
        return data

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        data = await self._whole(integrity)
        yield BlobBody(chunks_of(data), len(data))

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        data = await self._whole(integrity)
        stop = self.check_range(integrity, start, end, len(data))
        yield BlobBody(chunks_of(data, start, stop), len(data))

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                row = await conn.fetchrow(
                    f"SELECT size_bytes, {_CREATED} AS stored_at FROM {_TABLE}"
                    " WHERE integrity = $1",
                    str(integrity),
                )
        if row is None:
            return None
        stored_at: dt.datetime = row["stored_at"]
        return BlobInfo(str(integrity), row["size_bytes"], stored_at.astimezone(dt.UTC))

    async def has_blob(self, integrity: Integrity, /) -> bool:
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                found: bool = await conn.fetchval(
                    f"SELECT EXISTS (SELECT 1 FROM {_TABLE} WHERE integrity = $1)",
                    str(integrity),
                )
        return found

    # -- deleting and listing --------------------------------------------------

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        name = str(integrity)
        with self._errors.translate("delete a blob"):
            async with self._db.connection("delete a blob") as conn:
                if stored_before is None:
                    await conn.execute(
                        f"DELETE FROM {_TABLE} WHERE integrity = $1", name
                    )
                    return True
                # As the sriblob layout: deleted, or was never there.
                deleted: bool = await conn.fetchval(
                    f"WITH deleted AS (DELETE FROM {_TABLE} WHERE integrity = $1"
                    f" AND {_CREATED} <= $2 RETURNING 1)"
                    " SELECT EXISTS (SELECT 1 FROM deleted) OR NOT EXISTS"
                    f" (SELECT 1 FROM {_TABLE} WHERE integrity = $1)",
                    name,
                    stored_before,
                )
        return deleted

    @property
    def _list_page_sql(self) -> str:
        return (
            f'SELECT integrity FROM {_TABLE} WHERE integrity COLLATE "C"'
            ' > $1 ORDER BY integrity COLLATE "C" LIMIT $2'
        )
