"""A PostgreSQL store on asyncpg: blobs as fixed-size ``bytea`` chunk rows."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from typing import TYPE_CHECKING, Any, Final, Self, cast

import attrs

from ._config import (
    LONGEST_TABLE_SUFFIX,
    PostgresStoreConfig,
    describe_dsn,
)
from ._lease import HOLDER_PAUSE, HOLDER_READS, UNKNOWN_HOLDER, Lease
from ._store import CHUNK_SIZE, BlobBody, BlobInfo, BlobSource, BlobStore
from .exceptions import (
    AccessDenied,
    StoreBusy,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    import datetime as dt
    from collections.abc import AsyncGenerator, AsyncIterator, Iterator

    import asyncpg

    from ._compat import Buffer
    from ._integrity import Integrity

__all__ = ["INSTALL_HINT", "PostgresBlobStore"]

logger = logging.getLogger("sriblob")

#: The schema version this code reads and writes; see ``_MIGRATIONS``.
SCHEMA_VERSION: Final = 3

#: How many bytes of chunk rows an open() fetches per round trip.
_READ_AHEAD_BYTES: Final = 2 * 1024 * 1024
#: Blob rows per list() page; each page is one short query.
_LIST_PAGE_SIZE: Final = 1000
INSTALL_HINT: Final = (
    "PostgresBlobStore needs asyncpg; install it with "
    "`pip install 'sriblob[postgres]'`."
)

# Each entry moves the schema from the previous version to its index + 1.
# Chunk rows carry a surrogate blob id so a write can stream them before its
# integrity is known (add()); the blob row, inserted last in the same
# transaction, is what makes a blob exist. The foreign key is deferred for
# that reason, and cascades so deleting the blob row deletes its chunks.
# Chunks are usually compressed archives already: STORAGE EXTERNAL keeps
# them out of line in TOAST without a futile compression attempt.
_MIGRATIONS: Final = (
    """
    CREATE SEQUENCE {blob_ids};
    CREATE TABLE {blobs} (
        integrity text COLLATE "C" PRIMARY KEY,
        id bigint NOT NULL UNIQUE,
        size bigint NOT NULL CHECK (size >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
    );
    CREATE TABLE {chunks} (
        blob_id bigint NOT NULL REFERENCES {blobs} (id)
            ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED,
        seq integer NOT NULL CHECK (seq >= 0),
        data bytea NOT NULL,
        PRIMARY KEY (blob_id, seq)
    );
    ALTER TABLE {chunks} ALTER COLUMN data SET STORAGE EXTERNAL;
    """,
    # 2: who holds the maintenance lease (the lock itself is advisory).
    """
    CREATE TABLE {lease} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        purpose text NOT NULL,
        host text NOT NULL,
        pid integer NOT NULL,
        since timestamptz NOT NULL,
        token text NOT NULL
    );
    """,
    # 3: the running total of blob sizes, kept by a trigger on the blob
    # table, so every writer (whatever its sriblob version or quota) keeps
    # it exact; a put's insert updates the one row, which serialises the
    # commits of new blobs, and reads the total in the same transaction.
    """
    CREATE TABLE {usage} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        total bigint NOT NULL
    );
    INSERT INTO {usage} (total) SELECT coalesce(sum(size), 0) FROM {blobs};
    CREATE FUNCTION {count_usage}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'INSERT' THEN
            UPDATE {usage} SET total = total + NEW.size;
        ELSE
            UPDATE {usage} SET total = total - OLD.size;
        END IF;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER {usage_trigger} AFTER INSERT OR DELETE ON {blobs}
        FOR EACH ROW EXECUTE PROCEDURE {count_usage}();
    """,
)


def _import_asyncpg() -> None:
    try:
        import asyncpg  # noqa: F401, PLC0415 -- an optional dependency
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def _quote(identifier: str) -> str:
    # Identifiers are validated to [a-z0-9_]; quoting keeps keywords usable.
    return f'"{identifier}"'


@attrs.frozen
class _Sql:
    """One store's statements, its quoted schema-qualified names filled in.

    Every name passed :func:`_check_identifier` and is quoted; values are
    always bind parameters. That is why the f-strings below are safe.
    """

    schema: str
    blobs: str
    chunks: str
    blob_ids: str
    version: str
    lock_key: int
    lease_key: int
    migrations: tuple[str, ...]
    create_version: str
    read_version: str
    write_version: str
    next_id: str
    insert_chunk: str
    insert_blob: str
    renew: str
    lock_existing: str
    get: str
    find: str
    stat: str
    open_chunks: str
    chunk_width: str
    has: str
    delete: str
    delete_older: str
    list_page: str
    write_lease: str
    read_lease: str
    clear_lease: str
    read_usage: str
    adjust_usage: str

    @classmethod
    def build(cls, schema: str, prefix: str) -> _Sql:
        def name(suffix: str) -> str:
            return f"{_quote(schema)}.{_quote(prefix + suffix)}"

        blobs, chunks, version = (
            name("blobs"),
            name("chunks"),
            name(LONGEST_TABLE_SUFFIX),
        )
        blob_ids = name("blob_ids")
        lease = name("lease")
        usage = name("usage")
        # One advisory lock per table set, so unrelated stores don't queue.
        digest = hashlib.sha256(f"sriblob:{schema}.{prefix}".encode()).digest()
        lease_digest = hashlib.sha256(
            f"sriblob-lease:{schema}.{prefix}".encode()
        ).digest()
        return cls(
            schema=schema,
            blobs=blobs,
            chunks=chunks,
            blob_ids=blob_ids,
            version=version,
            lock_key=int.from_bytes(digest[:8], "big", signed=True),
            lease_key=int.from_bytes(lease_digest[:8], "big", signed=True),
            migrations=tuple(
                script.format(
                    blobs=blobs,
                    chunks=chunks,
                    blob_ids=blob_ids,
                    lease=lease,
                    usage=usage,
                    count_usage=name("count_usage"),
                    usage_trigger=_quote(prefix + "usage"),
                )
                for script in _MIGRATIONS
            ),
            create_version=(
                f"CREATE TABLE {version} ("
                " singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),"
                " version integer NOT NULL);"
                f" INSERT INTO {version} (version) VALUES (0)"
            ),
            read_version=f"SELECT version FROM {version}",
            write_version=f"UPDATE {version} SET version = $1",
            next_id=f"SELECT nextval('{blob_ids}')",
            insert_chunk=(
                f"INSERT INTO {chunks} (blob_id, seq, data) VALUES ($1, $2, $3)"
            ),
            # clock_timestamp(), not now(): now() is when the transaction
            # began, and a long put would look old the moment it commits.
            insert_blob=(
                f"INSERT INTO {blobs} (integrity, id, size, created_at)"
                " VALUES ($1, $2, $3, clock_timestamp())"
                " ON CONFLICT (integrity) DO NOTHING RETURNING true"
            ),
            renew=(
                f"UPDATE {blobs} SET created_at = clock_timestamp()"
                " WHERE integrity = $1 RETURNING size"
            ),
            lock_existing=(f"SELECT size FROM {blobs} WHERE integrity = $1 FOR UPDATE"),
            get=(
                f"SELECT b.size, c.data FROM {blobs} b LEFT JOIN {chunks} c"
                " ON c.blob_id = b.id WHERE b.integrity = $1 ORDER BY c.seq"
            ),
            find=f"SELECT id, size FROM {blobs} WHERE integrity = $1",
            stat=f"SELECT size, created_at FROM {blobs} WHERE integrity = $1",
            open_chunks=(
                f"SELECT seq, data FROM {chunks} WHERE blob_id = $1 AND seq >= $2"
                " ORDER BY seq"
            ),
            chunk_width=(
                f"SELECT octet_length(data) FROM {chunks} WHERE blob_id = $1"
                " AND seq = 0"
            ),
            has=f"SELECT EXISTS (SELECT 1 FROM {blobs} WHERE integrity = $1)",
            delete=f"DELETE FROM {blobs} WHERE integrity = $1",
            # The main query sees the table as it was before the DELETE: the
            # answer is "deleted, or was never there".
            delete_older=(
                f"WITH deleted AS (DELETE FROM {blobs} WHERE integrity = $1"
                " AND created_at <= $2 RETURNING 1)"
                " SELECT EXISTS (SELECT 1 FROM deleted) OR NOT EXISTS"
                f" (SELECT 1 FROM {blobs} WHERE integrity = $1)"
            ),
            list_page=(
                f"SELECT integrity FROM {blobs} WHERE integrity > $1"
                " ORDER BY integrity LIMIT $2"
            ),
            write_lease=(
                f"INSERT INTO {lease} (purpose, host, pid, since, token)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (singleton) DO UPDATE"
                " SET purpose = $1, host = $2, pid = $3, since = $4, token = $5"
            ),
            read_lease=f"SELECT purpose, host, pid, since, token FROM {lease}",
            clear_lease=f"DELETE FROM {lease} WHERE token = $1",
            read_usage=f"SELECT total FROM {usage}",
            adjust_usage=(
                f"UPDATE {usage} SET total = greatest(0, total + $1) RETURNING total"
            ),
        )


class _LostRace(Exception):
    """Another writer committed the same blob first."""


class _Passthrough(Exception):
    """Carries an exception that isn't the database's past ``_translate``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


