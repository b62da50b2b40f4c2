"""The original system's PostgreSQL table as a store: read it, migrate off it.

The table is made with the original system's DDL and filled as that system
fills it (each blob's bytes base64-encoded, its integrity as given), on a
real PostgreSQL server; the targets are real files and moto's S3 server.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from sriblob import (
    BlobBody,
    BlobStore,
    FilesystemBlobStore,
    Integrity,
    IntegrityMismatch,
    PostgresBlobStore,
    PostgresStoreConfig,
    S3BlobStore,
    StoreBusy,
    StoreError,
    default_registry,
    migrate,
)
from sriblob._cli import main
from sriblob._memory import MemoryBackend

from .helpers import blob, integrity_of
from .postgres_server import drop_schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

pytestmark = pytest.mark.postgres

SCHEMA = '"plugin_script-packages-store-postgres"'
TABLE = f"{SCHEMA}.script_package_blob_data"
#: The original system's DDL, as it ships.
DDL = f"""
CREATE SCHEMA {SCHEMA};
CREATE TABLE {TABLE} (
    integrity text primary key,
    data text not null,
    size_bytes bigint not null,
    created_at timestamp not null default now()
);
"""
ROWS = 200


def original_row(data: bytes) -> tuple[str, str, int]:
    """A row as the original store writes it: integrity, base64, size."""
    return integrity_of(data), base64.b64encode(data).decode(), len(data)


@pytest.fixture(name="original")
async def _original(postgres_dsn: str) -> AsyncIterator[dict[str, bytes]]:
    """The original table with 200 blobs (sizes 0 B to ~300 kB); dropped after."""
    blobs = {}
    for n in range(ROWS):
        data = blob((n * 1531) % 300_001, seed=900 + n)
        blobs[integrity_of(data)] = data
    conn = await asyncpg.connect(postgres_dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.execute(DDL)
        await conn.executemany(
            f"INSERT INTO {TABLE} (integrity, data, size_bytes) VALUES ($1, $2, $3)",
            [original_row(data) for data in blobs.values()],
        )
        yield blobs
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await conn.close()


async def insert(dsn: str, integrity: str, text: str, size: int) -> None:
    """Insert one row directly, as a damaged or repacked one would be."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            f"INSERT INTO {TABLE} (integrity, data, size_bytes) VALUES ($1, $2, $3)",
            integrity,
            text,
            size,
        )
    finally:
        await conn.close()


