"""sriblob-sqlite passes sriblob's public contract suite, and plugs in."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from sriblob_sqlite import SQLiteBlobStore

import sriblob
import sriblob.testing

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path


class TestSQLiteBlobStore(sriblob.testing.BlobStoreContract):
    """Every test of the contract, against a database in a temp directory."""

    @pytest.fixture
    def backend(self, tmp_path: Path) -> sriblob.testing.Backend:
        """How the suite builds and corrupts a SQLite store."""
        path = tmp_path / "blobs.sqlite"

        @contextlib.asynccontextmanager
        async def make(**options: Any) -> AsyncIterator[sriblob.BlobStore]:
            async with SQLiteBlobStore(path, **options) as store:
                yield store

        async def corrupt(
            store: sriblob.BlobStore, integrity: sriblob.Integrity, data: bytes
        ) -> None:
            with contextlib.closing(sqlite3.connect(path)) as db, db:
                db.execute(
                    "UPDATE blobs SET data = ? WHERE integrity = ?",
                    (data, str(integrity)),
                )

        return sriblob.testing.Backend("sqlite", make, corrupt)


def test_the_entry_point_registers_it(tmp_path: Path) -> None:
    """With SRIBLOB_SQLITE_PATH set, the default registry holds a sqlite store."""
    env = {"SRIBLOB_SQLITE_PATH": str(tmp_path / "blobs.sqlite")}

    registry = sriblob.default_registry(env, root=tmp_path / "fs")

    assert isinstance(registry.get("sqlite"), SQLiteBlobStore)
    assert registry.statuses["sqlite"].startswith("database ")


@pytest.mark.asyncio
async def test_it_reads_through_the_registry(tmp_path: Path) -> None:
    """Blobs in the sqlite store are found by the registry's reads with fallback."""
    env = {"SRIBLOB_SQLITE_PATH": str(tmp_path / "blobs.sqlite")}
    async with sriblob.default_registry(env, root=tmp_path / "fs") as registry:
        integrity = await registry.get("sqlite").add(b"stored in SQLite")

        assert await registry.read_with_fallback(integrity) == (
            b"stored in SQLite",
            "sqlite",
        )
