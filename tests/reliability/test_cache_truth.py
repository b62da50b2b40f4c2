"""The cache can't lie: the back is the store of record, one source per response.

Each test breaks a promise of docs/caching.md the way an outside probe did:
a front copy changed behind the cache's back, a blob deleted from the back by
another replica, readers piling up on one blob, another process evicting a
front file between two of the cache's steps, a fill killed mid-way. The
front is a real directory and the serving tests run BlobApp under a real
uvicorn, fetched by httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from sriblob import (
    CachedBlobStore,
    FilesystemBlobStore,
    MemoryBlobStore,
    collect_garbage,
    migrate,
    verify,
)
from sriblob.asgi import BlobApp

from ..helpers import blob, integrity_of
from ..test_asgi import serving

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from sriblob import BlobStore

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
GUARD = 120


@contextlib.asynccontextmanager
async def cache_over(
    back: BlobStore, front: Path, max_bytes: int = 64 * MiB
) -> AsyncIterator[CachedBlobStore]:
    """A cache over *back* with its front at *front*."""
    async with CachedBlobStore(
        FilesystemBlobStore(front), back, max_bytes=max_bytes
    ) as store:
        yield store


def damage(path: Path, how: str, size: int) -> None:
    """Change a front file behind the cache's back."""
    path.chmod(0o644)
    if how == "truncate":
        # Cut on a 1 MiB boundary, as a torn copy would be.
        os.truncate(path, (size - 1) // MiB * MiB)
    elif how == "flip":
        with path.open("r+b") as file:
            file.seek(size // 2)
            byte = file.read(1)
            file.seek(size // 2)
            file.write(bytes([byte[0] ^ 1]))
    else:  # "append"
        with path.open("ab") as file:
            file.write(b"trailing garbage")


async def fetch(
    client: httpx.AsyncClient, url: str, **headers: str
) -> tuple[int, httpx.Headers, bytes] | None:
    """GET *url*: status, headers and the whole body; None if the body came short."""
    try:
        async with client.stream("GET", url, headers=headers) as response:
            body = b"".join([chunk async for chunk in response.aiter_raw()])
    except (httpx.RemoteProtocolError, httpx.ReadError):
        return None  # an aborted transfer: the client knows it is incomplete
    return response.status_code, response.headers, body


def url_of(base: str, integrity: str) -> str:
    """The blob's URL under BlobApp's default prefix."""
    return f"{base}/blobs/{urllib.parse.quote(integrity, safe='')}"


class TestOneSourcePerResponse:
    """A complete 2xx body is the blob (or the range asked for), whatever the front."""

    @pytest.mark.parametrize("how", ["truncate", "flip", "append"])
    @pytest.mark.parametrize("size", [3 * MiB + 7, 17 * MiB + 7])
    async def test_a_damaged_front_copy_never_serves_wrong_bytes(
        self, tmp_path: Path, how: str, size: int
    ) -> None:
        """GET, HEAD and ranges of a damaged front copy: the blob, or a cut body."""
        data = blob(size, seed=1)
        integrity = integrity_of(data)
        back = MemoryBlobStore()
        await back.put(integrity, data)
        async with (
            cache_over(back, tmp_path / "front") as store,
            serving(BlobApp(store)) as base,
            httpx.AsyncClient(timeout=60) as client,
        ):
            assert await store.get(integrity) == data  # fills the front
            damage(store.front.path_of(integrity), how, size)
            url = url_of(base, integrity)

            head = await client.head(url)
            assert head.status_code == 200
            assert int(head.headers["content-length"]) == size

            whole = await fetch(client, url)
            if whole is not None:
                status, headers, body = whole
                assert status == 200
                assert int(headers["content-length"]) == size
                assert body == data

            middle = size // 2
            asked = {
                f"bytes={middle - 10}-{middle + 10}": data[middle - 10 : middle + 11],
                "bytes=-100": data[-100:],
                f"bytes={size - 5}-": data[size - 5 :],
            }
            for header, expected in asked.items():
                part = await fetch(client, url, range=header)
                assert part is not None
                status, headers, body = part
                assert status == 206, header
                assert body == expected, header
                assert headers["content-range"].endswith(f"/{size}")

    async def test_a_new_process_trusts_no_unverified_copy_for_a_range(
        self, tmp_path: Path
    ) -> None:
        """A front another process filled, then damaged: ranges come right."""
        data = blob(MiB, seed=2)
        back = tmp_path / "back"
        integrity = await FilesystemBlobStore(back).add(data)
        async with cache_over(FilesystemBlobStore(back), tmp_path / "front") as first:
            assert await first.get(integrity) == data
        damage(FilesystemBlobStore(tmp_path / "front").path_of(integrity), "flip", MiB)
        async with cache_over(FilesystemBlobStore(back), tmp_path / "front") as second:
            half = MiB // 2
            async with second.open(integrity, start=half - 4, end=half + 4) as reader:
                assert await reader.read() == data[half - 4 : half + 4]
            assert await second.get(integrity) == data  # and the copy is repaired


class TestTheBackDecides:
    """Whether a blob exists, when it was stored, what may go: the back's answer."""

    async def test_has_and_stat_ask_the_back(self, tmp_path: Path) -> None:
        """Another replica deleted the blob from the back: the cache says it is gone."""
        back = FilesystemBlobStore(tmp_path / "back")
        data = blob(10 * KiB, seed=3)
        async with cache_over(back, tmp_path / "front") as store:
            integrity = await store.add(data)
            assert await store.front.has(integrity)
            await FilesystemBlobStore(tmp_path / "back").delete(integrity)
            assert not await store.has(integrity)
            assert await store.stat(integrity) is None

    async def test_migrate_into_a_cache_never_deletes_the_last_copy(
        self, tmp_path: Path
    ) -> None:
        """Cached blobs the back lost: migrate copies them again, then deletes."""
        blobs = [blob(20 * KiB, seed=10 + n) for n in range(3)]
        source = FilesystemBlobStore(tmp_path / "source")
        back = FilesystemBlobStore(tmp_path / "back")
        names = [await source.add(data) for data in blobs]
        async with cache_over(back, tmp_path / "front") as cache:
            for name, data in zip(names[:2], blobs[:2], strict=True):
                await cache.put(name, data)  # in the back, and cached
                assert await cache.front.has(name)
            other_replica = FilesystemBlobStore(tmp_path / "back")
            for name in names[:2]:
                await other_replica.delete(name)
            report = await migrate(source, cache, delete_source=True)
            assert report.ok, report
            await cache.prune(max_bytes=0)
        record = FilesystemBlobStore(tmp_path / "back")
        for name, data in zip(names, blobs, strict=True):
            assert await record.get(name) == data, "a blob was lost"

    async def test_gc_through_a_cache_collects_cached_blobs(
        self, tmp_path: Path
    ) -> None:
        """Old, unreferenced blobs are collected though the front holds them."""
        back = MemoryBlobStore()
        blobs = [blob(5 * KiB, seed=20 + n) for n in range(3)]
        async with cache_over(back, tmp_path / "front") as cache:
            names = [await cache.add(data) for data in blobs]
            for name in names:
                assert await cache.get(name) is not None
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
            report = await collect_garbage(cache, [names[0]], dry_run=False, now=later)
            assert sorted(report.deleted) == sorted(names[1:])
            assert report.spared_fresh == 0
            assert [name async for name in back.list()] == [names[0]]
            assert not await cache.front.has(names[1])

    async def test_verify_through_a_cache_checks_the_back(self, tmp_path: Path) -> None:
        """A good front copy doesn't hide a corrupt copy in the back."""
        back = FilesystemBlobStore(tmp_path / "back")
        data = blob(30 * KiB, seed=30)
        async with cache_over(back, tmp_path / "front") as cache:
            integrity = await cache.add(data)
            assert await cache.front.has(integrity)
            path = back.path_of(integrity)
            path.chmod(0o644)
            path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
            report = await verify(cache)
            assert report.corrupt == (integrity,)


class TestSingleFlight:
    """Any number of concurrent readers of one blob, cacheable or not, all get it."""

    @pytest.mark.parametrize(
        ("size", "max_bytes"), [(100 * KiB, 0), (2 * MiB, MiB), (100 * KiB, MiB)]
    )
    @pytest.mark.parametrize("how", ["get", "open", "both"])
    async def test_many_readers_of_one_blob(
        self, tmp_path: Path, size: int, max_bytes: int, how: str
    ) -> None:
        """Twelve readers at once: all get the bytes, none an error."""
        data = blob(size, seed=40)
        integrity = integrity_of(data)
        back = MemoryBlobStore()
        await back.put(integrity, data)

        async with cache_over(back, tmp_path / "front", max_bytes) as store:

            async def read(n: int) -> bytes | None:
                if how == "get" or (how == "both" and n % 2):
                    return await store.get(integrity)
                async with store.open(integrity) as reader:
                    return await reader.read()

            for _ in range(2):  # cold, then (where it fits) warm
                results = await asyncio.gather(*(read(n) for n in range(12)))
                assert results == [data] * 12


@contextlib.contextmanager
def evicted_after(path: Path, touches: int) -> Iterator[list[str]]:
    """Unlink *path* right after the *touches*-th stat or open of its name.

    As another process evicting the file at that moment would. Yields the
    calls seen, for the assertion message.
    """
    seen: list[str] = []
    real = {name: getattr(os, name) for name in ("open", "stat", "lstat")}

    def spy(name: str) -> Callable[..., Any]:
        def call(target: Any, *args: Any, **kwargs: Any) -> Any:
            result = real[name](target, *args, **kwargs)
            if isinstance(target, str | os.PathLike) and os.fspath(target).endswith(
                path.name
            ):
                seen.append(name)
                if len(seen) == touches:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
            return result

        return call

    patch = pytest.MonkeyPatch()
    for name in real:
        patch.setattr(os, name, spy(name))
    try:
        yield seen
    finally:
        patch.undo()


class TestEvictionRaces:
    """Another process evicting at any moment never fails a read the back can serve."""

    @pytest.mark.parametrize("touches", [1, 2, 3, 4])
    @pytest.mark.parametrize(
        ("how", "size", "span"),
        [
            ("get", 100 * KiB, None),
            ("get", 17 * MiB, None),
            ("open", 100 * KiB, None),
            ("open", 17 * MiB, None),
            ("open", 100 * KiB, (10, 5000)),
            ("open", 17 * MiB, (16 * MiB, 17 * MiB)),
        ],
    )
    async def test_an_eviction_between_two_steps(
        self,
        tmp_path: Path,
        touches: int,
        how: str,
        size: int,
        span: tuple[int, int] | None,
    ) -> None:
        """The front file vanishes after the n-th look at it: the read succeeds."""
        data = blob(size, seed=50)
        integrity = integrity_of(data)
        back = MemoryBlobStore()
        await back.put(integrity, data)
        async with cache_over(back, tmp_path / "front") as store:
            assert await store.get(integrity) == data
            async with store.open(integrity) as reader:
                assert await reader.read() == data  # verified whole here
            path = store.front.path_of(integrity)
            start, end = span or (0, None)
            with evicted_after(path, touches) as seen:
                if how == "get":
                    got = await store.get(integrity)
                else:
                    async with store.open(integrity, start=start, end=end) as reader:
                        got = await reader.read()
            assert got == data[start:end], seen


class TestLinkTo:
    """link_to repairs a damaged front copy from the back."""

    @pytest.mark.parametrize("how", ["truncate", "flip"])
    async def test_a_damaged_copy_is_repaired(self, tmp_path: Path, how: str) -> None:
        """The placed file is the blob; the front holds a good copy again."""
        data = blob(2 * MiB + 3, seed=60)
        integrity = integrity_of(data)
        back = MemoryBlobStore()
        await back.put(integrity, data)
        async with cache_over(back, tmp_path / "front") as store:
            assert await store.get(integrity) == data
            damage(store.front.path_of(integrity), how, len(data))
            target = tmp_path / "out.tgz"
            await store.link_to(integrity, target)
            assert target.read_bytes() == data
            assert store.front.path_of(integrity).read_bytes() == data


def _front_bytes(front: Path) -> tuple[int, int]:
    """Bytes in blob files and in temp files under *front*."""
    blobs = temps = 0
    for path in (front / "blobs").rglob("*"):
        if path.is_file():
            if path.name.startswith(".tmp-"):
                temps += path.stat().st_size
            else:
                blobs += path.stat().st_size
    return blobs, temps


class TestAbandonedFills:
    """A fill's temp file counts against the cap; a dead writer's is reaped."""

    def test_a_killed_fill_counts_until_it_is_reaped(self, tmp_path: Path) -> None:
        """A fill hangs in another process: the cap counts it; killed, it is reaped."""
        back_root, front = tmp_path / "back", tmp_path / "front"
        big = blob(6 * MiB, seed=70)
        small = [blob(MiB, seed=71 + n) for n in range(10)]
        max_bytes = 10 * MiB

        async def seed() -> None:
            async with FilesystemBlobStore(back_root) as back:
                for data in (big, *small):
                    await back.add(data)

        asyncio.run(seed())
        spec = {"front": str(front), "back": str(back_root), "max_bytes": max_bytes}
        worker = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [
                sys.executable,
                "-m",
                "tests.cache_fill_worker",
                json.dumps({**spec, "integrity": integrity_of(big)}),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        try:
            assert worker.stdout is not None
            line = worker.stdout.readline()
            assert json.loads(line)["event"] == "filling", worker.stderr
            _, temps = _front_bytes(front)
            assert temps > 0  # the hanging fill's temp file

            async def fill_up() -> None:
                async with cache_over(
                    FilesystemBlobStore(back_root), front, max_bytes
                ) as store:
                    for data in small:
                        assert await store.get(integrity_of(data)) == data
                        held, temps = _front_bytes(front)
                        assert held + 6 * MiB <= max_bytes, (held, temps)

            asyncio.run(fill_up())
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.communicate(timeout=GUARD)

        async def reap() -> None:
            async with cache_over(
                FilesystemBlobStore(back_root), front, max_bytes
            ) as store:
                await store.prune()
                held, temps = _front_bytes(front)
                assert temps == 0
                assert (await store.stats()).bytes == held
                assert await store.get(integrity_of(big)) == big

        asyncio.run(reap())
