"""Fixtures: one ``backend`` per store kind, for the shared contract suite."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import BlobStore, FilesystemBlobStore, Integrity, MemoryBlobStore

from .helpers import Backend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

#: Every backend the contract suite runs against; each needs a fixture
#: named ``<kind>_backend`` returning a :class:`Backend`.
BACKENDS = ["memory", "filesystem"]


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


@pytest.fixture(name="filesystem_backend")
def _filesystem_backend(tmp_path: Path) -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with FilesystemBlobStore(tmp_path / "store", **options) as store:
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, FilesystemBlobStore)
        store.path_of(integrity).write_bytes(data)

    async def leftovers(store: BlobStore) -> list[str]:
        assert isinstance(store, FilesystemBlobStore)
        return sorted(str(path) for path in store.root.rglob(".tmp-*"))

    return Backend("filesystem", make, corrupt, leftovers)


@pytest.fixture(name="backend", params=BACKENDS)
def _backend(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


@pytest.fixture(name="store")
async def _store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with backend.make() as store:
        yield store
