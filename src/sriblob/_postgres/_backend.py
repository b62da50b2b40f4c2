"""The PostgreSQL backend: blobs as fixed-size ``bytea`` chunk rows."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any, ClassVar, Final

from sriblob._backend import Backend, BlobBody, BlobInfo
from sriblob._config import PostgresStoreConfig, describe_dsn
from sriblob._lease import HOLDER_PAUSE, HOLDER_READS, UNKNOWN_HOLDER, Lease
from sriblob.exceptions import StoreBusy, StoreError, StoreUnavailable

from ._errors import Errors, LostRace, Passthrough, closed, import_asyncpg
from ._pool import Database
from ._rows import Rows, fixed_chunks
from ._sql import SCHEMA_VERSION, Sql, quote

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncIterator

    import asyncpg

    from sriblob._integrity import Integrity
    from sriblob._options import StoreOptions
    from sriblob._source import BlobSource

__all__ = ["PostgresBackend"]

#: How many bytes of chunk rows an open() fetches per round trip.
_READ_AHEAD_BYTES: Final = 2 * 1024 * 1024
#: Blob rows per list() page; each page is one short query.
_LIST_PAGE_SIZE: Final = 1000


class PostgresBackend(Backend):
    """Blobs as ``<prefix>blobs`` and ``<prefix>chunks`` rows.

    See :class:`~sriblob.PostgresBlobStore`.

    Each blob is one row (integrity, size, creation time) plus its bytes cut
    into ``chunk_size`` rows; a write inserts its chunk rows, then the blob
    row, in one transaction, so a failure, a mismatch or a cancellation
    leaves nothing.
    """

    default_id: ClassVar[str] = "postgres"
    requires_startup: ClassVar[bool] = True

    def __init__(
        self, config: PostgresStoreConfig, *, pool: asyncpg.Pool[Any] | None = None
    ) -> None:
        super().__init__()
        import_asyncpg()
        self.config = config
        self._host_pool = pool
        self._endpoint = describe_dsn(config.dsn) if config.dsn is not None else None
        self._sql = Sql.build(config.schema, config.table_prefix)
        self._read_ahead = max(1, min(256, _READ_AHEAD_BYTES // config.chunk_size))
        self._list_page_size = _LIST_PAGE_SIZE
        self._lease_conns: dict[str, Any] = {}
        self._errors = Errors(self.default_id, self._endpoint)
        self._db = self._database()

    def _database(self) -> Database:
        return Database(
            self.config, self._host_pool, errors=self._errors, migrate=self._migrate
        )

    def bind(self, options: StoreOptions, /) -> None:
        super().bind(options)
        self._errors = Errors(options.id, self._endpoint)
        self._db = self._database()

    @property
    def _rows(self) -> Rows:
        return Rows(self._errors, self._read_ahead, verify=self.options.verify)

    @property
    def _config(self) -> PostgresStoreConfig:
        return self.config

    def left_open(self) -> str | None:
        # A host's pool is the host's to close.
        return "its connection pool" if self._db.owns_pool else None

    def describe(self) -> str:
        where = (
            f"dsn={self._endpoint!r}"
            if self._endpoint is not None
            else "pool=<host pool>"
        )
        config = self.config
        return (
            f"{where} schema={config.schema!r} table_prefix={config.table_prefix!r} "
            f"chunk_size={config.chunk_size}"
        )

    @property
    def pool(self) -> asyncpg.Pool[Any] | None:
        """The asyncpg pool: the host's, or the store's own once it connected."""
        return self._db.pool

    # -- lifecycle -------------------------------------------------------------

    async def startup(self) -> None:
        try:
            await self._db.prepare()
        except StoreUnavailable:
            # Down or unreachable: each call tries again, and a registry
            # serves reads from its other stores meanwhile.
            return

    async def shutdown(self) -> None:
        await self._db.close()

    async def _migrate(self, db: Database) -> None:
        """Create the schema and tables, or bring them to SCHEMA_VERSION."""
        sql = self._sql
        async with (
            db.connection("migrate", prepare=False) as conn,
            conn.transaction(),
        ):
            # Serialises concurrent first starts: DDL races fail otherwise.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.lock_key)
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                sql.schema,
            ):
                await conn.execute(f"CREATE SCHEMA {quote(sql.schema)}")
            if await conn.fetchval("SELECT to_regclass($1) IS NULL", sql.version):
                await conn.execute(sql.create_version)
            current: int = await conn.fetchval(sql.read_version)
            if current > SCHEMA_VERSION:
                msg = (
                    f"The tables {sql.blobs} and {sql.chunks} have schema version "
                    f"{current}, newer than this sriblob's {SCHEMA_VERSION}; "
                    "upgrade sriblob."
                )
                raise StoreError(msg, backend=self.id, endpoint=self._errors.endpoint)
            for script in sql.migrations[current:]:
                await conn.execute(script)
            if current < SCHEMA_VERSION:
                await conn.execute(sql.write_version, SCHEMA_VERSION)

    # -- the maintenance lease ---------------------------------------------------

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Take a session advisory lock on a connection held until released.

        The server drops the lock when the holder's connection ends (its
        process died, or the network went), so a crashed holder never
        blocks the store. Who holds it is kept in the ``lease`` table.
        """
        with self._errors.translate("take the maintenance lease"):
            conn = await self._db.acquire("take the maintenance lease")
            try:
                # The lock and the row that names its holder commit together:
                # a taker that finds the lock held and the row in the middle
                # of being replaced waits for it (FOR SHARE) and reads the
                # new holder, never the one before.
                async with conn.transaction():
                    taken = await conn.fetchval(
                        "SELECT pg_try_advisory_lock($1)", self._lease_key
                    )
                    if taken:
                        await self._write_holder(conn, lease)
                if taken:
                    self._lease_conns[lease.token] = conn
                    return None
                row = await self._read_holder(conn)
            except BaseException:
                await self._db.release(conn)
                raise
            await self._db.release(conn)
        if row is None:
            return UNKNOWN_HOLDER
        return Lease(
            purpose=row["purpose"],
            host=row["host"],
            pid=row["pid"],
            since=row["since"],
            token=row["token"],
        )

    @property
    def _lease_key(self) -> int:
        return self._sql.lease_key

    async def _write_holder(self, conn: Any, lease: Lease) -> None:
        """Record who holds the lease (in the lock's transaction)."""
        await conn.execute(
            self._sql.write_lease,
            lease.purpose,
            lease.host,
            lease.pid,
            lease.since,
            lease.token,
        )

    async def _clear_holder(self, conn: Any, lease: Lease) -> None:
        await conn.execute(self._sql.clear_lease, lease.token)

    async def _read_holder(self, conn: Any) -> Any:
        """The lease row, waiting briefly for a first holder's row to commit."""
        for _ in range(HOLDER_READS):
            row = await conn.fetchrow(self._sql.read_lease + " FOR SHARE")
            if row is not None:
                return row
            await asyncio.sleep(HOLDER_PAUSE)
        return None

    async def release_lease(self, lease: Lease, /) -> None:
        conn = self._lease_conns.pop(lease.token, None)
        if conn is None:
            return
        if closed(conn):
            return  # the pool took the broken connection back; the lock is gone
        try:
            with self._errors.translate("release the maintenance lease"):
                await self._clear_holder(conn, lease)
                await conn.execute("SELECT pg_advisory_unlock($1)", self._lease_key)
        finally:
            # The pool's reset unlocks every advisory lock too.
            await self._db.release(conn)

    async def check_lease(self, lease: Lease, /) -> None:
        """Raise StoreBusy if the lease's connection is gone (and the lock with it)."""
        conn = self._lease_conns.get(lease.token)
        if conn is None or closed(conn):
            msg = (
                f"The {self.id!r} store's maintenance lease was lost: its "
                "PostgreSQL connection closed, so the server released the lock; "
                "run the operation again."
            )
            raise StoreBusy(msg, backend=self.id)

    # -- writing ---------------------------------------------------------------

    async def _renew(self, integrity: Integrity) -> int | None:
        """Renew a stored blob's ``created_at``; return its size, or None."""
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                size: int | None = await conn.fetchval(self._sql.renew, str(integrity))
        return size

    async def _stored_copy_stands(self, source: BlobSource) -> bool:
        """Whether a put of a known blob may keep the stored copy (now renewed).

        A copy of the right size stands once it verified: reading it costs
        less than writing it again (WAL, TOAST, dead rows for vacuum), and
        the data isn't read at all then.
        """
        known = source.expected
        if known is None or source.replace:
            return False
        size = await self._renew(known)
        return (
            size is not None
            and source.keeps(size)
            and await source.stored_copy_intact()
        )

    async def _insert(self, source: BlobSource) -> bool:
        """Write the source's rows; return False if a stored copy stood instead."""
        sql = self._sql
        failure: Exception | None = None
        total: int | None = None
        try:
            with self._errors.translate("store a blob"):
                async with (
                    self._db.connection("store a blob") as conn,
                    conn.transaction(),
                ):
                    blob_id = await conn.fetchval(sql.next_id)
                    rows = fixed_chunks(source, self._config.chunk_size)
                    async with contextlib.aclosing(rows):
                        seq = 0
                        async for chunk in rows:
                            await conn.execute(sql.insert_chunk, blob_id, seq, chunk)
                            seq += 1
                    # The source verified itself when it ended; only now may
                    # the blob row appear.
                    integrity = str(source.integrity)
                    stored = await conn.fetchval(sql.lock_existing, integrity)
                    replaced = 0
                    if stored is not None:
                        # A put (integrity known) checked the stored copy
                        # already, or lost a race to a verified writer. An
                        # add() of a store that verifies replaces it: its
                        # rows are written either way (a rollback leaves as
                        # many dead rows as the replaced copy), and this
                        # spares reading the stored copy back.
                        keep = source.expected is not None or not self.options.verify
                        if keep and source.keeps(stored):
                            raise LostRace  # noqa: TRY301 -- rolls the chunks back
                        # The cascade removes the replaced copy's chunks.
                        await conn.execute(sql.delete, integrity)
                        replaced = stored
                    # A concurrent writer of the same blob makes this wait
                    # for its commit, then do nothing.
                    won = await conn.fetchval(
                        sql.insert_blob, integrity, blob_id, source.bytes_read
                    )
                    if not won:
                        raise LostRace  # noqa: TRY301 -- rolls the chunks back
                    if self.keeps_total:
                        # The trigger counted the row and holds the total's
                        # row lock until commit: no other put can slip in.
                        total = await conn.fetchval(sql.read_usage)
                        self._check_quota(total, source.bytes_read - replaced)
        except LostRace:
            return False
        except Passthrough as passthrough:
            failure = passthrough.error
        if failure is not None:
            raise failure
        if total is not None and self.keeps_total:
            self.noted(total)
        return True

    async def write_blob(self, source: BlobSource, /) -> None:
        if await self._stored_copy_stands(source):
            return
        if not await self._insert(source):
            await self._renew(source.integrity)

    # -- reading ---------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        with self._errors.translate("read a blob"):
            async with self._db.connection("read a blob") as conn:
                # One statement, one snapshot: the blob row joined to its chunks.
                rows = await conn.fetch(self._sql.get, str(integrity))
        if not rows:
            return None
        data = b"".join(row[1] for row in rows if row[1] is not None)
        self._rows.check_size(integrity, len(data), rows[0][0])
        return data

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        async with self.read_blob_range(integrity, 0, None) as body:
            yield body

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        sql = self._sql
        failure: Exception | None = None
        try:
            with self._errors.translate("read a blob"):
                # The connection is held until the reader closes: the cursor
                # lives in a repeatable-read transaction, so the chunks read
                # are the blob row's, even if it is deleted meanwhile.
                async with (
                    self._db.connection("read a blob") as conn,
                    conn.transaction(isolation="repeatable_read", readonly=True),
                ):
                    row = await conn.fetchrow(sql.find, str(integrity))
                    if row is None:
                        raise self.not_found(integrity)
                    size: int = row["size"]
                    stop = self.check_range(integrity, start, end, size)
                    # Rows hold the chunk size the blob was written with:
                    # start at the row holding `start`, not at the first.
                    first_seq = 0
                    if start > 0:
                        width = await conn.fetchval(sql.chunk_width, row["id"])
                        first_seq = start // width if width else 0
                        skip = start - first_seq * (width or 0)
                    else:
                        skip = 0
                    cursor = await conn.cursor(sql.open_chunks, row["id"], first_seq)
                    stream = (
                        self._rows.whole(integrity, cursor, size)
                        if start == 0 and stop == size
                        else self._rows.range(
                            integrity, cursor, first_seq, skip, stop - start
                        )
                    )
                    try:
                        yield BlobBody(stream, size)
                    except Exception as exc:
                        # The caller's error (or the reader's, translated
                        # already) is not ours to translate.
                        raise Passthrough(exc) from exc
                    finally:
                        await stream.aclose()
        except Passthrough as passthrough:
            failure = passthrough.error
        if failure is not None:
            raise failure

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                row = await conn.fetchrow(self._sql.stat, str(integrity))
        if row is None:
            return None
        return BlobInfo(str(integrity), row["size"], row["created_at"])

    async def has_blob(self, integrity: Integrity, /) -> bool:
        with self._errors.translate("look a blob up"):
            async with self._db.connection("look a blob up") as conn:
                found: bool = await conn.fetchval(self._sql.has, str(integrity))
        return found

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        with self._errors.translate("delete a blob"):
            async with self._db.connection("delete a blob") as conn:
                # The foreign key cascades to the chunk rows. With a time, the
                # row is deleted only if a concurrent renewal hasn't moved it.
                deleted: bool = True
                if stored_before is None:
                    await conn.execute(self._sql.delete, str(integrity))
                else:
                    deleted = await conn.fetchval(
                        self._sql.delete_older, str(integrity), stored_before
                    )
                if self.keeps_total:
                    # Below the warning level again: warn at the next crossing.
                    self.noted(await conn.fetchval(self._sql.read_usage))
        return deleted

    async def adjust_total(self, delta: int, /) -> int:
        """Read (or change) the total a trigger on the blob table keeps.

        Every insert and delete of a blob row counts itself, so puts and
        deletes never call this; a positive *delta* is checked against the
        quota under the total's row lock.
        """
        try:
            with self._errors.translate("count blobs"):
                async with self._db.connection("count blobs") as conn:
                    if delta == 0:
                        total: int = await conn.fetchval(self._sql.read_usage)
                        return total
                    async with conn.transaction():
                        total = await conn.fetchval(self._sql.adjust_usage, delta)
                        self._check_quota(total, delta)
        except Passthrough as passthrough:
            raise passthrough.error from None
        return total

    async def stored_total(self) -> int:
        return await self.adjust_total(0)

    def _check_quota(self, total: int, delta: int) -> None:
        """Refuse (rolling the transaction back) a *delta* that made *total* too big."""
        if delta > 0 and not self.fits(total - delta, delta):
            raise Passthrough(self.quota_exceeded(total - delta, delta))

    @property
    def _list_page_sql(self) -> str:
        """The query of one list() page: at most $2 names after $1, in order."""
        return self._sql.list_page

    async def list_names(self) -> AsyncIterator[str]:
        # Keyset pagination: each page is a short index scan on its own
        # connection, so a slow consumer holds no connection or snapshot.
        after = ""
        while True:
            with self._errors.translate("list blobs"):
                async with self._db.connection("list blobs") as conn:
                    rows = await conn.fetch(
                        self._list_page_sql, after, self._list_page_size
                    )
            for row in rows:
                yield row[0]
            if len(rows) < self._list_page_size:
                return
            after = rows[-1][0]
