"""The PostgreSQL stores users build: sriblob's tables, or the original system's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self, Unpack, cast

from sriblob._config import PostgresStoreConfig
from sriblob._source import CHUNK_SIZE
from sriblob._store import BlobStore
from sriblob.exceptions import StoreClosed, StoreUnavailable

from ._backend import PostgresBackend
from ._checkstack import CHECKSTACK_SCHEMA, CheckstackBackend

if TYPE_CHECKING:
    import asyncpg

    from sriblob._options import StoreKeywords

__all__ = ["CheckstackLayout", "PostgresBlobStore"]


class PostgresBlobStore(BlobStore):
    """A store that keeps blobs in PostgreSQL, as fixed-size ``bytea`` chunks.

    Each blob is one row in ``<prefix>blobs`` (integrity, size, creation
    time) plus its bytes cut into ``chunk_size`` rows in ``<prefix>chunks``;
    :meth:`~sriblob.BlobStore.open` streams those rows, so no blob is ever held
    whole in memory.
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
        options: ``verify``, ``max_blob_size``, ``max_total_size`` and
            ``warn_total_size``, as for :class:`~sriblob.BlobStore`. The
            running total is a row kept by a trigger on the blob table
            (schema version 3), checked in the put's own transaction: exact
            for every writer.

    Raises:
        ImportError: asyncpg is not installed (``pip install 'sriblob[postgres]'``).
        TypeError: Neither or both of *dsn* and *pool* were given.
        ConfigurationError: The DSN, an identifier or a size is invalid (a
            ``ValueError`` too; see :class:`~sriblob.PostgresStoreConfig`).

    .. versionadded:: 0.1.0
    """

    #: The store class of each layout (see :class:`CheckstackLayout`).
    _layouts: ClassVar[dict[str, type[PostgresBlobStore]]] = {}
    _backend_class: ClassVar[type[PostgresBackend]] = PostgresBackend

    def __init_subclass__(cls, *, layout: str | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if layout is not None:
            PostgresBlobStore._layouts[layout] = cls

    def __new__(cls, *_: Any, layout: str = "sriblob", **__: Any) -> Self:
        """Build the store class of *layout* (a lookup; see :meth:`from_config`)."""
        chosen = (
            PostgresBlobStore._layouts.get(layout, cls)
            if cls is PostgresBlobStore
            else cls
        )
        return cast("Self", object.__new__(chosen))

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
        **options: Unpack[StoreKeywords],
    ) -> None:
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
        self._postgres = self._backend_class(config, pool=pool)
        super().__init__(self._postgres, id=id, **options)

    @property
    def backend(self) -> PostgresBackend:
        """The store's backend."""
        return self._postgres

    @classmethod
    def from_config(
        cls,
        config: PostgresStoreConfig,
        *,
        pool: asyncpg.Pool[Any] | None = None,
        id: str = "postgres",
        **options: Unpack[StoreKeywords],
    ) -> PostgresBlobStore:
        """Build the store of a :class:`~sriblob.PostgresStoreConfig`'s layout.

        Give *pool* when the config has no DSN.
        """
        chosen = PostgresBlobStore._layouts.get(config.layout, PostgresBlobStore)
        return chosen(
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
            **options,
        )

    @property
    def config(self) -> PostgresStoreConfig:
        """The store's settings (its ``repr()`` never shows a password)."""
        return self._postgres.config

    @property
    def schema(self) -> str:
        """The schema holding the store's tables."""
        return self._postgres.config.schema

    @property
    def table_prefix(self) -> str:
        """The prefix of the store's table names."""
        return self._postgres.config.table_prefix

    @property
    def chunk_size(self) -> int:
        """Bytes per chunk row for new blobs."""
        return self._postgres.config.chunk_size

    @property
    def pool(self) -> asyncpg.Pool[Any]:
        """The asyncpg pool the store uses: the host's, or its own once open.

        Raises:
            StoreClosed: The store made its own pool and isn't open.
            StoreUnavailable: The store is open but hasn't reached the
                server yet (it was unreachable); any call tries again.
        """
        pool = self._postgres.pool
        if pool is not None:
            return pool
        if self.is_open:
            msg = (
                f"{self!r} has no pool yet: the server was unreachable when it "
                "opened; its next call connects again."
            )
            raise StoreUnavailable(msg, backend=self.id)
        msg = f"{self!r} is not open; use `async with PostgresBlobStore(...)`."
        raise StoreClosed(msg)


class CheckstackLayout(PostgresBlobStore, layout="checkstack"):
    """A :class:`PostgresBlobStore` over the original system's table.

    Built by ``PostgresBlobStore(dsn, layout="checkstack")`` (or
    :meth:`PostgresBlobStore.from_config` of a config with
    ``layout="checkstack"``); *schema*, *table_prefix* and *chunk_size* don't
    apply. See :class:`~sriblob._postgres._checkstack.CheckstackBackend`.

    .. versionadded:: 0.1.0
    """

    _backend_class: ClassVar[type[PostgresBackend]] = CheckstackBackend

    @property
    def schema(self) -> str:
        """The original system's schema."""
        return CHECKSTACK_SCHEMA

    @property
    def table_prefix(self) -> str:
        """None of the original system's names has a prefix."""
        return ""
