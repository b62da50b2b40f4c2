"""Fixtures: one ``backend`` per store kind, for the shared contract suite."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sriblob import BlobStore, Integrity, MemoryBlobStore

from .helpers import Backend
from .postgres_server import _postgres_backend, _postgres_dsn  # noqa: F401 -- fixtures

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


@pytest.fixture(name="backend", params=BACKENDS)
def _backend(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


@pytest.fixture(name="store")
async def _store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with backend.make() as store:
        yield store
