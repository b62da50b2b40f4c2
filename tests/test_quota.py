"""The total-size quota, in one process, on every backend.

Two store objects on one storage location stand for two replicas (the
memory store shares one object: its total is its process's); the
multi-process races are in ``tests/reliability/test_quota_races.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import (
    ConfigurationError,
    FilesystemBlobStore,
    IntegrityMismatch,
    MemoryBlobStore,
    QuotaExceeded,
    SriblobError,
    StoreError,
    Usage,
)
from sriblob._cli import main
from sriblob._environment import load_quota_levels

from .helpers import blob, chunked, integrity_of

if TYPE_CHECKING:
    from pathlib import Path

    from sriblob import BlobStore

KiB = 1024
MiB = 1024 * KiB


async def names(store: BlobStore) -> list[str]:
    """The store's blobs, listed."""
    return [str(entry) async for entry in store.list()]


class TestQuota:
    """A put that would pass the quota stores nothing; the total stays right."""

    async def test_the_total_follows_puts_and_deletes(self, pair: Any) -> None:
        """usage() is the sum of the blobs, seen by the second replica too."""
        a, b = blob(3000, seed=1), blob(5000, seed=2)
        async with pair(max_total_size=10_000) as (one, two):
            assert await one.usage() == Usage(0, 10_000, None)
            await one.put(integrity_of(a), a)
            await two.add(b)
            assert (await two.usage()).total == 8000
            await one.put(integrity_of(a), a)  # stored already: no charge
            await two.add(chunked(b, 1000))
            assert (await one.usage()).total == 8000
            await two.delete(integrity_of(a))
            await one.delete(integrity_of(a))  # gone already: no refund
            assert (await one.usage()).total == 5000
            assert (await two.usage()).total == await two.backend.stored_total()

    @pytest.mark.parametrize("how", ["put", "add", "put-stream", "add-stream"])
    async def test_a_put_past_the_quota_stores_nothing(
        self, pair: Any, how: str
    ) -> None:
        """QuotaExceeded names the levels; the blob isn't there, the total unchanged."""
        stored, extra = blob(6000, seed=3), blob(4001, seed=4)
        async with pair(max_total_size=10_000) as (one, two):
            await one.add(stored)
            data: Any = chunked(extra, 1000) if how.endswith("stream") else extra
            write = (
                two.put(integrity_of(extra), data)
                if how.startswith("put")
                else two.add(data)
            )
            with pytest.raises(QuotaExceeded) as caught:
                await write
            error = caught.value
            assert isinstance(error, SriblobError)
            assert not isinstance(error, StoreError)  # the store is fine
            assert (error.limit, error.total, error.size) == (10_000, 6000, 4001)
            assert "max_total_size" in str(error)
            assert not await one.has(integrity_of(extra))
            assert await names(one) == [integrity_of(stored)]
            assert (await two.usage()).total == 6000
            # Exactly up to the quota is allowed.
            fits = blob(4000, seed=5)
            await two.add(fits)
            assert (await one.usage()).total == 10_000

    async def test_a_stored_blob_is_reused_even_at_the_quota(self, pair: Any) -> None:
        """A put of a blob already there costs nothing, so a full store takes it."""
        data = blob(10_000, seed=6)
        async with pair(max_total_size=10_000) as (one, two):
            await one.add(data)
            assert await two.add(data) == integrity_of(data)
            await two.put(integrity_of(data), chunked(data, 999))
            assert (await one.usage()).total == 10_000

    async def test_crossing_the_warning_level_warns_once(
        self, pair: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """One WARNING per crossing upwards, not one per put above it."""
        caplog.set_level(logging.WARNING, logger="sriblob")
        blobs = [blob(1000, seed=10 + n) for n in range(5)]
        async with pair(warn_total_size=2500) as (one, _):
            for data in blobs[:2]:
                await one.add(data)
            assert not [r for r in caplog.records if "warning level" in r.message]
            for data in blobs[2:]:
                await one.add(data)  # 3000, 4000, 5000: one warning
            warnings = [r for r in caplog.records if "warning level" in r.message]
            assert len(warnings) == 1
            assert "3000 bytes" in warnings[0].message
            assert "2500 bytes" in warnings[0].message
            assert (await one.usage()).over_warning
            for data in blobs[:3]:
                await one.delete(integrity_of(data))  # down to 2000
            await one.add(blobs[0])  # 3000 again: a new crossing
            warnings = [r for r in caplog.records if "warning level" in r.message]
            assert len(warnings) == 2

    async def test_a_repaired_copy_is_counted_once(self, backend: Any) -> None:
        """A re-put replacing a copy seen corrupt keeps the total (same size)."""
        data = blob(4000, seed=20)
        integrity = integrity_of(data)
        flipped = bytes([data[0] ^ 1]) + data[1:]
        async with backend.make(max_total_size=6000) as store:
            await store.put(integrity, data)
            await backend.corrupt(store, integrity, flipped)
            with pytest.raises(IntegrityMismatch):
                await store.get(integrity)
            # 4000 more bytes would not fit; replacing 4000 with 4000 does.
            await store.put(integrity, data)
            assert await store.get(integrity) == data
            assert (await store.usage()).total == 4000

    async def test_without_levels_usage_counts(self, backend: Any) -> None:
        """usage() works on a store without a quota (a count, or the kept total)."""
        data = blob(1234, seed=30)
        async with backend.make() as store:
            await store.add(data)
            assert await store.usage() == Usage(1234, None, None)
            assert store.max_total_size is None
            assert store.warn_total_size is None

    async def test_a_failed_large_put_leaves_no_upload(self, backend: Any) -> None:
        """A multipart-sized stream refused at the end leaves no part behind."""
        stored, large = blob(4 * MiB, seed=40), blob(16 * MiB, seed=41)
        async with backend.make(max_total_size=12 * MiB) as store:
            await store.add(stored)
            for data in (chunked(large, MiB), large):
                with pytest.raises(QuotaExceeded):
                    await store.put(integrity_of(large), data)
                with pytest.raises(QuotaExceeded):
                    await store.add(chunked(large, MiB))
            assert await backend.leftovers(store) == []
            assert await names(store) == [integrity_of(stored)]
            assert (await store.usage()).total == 4 * MiB


class TestLevels:
    """Levels that make no sense are refused when the store is built."""

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"max_total_size": -1}, "max_total_size must be"),
            ({"warn_total_size": 1.5}, "warn_total_size must be"),
            ({"max_total_size": True}, "max_total_size must be"),
            ({"max_total_size": 10, "warn_total_size": 11}, "above max_total_size"),
        ],
    )
    def test_bad_levels(self, options: dict[str, Any], message: str) -> None:
        """Negative, non-int, or a warning above the quota: ValueError."""
        with pytest.raises(ValueError, match=message):
            MemoryBlobStore(**options)

    def test_levels_are_shown(self) -> None:
        """The store says its levels."""
        store = MemoryBlobStore(max_total_size=10, warn_total_size=5)
        assert (store.max_total_size, store.warn_total_size) == (10, 5)


