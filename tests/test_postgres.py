"""PostgresBlobStore beyond the shared contract: schema, streaming, races."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import subprocess
import sys
import tracemalloc
import urllib.parse
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from sriblob import (
    AccessDenied,
    BlobStoreRegistry,
    FilesystemBlobStore,
    PostgresBlobStore,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from sriblob._plugins import register_postgres
from sriblob._postgres._sql import SCHEMA_VERSION

from .helpers import blackhole, blob, chunked, collect, integrity_of
from .postgres_server import drop_schema, fresh_schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

MiB = 1024 * 1024
SECRET = "hunter2-secret"


@pytest.fixture(name="schema")
async def _schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name, dropped after the test."""
    schema = fresh_schema()
    yield schema
    await drop_schema(postgres_dsn, schema)


@contextlib.asynccontextmanager
async def host_pool(dsn: str, **options: Any) -> AsyncIterator[asyncpg.Pool[Any]]:
    """An asyncpg pool owned by the test, as a host application owns one."""
    pool = await asyncpg.create_pool(dsn, min_size=1, **options)
    try:
        yield pool
    finally:
        await pool.close()


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    """Return *dsn* with its user (and password) replaced."""
    parts = urllib.parse.urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    auth = user if password is None else f"{user}:{password}"
    return parts._replace(netloc=f"{auth}@{host}").geturl()


async def chunk_sizes(store: PostgresBlobStore, integrity: str) -> list[int]:
    """Return the byte lengths of a blob's chunk rows, in order."""
    sql = store.backend._sql
    rows = await store.pool.fetch(
        f"SELECT length(c.data) FROM {sql.chunks} c JOIN {sql.blobs} b"
        " ON b.id = c.blob_id WHERE b.integrity = $1 ORDER BY c.seq",
        integrity,
    )
    return [row[0] for row in rows]


async def count_rows(store: PostgresBlobStore, table: str) -> int:
    """Return how many rows one of the store's tables holds."""
    count: int = await store.pool.fetchval(f"SELECT count(*) FROM {table}")
    return count


async def ids_drawn(store: PostgresBlobStore) -> int:
    """Return how many blob ids writers have drawn: one per write begun."""
    drawn: int = await store.pool.fetchval(
        "SELECT CASE WHEN is_called THEN last_value ELSE 0 END"
        f" FROM {store.backend._sql.blob_ids}"
    )
    return drawn


class Gate:
    """Data sources that stop after their first chunk until the gate opens."""

    def __init__(self, expected: int) -> None:
        self.arrived = 0
        self.expected = expected
        self.all_arrived = asyncio.Event()
        self.open = asyncio.Event()

    async def source(self, data: bytes, chunk: int) -> AsyncIterator[bytes]:
        """Yield *data*, waiting at the gate after the first chunk."""
        yield data[:chunk]
        self.arrived += 1
        if self.arrived == self.expected:
            self.all_arrived.set()
        await self.open.wait()
        for start in range(chunk, len(data), chunk):
            yield data[start : start + chunk]


