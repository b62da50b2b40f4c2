"""The read-through cache, in one process: fills, bounds, single flight, repair.

The front is a real filesystem store; the backs are the memory store, a
filesystem store and S3 on moto's server. Reads at the back are counted by
wrapping the back object's own ``get`` and ``open`` (the store still does
the work). Faults of the front (a full or read-only disk) and several
processes sharing one front are in ``tests/reliability/test_cache_faults.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import (
    BlobNotFound,
    CachedBlobStore,
    ConfigurationError,
    FilesystemBlobStore,
    IntegrityMismatch,
    MemoryBlobStore,
    S3BlobStore,
    StoreError,
    default_registry,
    verify,
)
from sriblob._cli import main
from sriblob._environment import load_cache_settings

from .helpers import blob, chunked, integrity_of
from .postgres_server import drop_schema

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob import BlobStore

KiB = 1024
MiB = 1024 * KiB


class Counted:
    """Counts the reads that reach a store, by wrapping its backend's read hooks.

    The cache reads its back's backend (a whole read, a stream or a range);
    the store still does the work.
    """

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.gets = 0
        self.opens = 0
        backend: Any = store.backend
        get, open_, ranged = (
            backend.read_blob_bytes,
            backend.read_blob,
            backend.read_blob_range,
        )

        async def counted_get(*args: Any, **kwargs: Any) -> Any:
            self.gets += 1
            return await get(*args, **kwargs)

        def counted_open(*args: Any, **kwargs: Any) -> Any:
            self.opens += 1
            return open_(*args, **kwargs)

        def counted_range(integrity: Any, start: int, end: int | None) -> Any:
            # A whole read the backend serves through its range hook is
            # counted once, by read_blob.
            if (start, end) != (0, None):
                self.opens += 1
            return ranged(integrity, start, end)

        backend.read_blob_bytes = counted_get
        backend.read_blob = counted_open
        backend.read_blob_range = counted_range

    @property
    def reads(self) -> int:
        """How many reads reached the store."""
        return self.gets + self.opens


@pytest.fixture(
    name="back",
    params=["memory", "filesystem", pytest.param("s3", marks=pytest.mark.s3)],
)
def _back(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "memory":
        return MemoryBlobStore(id="back")
    if request.param == "filesystem":
        return FilesystemBlobStore(tmp_path / "back", id="back")
    return S3BlobStore(request.getfixturevalue("s3_config"), id="back")


@contextlib.asynccontextmanager
async def cached(
    back: BlobStore, tmp_path: Path, max_bytes: int = 64 * MiB
) -> AsyncIterator[tuple[CachedBlobStore, Counted]]:
    """A cache over *back* (opened by the cache), and the back's read counter."""
    front = FilesystemBlobStore(tmp_path / "front", id="front")
    async with CachedBlobStore(front, back, max_bytes=max_bytes) as store:
        yield store, Counted(back)


async def read_open(store: BlobStore, integrity: str) -> bytes:
    """The blob's bytes through open()."""
    async with store.open(integrity) as reader:
        return b"".join([chunk async for chunk in reader])


