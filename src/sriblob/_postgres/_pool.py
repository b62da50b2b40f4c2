"""A store's connections: the host's pool or its own, the tables ready once.

A server that can't be reached when the store opens doesn't stop it: each
call tries to connect (and migrate) again, and fails at once for
``connect_timeout`` seconds after a failed try, so a registry reading past a
blackholed server isn't slowed down call after call.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from sriblob.exceptions import StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    import asyncpg

    from sriblob._config import PostgresStoreConfig

    from ._errors import Errors

__all__ = ["Database"]


class Database:
    """One store's pool and the readiness of its tables.

    Args:
        config: The store's settings (DSN, pool size, timeouts).
        pool: A pool the host owns (never closed here), or None to make one.
        errors: The store's error translator.
        migrate: Creates or checks the tables, on a connection of this
            database taken with ``prepare=False``.
    """

    def __init__(
        self,
        config: PostgresStoreConfig,
        pool: asyncpg.Pool[Any] | None,
        *,
        errors: Errors,
        migrate: Callable[[Database], Awaitable[None]],
    ) -> None:
        self.config = config
        self.pool: asyncpg.Pool[Any] | None = pool
        self.owns_pool = pool is None
        #: Whether the pool is there and the tables are migrated.
        self.ready = False
        self._errors = errors
        self._migrate = migrate
        self._preparing = asyncio.Lock()
        #: The last failure to reach the server, and when it ended.
        self._unreachable: tuple[StoreUnavailable, float] | None = None

    @contextlib.asynccontextmanager
    async def connection(
        self, action: str, *, prepare: bool = True
    ) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[Any]]:
        """Acquire a pooled connection, waiting at most ``acquire_timeout``.

        With *prepare* (all but the migration itself), a store that couldn't
        reach the server yet connects and migrates first.
        """
        acquired = await self.acquire(action, prepare=prepare)
        try:
            yield acquired
        finally:
            await self.release(acquired)

    async def acquire(self, action: str, *, prepare: bool = True) -> Any:
        """Take a connection from the pool (give it back with :meth:`release`)."""
        if prepare and not self.ready:
            await self.prepare()
        assert self.pool is not None  # noqa: S101 -- set by prepare or the host
        try:
            return await self.pool.acquire(timeout=self.config.acquire_timeout)
        except TimeoutError:
            waited = self.config.acquire_timeout
            msg = (
                f"PostgreSQL is unavailable to {action}: no connection of the "
                f"pool came free within {waited:g} s (acquire_timeout); every "
                "connection is held, by open readers or by other work."
            )
            raise self._errors.error(StoreUnavailable, msg) from None

    async def release(self, conn: Any) -> None:
        """Give a connection back to the pool."""
        assert self.pool is not None  # noqa: S101 -- acquired from it
        await self.pool.release(conn)

    async def prepare(self) -> None:
        """Create the pool (if the store owns it) and migrate, once.

        Raises:
            StoreUnavailable: The server can't be reached (nothing is kept:
                the next call tries again).
            StoreError: The tables can't be created or migrated.
        """
        async with self._preparing:
            if self.ready:
                return
            self._check_reachable()
            try:
                if self.owns_pool and (self.pool is None or self.pool.is_closing()):
                    self.pool = await self._create_pool()
                try:
                    with self._errors.translate("create or migrate the tables"):
                        await self._migrate(self)
                except BaseException:
                    # Closed, not dropped: the next try makes a new one.
                    if self.owns_pool and self.pool is not None:
                        await self.pool.close()
                    raise
            except StoreUnavailable as error:
                self._unreachable = (error, asyncio.get_running_loop().time())
                raise
            self._unreachable = None
            self.ready = True

    def _check_reachable(self) -> None:
        """Fail at once for ``connect_timeout`` s after the server was unreachable.

        Otherwise every call (and every caller queued behind a failing
        attempt) would wait up to ``connect_timeout`` in turn.
        """
        if self._unreachable is None:
            return
        error, when = self._unreachable
        if asyncio.get_running_loop().time() - when < self.config.connect_timeout:
            raise self._errors.error(StoreUnavailable, str(error))

    async def _create_pool(self) -> asyncpg.Pool[Any]:
        """Connect a pool of our own; every connection within ``connect_timeout``."""
        import asyncpg  # noqa: PLC0415 -- optional; present once constructed

        timeout = self.config.connect_timeout
        try:
            with self._errors.translate("connect"):
                # asyncpg bounds each connection, answer included; the outer
                # bound covers the pool's own steps too.
                async with asyncio.timeout(timeout + 1):
                    pool: asyncpg.Pool[Any] = await asyncpg.create_pool(
                        self.config.dsn,
                        min_size=1,
                        max_size=self.config.max_connections,
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
        raise self._errors.error(StoreUnavailable, msg) from None

    async def close(self) -> None:
        """Close the pool if the store made it (a host's pool is the host's)."""
        if self.owns_pool and self.pool is not None:
            pool, self.pool = self.pool, None
            await pool.close()