class TestReading:
    """Every store call works on the original table, verified."""

    async def test_reads_lists_and_stats(
        self, postgres_dsn: str, original: dict[str, bytes]
    ) -> None:
        """get/open/stat/has/list see the 200 rows; bytes verify."""
        async with PostgresBlobStore(postgres_dsn, layout="checkstack") as store:
            assert type(store).__name__ == "CheckstackLayout"
            assert isinstance(store, PostgresBlobStore)
            assert "layout='checkstack'" in repr(store)
            names = [str(name) async for name in store.list()]
            assert sorted(names) == sorted(original)
            for integrity, data in list(original.items())[:20]:
                assert await store.get(integrity) == data
                info = await store.stat(integrity)
                assert info is not None
                assert info.size == len(data)
                assert info.stored_at is not None
                assert await store.has(integrity)
            integrity, data = max(original.items(), key=lambda item: len(item[1]))
            async with store.open(integrity, start=10, end=70_000) as reader:
                assert b"".join([chunk async for chunk in reader]) == data[10:70_000]

    async def test_writes_as_the_original_does(
        self, postgres_dsn: str, original: dict[str, bytes]
    ) -> None:
        """A put adds a row of base64 the original system can read back."""
        data = blob(5000, seed=1)
        async with PostgresBlobStore(postgres_dsn, layout="checkstack") as store:
            integrity = await store.add(data)
            await store.put(integrity, data)  # stored: kept
            conn = await asyncpg.connect(postgres_dsn)
            try:
                row = await conn.fetchrow(
                    f"SELECT data, size_bytes FROM {TABLE} WHERE integrity = $1",
                    integrity,
                )
            finally:
                await conn.close()
            assert row is not None
            assert row["data"] == base64.b64encode(data).decode()
            assert row["size_bytes"] == len(data)
            assert await store.delete(integrity)
            assert not await store.has(integrity)
            assert (await store.usage()).total == sum(map(len, original.values()))

    async def test_damaged_rows_are_errors_naming_them(
        self, postgres_dsn: str, original: dict[str, bytes]
    ) -> None:
        """Bad base64, a wrong size_bytes, bytes of another blob: each refused."""
        bad_text = integrity_of(b"bad base64")
        short = integrity_of(b"short")
        other = integrity_of(b"named for other bytes")
        await insert(postgres_dsn, bad_text, "not*base64!", 10)
        await insert(postgres_dsn, short, base64.b64encode(b"short").decode(), 99)
        await insert(postgres_dsn, other, base64.b64encode(b"repacked").decode(), 8)
        async with PostgresBlobStore(postgres_dsn, layout="checkstack") as store:
            with pytest.raises(StoreError, match="not valid base64") as caught:
                await store.get(bad_text)
            assert bad_text in str(caught.value)
            with pytest.raises(StoreError, match="decodes to 5 bytes"):
                await store.get(short)
            with pytest.raises(IntegrityMismatch):
                await store.get(other)
        async with PostgresBlobStore(
            postgres_dsn, layout="checkstack", verify=False
        ) as store:
            assert await store.get(other) == b"repacked"

    async def test_a_missing_table_is_a_clear_error(self, postgres_dsn: str) -> None:
        """Opening a database without the table fails, and creates nothing."""
        with pytest.raises(StoreError, match="no table") as caught:
            async with PostgresBlobStore(postgres_dsn, layout="checkstack"):
                pass
        assert "never creates it" in str(caught.value)
        conn = await asyncpg.connect(postgres_dsn)
        try:
            assert await conn.fetchval("SELECT to_regclass($1) IS NULL", TABLE), (
                "the table was created"
            )
        finally:
            await conn.close()

    async def test_the_lease_is_held_across_stores(
        self, postgres_dsn: str, original: dict[str, bytes]
    ) -> None:
        """A second taker is told the store is busy (its holder is unknown)."""
        async with (
            PostgresBlobStore(postgres_dsn, layout="checkstack") as one,
            PostgresBlobStore(postgres_dsn, layout="checkstack") as two,
            one.lease("migrate"),
        ):
            with pytest.raises(StoreBusy):
                async with two.lease("migrate"):
                    pass

    def test_a_bad_layout_is_a_configuration_error(self) -> None:
        """Only the two layouts exist."""
        with pytest.raises(ValueError, match="layout must be"):
            PostgresStoreConfig(dsn="postgresql://h/db", layout="typescript")