class TestFilesystemTotal:
    """The filesystem keeps its total in root/.usage, recounted when lost."""

    async def test_a_lost_or_torn_total_is_recounted(self, tmp_path: Path) -> None:
        """A torn or deleted .usage is counted again from the blobs."""
        data = [blob(700, seed=50 + n) for n in range(3)]
        async with FilesystemBlobStore(tmp_path, max_total_size=5000) as store:
            for item in data:
                await store.add(item)
            usage_file = tmp_path / ".usage"
            assert usage_file.read_text() == '{"total": 2100}'
            usage_file.write_text('{"tot')  # a crash mid-write
            assert (await store.usage()).total == 2100
            usage_file.unlink()
            await store.delete(integrity_of(data[0]))
            assert (await store.usage()).total == 1400
            assert usage_file.read_text() == '{"total": 1400}'

    async def test_a_symlinked_total_is_refused(self, tmp_path: Path) -> None:
        """root/.usage as a symlink is never followed or written through."""
        target = tmp_path / "elsewhere"
        target.write_text('{"total": 0}')
        root = tmp_path / "store"
        root.mkdir()
        (root / ".usage").symlink_to(target)
        async with FilesystemBlobStore(root, max_total_size=5000) as store:
            with pytest.raises(StoreError):
                await store.add(b"refused")
        assert target.read_text() == '{"total": 0}'

    async def test_puts_racing_in_one_process_never_pass_it(
        self, tmp_path: Path
    ) -> None:
        """Twenty concurrent puts of 1000 bytes under a 10000-byte quota: ten land."""
        blobs = [blob(1000, seed=60 + n) for n in range(20)]
        async with (
            FilesystemBlobStore(tmp_path, max_total_size=10_000) as one,
            FilesystemBlobStore(tmp_path, max_total_size=10_000) as two,
        ):
            results = await asyncio.gather(
                *((one if n % 2 else two).add(data) for n, data in enumerate(blobs)),
                return_exceptions=True,
            )
            refused = [r for r in results if isinstance(r, QuotaExceeded)]
            assert len(refused) == 10
            assert (
                (await one.usage()).total == 10_000 == await one.backend.stored_total()
            )