class TestReadThrough:
    """A miss reads the back once and fills the front; hits never reach it."""

    @pytest.mark.parametrize("how", ["get", "open"])
    async def test_the_front_is_filled_once(
        self, back: BlobStore, tmp_path: Path, how: str
    ) -> None:
        """Five reads: one from the back, four from the front."""
        data = blob(300 * KiB, seed=1)
        integrity = integrity_of(data)
        async with cached(back, tmp_path) as (store, counted):
            await back.put(integrity, data)
            read = store.get if how == "get" else lambda i: read_open(store, i)
            for _ in range(5):
                assert await read(integrity) == data
            assert counted.reads == 1
            assert await store.front.has(integrity)
            stats = await store.stats()
            assert (stats.misses, stats.hits, stats.fills) == (1, 4, 1)
            assert stats.bytes == len(data)

    @pytest.mark.parametrize("how", ["get", "open"])
    async def test_fifty_concurrent_readers_fetch_once(
        self, back: BlobStore, tmp_path: Path, how: str
    ) -> None:
        """Fifty readers of one missing blob at once: one read at the back."""
        data = blob(2 * MiB, seed=2)
        integrity = integrity_of(data)
        async with cached(back, tmp_path) as (store, counted):
            await back.put(integrity, data)
            read = store.get if how == "get" else lambda i: read_open(store, i)
            results = await asyncio.gather(*(read(integrity) for _ in range(50)))
            assert all(result == data for result in results)
            assert counted.reads == 1

    async def test_many_concurrent_misses_are_all_cached(self, tmp_path: Path) -> None:
        """200 different blobs read at once: each is cached, none left out.

        Fills in one process share the cross-process lock files, so two
        blobs on the same lock file don't keep each other out.
        """
        blobs = [blob(2000, seed=300 + n) for n in range(200)]
        back = MemoryBlobStore()
        for data in blobs:
            await back.put(integrity_of(data), data)
        async with cached(back, tmp_path) as (store, _):
            results = await asyncio.gather(
                *(store.get(integrity_of(data)) for data in blobs)
            )
            assert results == blobs
            for data in blobs:
                assert await store.front.has(integrity_of(data))
            assert (await store.stats()).fills == 200

    async def test_a_blob_larger_than_the_cap_streams_through(
        self, back: BlobStore, tmp_path: Path
    ) -> None:
        """A blob over max_bytes is served, never cached."""
        data = blob(3 * MiB, seed=3)
        integrity = integrity_of(data)
        async with cached(back, tmp_path, max_bytes=MiB) as (store, counted):
            await back.put(integrity, data)
            assert await read_open(store, integrity) == data
            assert await store.get(integrity) == data
            assert not await store.front.has(integrity)
            assert counted.reads == 2

    async def test_a_range_of_a_missing_blob_is_read_from_the_back(
        self, back: BlobStore, tmp_path: Path
    ) -> None:
        """Ranges come from the back when missing, from the front once cached."""
        data = blob(100 * KiB, seed=4)
        integrity = integrity_of(data)
        async with cached(back, tmp_path) as (store, _):
            await back.put(integrity, data)
            async with store.open(integrity, start=10, end=2000) as reader:
                assert b"".join([c async for c in reader]) == data[10:2000]
            assert not await store.front.has(integrity)
            await store.get(integrity)
            async with store.open(integrity, start=5, end=50) as reader:
                assert b"".join([c async for c in reader]) == data[5:50]

    async def test_missing_everywhere(self, back: BlobStore, tmp_path: Path) -> None:
        """A blob neither store holds is absent, as from any store."""
        integrity = integrity_of(b"nowhere")
        async with cached(back, tmp_path) as (store, _):
            assert await store.get(integrity) is None
            assert not await store.has(integrity)
            assert await store.stat(integrity) is None
            with pytest.raises(BlobNotFound):
                await read_open(store, integrity)


