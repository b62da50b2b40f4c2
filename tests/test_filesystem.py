"""FilesystemBlobStore behaviour beyond the shared contract: layout and crashes."""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import (
    FilesystemBlobStore,
    Integrity,
    InvalidIntegrity,
    StoreError,
    StoreUnavailable,
    collect_garbage,
)
from sriblob._filesystem import FilesystemBackend
from sriblob._filesystem import _temp as fs_module
from sriblob._filesystem._temp import TempFile as _TempFile
from sriblob.keys import integrity_to_key

from .helpers import blob, chunked, collect, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

SMALL = b"on disk"


def temp_files(root: Path) -> list[Path]:
    """Return every temp file under *root*."""
    return sorted(root.rglob(".tmp-*"))


def files(root: Path) -> list[Path]:
    """Return every file under *root*."""
    return sorted(path for path in root.rglob("*") if path.is_file())


def run_python(code: str, *args: str) -> subprocess.Popen[bytes]:
    """Start a Python child running *code* with *args*."""
    return subprocess.Popen(  # noqa: S603 -- our own interpreter and code
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


LONG_AGO = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def age(path: Path) -> None:
    """Set *path*'s modification time to LONG_AGO."""
    stamp = LONG_AGO.timestamp()
    os.utime(path, (stamp, stamp))


class TestStat:
    """stat() from one os.stat, and the storage time a re-put renews."""

    async def test_size_and_mtime(self, tmp_path: Path) -> None:
        """stat() gives the file's size and its mtime as a UTC-aware stored_at."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)
        age(store.path_of(integrity))

        info = await store.stat(integrity)

        assert info is not None
        assert info.integrity == integrity
        assert info.size == len(SMALL)
        assert info.stored_at == LONG_AGO
        assert info.stored_at.tzinfo is dt.UTC

    async def test_missing_blob(self, tmp_path: Path) -> None:
        """stat() of an absent blob is None; a directory in its place is an error."""
        store = FilesystemBlobStore(tmp_path)
        integrity = integrity_of(SMALL)

        assert await store.stat(integrity) is None
        store.path_of(integrity).mkdir(parents=True)
        with pytest.raises(StoreError, match="not a regular file") as excinfo:
            await store.stat(integrity)
        assert str(store.path_of(integrity)) in str(excinfo.value)

    async def test_stat_reads_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """stat() never opens the blob's file."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)

        def no_open(*args: object, **kwargs: object) -> None:
            raise AssertionError("opened")

        monkeypatch.setattr(FilesystemBackend, "read_blob", no_open)
        info = await store.stat(integrity)

        assert info is not None
        assert info.size == len(SMALL)

    @pytest.mark.parametrize("how", ["put", "add bytes", "add stream"])
    async def test_reput_renews_stored_at(self, tmp_path: Path, how: str) -> None:
        """Putting a stored blob again renews its mtime and writes no new file."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)
        path = store.path_of(integrity)
        inode = path.stat().st_ino
        age(path)
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)

        if how == "put":
            await store.put(integrity, SMALL)
        elif how == "add bytes":
            await store.add(SMALL)
        else:
            await store.add(chunked(SMALL, 3))

        info = await store.stat(integrity)
        assert info is not None
        assert info.stored_at is not None
        assert info.stored_at >= before
        assert path.stat().st_ino == inode
        assert temp_files(tmp_path) == []

    async def test_grace_spares_a_reused_blob(self, tmp_path: Path) -> None:
        """collect_garbage spares an old, unreferenced blob that was just put again."""
        store = FilesystemBlobStore(tmp_path)
        reused = await store.add(b"reused")
        stale = await store.add(b"stale")
        age(store.path_of(reused))
        age(store.path_of(stale))
        await store.put(reused, b"reused")

        report = await collect_garbage(
            store, [], dry_run=False, grace=dt.timedelta(hours=1)
        )

        assert report.deleted == (stale,)
        assert report.spared_fresh == 1
        assert await store.has(reused)

    async def test_reput_on_a_read_only_file_still_succeeds(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Re-putting a blob whose mtime can't be changed still succeeds."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)

        def refuse(*args: object, **kwargs: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "utime", refuse)
        await store.put(integrity, SMALL)

        assert await store.get(integrity) == SMALL


class TestLayout:
    """Where blobs live on disk."""

    async def test_fan_out_path(self, tmp_path: Path) -> None:
        """A blob is stored at blobs/<digest hex 0:2>/<2:4>/<hex key>."""
        store = FilesystemBlobStore(tmp_path)
        integrity = Integrity.from_bytes(SMALL)
        digest = integrity.digest.hex()

        await store.put(integrity, SMALL)

        expected = (
            tmp_path
            / "blobs"
            / digest[:2]
            / digest[2:4]
            / integrity_to_key(str(integrity), prefix="")
        )
        assert expected.read_bytes() == SMALL
        assert store.path_of(integrity) == expected
        assert files(tmp_path) == [expected]

    async def test_root_created_lazily(self, tmp_path: Path) -> None:
        """A store on a missing root reads as empty and creates it on write."""
        root = tmp_path / "a" / "b"
        store = FilesystemBlobStore(root)

        assert not await store.has(integrity_of(SMALL))
        assert await collect(store) == set()
        assert not root.exists()

        await store.put(integrity_of(SMALL), SMALL)

        assert root.is_dir()

    async def test_usable_without_async_with(self, tmp_path: Path) -> None:
        """The store works without being entered, and aclose() keeps the files."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)

        await store.aclose()

        assert FilesystemBlobStore(tmp_path).path_of(integrity).read_bytes() == SMALL

    async def test_repr_shows_root(self, tmp_path: Path) -> None:
        """repr() names the root directory and the verify setting."""
        text = repr(FilesystemBlobStore(tmp_path, verify=False))

        assert str(tmp_path) in text
        assert "verify=False" in text

    async def test_put_existing_skips_the_data(self, tmp_path: Path) -> None:
        """Putting a stored blob doesn't read the new data at all."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)
        pulled = 0

        async def source() -> AsyncIterator[bytes]:
            nonlocal pulled
            pulled += 1
            yield SMALL

        await store.put(integrity, source())

        assert pulled == 0


class TestNoTraversal:
    """Integrities can't name paths outside the root."""

    @pytest.mark.parametrize(
        "text", ["../../etc/passwd", "sha512-../../x", "sha512-/" + "A" * 87]
    )
    async def test_path_like_integrities_rejected(
        self, tmp_path: Path, text: str
    ) -> None:
        """Strings with path syntax are not integrities and touch nothing."""
        store = FilesystemBlobStore(tmp_path / "root")

        with pytest.raises(InvalidIntegrity):
            await store.put(text, b"x")
        with pytest.raises(InvalidIntegrity):
            store.path_of(text)

        assert not (tmp_path / "root").exists()

    async def test_digest_slashes_stay_inside(self, tmp_path: Path) -> None:
        """A digest full of '/' and '+' (base64) still maps to a hex-only file name."""
        integrity = Integrity("sha512", b"\xff" * 64)  # base64 of 0xff is '////'
        assert "/" in str(integrity)
        store = FilesystemBlobStore(tmp_path, verify=False)

        await store.put(integrity, b"named, not hashed")

        path = store.path_of(integrity)
        assert path.parent.parent.parent == tmp_path / "blobs"
        assert set(path.name) <= set("0123456789abcdef")
        assert await collect(store) == {str(integrity)}


class TestTempFiles:
    """Crash leftovers are hidden and eventually removed."""

    async def _leftover(self, store: FilesystemBlobStore, age: float) -> Path:
        integrity = await store.add(SMALL)
        leftover = store.path_of(integrity).parent / ".tmp-0123456789abcdef"
        leftover.write_bytes(b"half a blo")
        stamp = time.time() - age
        os.utime(leftover, (stamp, stamp))
        return leftover

    async def test_young_leftover_ignored_and_kept(self, tmp_path: Path) -> None:
        """A fresh temp file may be a live writer's: not listed, not removed."""
        store = FilesystemBlobStore(tmp_path)
        leftover = await self._leftover(store, age=60)

        assert await collect(store) == {integrity_of(SMALL)}
        assert leftover.exists()

    async def test_old_leftover_removed_by_list(self, tmp_path: Path) -> None:
        """A temp file older than an hour is removed when the store is listed."""
        store = FilesystemBlobStore(tmp_path)
        leftover = await self._leftover(store, age=2 * 3600)
        staged = tmp_path / "blobs" / ".tmp-fedcba9876543210"
        staged.write_bytes(b"staged by add")
        os.utime(staged, (0, 0))

        assert await collect(store) == {integrity_of(SMALL)}
        assert not leftover.exists()
        assert not staged.exists()

    async def test_foreign_files_ignored(self, tmp_path: Path) -> None:
        """Files that aren't hex keys in their fan-out directory are not listed."""
        store = FilesystemBlobStore(tmp_path)
        integrity = await store.add(SMALL)
        fan_out = store.path_of(integrity).parent
        (fan_out / "README").write_text("hello")
        (fan_out / integrity_to_key("not an integrity", prefix="")).write_text("x")
        misplaced = tmp_path / "blobs" / "00" / "00"
        misplaced.mkdir(parents=True)
        (misplaced / store.path_of(integrity).name).write_bytes(SMALL)
        (tmp_path / "blobs" / "zz").mkdir()

        assert await collect(store) == {integrity}

    async def test_cancelled_stream_leaves_no_temp(self, tmp_path: Path) -> None:
        """Cancelling a streamed put mid-way removes its temp file."""
        store = FilesystemBlobStore(tmp_path)
        data = blob(4 * 1024 * 1024)
        started = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield data[:1_000_000]
            started.set()
            await asyncio.Event().wait()
            yield data[1_000_000:]  # pragma: no cover -- cancelled before

        task = asyncio.create_task(store.put(integrity_of(data), slow()))
        await started.wait()
        for _ in range(500):  # let the first chunk reach the disk
            if temp_files(tmp_path):
                break
            await asyncio.sleep(0.01)
        assert temp_files(tmp_path) != []

        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert temp_files(tmp_path) == []
        assert await collect(store) == set()

    async def test_cancelled_while_creating_temp(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A put cancelled while its temp file is being created removes it later."""
        store = FilesystemBlobStore(tmp_path)
        entered, gate = threading.Event(), threading.Event()
        created: list[Path] = []
        real_create = _TempFile.create

        def slow_create(root: Path, dirs: tuple[str, ...], **options: Any) -> _TempFile:
            entered.set()
            gate.wait(10)
            temp = real_create(root, dirs, **options)
            created.append(root.joinpath(*dirs, temp.name))
            return temp

        monkeypatch.setattr(_TempFile, "create", slow_create)
        task = asyncio.create_task(store.put(integrity_of(SMALL), chunked(SMALL)))
        await asyncio.to_thread(entered.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        for _ in range(500):
            if created and not created[0].exists():
                break
            await asyncio.sleep(0.01)

        assert len(created) == 1
        assert not created[0].exists()

    async def test_cancelled_add_leaves_no_temp(self, tmp_path: Path) -> None:
        """Cancelling a streamed add mid-way removes its staging file."""
        store = FilesystemBlobStore(tmp_path)
        started = asyncio.Event()

        async def slow() -> AsyncIterator[bytes]:
            yield b"x" * 100_000
            started.set()
            await asyncio.Event().wait()
            yield b""  # pragma: no cover -- cancelled before

        task = asyncio.create_task(store.add(slow()))
        await started.wait()
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert temp_files(tmp_path) == []


class TestStreamingWrites:
    """Writes run behind the stream; flushes keep the disk busy meanwhile."""

    async def test_large_stream_is_flushed_as_it_streams(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A stream is synced every FLUSH_INTERVAL bytes, not only at the end."""
        flushes: list[int] = []
        real = fs_module.fdatasync

        def counting(fd: int) -> None:
            flushes.append(fd)
            real(fd)

        monkeypatch.setattr(fs_module, "fdatasync", counting)
        store = FilesystemBlobStore(tmp_path)
        data = blob(2 * fs_module.FLUSH_INTERVAL + 12345)

        await store.put(integrity_of(data), chunked(data, 1024 * 1024))

        assert len(flushes) == 2
        assert await store.get(integrity_of(data)) == data

    @pytest.mark.parametrize("how", ["put", "add", "put bytes"])
    async def test_failed_write_leaves_nothing(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
    ) -> None:
        """A write failing mid-stream (a full disk) raises; the temp file goes."""
        calls = 0
        real_write = _TempFile.write

        def failing(self: _TempFile, data: bytes, offset: int = 0) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            real_write(self, data, offset)

        monkeypatch.setattr(_TempFile, "write", failing)
        store = FilesystemBlobStore(tmp_path)
        data = blob(12 * 1024 * 1024)

        source = data if how == "put bytes" else chunked(data, 1024 * 1024)
        stored = (
            store.add(source) if how == "add" else store.put(integrity_of(data), source)
        )

        with pytest.raises(StoreUnavailable, match="No space left") as excinfo:
            await stored
        assert ".tmp-" not in str(excinfo.value)

        assert temp_files(tmp_path) == []
        assert await collect(store) == set()

    async def test_cancel_with_writes_queued(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Cancelling while writes are still queued removes the temp file."""
        real_write = _TempFile.write
        writing = threading.Event()

        def slow(self: _TempFile, data: bytes, offset: int = 0) -> None:
            writing.set()
            time.sleep(0.05)
            real_write(self, data, offset)

        monkeypatch.setattr(_TempFile, "write", slow)
        store = FilesystemBlobStore(tmp_path)
        data = blob(6 * 1024 * 1024)
        queued = asyncio.Event()

        async def stalls() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 1024 * 1024):
                yield data[start : start + 1024 * 1024]
            queued.set()
            await asyncio.Event().wait()
            yield b""  # pragma: no cover -- cancelled before

        task = asyncio.create_task(store.put(integrity_of(data), stalls()))
        await asyncio.wait_for(queued.wait(), 10)
        assert writing.is_set()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

        assert temp_files(tmp_path) == []
        assert await collect(store) == set()


KILLED_WRITER = """
    import asyncio, sys
    from sriblob import FilesystemBlobStore

    async def main():
        chunk = bytes(range(256)) * 4096  # 1 MiB
        async def forever():
            for _ in range(10_000):
                yield chunk
                await asyncio.sleep(0.01)
        await FilesystemBlobStore(sys.argv[1]).put(sys.argv[2], forever())

    asyncio.run(main())
"""


class TestCrashes:
    """A killed writer never leaves a torn blob."""

    def test_sigkill_mid_write(self, tmp_path: Path) -> None:
        """A blob whose writer is SIGKILLed mid-stream never appears under its name."""
        chunk = bytes(range(256)) * 4096
        # Any name will do: the child is killed long before its data ends.
        integrity = Integrity.from_bytes(b"a 10 GiB blob")
        child = run_python(KILLED_WRITER, str(tmp_path), str(integrity))
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if any(
                    p.stat().st_size >= 8 * len(chunk) for p in temp_files(tmp_path)
                ):
                    break
                assert child.poll() is None, child.communicate()
                time.sleep(0.02)
            else:  # pragma: no cover -- only when the child is far too slow
                pytest.fail("the writer wrote nothing")
        finally:
            child.send_signal(signal.SIGKILL)
            child.communicate()
        assert child.returncode == -signal.SIGKILL

        store = FilesystemBlobStore(tmp_path)
        assert not store.path_of(integrity).exists()
        assert len(temp_files(tmp_path)) == 1
        assert asyncio.run(collect(store)) == set()
        assert not asyncio.run(store.has(integrity))

    def test_processes_putting_the_same_blobs(self, tmp_path: Path) -> None:
        """Several processes putting the same blobs at once all end with good blobs."""
        code = """
            import asyncio, random, sys, time
            from sriblob import FilesystemBlobStore

            def data(n):
                return random.Random(n).randbytes(300_000 * n + 1)

            async def stream(b):
                for i in range(0, len(b), 65536):
                    yield b[i : i + 65536]

            async def main():
                store = FilesystemBlobStore(sys.argv[1])
                while time.time() < float(sys.argv[2]):
                    await asyncio.sleep(0.005)
                for n in range(6):
                    b = data(n)
                    if n % 2:
                        print(await store.add(stream(b)))
                    else:
                        print(await store.add(b))

            asyncio.run(main())
        """
        start = str(time.time() + 1.0)
        children = [run_python(code, str(tmp_path), start) for _ in range(4)]
        outputs = [child.communicate(timeout=120) for child in children]

        assert [child.returncode for child in children] == [0] * 4, outputs
        names = {line for out, _ in outputs for line in out.decode().split()}
        assert len(names) == 6
        store = FilesystemBlobStore(tmp_path)
        assert asyncio.run(collect(store)) == names
        for name in names:
            assert asyncio.run(store.get(name)) is not None  # verifies the bytes
        assert temp_files(tmp_path) == []

    async def test_concurrent_streams_in_one_process(self, tmp_path: Path) -> None:
        """Concurrent streamed puts of one blob leave one intact file and no temps."""
        store = FilesystemBlobStore(tmp_path)
        data = blob(2 * 1024 * 1024 + 7)
        integrity = integrity_of(data)

        await asyncio.gather(*(store.put(integrity, chunked(data)) for _ in range(6)))

        assert store.path_of(integrity).read_bytes() == data
        assert temp_files(tmp_path) == []