async def _fixed_chunks(source: BlobSource, chunk_size: int) -> AsyncGenerator[Buffer]:
    """Re-cut the source's chunks (any sizes) into rows of *chunk_size* bytes.

    The source's own errors (a broken producer's OSError, a mismatch) come
    out wrapped in :class:`_Passthrough`, so they aren't mistaken for ours.
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
                raise _Passthrough(exc) from exc
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


class PostgresBlobStore(BlobStore):
    """A store that keeps blobs in PostgreSQL, as fixed-size ``bytea`` chunks.

    Each blob is one row in ``<prefix>blobs`` (integrity, size, creation
    time) plus its bytes cut into ``chunk_size`` rows in ``<prefix>chunks``;
    :meth:`open` streams those rows, so no blob is ever held whole in memory.
    A write inserts its chunk rows and then the blob row in one transaction:
    a failure, a mismatch or a cancellation leaves nothing, and a concurrent
    write of the same blob on another connection is a no-op.

    A blob's storage time (``created_at``, :attr:`~sriblob.BlobInfo.stored_at`)
    is taken by the write's last statement (``clock_timestamp()``, not the
    transaction's start), and a put of a stored blob renews it, so a
    collection's grace period counts from when the blob became visible or was
    last reused.

    The tables are created on first use (``async with``) by a versioned
    migration that holds an advisory lock, so many instances can start at
    once.

    Give exactly one of *dsn* and *pool*. A pool the store creates from a DSN
    is closed by :meth:`aclose`; a *pool* the host owns is never closed.
    Every call waits at most *acquire_timeout* seconds for a free connection,
    then raises :class:`~sriblob.StoreUnavailable`; an open reader holds its
    connection until it is closed. A new connection that isn't made and
    answered within *connect_timeout* seconds (a server that is down, or a
    firewall that drops the packets) raises
    :class:`~sriblob.StoreUnavailable` too.

    A server that can't be reached when the store is opened doesn't stop
    ``async with``: the store opens, each call tries to connect again (and
    creates or migrates the tables once it can), and a registry goes on
    serving reads from its other stores meanwhile, as it does for S3.

    Args:
        dsn: A ``postgresql://`` URL. The password may be in it (with ``/``,
            ``?``, ``#`` and ``@`` percent-encoded); it never appears in a
            ``repr()`` or a message.
        pool: An :class:`asyncpg.Pool` the host already owns.
        id: The store's id in a registry.
        schema: The schema holding the tables; created if missing.
        table_prefix: Prefix of the table names, so several stores can share
            a schema; may be empty.
        chunk_size: Bytes per chunk row. Fixed when the blob is written;
            changing it later only affects new blobs.
        max_connections: The size of the pool created from *dsn*.
        acquire_timeout: Seconds to wait for a free connection of the pool.
        connect_timeout: Seconds a new connection (of a pool the store
            creates) may take to be made and answered.
        layout: ``"sriblob"`` (the default: this store's own tables), or
            ``"checkstack"``: read (and write) the original TypeScript
            system's table, to migrate off it; see
            :class:`~sriblob.PostgresStoreConfig` and "Moving off the
            original PostgreSQL store" in the operations guide.
        verify: See :class:`BlobStore`.
        max_blob_size: See :class:`BlobStore`.
        max_total_size: See :class:`BlobStore`. The running total is a row
            kept by a trigger on the blob table (schema version 3), checked
            in the put's own transaction: exact for every writer.
        warn_total_size: See :class:`BlobStore`.

    Raises:
        ImportError: asyncpg is not installed (``pip install 'sriblob[postgres]'``).
        TypeError: Neither or both of *dsn* and *pool* were given.
        ConfigurationError: The DSN, an identifier or a size is invalid (a
            ``ValueError`` too; see :class:`~sriblob.PostgresStoreConfig`).

    .. versionadded:: 0.1.0
    """

    requires_startup = True

    def __new__(cls, *_: Any, layout: str = "sriblob", **__: Any) -> Self:
        """Build the store for *layout*: the original system's is a subclass."""
        if layout == "checkstack" and cls is PostgresBlobStore:
            from ._checkstack import CheckstackLayout  # noqa: PLC0415 -- a cycle

            return cast("Self", object.__new__(CheckstackLayout))
        return object.__new__(cls)

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: asyncpg.Pool[Any] | None = None,
        id: str = "postgres",
        schema: str = "public",
        table_prefix: str = "sriblob_",
        chunk_size: int = CHUNK_SIZE,
        max_connections: int = 10,
        acquire_timeout: float = 30.0,
        connect_timeout: float = 5.0,
        layout: str = "sriblob",
        verify: bool = True,
        max_blob_size: int | None = None,
        max_total_size: int | None = None,
        warn_total_size: int | None = None,
    ) -> None:
        super().__init__(
            id=id,
            verify=verify,
            max_blob_size=max_blob_size,
            max_total_size=max_total_size,
            warn_total_size=warn_total_size,
        )
        if (dsn is None) == (pool is None):
            msg = (
                "Give PostgresBlobStore exactly one of a DSN "
                "(PostgresBlobStore('postgresql://...')) or an asyncpg pool (pool=...)."
            )
            raise TypeError(msg)
        config = PostgresStoreConfig(
            dsn=dsn,
            schema=schema,
            table_prefix=table_prefix,
            chunk_size=chunk_size,
            max_connections=max_connections,
            acquire_timeout=acquire_timeout,
            connect_timeout=connect_timeout,
            layout=layout,
        )
        _import_asyncpg()
        self._config = config
        self._pool: asyncpg.Pool[Any] | None = pool
        self._owns_pool = pool is None
        #: Whether the pool is there and the tables are migrated.
        self._ready = False
        self._preparing = asyncio.Lock()
        #: The last failure to reach the server, and when it ended.
        self._unreachable: tuple[StoreUnavailable, float] | None = None
        self._lease_conns: dict[str, Any] = {}
        self._where = describe_dsn(dsn) if dsn is not None else None
        self._sql = _Sql.build(schema, table_prefix)
        self._read_ahead = max(1, min(256, _READ_AHEAD_BYTES // chunk_size))
        self._list_page_size = _LIST_PAGE_SIZE

    @classmethod
    def from_config(
        cls,
        config: PostgresStoreConfig,
        *,
        pool: asyncpg.Pool[Any] | None = None,
        id: str = "postgres",
        verify: bool = True,
        max_blob_size: int | None = None,
        max_total_size: int | None = None,
        warn_total_size: int | None = None,
    ) -> PostgresBlobStore:
        """Build a store from a :class:`~sriblob.PostgresStoreConfig`.

        Give *pool* when the config has no DSN.
        """
        return cls(
            config.dsn,
            pool=pool,
            id=id,
            schema=config.schema,
            table_prefix=config.table_prefix,
            chunk_size=config.chunk_size,
            max_connections=config.max_connections,
            acquire_timeout=config.acquire_timeout,
            connect_timeout=config.connect_timeout,
            layout=config.layout,
            verify=verify,
            max_blob_size=max_blob_size,
            max_total_size=max_total_size,
            warn_total_size=warn_total_size,
        )

    def _left_open(self) -> str | None:
        # A host's pool is the host's to close.
        return "its connection pool" if getattr(self, "_owns_pool", False) else None

    @property
    def config(self) -> PostgresStoreConfig:
        """The store's settings (its ``repr()`` never shows a password)."""
        return self._config

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._config.schema

    @property
    def table_prefix(self) -> str:
        """The prefix of the store's table names."""
        return self._config.table_prefix

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk row for new blobs."""
        return self._config.chunk_size

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The asyncpg pool the store uses: the host's, or its own once open.

        Raises:
            StoreClosed: The store made its own pool and isn't open.
            StoreUnavailable: The store is open but hasn't reached the
                server yet (it was unreachable); any call tries again.
        """
        if self._pool is None:
            if self.is_open:
                msg = (
                    f"{self!r} has no pool yet: the server was unreachable when it "
                    "opened; its next call connects again."
                )
                raise StoreUnavailable(msg, backend=self._id, endpoint=self._where)
            msg = f"{self!r} is not open; use `async with PostgresBlobStore(...)`."
            raise StoreClosed(msg)
        return self._pool

    def _repr_details(self) -> str:
        where = (
            f"dsn={self._where!r}" if self._where is not None else "pool=<host pool>"
        )
        return (
            f"{where} schema={self.schema!r} table_prefix={self.table_prefix!r} "
            f"chunk_size={self.chunk_size}"
        )

    # -- errors ----------------------------------------------------------------

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        """Turn asyncpg's and the network's errors into sriblob's."""
        import asyncpg  # noqa: PLC0415 -- optional; present once constructed

        try:
            yield
        except (
            asyncpg.InsufficientPrivilegeError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            msg = f"PostgreSQL refused to {action}: {exc}"
            raise AccessDenied(msg, backend=self._id, endpoint=self._where) from exc
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.TooManyConnectionsError,
            asyncpg.AdminShutdownError,
        ) as exc:
            raise self._unavailable(action, exc) from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if _connection_lost(exc):
                raise self._unavailable(action, exc) from exc
            msg = f"PostgreSQL failed to {action}: {type(exc).__name__}: {exc}"
            raise StoreError(msg, backend=self._id, endpoint=self._where) from exc

    def _unavailable(self, action: str, exc: BaseException) -> StoreUnavailable:
        msg = f"PostgreSQL is unavailable to {action}: {type(exc).__name__}: {exc}"
        return StoreUnavailable(msg, backend=self._id, endpoint=self._where)

    @contextlib.asynccontextmanager
    async def _connection(
        self, action: str, *, prepare: bool = True
    ) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """Acquire a pooled connection, waiting at most ``acquire_timeout``.

        With *prepare* (all but the migration itself), a store that couldn't
        reach the server yet connects and migrates first.
        """
        acquired = await self._acquire(action, prepare=prepare)
        try:
            yield acquired
        finally:
            assert self._pool is not None  # noqa: S101 -- acquired from it
            await self._pool.release(acquired)

    async def _acquire(self, action: str, *, prepare: bool = True) -> Any:
        """Take a connection from the pool (the caller releases it)."""
        if prepare and not self._ready:
            await self._prepare()
        assert self._pool is not None  # noqa: S101 -- set by _prepare or __init__
        try:
            return await self._pool.acquire(timeout=self._config.acquire_timeout)
        except TimeoutError:
            waited = self._config.acquire_timeout
            msg = (
                f"PostgreSQL is unavailable to {action}: no connection of the "
                f"pool came free within {waited:g} s (acquire_timeout); every "
                "connection is held, by open readers or by other work."
            )
            raise StoreUnavailable(
                msg, backend=self._id, endpoint=self._where
            ) from None

    # -- lifecycle -------------------------------------------------------------

    async def startup(self) -> None:
        try:
            await self._prepare()
        except StoreUnavailable as error:
            # Down or unreachable: each call tries again, and a registry
            # serves reads from its other stores meanwhile.
            logger.debug(
                "open backend=%s: %s; connecting again on each call", self.id, error
            )

    async def _prepare(self) -> None:
        """Create the pool (if the store owns it) and migrate, once.

        Raises:
            StoreUnavailable: The server can't be reached (nothing is kept:
                the next call tries again).
            StoreError: The tables can't be created or migrated.
        """
        async with self._preparing:
            if self._ready:
                return
            self._check_reachable()
            try:
                if self._owns_pool and (self._pool is None or self._pool.is_closing()):
                    self._pool = await self._create_pool()
                try:
                    with self._translate("create or migrate the tables"):
                        await self._migrate()
                except BaseException:
                    # Closed, not dropped: the next try makes a new one.
                    if self._owns_pool and self._pool is not None:
                        await self._pool.close()
                    raise
            except StoreUnavailable as error:
                self._unreachable = (error, asyncio.get_running_loop().time())
                raise
            self._unreachable = None
            self._ready = True

    def _check_reachable(self) -> None:
        """Fail at once for ``connect_timeout`` s after the server was unreachable.

        Otherwise every call (and every caller queued behind a failing
        attempt) would wait up to ``connect_timeout`` in turn: a registry
        reading past a blackholed server would take that long per call.
        """
        if self._unreachable is None:
            return
        error, when = self._unreachable
        if asyncio.get_running_loop().time() - when < self._config.connect_timeout:
            raise StoreUnavailable(str(error), backend=self._id, endpoint=self._where)

    async def _create_pool(self) -> asyncpg.Pool[Any]:
        """Connect a pool of our own; every connection within ``connect_timeout``."""
        import asyncpg  # noqa: PLC0415 -- optional; present once constructed

        timeout = self._config.connect_timeout
        try:
            with self._translate("connect"):
                # asyncpg bounds each connection, answer included; the outer
                # bound covers the pool's own steps too.
                async with asyncio.timeout(timeout + 1):
                    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
                        self._config.dsn,
                        min_size=1,
                        max_size=self._config.max_connections,
                        timeout=timeout,
                    )
                    return pool
        except StoreUnavailable as error:
            if not isinstance(error.__cause__, TimeoutError):
                raise
        msg = (
            f"PostgreSQL is unavailable to connect: no answer within {timeout:g} s "
            "(connect_timeout)"
        )
        raise StoreUnavailable(msg, backend=self._id, endpoint=self._where) from None

    async def shutdown(self) -> None:
        if self._owns_pool and self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    async def _migrate(self) -> None:
        sql = self._sql
        async with (
            self._connection("migrate", prepare=False) as conn,
            conn.transaction(),
        ):
            # Serialises concurrent first starts: DDL races fail otherwise.
            await conn.execute("SELECT pg_advisory_xact_lock($1)", sql.lock_key)
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)",
                sql.schema,
            ):
                await conn.execute(f"CREATE SCHEMA {_quote(sql.schema)}")
            if await conn.fetchval("SELECT to_regclass($1) IS NULL", sql.version):
                await conn.execute(sql.create_version)
            current: int = await conn.fetchval(sql.read_version)
            if current > SCHEMA_VERSION:
                msg = (
                    f"The tables {sql.blobs} and {sql.chunks} have schema version "
                    f"{current}, newer than this sriblob's {SCHEMA_VERSION}; "
                    "upgrade sriblob."
                )
                raise StoreError(msg, backend=self._id, endpoint=self._where)
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
        with self._translate("take the maintenance lease"):
            conn = await self._acquire("take the maintenance lease")
            assert self._pool is not None  # noqa: S101 -- acquired from it
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
                await self._pool.release(conn)
                raise
            await self._pool.release(conn)
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
        assert self._pool is not None  # noqa: S101 -- set by startup or __init__
        if _closed(conn):
            return  # the pool took the broken connection back; the lock is gone
        try:
            with self._translate("release the maintenance lease"):
                await self._clear_holder(conn, lease)
                await conn.execute("SELECT pg_advisory_unlock($1)", self._lease_key)
        finally:
            # The pool's reset unlocks every advisory lock too.
            await self._pool.release(conn)

    async def check_lease(self, lease: Lease, /) -> None:
        """Raise StoreBusy if the lease's connection is gone (and the lock with it)."""
        conn = self._lease_conns.get(lease.token)
        if conn is None or _closed(conn):
            msg = (
                f"The {self._id!r} store's maintenance lease was lost: its "
                "PostgreSQL connection closed, so the server released the lock; "
                "run the operation again."
            )
            raise StoreBusy(msg, backend=self._id)

    # -- writing ---------------------------------------------------------------

    async def _renew(self, integrity: Integrity) -> int | None:
        """Renew a stored blob's ``created_at``; return its size, or None."""
        with self._translate("look a blob up"):
            async with self._connection("look a blob up") as conn:
                size: int | None = await conn.fetchval(self._sql.renew, str(integrity))
        return size

    async def _insert(self, source: BlobSource) -> bool:
        """Write the source's rows; return False if a stored copy stood instead."""
        sql = self._sql
        failure: Exception | None = None
        total: int | None = None
        try:
            with self._translate("store a blob"):
                async with self._connection("store a blob") as conn, conn.transaction():
                    blob_id = await conn.fetchval(sql.next_id)
                    rows = _fixed_chunks(source, self.chunk_size)
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
                        keep = source.expected is not None or not self.verify
                        if keep and source.keeps(stored):
                            raise _LostRace  # noqa: TRY301 -- rolls the chunks back
                        # The cascade removes the replaced copy's chunks.
                        await conn.execute(sql.delete, integrity)
                        replaced = stored
                    # A concurrent writer of the same blob makes this wait
                    # for its commit, then do nothing.
                    won = await conn.fetchval(
                        sql.insert_blob, integrity, blob_id, source.bytes_read
                    )
                    if not won:
                        raise _LostRace  # noqa: TRY301 -- rolls the chunks back
                    if self._quota is not None:
                        # The trigger counted the row and holds the total's
                        # row lock until commit: no other put can slip in.
                        total = await conn.fetchval(sql.read_usage)
                        self._check_quota(total, source.bytes_read - replaced)
        except _LostRace:
            return False
        except _Passthrough as passthrough:
            failure = passthrough.error
        if failure is not None:
            raise failure
        if total is not None and self._quota is not None:
            self._quota.note(total)
        return True

    async def write_blob(self, source: BlobSource, /) -> None:
        known = source.expected
        if known is not None and not source.replace:
            size = await self._renew(known)
            # A copy of the right size stands once it verified: reading it
            # costs less than writing it again (WAL, TOAST, dead rows for
            # vacuum), and the data isn't read at all then.
            if (
                size is not None
                and source.keeps(size)
                and await self._stored_copy_intact(known)
            ):
                return
        if not await self._insert(source):
            await self._renew(source.integrity)

    # -- reading ---------------------------------------------------------------

    def _check_size(self, integrity: Integrity, received: int, size: int) -> None:
        """Refuse a blob whose chunk rows don't add up to its recorded size.

        A store that verifies reports such a blob as corrupt when its hash is
        checked; this holds for ``verify=False`` too, so a truncated blob
        never passes as whole.
        """
        if received == size or self.verify:
            return
        raise self._damaged(
            integrity, f"its chunk rows hold {received} of its {size} bytes"
        )

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        with self._translate("read a blob"):
            async with self._connection("read a blob") as conn:
                # One statement, one snapshot: the blob row joined to its chunks.
                rows = await conn.fetch(self._sql.get, str(integrity))
        if not rows:
            return None
        data = b"".join(row[1] for row in rows if row[1] is not None)
        self._check_size(integrity, len(data), rows[0][0])
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
            with self._translate("read a blob"):
                # The connection is held until the reader closes: the cursor
                # lives in a repeatable-read transaction, so the chunks read
                # are the blob row's, even if it is deleted meanwhile.
                async with (
                    self._connection("read a blob") as conn,
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
                        self._whole_chunks(integrity, cursor, size)
                        if start == 0 and stop == size
                        else self._range_chunks(
                            integrity, cursor, first_seq, skip, stop - start
                        )
                    )
                    try:
                        yield BlobBody(stream, size)
                    except Exception as exc:
                        # The caller's error (or the reader's, translated
                        # already) is not ours to translate.
                        raise _Passthrough(exc) from exc
                    finally:
                        await stream.aclose()
        except _Passthrough as passthrough:
            failure = passthrough.error
        if failure is not None:
            raise failure

    async def _whole_chunks(
        self, integrity: Integrity, cursor: Any, size: int
    ) -> AsyncGenerator[bytes]:
        """Yield every chunk row; check the total before the last one.

        So a short blob never passes as whole, even with ``verify=False``.
        """
        received = 0
        while True:
            with self._translate("read a blob"):
                rows = await cursor.fetch(self._read_ahead)
            if not rows:
                break
            for _, data in rows[:-1]:
                received += len(data)
                yield data
            last: bytes = rows[-1][1]
            received += len(last)
            if len(rows) < self._read_ahead:
                self._check_size(integrity, received, size)
                yield last
                return
            yield last
        self._check_size(integrity, received, size)

    async def _range_chunks(
        self, integrity: Integrity, cursor: Any, seq: int, skip: int, length: int
    ) -> AsyncGenerator[bytes]:
        """Yield *length* bytes from the rows from *seq* on, after *skip* bytes.

        A range isn't verified, so a missing row (a gap in ``seq``) or rows
        that end too soon are always refused.
        """
        left = length
        while left > 0:
            with self._translate("read a blob"):
                rows = await cursor.fetch(self._read_ahead)
            if not rows:
                break
            for row_seq, data in rows:
                if row_seq != seq:
                    raise self._damaged(integrity, f"its chunk row {seq} is missing")
                seq += 1
                piece = data[skip : skip + left]
                skip = max(skip - len(data), 0)
                left -= len(piece)
                if piece:
                    yield piece
                if left <= 0:
                    return
        if left > 0:
            raise self._damaged(
                integrity, f"its chunk rows end {left} bytes short of the range"
            )

    def _damaged(self, integrity: Integrity, what: str) -> StoreError:
        msg = (
            f"PostgreSQL holds a damaged blob {integrity}: {what}. Put the blob "
            "again to repair it."
        )
        return StoreError(msg, backend=self._id, endpoint=self._where)

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        with self._translate("look a blob up"):
            async with self._connection("look a blob up") as conn:
                row = await conn.fetchrow(self._sql.stat, str(integrity))
        if row is None:
            return None
        return BlobInfo(str(integrity), row["size"], row["created_at"])

    async def has_blob(self, integrity: Integrity, /) -> bool:
        with self._translate("look a blob up"):
            async with self._connection("look a blob up") as conn:
                found: bool = await conn.fetchval(self._sql.has, str(integrity))
        return found

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        with self._translate("delete a blob"):
            async with self._connection("delete a blob") as conn:
                # The foreign key cascades to the chunk rows. With a time, the
                # row is deleted only if a concurrent renewal hasn't moved it.
                deleted: bool = True
                if stored_before is None:
                    await conn.execute(self._sql.delete, str(integrity))
                else:
                    deleted = await conn.fetchval(
                        self._sql.delete_older, str(integrity), stored_before
                    )
                if self._quota is not None:
                    # Below the warning level again: warn at the next crossing.
                    self._quota.note(await conn.fetchval(self._sql.read_usage))
        return deleted

    async def adjust_total(self, delta: int, /) -> int:
        """Read (or change) the total a trigger on the blob table keeps.

        Every insert and delete of a blob row counts itself, so puts and
        deletes never call this; a positive *delta* is checked against the
        quota under the total's row lock.
        """
        try:
            with self._translate("count blobs"):
                async with self._connection("count blobs") as conn:
                    if delta == 0:
                        total: int = await conn.fetchval(self._sql.read_usage)
                        return total
                    async with conn.transaction():
                        total = await conn.fetchval(self._sql.adjust_usage, delta)
                        self._check_quota(total, delta)
        except _Passthrough as passthrough:
            raise passthrough.error from None
        return total

    async def stored_total(self) -> int:
        return await self.adjust_total(0)

    def _check_quota(self, total: int, delta: int) -> None:
        """Refuse (rolling the transaction back) a *delta* that made *total* too big."""
        if delta > 0 and not self.fits(total - delta, delta):
            raise _Passthrough(self.quota_exceeded(total - delta, delta))

    async def list_names(self) -> AsyncIterator[str]:
        # Keyset pagination: each page is a short index scan on its own
        # connection, so a slow consumer holds no connection or snapshot.
        after = ""
        while True:
            with self._translate("list blobs"):
                async with self._connection("list blobs") as conn:
                    rows = await conn.fetch(
                        self._sql.list_page, after, self._list_page_size
                    )
            for row in rows:
                yield row[0]
            if len(rows) < self._list_page_size:
                return
            after = rows[-1][0]


def _closed(conn: Any) -> bool:
    """Whether a pooled connection is gone (closed, or taken back by the pool)."""
    import asyncpg  # noqa: PLC0415 -- optional; present once a store is open

    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def _connection_lost(exc: BaseException) -> bool:
    """Whether *exc* (an asyncpg error) comes from a connection that went away.

    When the server ends a connection mid-transaction (``pg_terminate_backend``,
    a restart), asyncpg raises ``ConnectionDoesNotExistError`` and then, from
    the transaction's exit, an ``InterfaceError`` whose context is that error.
    """
    import asyncpg  # noqa: PLC0415 -- optional; present once constructed

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OSError
            | asyncpg.ConnectionDoesNotExistError
            | asyncpg.PostgresConnectionError
            | asyncpg.AdminShutdownError,
        ):
            return True
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