class TestBound:
    """The front never holds more than max_bytes; recency decides what goes."""

    async def test_a_fill_another_cache_outdated_still_lands(
        self, tmp_path: Path
    ) -> None:
        """Two caches on one front: one fills it up behind the other's back.

        The other's idea of the front's total is then too low; its next
        fill is refused by the commit, evicts with the real total and lands.
        """
        back = MemoryBlobStore()
        blobs = [blob(100 * KiB, seed=30 + n) for n in range(4)]
        names = [await back.add(data) for data in blobs]
        front = tmp_path / "front"
        async with (
            CachedBlobStore(
                FilesystemBlobStore(front), back, max_bytes=300 * KiB
            ) as one,
            CachedBlobStore(
                FilesystemBlobStore(front), back, max_bytes=300 * KiB
            ) as two,
        ):
            assert await two.get(names[0]) == blobs[0]
            assert await one.get(names[1]) == blobs[1]
            assert await one.get(names[2]) == blobs[2]  # the front is full
            assert await two.get(names[3]) == blobs[3]

            assert await two.front.has(names[3])
            assert (await two.stats()).fills == 2
            assert sum(path.stat().st_size for path in _front_files(two)) <= 300 * KiB

    async def test_a_mixed_workload_stays_under_the_cap(self, tmp_path: Path) -> None:
        """1,000 reads over 300 blobs, the cap a third of their total."""
        rng = random.Random(7)
        blobs = [blob(rng.randrange(1, 40 * KiB), seed=100 + n) for n in range(300)]
        total = sum(map(len, blobs))
        back = FilesystemBlobStore(tmp_path / "back")
        async with cached(back, tmp_path, max_bytes=total // 3) as (store, _):
            for data in blobs:
                await back.put(integrity_of(data), data)
            hot = blobs[:20]
            for n in range(1000):
                data = rng.choice(hot) if n % 3 else rng.choice(blobs)
                reader = store.get if n % 2 else (lambda i: read_open(store, i))
                assert await reader(integrity_of(data)) == data
                if n % 50 == 0:
                    held = sum(path.stat().st_size for path in _front_files(store))
                    assert held <= total // 3
            held = sum(path.stat().st_size for path in _front_files(store))
            stats = await store.stats()
            assert held == stats.bytes <= total // 3
            assert stats.evictions > 0
            assert stats.hits > 300  # the hot blobs stayed
            report = await verify(store.front)
            assert report.ok

    async def test_recency_decides_what_is_evicted(self, tmp_path: Path) -> None:
        """The blob read last survives an eviction; the one read first goes."""
        blobs = [blob(10 * KiB, seed=200 + n) for n in range(3)]
        back = MemoryBlobStore()
        async with cached(back, tmp_path, max_bytes=25 * KiB) as (store, _):
            for data in blobs:
                await back.put(integrity_of(data), data)
            await store.get(integrity_of(blobs[0]))
            await asyncio.sleep(0.01)
            await store.get(integrity_of(blobs[1]))
            await asyncio.sleep(0.01)
            await store.get(integrity_of(blobs[0]))  # now the most recent
            await asyncio.sleep(0.01)
            await store.get(integrity_of(blobs[2]))  # evicts blobs[1]
            assert await store.front.has(integrity_of(blobs[0]))
            assert not await store.front.has(integrity_of(blobs[1]))
            assert await store.front.has(integrity_of(blobs[2]))


def _front_files(store: CachedBlobStore) -> list[Path]:
    """Every blob file in the cache's front (temp files aside)."""
    blobs = store.front.root / "blobs"
    return [
        path
        for path in blobs.rglob("*")
        if path.is_file() and not path.name.startswith(".tmp-")
    ]


class TestRepair:
    """A corrupt front copy is dropped and read from the back, silently."""

    @pytest.mark.parametrize("size", [100 * KiB, 17 * MiB])
    @pytest.mark.parametrize("how", ["get", "open"])
    async def test_a_flipped_byte_is_repaired(
        self,
        back: BlobStore,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        size: int,
        how: str,
    ) -> None:
        """One flipped byte in the front: served right from the back, and refilled."""
        data = blob(size, seed=5)
        integrity = integrity_of(data)
        async with cached(back, tmp_path) as (store, counted):
            await back.put(integrity, data)
            assert await store.get(integrity) == data
            path = store.front.path_of(integrity)
            damaged = bytearray(path.read_bytes())
            damaged[size // 2] ^= 1
            path.chmod(0o644)
            path.write_bytes(damaged)
            read = store.get if how == "get" else lambda i: read_open(store, i)
            with caplog.at_level(logging.WARNING, logger="sriblob"):
                assert await read(integrity) == data
            assert "corrupt" in caplog.text
            assert counted.reads == 2
            assert (await store.stats()).repairs == 1
            assert store.front.path_of(integrity).read_bytes() == data  # refilled


class TestDurability:
    """The filesystem store syncs what it stores; a front syncs nothing.

    A front copy is verified before this process uses it, so one torn by a
    power loss is caught and read again from the back: a fill needn't wait
    for the disk. A link out of the front syncs what it places.
    """

    async def test_a_store_syncs_its_blobs_and_a_front_fill_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stored blob syncs its file, directories and rename; a fill, none."""
        synced: list[str] = []
        real_fsync = os.fsync

        def spy(fd: int) -> None:
            synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", spy)
        data = blob(10 * KiB, seed=16)
        async with FilesystemBlobStore(tmp_path / "store", max_total_size=MiB) as plain:
            await plain.add(data)
        assert "file" in synced
        assert synced.count("dir") >= 3  # blobs/xx, blobs/xx/yy, the rename
        synced.clear()

        back = MemoryBlobStore()
        integrity = await back.add(data)
        small = await back.add(blob(3 * KiB, seed=17))
        large = await back.add(blob(3 * MiB, seed=18))
        async with cached(back, tmp_path) as (store, _):
            assert await store.get(integrity) == data
            await read_open(store, large)  # a streamed fill
            await store.get(small)
            assert await store.front.has(integrity)
            assert await store.front.has(large)
            assert synced == []
            # A link out of the front syncs the file it placed.
            await store.link_to(integrity, tmp_path / "placed.tgz")
            assert synced.count("file") == 1
            assert (tmp_path / "placed.tgz").read_bytes() == data

    @pytest.mark.parametrize("tear", ["zeros", "short", "empty"])
    async def test_a_copy_torn_by_a_power_loss_is_never_used(
        self, tmp_path: Path, tear: str
    ) -> None:
        """After a restart, a torn front file is caught by every kind of read.

        A power loss can leave a renamed, unsynced file with blocks that read
        as zeros, cut short, or empty. A new process (a new cache object)
        gets the right bytes from get, open, a range and link_to, and the
        torn copy is replaced.
        """
        data = blob(300 * KiB, seed=19)
        async with FilesystemBlobStore(tmp_path / "back") as back:
            integrity = await back.add(data)
        async with cached(FilesystemBlobStore(tmp_path / "back"), tmp_path) as (
            store,
            _,
        ):
            assert await store.get(integrity) == data
            copy = store.front.path_of(integrity)
        torn = {
            "zeros": bytes(len(data)),
            "short": data[: len(data) // 2],
            "empty": b"",
        }[tear]
        for read in ("get", "open", "range", "link_to"):
            copy.write_bytes(torn)
            back = FilesystemBlobStore(tmp_path / "back")
            async with cached(back, tmp_path) as (store, _):
                if read == "get":
                    assert await store.get(integrity) == data
                elif read == "open":
                    assert await read_open(store, integrity) == data
                elif read == "range":
                    async with store.open(integrity, start=1000, end=2000) as reader:
                        assert await reader.read() == data[1000:2000]
                else:
                    placed = tmp_path / f"placed-{tear}.tgz"
                    await store.link_to(integrity, placed)
                    assert placed.read_bytes() == data
                # Repaired by that read or by the next one.
                assert await store.get(integrity) == data
                assert copy.read_bytes() == data, read


class TestWrites:
    """Writes go to the back, then the front; deletes leave neither."""

    @pytest.mark.parametrize("streamed", [False, True])
    async def test_put_and_add_write_through(
        self, back: BlobStore, tmp_path: Path, streamed: bool
    ) -> None:
        """Puts and adds land in both; delete leaves neither; list is the back's."""
        one, two = blob(200 * KiB, seed=6), blob(300 * KiB, seed=7)
        async with cached(back, tmp_path) as (store, counted):
            first = await store.put(
                integrity_of(one), chunked(one, 64 * KiB) if streamed else one
            )
            second = await store.add(chunked(two, 64 * KiB) if streamed else two)
            for integrity, data in ((first, one), (second, two)):
                assert await back.get(integrity) == data
                assert store.front.path_of(integrity).read_bytes() == data
            counted.gets = counted.opens = 0
            assert await store.get(first) == one
            assert counted.reads == 0
            assert sorted([name async for name in store.list()]) == sorted(
                [first, second]
            )
            assert await store.delete(first)
            assert not await back.has(first)
            assert not await store.front.has(first)

    @pytest.mark.parametrize("size", [300 * KiB, 17 * MiB])
    async def test_a_streamed_put_of_a_held_blob_succeeds(
        self, back: BlobStore, tmp_path: Path, size: int
    ) -> None:
        """The back may stop reading a stream it already holds: nothing breaks.

        The front is then filled by the first read, not by a partial copy of
        the stream (which used to fail the put with IntegrityMismatch).
        """
        data = blob(size, seed=14)
        integrity = integrity_of(data)
        async with cached(back, tmp_path) as (store, counted):
            await back.put(integrity, data)
            assert await store.put(integrity, chunked(data, MiB)) == integrity
            assert await store.add(chunked(data, MiB)) == integrity
            counted.gets = counted.opens = 0
            assert await store.get(integrity) == data
            assert await store.get(integrity) == data
            assert counted.reads <= 1
            assert store.front.path_of(integrity).read_bytes() == data

    async def test_a_large_streamed_put_writes_through(
        self, back: BlobStore, tmp_path: Path
    ) -> None:
        """A stream past the in-memory spool (8 MiB) still lands in both stores."""
        data = blob(17 * MiB + 5, seed=15)
        async with cached(back, tmp_path) as (store, counted):
            integrity = await store.add(chunked(data, 200 * KiB))
            assert await back.get(integrity) == data
            assert store.front.path_of(integrity).read_bytes() == data
            counted.gets = counted.opens = 0
            assert await store.get(integrity) == data
            assert counted.reads == 0

    async def test_a_put_the_back_refuses_stores_nothing(
        self, back: BlobStore, tmp_path: Path
    ) -> None:
        """Bytes that don't match reach neither store."""
        data = blob(1000, seed=8)
        async with cached(back, tmp_path) as (store, _):
            with pytest.raises(IntegrityMismatch):
                await store.put(integrity_of(b"other"), data)
            with pytest.raises(IntegrityMismatch):
                await store.put(integrity_of(b"other"), chunked(data, 100))
            assert _front_files(store) == []


class TestLinkTo:
    """Copy-out without copying: reflink, else hardlink, else a verified copy."""

    async def test_link_to_places_the_blob(self, tmp_path: Path) -> None:
        """On one filesystem: a reflink or a hardlink, replacing the old file."""
        data = blob(50 * KiB, seed=9)
        store = FilesystemBlobStore(tmp_path / "store")
        integrity = await store.add(data)
        target = tmp_path / "out.tgz"
        target.write_bytes(b"an older file")
        method = await store.link_to(integrity, target)
        assert method in ("reflink", "hardlink")
        assert target.read_bytes() == data
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sriblob-")]

    async def test_another_filesystem_gets_a_copy(self, tmp_path: Path) -> None:
        """Across filesystems: a verified, read-only copy."""
        target_dir = Path("/dev/shm")  # noqa: S108 -- another filesystem
        if (
            not target_dir.is_dir()
            or target_dir.stat().st_dev == tmp_path.stat().st_dev
        ):
            pytest.skip("no second filesystem here")
        data = blob(20 * KiB, seed=10)
        store = FilesystemBlobStore(tmp_path / "store")
        integrity = await store.add(data)
        target = (
            target_dir / f"sriblob-test-{integrity_of(data)[7:20].replace('/', '_')}"
        )
        try:
            assert await store.link_to(integrity, target) == "copy"
            assert target.read_bytes() == data
            assert target.stat().st_mode & 0o777 == 0o444
        finally:
            target.unlink(missing_ok=True)

    async def test_a_corrupt_blob_places_nothing(self, tmp_path: Path) -> None:
        """A corrupt blob, an absent one, a missing directory: nothing placed."""
        data = blob(10 * KiB, seed=11)
        store = FilesystemBlobStore(tmp_path / "store")
        integrity = await store.add(data)
        path = store.path_of(integrity)
        path.chmod(0o644)
        path.write_bytes(data[:-1] + b"!")
        target = tmp_path / "out"
        with pytest.raises(IntegrityMismatch):
            await store.link_to(integrity, target)
        assert not target.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".sriblob-")]
        with pytest.raises(BlobNotFound):
            await store.link_to(integrity_of(b"absent"), target)
        with pytest.raises(StoreError):
            await store.link_to(integrity, tmp_path / "missing-dir" / "out")

    async def test_the_cache_links_from_its_front(self, tmp_path: Path) -> None:
        """The cache fills its front, then links from it."""
        data = blob(10 * KiB, seed=12)
        back = MemoryBlobStore()
        async with cached(back, tmp_path) as (store, counted):
            await back.put(integrity_of(data), data)
            method = await store.link_to(integrity_of(data), tmp_path / "x")
            assert method in ("reflink", "hardlink")
            assert (tmp_path / "x").read_bytes() == data
            assert counted.reads == 1