class TestMigratingOff:
    """migrate() moves every good row; a bad row is one failure, the rest go on."""

    @pytest.mark.parametrize(
        "target_kind", ["filesystem", pytest.param("s3", marks=pytest.mark.s3)]
    )
    async def test_every_blob_moves_verified(
        self,
        postgres_dsn: str,
        original: dict[str, bytes],
        tmp_path: Path,
        request: pytest.FixtureRequest,
        target_kind: str,
    ) -> None:
        """200 rows and one corrupt: 200 copied and verified, the corrupt one named."""
        corrupt = integrity_of(b"corrupt base64 row")
        await insert(postgres_dsn, corrupt, "%%%%", 18)
        target: Any
        if target_kind == "filesystem":
            target = FilesystemBlobStore(tmp_path / "target")
        else:
            target = S3BlobStore(request.getfixturevalue("s3_config"))
        async with (
            PostgresBlobStore(postgres_dsn, layout="checkstack") as source,
            target,
        ):
            report = await migrate(source, target, delete_source=True)
            assert report.copied == ROWS
            assert report.deleted == ROWS
            assert [failure.integrity for failure in report.failed] == [corrupt]
            assert "not valid base64" in report.failed[0].reason
            for integrity, data in original.items():
                assert await target.get(integrity) == data
            # Only the corrupt row is left in the original table.
            assert [str(name) async for name in source.list()] == [corrupt]

    async def test_repacked_archives_move_unverified_compared_by_digest(
        self, postgres_dsn: str, original: dict[str, bytes], tmp_path: Path
    ) -> None:
        """verify=False on both sides: repacked rows move, each copy read back."""
        repacked = integrity_of(b"the upstream tarball")
        await insert(
            postgres_dsn, repacked, base64.b64encode(b"a repacked archive").decode(), 18
        )
        async with PostgresBlobStore(postgres_dsn, layout="checkstack") as verified:
            failed = await migrate(verified, FilesystemBlobStore(tmp_path / "checked"))
            assert [failure.integrity for failure in failed.failed] == [repacked]
        async with (
            PostgresBlobStore(
                postgres_dsn, layout="checkstack", verify=False
            ) as source,
            FilesystemBlobStore(tmp_path / "target", verify=False) as target,
        ):
            report = await migrate(source, target, delete_source=True)
            assert report.ok, report.failed
            assert report.deleted == ROWS + 1
            assert await target.get(repacked) == b"a repacked archive"

    def test_the_cli_moves_off_the_original_table(
        self,
        postgres_dsn: str,
        original: dict[str, bytes],
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Sriblob migrate --from-postgres-layout checkstack --to filesystem."""
        monkeypatch.setenv("SRIBLOB_POSTGRES_DSN", postgres_dsn)
        monkeypatch.setenv("SRIBLOB_POSTGRES_SCHEMA", "sriblob_cli_target")
        code = main(
            [
                "migrate",
                "--from-postgres-layout",
                "checkstack",
                "--to",
                "filesystem",
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"migrate postgres-checkstack -> filesystem: copied {ROWS}" in out
        store = FilesystemBlobStore(root)
        for integrity in list(original)[:10]:
            assert store.path_of(integrity).read_bytes() == original[integrity]
        asyncio.run(drop_schema(postgres_dsn, "sriblob_cli_target"))

    def test_the_environment_selects_the_layout(self, postgres_dsn: str) -> None:
        """SRIBLOB_POSTGRES_LAYOUT=checkstack: the registry's store reads it."""
        registry = default_registry(
            {
                "SRIBLOB_POSTGRES_DSN": postgres_dsn,
                "SRIBLOB_POSTGRES_LAYOUT": "checkstack",
            }
        )
        store = registry.get("postgres")
        assert type(store).__name__ == "CheckstackLayout"
        bad = default_registry(
            {"SRIBLOB_POSTGRES_DSN": postgres_dsn, "SRIBLOB_POSTGRES_LAYOUT": "old"}
        )
        assert "postgres" in bad.problems


class _Flipping(MemoryBackend):
    """A backend whose reads flip the first byte: it keeps other bytes than it took."""

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        async with super().read_blob(integrity) as body:

            async def flipped() -> AsyncIterator[bytes]:
                first = True
                async for chunk in body.chunks:
                    if first and chunk:
                        first = False
                        yield bytes([chunk[0] ^ 1]) + bytes(chunk[1:])
                    else:
                        yield chunk

            yield BlobBody(flipped(), body.size)


async def test_an_unverified_copy_is_read_back_before_it_counts(
    postgres_dsn: str, original: dict[str, bytes]
) -> None:
    """Without deleting: a copy that reads back other bytes is a failure."""
    async with (
        PostgresBlobStore(postgres_dsn, layout="checkstack", verify=False) as source,
        BlobStore(_Flipping(), verify=False) as target,
    ):
        report = await migrate(source, target)
    nonempty = [name for name, data in original.items() if data]
    assert report.copied == len(original) - len(nonempty)
    assert sorted(failure.integrity for failure in report.failed) == sorted(nonempty)
    assert all("not copied" in failure.reason for failure in report.failed)