class TestEnvironment:
    """SRIBLOB_MAX_TOTAL_SIZE and SRIBLOB_WARN_TOTAL_SIZE, for the default registry."""

    @pytest.mark.parametrize(
        ("env", "levels"),
        [
            ({}, {}),
            ({"SRIBLOB_MAX_TOTAL_SIZE": " "}, {}),
            ({"SRIBLOB_MAX_TOTAL_SIZE": "300MB"}, {"max_total_size": 300_000_000}),
            (
                {
                    "SRIBLOB_MAX_TOTAL_SIZE": "1 GiB",
                    "SRIBLOB_WARN_TOTAL_SIZE": "512mib",
                },
                {"max_total_size": 2**30, "warn_total_size": 2**29},
            ),
            (
                {"SRIBLOB_WARN_TOTAL_SIZE": "150000000"},
                {"warn_total_size": 150_000_000},
            ),
        ],
    )
    def test_levels_are_read(self, env: dict[str, str], levels: dict[str, int]) -> None:
        """Byte counts, with decimal or binary units."""
        assert load_quota_levels(env) == levels

    @pytest.mark.parametrize(
        "env",
        [
            {"SRIBLOB_MAX_TOTAL_SIZE": "lots"},
            {"SRIBLOB_MAX_TOTAL_SIZE": "-5"},
            {"SRIBLOB_WARN_TOTAL_SIZE": "3 parsecs"},
            {"SRIBLOB_MAX_TOTAL_SIZE": "1MB", "SRIBLOB_WARN_TOTAL_SIZE": "2MB"},
        ],
    )
    def test_bad_levels_are_a_configuration_error(self, env: dict[str, str]) -> None:
        """The message names the variable, never the value."""
        with pytest.raises(ConfigurationError) as caught:
            load_quota_levels(env)
        assert "SRIBLOB_" in str(caught.value)
        for value in env.values():
            assert value not in str(caught.value)

    def test_the_cli_refuses_past_the_quota_and_shows_usage(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Put past the quota exits 1 storing nothing; info shows the levels."""
        monkeypatch.setenv("SRIBLOB_MAX_TOTAL_SIZE", "8kB")
        monkeypatch.setenv("SRIBLOB_WARN_TOTAL_SIZE", "4kB")
        first, second = tmp_path / "first", tmp_path / "second"
        first.write_bytes(blob(5000, seed=70))
        second.write_bytes(blob(5000, seed=71))
        assert main(["put", str(first)]) == 0
        assert main(["put", str(second)]) == 1
        err = capsys.readouterr().err
        assert "quota of 8000 bytes" in err
        assert (
            not FilesystemBlobStore(root)
            .path_of(integrity_of(blob(5000, seed=71)))
            .exists()
        )
        assert main(["info"]) == 0
        out = capsys.readouterr().out
        assert (
            "usage filesystem: 5 kB, 62.5% of max_total_size 8 kB; "
            "warn_total_size 4 kB (reached)"
        ) in out

    def test_the_cli_refuses_writes_with_a_bad_level(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A typo in a level is a configuration error (78), not 'no quota'."""
        monkeypatch.setenv("SRIBLOB_MAX_TOTAL_SIZE", "300 MBB")
        source = tmp_path / "in"
        source.write_bytes(b"not stored")
        assert main(["put", str(source)]) == 78
        assert "SRIBLOB_MAX_TOTAL_SIZE must be a byte count" in capsys.readouterr().err
        assert not root.exists() or not list(root.rglob("sha512-*"))
