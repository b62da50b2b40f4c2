"""The cache when its front fails, when processes share it, when a fill is cut.

A full or read-only front is a real tmpfs (root only; CI runs as root). Four
OS processes share one front directory over one back and read the same
blobs at once, with a cap that forces evictions meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from sriblob import (
    CachedBlobStore,
    FilesystemBlobStore,
    IntegrityMismatch,
    MemoryBlobStore,
    verify,
)
from sriblob._cache import _fill

from ..helpers import blob, chunked, integrity_of
from .test_data_safety import remount_read_only, small_tmpfs

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
GUARD = 180


def temp_files(front: Path) -> list[Path]:
    """The fills' temp files anywhere under the front directory."""
    return [p for p in front.rglob("*") if p.name.startswith(".tmp-")]


async def read_open(store: Any, integrity: str) -> bytes:
    """The blob's bytes through open()."""
    async with store.open(integrity) as reader:
        return b"".join([chunk async for chunk in reader])


class TestFailingFront:
    """A front that can't take writes degrades to the back, with a WARNING."""

    async def test_a_full_front_still_serves(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A 1 MiB tmpfs front, a 4 MiB cap: 3 MiB blobs come from the back."""
        back = MemoryBlobStore()
        blobs = [blob(3 * MiB, seed=n) for n in range(2)]
        for data in blobs:
            await back.put(integrity_of(data), data)
        with small_tmpfs(tmp_path / "front", "1m") as disk:
            front = FilesystemBlobStore(disk)
            async with CachedBlobStore(front, back, max_bytes=4 * MiB) as store:
                with caplog.at_level(logging.WARNING, logger="sriblob"):
                    for data in blobs:
                        assert await store.get(integrity_of(data)) == data
                        assert await read_open(store, integrity_of(data)) == data
                assert "the front failed to store" in caplog.text
                assert (await store.stats()).front_errors >= 2
            leftovers = [p for p in (disk / "blobs").rglob("*") if p.is_file()]
            assert leftovers == []

    async def test_a_read_only_front_still_serves(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Remounted read-only: cached blobs still hit, new ones come from the back."""
        back = MemoryBlobStore()
        cached, new = blob(100 * KiB, seed=10), blob(100 * KiB, seed=11)
        for data in (cached, new):
            await back.put(integrity_of(data), data)
        with small_tmpfs(tmp_path / "front", "4m") as disk:
            front = FilesystemBlobStore(disk)
            async with CachedBlobStore(front, back, max_bytes=MiB) as store:
                assert await store.get(integrity_of(cached)) == cached
                remount_read_only(disk)
                with caplog.at_level(logging.WARNING, logger="sriblob"):
                    assert await store.get(integrity_of(cached)) == cached
                    assert await store.get(integrity_of(new)) == new
                    assert await read_open(store, integrity_of(new)) == new
                    await store.add(blob(10 * KiB, seed=12))  # the back takes it
                assert "the front failed" in caplog.text
                stats = await store.stats()
                assert stats.hits >= 1
                assert stats.front_errors >= 1

    async def test_a_full_temp_directory_still_writes_to_the_back(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """No room for the copy kept for the front: the back still gets the blob.

        The spool rolls over to a file on a 1 MiB tmpfs and fails there; the
        front then fills on the first read.
        """
        data = blob(17 * MiB, seed=13)
        back = MemoryBlobStore()
        with small_tmpfs(tmp_path / "tmp", "1m") as disk:
            monkeypatch.setattr(tempfile, "tempdir", str(disk))
            front = FilesystemBlobStore(tmp_path / "front")
            async with CachedBlobStore(front, back, max_bytes=64 * MiB) as store:
                with caplog.at_level(logging.WARNING, logger="sriblob"):
                    integrity = await store.add(chunked(data, 256 * KiB))
                assert "can't keep a copy of a streamed write" in caplog.text
                assert await back.get(integrity) == data
                assert not await front.has(integrity)
                assert await store.get(integrity) == data
                assert await front.has(integrity)


class TestCutFills:
    """A reader that stops, or is cancelled, leaves nothing under the blob's name."""

    async def test_an_early_exit_and_a_cancel_leave_nothing(
        self, tmp_path: Path
    ) -> None:
        """One chunk then leave, or a cancel mid-read: no file; a whole read fills."""
        back = MemoryBlobStore()
        data = blob(8 * MiB, seed=20)
        integrity = integrity_of(data)
        await back.put(integrity, data)
        async with CachedBlobStore(
            FilesystemBlobStore(tmp_path / "front"), back, max_bytes=64 * MiB
        ) as store:
            async with store.open(integrity) as reader:
                await anext(reader)  # one chunk, then leave
            assert not await store.front.has(integrity)

            started = asyncio.Event()

            async def slow_reader() -> None:
                async with store.open(integrity) as reader:
                    async for _ in reader:
                        started.set()
                        await asyncio.sleep(0.05)

            task = asyncio.ensure_future(slow_reader())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not await store.front.has(integrity)
            assert temp_files(tmp_path / "front") == []
            # And the next whole read fills it.
            assert await read_open(store, integrity) == data
            assert await store.front.has(integrity)

    @pytest.mark.parametrize("ending", ["no room", "a failed write"])
    async def test_a_fill_that_ends_early_never_stalls_the_reader(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ending: str
    ) -> None:
        """The fill gives up while the reader waits to hand it a chunk.

        Found live: a ``sriblob serve`` that never exited, its request
        parked for good on a full hand-off queue whose fill had ended (other
        processes took the room meanwhile). The race is widened here: the
        fill waits 0.2 s, long enough for the reader to fill the queue, then
        finds no room, or fails its write. The read still ends, whole, and
        nothing is left in the front.
        """
        back = MemoryBlobStore()
        data = blob(16 * MiB, seed=21)  # 16 chunks: twice the hand-off queue
        integrity = integrity_of(data)
        await back.put(integrity, data)
        async with CachedBlobStore(
            FilesystemBlobStore(tmp_path / "front"), back, max_bytes=64 * MiB
        ) as store:
            front = store.backend.front

            async def no_room(size: int, *, fresh: bool = False) -> bool:
                await asyncio.sleep(0.2)
                return False

            async def failed_write(*args: Any, **kwargs: Any) -> None:
                await asyncio.sleep(0.2)
                raise OSError(28, "No space left on device")

            if ending == "no room":
                monkeypatch.setattr(front, "make_room", no_room)
            else:
                monkeypatch.setattr(front, "fill", failed_write)
            async with asyncio.timeout(GUARD):
                assert await read_open(store, integrity) == data
            assert not await store.front.has(integrity)
            assert temp_files(tmp_path / "front") == []


class TestColdGets:
    """A get that missed checks the back's bytes and fills the front at once."""

    @pytest.mark.parametrize("size", [100 * KiB, 3 * MiB])
    async def test_a_back_serving_wrong_bytes_stores_nothing(
        self, tmp_path: Path, size: int
    ) -> None:
        """A damaged copy in the back: IntegrityMismatch, nothing in the front.

        100 KiB is hashed and written in one worker-thread call; 3 MiB on
        two threads at once, the rename waiting for the hash.
        """
        data = blob(size, seed=22)
        async with FilesystemBlobStore(tmp_path / "back") as back:
            integrity = await back.add(data)
            damaged = back.path_of(integrity)
        raw = bytearray(damaged.read_bytes())
        raw[size // 2] ^= 0xFF
        damaged.write_bytes(bytes(raw))
        async with CachedBlobStore(
            FilesystemBlobStore(tmp_path / "front"),
            FilesystemBlobStore(tmp_path / "back"),
            max_bytes=64 * MiB,
        ) as store:
            with pytest.raises(IntegrityMismatch):
                await store.get(integrity)
            assert not await store.front.has(integrity)
            left = [p for p in (tmp_path / "front").rglob("*") if p.is_file()]
            assert [p.name for p in left if p.parent.name != ".fill-locks"] in (
                [],
                [".usage"],
            )
            assert (await store.stats()).bytes == 0
            assert await store.backend.front.usage() == 0

    async def test_a_cancelled_cold_get_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Cancelled while the write of its copy runs: no file, no reservation.

        The race is widened: the worker thread that writes the copy waits
        0.3 s first, and the get is cancelled 0.1 s in.
        """
        data = blob(3 * MiB, seed=23)
        back = MemoryBlobStore()
        integrity = await back.add(data)
        real_write = _fill._write_sync

        def slow_write(*args: Any) -> Any:
            time.sleep(0.3)
            return real_write(*args)

        monkeypatch.setattr(_fill, "_write_sync", slow_write)
        async with CachedBlobStore(
            FilesystemBlobStore(tmp_path / "front"), back, max_bytes=64 * MiB
        ) as store:
            task = asyncio.ensure_future(store.get(integrity))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not await store.front.has(integrity)
            assert temp_files(tmp_path / "front") == []
            assert await store.backend.front.usage() == 0
            # And the next get fills it.
            assert await store.get(integrity) == data
            assert await store.front.has(integrity)


def test_four_processes_share_one_front(tmp_path: Path) -> None:
    """Every read right, every file in the front verifies, the cap holds."""
    size = 200 * KiB
    seeds = list(range(40))
    back_root = tmp_path / "back"

    async def seed_back() -> None:
        async with FilesystemBlobStore(back_root) as back:
            for seed in seeds:
                await back.add(blob(size, seed=seed))

    asyncio.run(seed_back())
    max_bytes = size * len(seeds) // 2
    go = tmp_path / "go"
    workers = []
    for n in range(4):
        order = seeds[n * 10 :] + seeds[: n * 10]
        spec = {
            "front": str(tmp_path / "front"),
            "back": str(back_root),
            "max_bytes": max_bytes,
            "go": str(go),
            "seeds": order,
            "size": size,
            "rounds": 3,
        }
        workers.append(
            subprocess.Popen(  # noqa: S603 -- our own interpreter
                [sys.executable, "-m", "tests.cache_worker", json.dumps(spec)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
            )
        )
    results = []
    try:
        for worker in workers:
            assert worker.stdout is not None
            assert json.loads(worker.stdout.readline())["event"] == "ready"
        go.touch()
        for worker in workers:
            out, err = worker.communicate(timeout=GUARD)
            assert worker.returncode == 0, err
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert all(result["wrong"] == [] for result in results)
    assert sum(result["reads"] for result in results) == 4 * 3 * len(seeds)

    async def check_front() -> None:
        front = FilesystemBlobStore(tmp_path / "front")
        report = await verify(front)
        assert report.ok, report
        files = [
            p
            for p in (tmp_path / "front" / "blobs").rglob("*")
            if p.is_file() and not p.name.startswith(".tmp-")
        ]
        assert sum(p.stat().st_size for p in files) <= max_bytes
        assert report.checked == len(files)
        temps = list((tmp_path / "front").rglob(".tmp-*"))
        assert temps == []

    asyncio.run(check_front())
