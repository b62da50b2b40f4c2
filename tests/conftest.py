"""Fixtures: one ``backend`` per store kind, for the shared contract suite."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from sriblob import BlobStore, Integrity, MemoryBlobStore, PostgresBlobStore

from .helpers import Backend
from .postgres_server import _postgres_dsn  # noqa: F401 -- a session fixture

#: Every backend the contract suite runs against; each needs a fixture
#: named ``<kind>_backend`` returning a :class:`Backend`.
BACKENDS = ["memory", "postgres"]


@pytest.fixture(name="memory_backend")
def _memory_backend() -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with MemoryBlobStore(**options) as store:
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, MemoryBlobStore)
        store._blobs[str(integrity)] = data

    async def leftovers(store: BlobStore) -> list[str]:
        return []

    return Backend("memory", make, corrupt, leftovers)


def fresh_schema() -> str:
    """Return a schema name no other test uses."""
    return f"sriblob_test_{uuid.uuid4().hex[:16]}"


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema and everything in it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(name="postgres_backend")
def _postgres_backend(postgres_dsn: str) -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        # Each store gets its own schema, so tests never see each other.
        schema = fresh_schema()
        try:
            async with PostgresBlobStore(
                postgres_dsn, schema=schema, **options
            ) as store:
                yield store
        finally:
            await drop_schema(postgres_dsn, schema)

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, PostgresBlobStore)
        sql = store._sql
        async with store._connections.acquire() as conn, conn.transaction():
            blob_id = await conn.fetchval(
                f"SELECT id FROM {sql.blobs} WHERE integrity = $1", str(integrity)
            )
            await conn.execute(f"DELETE FROM {sql.chunks} WHERE blob_id = $1", blob_id)
            size = store.chunk_size
            for seq, start in enumerate(range(0, len(data), size)):
                await conn.execute(
                    sql.insert_chunk, blob_id, seq, data[start : start + size]
                )

    async def leftovers(store: BlobStore) -> list[str]:
        assert isinstance(store, PostgresBlobStore)
        sql = store._sql
        orphans = await store._connections.fetch(
            f"SELECT DISTINCT c.blob_id FROM {sql.chunks} c"
            f" LEFT JOIN {sql.blobs} b ON b.id = c.blob_id WHERE b.id IS NULL"
        )
        return [f"chunk rows of blob id {row[0]}" for row in orphans]

    return Backend("postgres", make, corrupt, leftovers)


@pytest.fixture(name="backend", params=BACKENDS)
def _backend(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


@pytest.fixture(name="store")
async def _store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with backend.make() as store:
        yield store