class TestOptions:
    """Bad arguments are refused when the cache is built."""

    def test_bad_arguments(self, tmp_path: Path) -> None:
        """A front that isn't a verifying filesystem store, a bad cap: refused."""
        front = FilesystemBlobStore(tmp_path)
        with pytest.raises(TypeError, match="FilesystemBlobStore"):
            CachedBlobStore(MemoryBlobStore(), MemoryBlobStore(), max_bytes=1)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="max_bytes"):
            CachedBlobStore(front, MemoryBlobStore(), max_bytes=-1)
        with pytest.raises(ValueError, match="must verify"):
            CachedBlobStore(
                FilesystemBlobStore(tmp_path, verify=False),
                MemoryBlobStore(),
                max_bytes=1,
            )
        store = CachedBlobStore(front, MemoryBlobStore(id="s3"), max_bytes=1)
        assert store.id == "s3"


class TestEnvironment:
    """SRIBLOB_CACHE_DIR and SRIBLOB_CACHE_MAX_BYTES, for the default registry."""

    def test_settings_are_read(self) -> None:
        """A directory alone means 1 GB; a cap alone is an error."""
        assert load_cache_settings({}) is None
        assert load_cache_settings({"SRIBLOB_CACHE_DIR": "/c"}) == ("/c", 10**9)
        assert load_cache_settings(
            {"SRIBLOB_CACHE_DIR": "/c", "SRIBLOB_CACHE_MAX_BYTES": "2GiB"}
        ) == ("/c", 2 * 2**30)
        with pytest.raises(ConfigurationError, match="SRIBLOB_CACHE_DIR is not"):
            load_cache_settings({"SRIBLOB_CACHE_MAX_BYTES": "1GB"})
        with pytest.raises(ConfigurationError, match="must be a byte count"):
            load_cache_settings(
                {"SRIBLOB_CACHE_DIR": "/c", "SRIBLOB_CACHE_MAX_BYTES": "big"}
            )

    def test_a_bad_cache_setting_refuses_writes(self, tmp_path: Path) -> None:
        """A typo in the cache's settings is a configuration problem, not no cache."""
        registry = default_registry(
            {"SRIBLOB_ROOT": str(tmp_path), "SRIBLOB_CACHE_MAX_BYTES": "1GB"}
        )
        assert "cache" in registry.problems
        with pytest.raises(ConfigurationError):
            _ = registry.active

    @pytest.mark.postgres
    def test_the_cli_caches_postgres(
        self,
        postgres_dsn: str,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """PostgreSQL behind a cache: put, get, info, cache stats and prune."""
        schema = f"sriblob_cache_{tmp_path.name[-8:].lower()}"
        monkeypatch.setenv("SRIBLOB_POSTGRES_DSN", postgres_dsn)
        monkeypatch.setenv("SRIBLOB_POSTGRES_SCHEMA", schema)
        monkeypatch.setenv("SRIBLOB_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("SRIBLOB_CACHE_MAX_BYTES", "1MB")
        registry = default_registry()
        assert isinstance(registry.get("postgres"), CachedBlobStore)
        source = tmp_path / "in"
        source.write_bytes(blob(5000, seed=30))
        try:
            assert main(["put", str(source)]) == 0
            integrity = capsys.readouterr().out.strip()
            assert main(["get", integrity, "-o", str(tmp_path / "out")]) == 0
            assert (tmp_path / "out").read_bytes() == source.read_bytes()
            assert main(["info"]) == 0
            out = capsys.readouterr().out
            assert "cache: " in out
            assert "at most 1 MB per store, in front of postgres" in out
            assert main(["cache", "stats"]) == 0
            assert "cache postgres: 1 blobs, 5 kB of 1 MB" in (capsys.readouterr().out)
            assert main(["cache", "prune", "--max-bytes", "0"]) == 0
            out = capsys.readouterr().out
            assert "evicted 1" in out
            assert "0 blobs, 0 B of 1 MB" in out
        finally:
            asyncio.run(drop_schema(postgres_dsn, schema))


async def test_the_serving_app_serves_through_the_cache(tmp_path: Path) -> None:
    """BlobApp over a cache under uvicorn: whole and ranged GETs, then hits."""
    import httpx  # noqa: PLC0415 -- the serve extra

    from sriblob.asgi import BlobApp  # noqa: PLC0415

    from .test_asgi import serving, url_of  # noqa: PLC0415

    data = blob(300 * KiB, seed=40)
    integrity = integrity_of(data)
    back = MemoryBlobStore()
    await back.put(integrity, data)
    async with (
        cached(back, tmp_path) as (store, counted),
        serving(BlobApp(store)) as base,
        httpx.AsyncClient() as client,
    ):
        url = url_of(base, integrity)
        whole = await client.get(url)
        assert whole.status_code == 200
        assert whole.content == data
        part = await client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206
        assert part.content == data[100:200]
        again = await client.get(url)
        assert again.content == data
        assert counted.reads == 1