class TestConstruction:
    """Arguments are checked before any I/O."""

    def test_needs_exactly_one_of_dsn_and_pool(self) -> None:
        """Neither or both of a DSN and a pool is a TypeError saying what to give."""
        with pytest.raises(TypeError, match="exactly one"):
            PostgresBlobStore()
        with pytest.raises(TypeError, match="exactly one"):
            PostgresBlobStore(
                "postgresql://localhost/db",
                pool=object(),  # type: ignore[arg-type]
            )

    @pytest.mark.parametrize(
        "dsn",
        [
            f"mysql://user:{SECRET}@localhost/db",
            f"user:{SECRET}@localhost/db",
            f"postgresql://user:{SECRET}@localhost:notaport/db",
            "",
        ],
    )
    def test_rejects_invalid_dsn_without_leaking_it(self, dsn: str) -> None:
        """An invalid DSN is a ValueError whose message never holds the password."""
        with pytest.raises(ValueError, match="dsn is not a usable DSN") as excinfo:
            PostgresBlobStore(dsn)

        assert SECRET not in str(excinfo.value)

    def test_accepts_both_schemes_and_several_hosts(self) -> None:
        """postgres:// and postgresql:// URLs, with several hosts, are accepted."""
        PostgresBlobStore("postgres://u@localhost/db")
        PostgresBlobStore("postgresql://u@h1:5432,h2:5433/db")
        PostgresBlobStore("postgresql:///db?host=/run/postgresql")

    @pytest.mark.parametrize(
        "schema",
        [
            "",
            "Public",
            "sriblob-blobs",
            'evil"; DROP TABLE x; --',
            "a b",
            "1abc",
            "x" * 64,
            "pg_temp",
            "sch\u00e9ma",
            None,
        ],
    )
    def test_rejects_bad_schema(self, schema: Any) -> None:
        """A schema name that isn't a plain lowercase identifier is refused."""
        with pytest.raises(ValueError, match="schema"):
            PostgresBlobStore("postgresql://localhost/db", schema=schema)

    @pytest.mark.parametrize(
        "prefix", ["Blob_", "a-b_", 'x"', "a;b", "9_", "x" * 50, None]
    )
    def test_rejects_bad_table_prefix(self, prefix: Any) -> None:
        """A table prefix that isn't a plain lowercase identifier is refused."""
        with pytest.raises(ValueError, match="table_prefix"):
            PostgresBlobStore("postgresql://localhost/db", table_prefix=prefix)

    @pytest.mark.parametrize(
        ("value", "error"),
        [(0, ValueError), (-1, ValueError), (65 * MiB, ValueError), (True, ValueError)],
    )
    def test_rejects_bad_chunk_size(self, value: Any, error: type[Exception]) -> None:
        """chunk_size must be an int between 1 byte and 64 MiB."""
        with pytest.raises(error, match="chunk_size"):
            PostgresBlobStore("postgresql://localhost/db", chunk_size=value)

    def test_repr_hides_the_password(self) -> None:
        """repr() names the server, schema and prefix but never the credentials."""
        store = PostgresBlobStore(
            f"postgresql://admin:{SECRET}@db.example:5433/blobs", schema="s"
        )

        text = repr(store)

        assert SECRET not in text
        assert "admin" not in text
        assert "db.example:5433/blobs" in text
        assert "schema='s'" in text
        assert "table_prefix='sriblob_'" in text
        assert (store.schema, store.table_prefix, store.chunk_size) == (
            "s",
            "sriblob_",
            1024 * 1024,
        )

    def test_missing_asyncpg_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without asyncpg, construction raises an ImportError naming the extra."""
        monkeypatch.setitem(sys.modules, "asyncpg", None)

        with pytest.raises(ImportError, match=r"pip install 'sriblob\[postgres\]'"):
            PostgresBlobStore("postgresql://localhost/db")

    def test_import_sriblob_does_not_import_asyncpg(self) -> None:
        """`import sriblob` works without loading asyncpg."""
        code = "import sys, sriblob; assert 'asyncpg' not in sys.modules"

        subprocess.run([sys.executable, "-c", code], check=True)  # noqa: S603

    async def test_unopened_store_refuses_work(self) -> None:
        """A store used before `async with` says how to open it."""
        store = PostgresBlobStore("postgresql://localhost/db")

        with pytest.raises(StoreClosed, match="async with PostgresBlobStore"):
            await store.has(integrity_of(b"x"))


@pytest.mark.postgres
class TestPools:
    """Whose pool it is decides who closes it."""

    async def test_host_pool_is_used_and_left_open(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A store on a host's pool works, and closing it leaves the pool open."""
        async with host_pool(postgres_dsn) as pool:
            async with PostgresBlobStore(pool=pool, schema=schema) as store:
                integrity = await store.add(b"on the host's pool")
                assert "pool=<host pool>" in repr(store)

            assert not pool.is_closing()
            assert await pool.fetchval("SELECT 1") == 1
            async with PostgresBlobStore(pool=pool, schema=schema) as again:
                assert await again.get(integrity) == b"on the host's pool"

    async def test_unclosed_store_warns(self, postgres_dsn: str, schema: str) -> None:
        """A store collected with its own pool still open emits a ResourceWarning."""
        store = PostgresBlobStore(postgres_dsn, schema=schema)
        await store.__aenter__()
        pool = store.pool

        with pytest.warns(ResourceWarning, match="never closed"):  # noqa: PT031
            del store  # refcounting collects it right here
            gc.collect()

        await pool.close()

    async def test_failed_start_leaves_host_pool_open(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A store that fails to start on a host's pool doesn't close that pool."""
        async with host_pool(postgres_dsn) as pool:
            async with PostgresBlobStore(pool=pool, schema=schema) as store:
                await pool.execute(
                    f"UPDATE {store.backend._sql.version} SET version = $1",
                    SCHEMA_VERSION + 1,
                )

            with pytest.raises(StoreError, match="newer than this sriblob"):
                await PostgresBlobStore(pool=pool, schema=schema).__aenter__()

            assert await pool.fetchval("SELECT 1") == 1

    async def test_own_pool_is_closed(self, postgres_dsn: str, schema: str) -> None:
        """A pool the store created from its DSN is closed by aclose()."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            pool = store.pool

        assert pool.is_closing()


@pytest.mark.postgres
class TestSchema:
    """The tables, their rows and their migration."""

    async def test_chunk_rows_have_the_fixed_size(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Whatever the source's chunking, rows are chunk_size bytes but the last."""
        data = blob(5500)
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=1000
        ) as store:
            integrity = await store.add(chunked(data, 333))
            await store.put(integrity_of(blob(3000, 1)), blob(3000, 1))

            assert await chunk_sizes(store, integrity) == [1000] * 5 + [500]
            assert await chunk_sizes(store, integrity_of(blob(3000, 1))) == [1000] * 3
            assert await store.get(integrity) == data

    async def test_blob_row_records_size_and_time(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """The blob row holds the integrity, the size and a creation time."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            integrity = await store.add(b"12345")
            row = await store.pool.fetchrow(
                f"SELECT size, created_at FROM {store.backend._sql.blobs}"
                " WHERE integrity = $1",
                integrity,
            )
            column_type = await store.pool.fetchval(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_schema = $1 AND table_name = 'sriblob_chunks'"
                " AND column_name = 'data'",
                schema,
            )

        assert row is not None
        assert row["size"] == 5
        assert row["created_at"].tzinfo is not None
        assert column_type == "bytea"

    async def test_empty_blob_has_no_chunk_rows(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """The empty blob is a blob row alone."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            integrity = await store.add(b"")

            assert await chunk_sizes(store, integrity) == []
            assert await count_rows(store, store.backend._sql.chunks) == 0
            async with store.open(integrity) as reader:
                assert reader.size == 0
                assert await reader.read() == b""

    async def test_delete_removes_the_chunk_rows(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Deleting a blob deletes its chunk rows too."""
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=1000
        ) as store:
            keep = await store.add(blob(2500, 1))
            gone = await store.add(blob(2500, 2))

            await store.delete(gone)

            assert await count_rows(store, store.backend._sql.chunks) == 3
            assert await collect(store) == {keep}

    async def test_prefixes_share_a_schema_independently(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Two table prefixes in one schema are two separate stores."""
        async with (
            PostgresBlobStore(postgres_dsn, schema=schema, table_prefix="a_") as a,
            PostgresBlobStore(postgres_dsn, schema=schema, table_prefix="") as b,
        ):
            only_a = await a.add(b"in a")
            only_b = await b.add(b"in b")

            assert await collect(a) == {only_a}
            assert await collect(b) == {only_b}
            assert b.backend._sql.blobs == f'"{schema}"."blobs"'

    async def test_migration_records_its_version(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """The version table holds one row with the current schema version."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            rows = await store.pool.fetch(
                f"SELECT version FROM {store.backend._sql.version}"
            )

        assert [row[0] for row in rows] == [SCHEMA_VERSION]

    async def test_restart_keeps_the_blobs(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A second start on migrated tables migrates nothing and loses nothing."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            integrity = await store.add(b"kept")
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            assert await store.get(integrity) == b"kept"

    async def test_concurrent_first_starts(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Several stores starting at once on new tables all start, on one schema."""
        stores = [
            PostgresBlobStore(postgres_dsn, schema=schema, max_connections=2)
            for _ in range(8)
        ]
        async with contextlib.AsyncExitStack() as stack:
            await asyncio.gather(*(stack.enter_async_context(s) for s in stores))
            integrity = await stores[0].add(b"shared")

            assert all(await asyncio.gather(*(s.has(integrity) for s in stores)))
            assert await count_rows(stores[0], stores[0].backend._sql.version) == 1

    async def test_newer_schema_is_refused(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Tables migrated by a newer sriblob are refused, and the pool is closed."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            await store.pool.execute(
                f"UPDATE {store.backend._sql.version} SET version = $1",
                SCHEMA_VERSION + 1,
            )

        newer = PostgresBlobStore(postgres_dsn, schema=schema)
        with pytest.raises(StoreError, match="upgrade sriblob"):
            await newer.__aenter__()

        assert newer.pool.is_closing()


@pytest.mark.postgres
class TestStreaming:
    """Reads and writes stream; connections come back."""

    async def test_open_fetches_a_few_chunks_at_a_time(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Reading a 24 MiB blob never holds more than a few MiB of it."""
        data = blob(24 * MiB)
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=256 * 1024
        ) as store:
            integrity = await store.add(data)
            tracemalloc.start()
            try:
                async with store.open(integrity) as reader:
                    sizes = [len(chunk) async for chunk in reader]
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()

        assert sizes == [256 * 1024] * 96
        assert peak < 8 * MiB

    async def test_put_streams_into_rows(self, postgres_dsn: str, schema: str) -> None:
        """Writing a 24 MiB stream never holds more than a few MiB of it."""
        data = blob(24 * MiB)
        integrity = integrity_of(data)
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=256 * 1024
        ) as store:
            tracemalloc.start()
            try:
                await store.put(integrity, chunked(data, 100_000))
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()

            assert await store.get(integrity) == data
        assert peak < 8 * MiB

    async def test_abandoned_reader_releases_its_connection(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Leaving a reader early gives its connection back to the pool."""
        async with (
            host_pool(postgres_dsn, max_size=1) as pool,
            PostgresBlobStore(pool=pool, schema=schema, chunk_size=1000) as store,
        ):
            integrity = await store.add(blob(10_000))
            async with store.open(integrity) as reader:
                await anext(reader)

            async with asyncio.timeout(10):  # the only connection is free again
                assert await store.has(integrity)
            assert pool.get_idle_size() == pool.get_size()

    async def test_cancelled_readers_give_their_connection_back(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Readers cancelled at any point leave the pool's one connection usable."""
        async with (
            host_pool(postgres_dsn, max_size=1) as pool,
            PostgresBlobStore(pool=pool, schema=schema, chunk_size=4096) as store,
        ):
            store.backend._read_ahead = 1
            integrity = await store.add(blob(1024 * 1024))

            async def read() -> None:
                async with store.open(integrity) as reader:
                    async for _ in reader:
                        await asyncio.sleep(0)

            for step in range(12):
                task = asyncio.create_task(read())
                for _ in range(step * 7):  # cancel a little later each time
                    await asyncio.sleep(0)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                async with asyncio.timeout(10):
                    assert await store.has(integrity)

    async def test_callers_error_passes_through(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """An error raised while reading propagates unchanged and frees the reader."""
        async with (
            host_pool(postgres_dsn, max_size=1) as pool,
            PostgresBlobStore(pool=pool, schema=schema) as store,
        ):
            integrity = await store.add(b"data")
            with pytest.raises(OSError, match="disk full"):  # noqa: PT012
                async with store.open(integrity) as reader:
                    await reader.read()
                    raise OSError("disk full")

            async with asyncio.timeout(10):
                assert await store.get(integrity) == b"data"

    async def test_reader_sees_a_blob_deleted_meanwhile(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A reader keeps its snapshot: a delete mid-stream doesn't truncate it."""
        data = blob(50_000)
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=1000
        ) as store:
            store.backend._read_ahead = 1
            integrity = await store.add(data)
            async with store.open(integrity) as reader:
                first = await anext(reader)
                await store.delete(integrity)
                rest = await reader.read()

            assert first + rest == data
            assert not await store.has(integrity)

    async def test_list_pages(self, postgres_dsn: str, schema: str) -> None:
        """list() pages by key and yields every blob once, in order."""
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            store.backend._list_page_size = 3
            expected = sorted([await store.add(blob(10, seed)) for seed in range(10)])

            assert [name async for name in store.list()] == expected
            store.backend._list_page_size = 5
            await store.delete(expected[0])
            assert [name async for name in store.list()] == expected[1:]


@pytest.mark.postgres
class TestConcurrency:
    """Racing and cancelled writers leave one blob or nothing."""

    @pytest.mark.parametrize("method", ["put", "add"])
    async def test_racing_writers_on_two_pools(
        self, postgres_dsn: str, schema: str, method: str
    ) -> None:
        """Two stores writing one blob at once store it once, and neither fails."""
        data = blob(5000)
        integrity = integrity_of(data)
        gate = Gate(expected=2)
        async with (
            PostgresBlobStore(postgres_dsn, schema=schema, chunk_size=1000) as one,
            PostgresBlobStore(postgres_dsn, schema=schema, chunk_size=1000) as two,
        ):

            async def write(store: PostgresBlobStore) -> None:
                source = gate.source(data, 1000)
                if method == "put":
                    await store.put(integrity, source)
                else:
                    assert await store.add(source) == integrity

            tasks = [asyncio.create_task(write(store)) for store in (one, two)]
            await gate.all_arrived.wait()  # both are inside their transactions
            gate.open.set()
            await asyncio.gather(*tasks)

            assert await collect(one) == {integrity}
            assert await count_rows(one, one.backend._sql.chunks) == 5
            assert await two.get(integrity) == data
            assert await ids_drawn(one) == 2  # both really wrote chunk rows

    async def test_cancelled_put_leaves_nothing(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """Cancelling a put mid-stream leaves no blob and no chunk rows."""
        data = blob(10_000)
        gate = Gate(expected=1)
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=1000
        ) as store:
            task = asyncio.create_task(
                store.put(integrity_of(data), gate.source(data, 4000))
            )
            await gate.all_arrived.wait()  # the first rows are written
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            assert await ids_drawn(store) == 1  # it had begun writing
            assert await collect(store) == set()
            assert await count_rows(store, store.backend._sql.chunks) == 0
            await store.put(integrity_of(data), data)  # the store still works
            assert await store.get(integrity_of(data)) == data


@pytest.mark.postgres
class TestErrors:
    """Database failures become sriblob errors without secrets."""

    async def test_unreachable_server(self) -> None:
        """A server that can't be reached is StoreUnavailable, without the password."""
        async with PostgresBlobStore(
            f"postgresql://u:{SECRET}@127.0.0.1:1/db"
        ) as store:
            with pytest.raises(StoreUnavailable) as excinfo:
                await store.has(integrity_of(b"x"))

        assert SECRET not in str(excinfo.value)
        assert excinfo.value.endpoint == "127.0.0.1:1/db"
        assert excinfo.value.backend == "postgres"

    async def test_unknown_database(self, postgres_dsn: str) -> None:
        """A database that doesn't exist is a StoreError naming the server."""
        dsn = urllib.parse.urlsplit(postgres_dsn)._replace(path="/no_such_db")

        with pytest.raises(StoreError, match="no_such_db"):
            await PostgresBlobStore(dsn.geturl()).__aenter__()

    async def test_missing_privilege_is_access_denied(self, postgres_dsn: str) -> None:
        """A role that may not create the tables gets AccessDenied."""
        role = fresh_schema().replace("sriblob_test_", "sriblob_role_")
        admin = await asyncpg.connect(postgres_dsn)
        try:
            await admin.execute(f'CREATE ROLE "{role}" LOGIN')
            store = PostgresBlobStore(with_user(postgres_dsn, role), schema=role)
            with pytest.raises(AccessDenied, match="refused"):
                await store.__aenter__()
        finally:
            await admin.execute(f'DROP ROLE "{role}"')
            await admin.close()


@contextlib.contextmanager
def down_server(kind: str) -> Iterator[str]:
    """A DSN of a server that is down: refusing connections, or never answering."""
    if kind == "refused":
        yield f"postgresql://app:{SECRET}@127.0.0.1:1/app"
        return
    with blackhole() as port:
        yield f"postgresql://app:{SECRET}@127.0.0.1:{port}/app"


class Forwarder:
    """Forwards 127.0.0.1:*port* to *upstream* once started, until closed."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.port = port
        self.upstream = upstream
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        """Listen on the port: a server that was down is up."""
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)

    async def aclose(self) -> None:
        """Stop listening and end every forwarded connection."""
        if self.server is not None:
            self.server.close()
        for writer in self.writers:
            writer.close()
        if self.server is not None:
            await self.server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers += [writer, up_writer]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()


class TestServerDown:
    """Item 2: a down server fails each call quickly, and hides no other store."""

    @pytest.mark.parametrize("kind", ["refused", "blackholed"])
    async def test_the_store_opens_and_each_call_says_so(self, kind: str) -> None:
        """A down server doesn't stop `async with`; calls raise StoreUnavailable."""
        with down_server(kind) as dsn:
            async with asyncio.timeout(60):  # a hang fails instead of blocking
                async with PostgresBlobStore(dsn, connect_timeout=0.5) as store:
                    with pytest.raises(StoreUnavailable) as has:
                        await store.has(integrity_of(b"x"))
                    with pytest.raises(StoreUnavailable) as put:
                        await store.put(integrity_of(b"x"), b"x")

        for error in (has.value, put.value):
            assert "PostgreSQL is unavailable to connect" in str(error)
            assert SECRET not in str(error)
        if kind == "blackholed":
            assert "no answer within 0.5 s (connect_timeout)" in str(has.value)

    async def test_calls_right_after_a_timeout_fail_at_once(self) -> None:
        """After a connection timed out, the next calls don't wait again."""
        connections = 0

        writers: list[asyncio.StreamWriter] = []

        async def silent(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            nonlocal connections
            connections += 1
            writers.append(writer)
            await reader.read()  # until the client gives up

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        dsn = f"postgresql://app:{SECRET}@127.0.0.1:{port}/app"
        try:
            async with PostgresBlobStore(dsn, connect_timeout=2) as store:
                results = await asyncio.gather(
                    *(store.has(integrity_of(b"x")) for _ in range(5)),
                    return_exceptions=True,
                )
        finally:
            server.close()
            for writer in writers:
                writer.close()
            await server.wait_closed()

        assert all(isinstance(result, StoreUnavailable) for result in results)
        # One attempt when the store opened: the calls queued behind it, or
        # coming right after it, got its answer.
        assert connections == 1

    @pytest.mark.parametrize("kind", ["refused", "blackholed"])
    async def test_a_registry_reads_past_it(self, kind: str, tmp_path: Any) -> None:
        """Reads with fallback find a blob on disk; writes to the down store fail."""
        data = blob(10_000, seed=31)
        integrity = await FilesystemBlobStore(tmp_path).add(data)
        other = blob(100, seed=32)
        with down_server(kind) as dsn:
            registry = BlobStoreRegistry()
            registry.register(PostgresBlobStore(dsn, connect_timeout=0.5))
            registry.register(FilesystemBlobStore(tmp_path))
            async with asyncio.timeout(60), registry:
                assert await registry.has_with_fallback(integrity) == "filesystem"
                stat = await registry.stat_with_fallback(integrity)
                read = await registry.read_with_fallback(integrity)
                async with registry.open_with_fallback(integrity) as reader:
                    streamed = b"".join([chunk async for chunk in reader])
                with pytest.raises(StoreUnavailable):
                    await registry.active.add(other)

        assert stat is not None
        assert stat[0].size == len(data)
        assert read == (data, "filesystem")
        assert streamed == data
        assert await FilesystemBlobStore(tmp_path).has(integrity_of(other)) is False

    @pytest.mark.postgres
    async def test_connects_once_the_server_is_up(
        self, postgres_dsn: str, schema: str
    ) -> None:
        """A store opened while the server was down works once it is up."""
        parts = urllib.parse.urlsplit(postgres_dsn)
        assert parts.hostname is not None
        assert parts.port is not None
        with blackhole() as port:
            pass  # a port nothing listens on now
        dsn = parts._replace(
            netloc=parts.netloc.rpartition("@")[0]
            + "@" * ("@" in parts.netloc)
            + f"127.0.0.1:{port}"
        ).geturl()
        data = blob(5000, seed=33)
        server = Forwarder(port, (parts.hostname, parts.port))
        try:
            async with PostgresBlobStore(
                dsn, schema=schema, connect_timeout=2
            ) as store:
                with pytest.raises(StoreUnavailable):
                    await store.put(integrity_of(data), data)
                await server.start()
                store.backend._db._unreachable = (
                    None  # no need to wait out the hold-off
                )
                await store.put(integrity_of(data), data)
                assert await store.get(integrity_of(data)) == data
        finally:
            await server.aclose()


class TestPlugin:
    """The entry point reads SRIBLOB_POSTGRES_DSN."""

    def test_unset_registers_nothing(self, caplog: pytest.LogCaptureFixture) -> None:
        """Without SRIBLOB_POSTGRES_DSN the plugin registers nothing, silently."""
        registry = BlobStoreRegistry()

        register_postgres(registry, {}, logging.getLogger("test"))

        assert registry.stores() == ()
        assert caplog.records == []

    def test_valid_dsn_registers_a_store(self) -> None:
        """A valid DSN registers an unopened PostgresBlobStore with id 'postgres'."""
        registry = BlobStoreRegistry()
        env = {"SRIBLOB_POSTGRES_DSN": f"postgresql://u:{SECRET}@localhost/db"}

        register_postgres(registry, env, logging.getLogger("test"))

        [store] = registry.stores()
        assert isinstance(store, PostgresBlobStore)
        assert store.id == "postgres"

    @pytest.mark.parametrize(
        "dsn",
        [f"mysql://u:{SECRET}@localhost/db", f"postgresql://u:{SECRET}@localhost:x/db"],
    )
    def test_invalid_dsn_is_logged_not_registered(
        self, caplog: pytest.LogCaptureFixture, dsn: str
    ) -> None:
        """An invalid DSN logs an error naming the variable, never the password."""
        registry = BlobStoreRegistry()

        with caplog.at_level(logging.ERROR):
            register_postgres(
                registry, {"SRIBLOB_POSTGRES_DSN": dsn}, logging.getLogger("test")
            )

        assert registry.stores() == ()
        [record] = caplog.records
        assert record.levelno == logging.ERROR
        assert "SRIBLOB_POSTGRES_DSN" in record.getMessage()
        assert SECRET not in caplog.text

    def test_missing_asyncpg_is_logged(
        self, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without asyncpg the plugin logs how to install it and registers nothing."""
        monkeypatch.setitem(sys.modules, "asyncpg", None)
        registry = BlobStoreRegistry()
        env = {"SRIBLOB_POSTGRES_DSN": "postgresql://localhost/db"}

        with caplog.at_level(logging.ERROR):
            register_postgres(registry, env, logging.getLogger("test"))

        assert registry.stores() == ()
        assert "SRIBLOB_POSTGRES_DSN" in caplog.text
        assert "sriblob[postgres]" in caplog.text

    @pytest.mark.parametrize(
        ("env", "status"),
        [
            ({}, "not configured"),
            ({"SRIBLOB_POSTGRES_DSN": f"mysql://u:{SECRET}@h/db"}, "misconfigured"),
            ({"SRIBLOB_POSTGRES_DSN": "postgresql://localhost/db"}, "configured from"),
        ],
    )
    def test_status_for_info(self, env: dict[str, str], status: str) -> None:
        """The plugin tells `sriblob info` what it found, never the password."""
        registry = BlobStoreRegistry()

        register_postgres(registry, env, logging.getLogger("test"))

        assert status in registry.statuses["postgres"]
        assert SECRET not in registry.statuses["postgres"]

    def test_entry_point(self) -> None:
        """The sriblob.stores entry point 'postgres' is register_postgres."""
        [point] = entry_points(group="sriblob.stores", name="postgres")

        assert point.load() is register_postgres
