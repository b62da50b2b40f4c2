"""Attacks on "sriblob never loses the only good copy", one class per way in.

Each class is one way an outside probe made an earlier sriblob delete, hide
or mislabel a good copy, or hang; each test tries it again against the real
backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import (
    BlobStore,
    ConfigurationError,
    FilesystemBlobStore,
    Integrity,
    IntegrityMismatch,
    InvalidIntegrity,
    MemoryBlobStore,
    PostgresBlobStore,
    S3BlobStore,
    S3StoreConfig,
    StoreError,
    StoreUnavailable,
    collect_garbage,
    default_registry,
    migrate,
    verify,
)
from sriblob._memory import MemoryBackend
from sriblob._s3._upload import BLIND_PUT_MAX
from sriblob.keys import integrity_to_key

from ..helpers import Backend, blob, chunked, collect, integrity_of, s3_leftovers
from .proxy import Fault, FaultKind, FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
LONG_AGO = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def flip(data: bytes, at: int = 0) -> bytes:
    """Return *data* with one bit flipped at *at*: same size, other bytes."""
    return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]


async def age(store: BlobStore, integrity: str, when: dt.datetime) -> None:
    """Set the blob's storage time to *when*, behind the store's back."""
    if isinstance(store, FilesystemBlobStore):
        os.utime(store.path_of(integrity), (when.timestamp(), when.timestamp()))
    elif isinstance(store, PostgresBlobStore):
        await store.pool.execute(
            f"UPDATE {store.backend._sql.blobs} SET created_at = $2"
            " WHERE integrity = $1",
            integrity,
            when,
        )
    else:
        assert isinstance(store, MemoryBlobStore)
        assert isinstance(store.backend, MemoryBackend)
        store.backend.stored_at[integrity] = when


async def slowly(data: bytes, *, chunk: int, pause: float) -> AsyncIterator[bytes]:
    """Yield *data* in chunks, pausing between them: a long-running put."""
    for start in range(0, len(data), chunk):
        await asyncio.sleep(pause)
        yield data[start : start + chunk]


class TestGraceCountsFromVisibility:
    """Item 1: a long put is fresh when it returns, whatever the backend."""

    async def test_long_put_survives_a_collection_right_after(
        self, store: BlobStore
    ) -> None:
        """A put that streamed for 3.6 s is spared by gc(grace=2 s) right after."""
        data = blob(12 * MiB, seed=1)
        integrity = integrity_of(data)
        await store.put(integrity, slowly(data, chunk=MiB, pause=0.3))

        report = await collect_garbage(
            store, [], dry_run=False, grace=dt.timedelta(seconds=2)
        )

        assert report.deleted == ()
        assert report.spared_fresh == 1
        assert await store.get(integrity) == data


class TestMigrationKeepsAGoodCopy:
    """Item 2: delete_source never deletes when the target's copy is damaged."""

    async def test_damaged_target_copy_is_replaced_first(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """A same-size copy with a flipped bit is repaired before the source goes."""
        data = blob(300_000, seed=2)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), flip(data, 1234))
        async with MemoryBlobStore(id="source") as source:
            await source.put(integrity, data)

            report = await migrate(source, store, delete_source=True)

            assert (report.repaired, report.deleted, report.failed) == (1, 1, ())
            assert await collect(source) == set()
        assert await store.get(integrity) == data

    async def test_unverifying_target_copy_is_checked_too(
        self, backend: Backend
    ) -> None:
        """A target opened with verify=False gets its copy read and repaired."""
        data = blob(300_000, seed=3)
        integrity = integrity_of(data)
        async with backend.make(verify=False) as target:
            await target.put(integrity, data)
            await backend.corrupt(target, Integrity.parse(integrity), flip(data))
            async with MemoryBlobStore(id="source") as source:
                await source.put(integrity, data)

                report = await migrate(source, target, delete_source=True)

                assert (report.repaired, report.deleted) == (1, 1)
            assert await target.get(integrity) == data

    async def test_unverified_names_are_compared_by_digest(
        self, backend: Backend
    ) -> None:
        """With verify=False on both sides, a damaged target copy is found too."""
        name = integrity_of(b"the upstream tarball")
        derived = blob(300_000, seed=4)
        async with (
            backend.make(verify=False) as target,
            MemoryBlobStore(id="source", verify=False) as source,
        ):
            await source.put(name, derived)
            await target.put(name, derived)
            await backend.corrupt(target, Integrity.parse(name), flip(derived))

            report = await migrate(source, target, delete_source=True)

            assert (report.repaired, report.deleted, report.failed) == (1, 1, ())
            assert await target.get(name) == derived


class TestRePutRepairs:
    """Item 3: putting the good bytes again replaces a damaged copy."""

    async def test_after_a_failed_read(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """Once a read saw the copy corrupt, a put of the good bytes replaces it."""
        data = blob(1000, seed=5)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), flip(data))
        with pytest.raises(IntegrityMismatch):
            await store.get(integrity)

        await store.put(integrity, data)

        assert await store.get(integrity) == data

    async def test_after_verify_found_it(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """A blob verify() reported corrupt is replaced by the next put."""
        data = blob(2 * MiB, seed=6)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), flip(data, MiB))
        assert (await verify(store)).corrupt == (integrity,)

        await store.put(integrity, chunked(data))

        assert await store.get(integrity) == data

    @pytest.mark.parametrize("backend", ["memory", "filesystem", "s3"], indirect=True)
    async def test_another_size_is_replaced_unread(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """A stored copy whose size differs from the bytes put is replaced."""
        data = blob(BLIND_PUT_MAX + 1, seed=7)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), data[:-1000])

        await store.put(integrity, data)

        assert await store.get(integrity) == data

    @pytest.mark.parametrize(
        ("call", "form", "size"),
        [
            ("put", "bytes", 1000),
            ("put", "bytes", BLIND_PUT_MAX + 1),
            ("put", "bytes", 17 * MiB),
            ("put", "stream", BLIND_PUT_MAX + 1),
            ("add", "bytes", 1000),
            ("add", "stream", BLIND_PUT_MAX + 1),
            ("add", "stream", 17 * MiB),
        ],
        ids=str,
    )
    async def test_a_flipped_byte_no_read_saw(
        self, backend: Backend, store: BlobStore, call: str, form: str, size: int
    ) -> None:
        """A same-size copy damaged behind the store's back is repaired by a put.

        No read saw the damage, so the store has no memory of it: the put
        itself must find it (checking the copy, or replacing it outright).
        """
        data = blob(size, seed=size % 97)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), flip(data, size // 2))

        given = data if form == "bytes" else chunked(data, 64 * 1024)
        if call == "put":
            assert await store.put(integrity, given) == integrity
        else:
            assert await store.add(given) == integrity

        report = await verify(store)
        assert report.corrupt == ()
        assert report.checked == 1
        assert await store.get(integrity) == data

    async def test_replace_rewrites_whatever_is_there(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """put(..., replace=True) writes the verified bytes over the stored copy."""
        data = blob(1000, seed=8)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await backend.corrupt(store, Integrity.parse(integrity), flip(data))

        await store.put(integrity, data, replace=True)

        assert await store.get(integrity) == data


class TestCollectionAgainstReput:
    """Item 4: a put that renews a blob between gc's look and its delete wins."""

    @pytest.mark.parametrize(
        "backend", ["memory", "filesystem", "postgres"], indirect=True
    )
    async def test_renewed_while_the_collection_decides(
        self, store: BlobStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The collection looked (old), a put renewed, it deleted: the blob stays."""
        data = blob(1000, seed=9)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        await age(store, integrity, LONG_AGO)
        looked, renewed = asyncio.Event(), asyncio.Event()
        real_stat = store.stat

        async def slow_stat(wanted: Any) -> Any:
            info = await real_stat(wanted)
            looked.set()
            await renewed.wait()  # the race, widened: a put lands here
            return info

        monkeypatch.setattr(store, "stat", slow_stat)
        collection = asyncio.create_task(
            collect_garbage(store, [], dry_run=False, grace=dt.timedelta(hours=1))
        )
        await looked.wait()
        await store.put(integrity, data)
        renewed.set()
        report = await collection

        assert report.deleted == ()
        assert report.spared_fresh == 1
        assert await store.get(integrity) == data

    def test_filesystem_renewal_and_deletion_threads(self, tmp_path: Path) -> None:
        """300 races of a renewing put and a conditional delete never lose a put."""
        store = FilesystemBlobStore(tmp_path)
        data = b"renewed or deleted, never both"
        integrity = Integrity.from_bytes(data)
        location = store.backend.tree.locate(integrity)
        cutoff = dt.datetime.now(dt.UTC).timestamp() - 60
        rng = random.Random(10)
        outcomes = set()
        for _ in range(300):
            asyncio.run(store.put(integrity, data))
            os.utime(location.path, (cutoff - 10, cutoff - 10))
            results: dict[str, bool] = {}
            start = threading.Barrier(2)

            def renew(
                results: dict[str, bool] = results, start: threading.Barrier = start
            ) -> None:
                start.wait()
                results["kept"] = store.backend.tree.keep_stored(
                    location, lambda _: True
                )

            def delete(
                results: dict[str, bool] = results, start: threading.Barrier = start
            ) -> None:
                start.wait()
                if rng.random() < 0.5:
                    os.sched_yield()
                results["deleted"], _ = store.backend.tree.delete(
                    location, cutoff, counted=False
                )

            threads = [threading.Thread(target=renew), threading.Thread(target=delete)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            # A put that kept the blob must find it there afterwards.
            if results["kept"]:
                assert location.path.is_file()
                assert not results["deleted"]
            outcomes.add((results["kept"], results["deleted"]))
        assert (True, False) in outcomes  # the renewal won at least once
        assert (False, True) in outcomes  # and the deletion too


class TestRootIsTheBoundary:
    """Item 6: nothing below the root is followed, the root itself may be."""

    @pytest.fixture(name="outside")
    def _outside(self, tmp_path: Path) -> Path:
        """A file outside the store, like /etc/passwd."""
        path = tmp_path / "outside" / "passwd"
        path.parent.mkdir()
        path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n")
        os.utime(path, (LONG_AGO.timestamp(), LONG_AGO.timestamp()))
        return path

    async def test_symlinked_blob_is_refused_everywhere(
        self, tmp_path: Path, outside: Path
    ) -> None:
        """has, stat, get, open refuse it; verify reports it; nothing is read."""
        store = FilesystemBlobStore(tmp_path / "store", verify=False)
        integrity = integrity_of(b"a blob")
        await store.put(integrity, b"a blob")
        path = store.path_of(integrity)
        path.unlink()
        path.symlink_to(outside)

        for call in (store.has, store.stat, store.get):
            with pytest.raises(StoreError, match="symlink") as excinfo:
                await call(integrity)
            assert str(path) in str(excinfo.value)
        with pytest.raises(StoreError, match="symlink"):
            async with store.open(integrity):
                pass
        report = await verify(FilesystemBlobStore(tmp_path / "store"))
        assert [f.integrity for f in report.failed] == [integrity]
        assert "symlink" in report.failed[0].reason
        assert outside.read_bytes().startswith(b"root:x:0:0")

    async def test_reput_replaces_the_symlink_not_its_target(
        self, tmp_path: Path, outside: Path
    ) -> None:
        """A put of the blob puts a real file there and leaves the target alone."""
        store = FilesystemBlobStore(tmp_path / "store")
        integrity = integrity_of(b"a blob")
        await store.put(integrity, b"a blob")
        path = store.path_of(integrity)
        path.unlink()
        path.symlink_to(outside)
        before = outside.stat()

        await store.put(integrity, b"a blob")

        assert not path.is_symlink()
        assert await store.get(integrity) == b"a blob"
        after = outside.stat()
        assert (after.st_mtime, after.st_size) == (before.st_mtime, before.st_size)

    @pytest.mark.parametrize("level", [1, 2])
    async def test_symlinked_fan_out_directory_is_refused(
        self, tmp_path: Path, level: int
    ) -> None:
        """A put never writes through a symlinked directory under the root."""
        store = FilesystemBlobStore(tmp_path / "store")
        integrity = integrity_of(b"a blob")
        path = store.path_of(integrity)
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        linked = path.parents[2 - level]
        linked.parent.mkdir(parents=True, exist_ok=True)
        linked.symlink_to(elsewhere, target_is_directory=True)

        with pytest.raises(StoreError, match="symlink") as excinfo:
            await store.put(integrity, b"a blob")
        with pytest.raises(StoreError, match="symlink"):
            await store.has(integrity)

        assert str(linked) in str(excinfo.value)
        assert list(elsewhere.rglob("*")) == []

    async def test_symlinked_root_still_works(self, tmp_path: Path) -> None:
        """The root itself may be a symlink: that is the user's choice."""
        real = tmp_path / "real"
        real.mkdir()
        (tmp_path / "link").symlink_to(real, target_is_directory=True)
        store = FilesystemBlobStore(tmp_path / "link")

        integrity = await store.add(b"through the root's link")

        assert await store.get(integrity) == b"through the root's link"
        assert await collect(store) == {integrity}
        assert list(real.rglob("*.tmp-*")) == []

    async def test_migration_reports_a_symlinked_blob(
        self, tmp_path: Path, outside: Path
    ) -> None:
        """A migration lists the symlinked blob as failed, not silently left."""
        source = FilesystemBlobStore(tmp_path / "store")
        good, bad = integrity_of(b"good"), integrity_of(b"bad")
        await source.put(good, b"good")
        await source.put(bad, b"bad")
        source.path_of(bad).unlink()
        source.path_of(bad).symlink_to(outside)

        async with MemoryBlobStore() as target:
            report = await migrate(source, target, delete_source=True)

            assert [f.integrity for f in report.failed] == [bad]
            assert await collect(target) == {good}
        assert outside.exists()


@contextlib.contextmanager
def umask(mask: int) -> Any:
    """Run the block under the process umask *mask*."""
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


class TestModes:
    """Item 7: blobs are read-only for others at most, whatever the umask."""

    @pytest.mark.parametrize(
        ("mask", "file", "directory"),
        [(0, 0o444, 0o755), (0o077, 0o400, 0o700)],
        ids=["umask-000", "umask-077"],
    )
    async def test_modes(
        self, tmp_path: Path, mask: int, file: int, directory: int
    ) -> None:
        """Files 0o444 and directories 0o755, less what a stricter umask removes."""
        store = FilesystemBlobStore(tmp_path / "new" / "store")
        with umask(mask):
            small = await store.add(b"small")
            streamed = await store.add(chunked(blob(3 * MiB, seed=11), MiB))
            named = integrity_of(blob(2 * MiB, seed=12))
            await store.put(named, chunked(blob(2 * MiB, seed=12), MiB))

        for integrity in (small, streamed, named):
            path = store.path_of(integrity)
            assert stat.S_IMODE(path.stat().st_mode) == file
            for parent in (path.parent, path.parent.parent, path.parents[2]):
                assert stat.S_IMODE(parent.stat().st_mode) == directory
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == directory
        assert stat.S_IMODE(store.root.stat().st_mode) == directory


class TestMutatedBuffer:
    """Item 8: a bytearray changed during put() never ends up mislabelled."""

    @pytest.mark.parametrize("size", [MiB, 3 * MiB], ids=["one-call", "streamed"])
    async def test_mutation_during_put(self, store: BlobStore, size: int) -> None:
        """A bytearray overwritten at a random moment of its put is never mislabelled.

        Each of 36 trials overwrites 64 KiB of the buffer once, from another
        thread, somewhere within the first few milliseconds of the put: where
        a store hashes the bytes at one moment and writes them at another,
        some trials land in between. Whatever the moment, the blob must be
        stored right or refused.
        """
        original = blob(size, seed=13)
        integrity = integrity_of(original)
        rng = random.Random(size)
        outcomes = []
        for _ in range(36):
            buffer = bytearray(original)
            delay = rng.uniform(0, 0.006)
            at = rng.randrange(0, size - 65536)

            def scribble(
                buffer: bytearray = buffer, delay: float = delay, at: int = at
            ) -> None:
                threading.Event().wait(delay)
                buffer[at : at + 65536] = bytes(65536)

            thread = threading.Thread(target=scribble)
            thread.start()
            try:
                await store.put(integrity, buffer)
                outcomes.append("stored")
            except IntegrityMismatch:
                outcomes.append("refused")
            finally:
                thread.join()
            # Stored means stored right: get() verifies.
            assert await store.get(integrity) in (None, original)
            await store.delete(integrity)
        assert len(outcomes) == 36

    async def test_mutation_after_the_call_is_not_stored(
        self, store: BlobStore
    ) -> None:
        """Bytes changed once put() has started are not the bytes stored."""
        original = blob(3 * MiB, seed=14)
        buffer = bytearray(original)
        put = asyncio.ensure_future(store.put(integrity_of(original), buffer))
        await asyncio.sleep(0)  # put() has started and taken its copy
        buffer[:] = bytes(len(buffer))

        await put

        assert await store.get(integrity_of(original)) == original


def hang_config(config: S3StoreConfig, proxy: FaultProxy) -> S3StoreConfig:
    """Short bounds, two attempts: every stall must end within seconds."""
    return attrs_evolve(
        config,
        endpoint=proxy.endpoint,
        connect_timeout=1.0,
        read_timeout=1.0,
        pool_timeout=1.0,
        min_transfer_rate=MiB,
        max_attempts=2,
    )


def attrs_evolve(config: S3StoreConfig, **changes: Any) -> S3StoreConfig:
    """Return *config* with *changes*."""
    import attrs  # noqa: PLC0415 -- keeps the test module's imports short

    return attrs.evolve(config, **changes)


#: No stalled request may keep a test waiting longer than this.
GUARD = 60.0


@pytest.mark.s3
class TestNeverHang:
    """Item 9: a server that stalls is an error within a bound, never a hang."""

    @pytest.mark.parametrize(
        ("kind", "size"),
        [("hang", 2 * MiB), ("stop_reading", 2 * MiB), ("hang", 1000)],
        ids=["no-100-continue", "stops-reading", "no-answer"],
    )
    async def test_put_that_gets_no_answer(
        self, s3_config: S3StoreConfig, proxy: FaultProxy, kind: FaultKind, size: int
    ) -> None:
        """A PutObject the server never answers fails with StoreUnavailable."""
        proxy.inject(Fault(kind, match="PUT ", times=1000, after=64 * 1024))
        data = blob(size, seed=15)
        async with S3BlobStore(hang_config(s3_config, proxy)) as store:
            async with asyncio.timeout(GUARD):
                with pytest.raises(StoreUnavailable, match="PutObject"):
                    await store.put(integrity_of(data), data)

    async def test_unanswered_upload_part(
        self,
        s3_config: S3StoreConfig,
        proxy: FaultProxy,
        s3_admin: S3Client,
    ) -> None:
        """An UploadPart that never gets an answer fails the put, aborted."""
        proxy.inject(Fault("hang", match="partNumber=2", times=1000))
        data = blob(12 * MiB, seed=16)
        async with S3BlobStore(hang_config(s3_config, proxy)) as store:
            async with asyncio.timeout(GUARD):
                with pytest.raises(StoreUnavailable, match="UploadPart"):
                    await store.put(integrity_of(data), data)

        assert s3_leftovers(s3_admin, s3_config) == []

    async def test_trickled_body(
        self, s3_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """A GET body sent a few bytes a second fails instead of running on."""
        data = blob(256 * 1024, seed=17)
        async with S3BlobStore(s3_config) as store:
            await store.put(integrity_of(data), data)
        # The head at full speed, then the body at 100 bytes a second.
        proxy.inject(Fault("trickle", match="GET ", times=1000, rate=100, after=2000))
        async with S3BlobStore(hang_config(s3_config, proxy)) as store:
            async with asyncio.timeout(GUARD):
                with pytest.raises(StoreUnavailable, match="min_transfer_rate"):
                    await store.get(integrity_of(data))
                with pytest.raises(StoreUnavailable, match="min_transfer_rate"):
                    async with store.open(integrity_of(data)) as reader:
                        await reader.read()

    async def test_operation_timeout(
        self, s3_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """operation_timeout bounds a whole call, retries and all."""
        proxy.inject(Fault("stall", match="HEAD ", times=1000, seconds=3.0))
        config = attrs_evolve(
            hang_config(s3_config, proxy),
            read_timeout=10.0,
            max_attempts=10,
            operation_timeout=2.0,
        )
        async with S3BlobStore(config) as store:
            async with asyncio.timeout(GUARD):
                with pytest.raises(StoreUnavailable, match="operation_timeout"):
                    await store.stat(integrity_of(b"x"))


class TestPoolExhaustion:
    """Item 10: waiting for a connection ends in StoreUnavailable, not a hang."""

    @pytest.mark.s3
    async def test_s3_readers_holding_every_connection(
        self, s3_config: S3StoreConfig
    ) -> None:
        """One more open() than the pool holds fails within pool_timeout."""
        # One connection in the pool: no parallel ranges either (the test
        # config reads on four, which sizes the pool to four).
        config = attrs_evolve(
            s3_config,
            max_concurrency=1,
            read_concurrency=1,
            pool_timeout=1.0,
            max_attempts=1,
        )
        async with S3BlobStore(config) as store:
            data = blob(3 * MiB, seed=18)
            integrity = integrity_of(data)
            await store.put(integrity, data)
            async with contextlib.AsyncExitStack() as held:
                for _ in range(config.max_concurrency + 4):
                    await held.enter_async_context(store.open(integrity))
                async with asyncio.timeout(GUARD):
                    with pytest.raises(StoreUnavailable, match="GetObject"):
                        async with store.open(integrity):
                            pass
            assert await store.get(integrity) == data  # the pool came back

    @pytest.mark.postgres
    async def test_postgres_readers_holding_every_connection(
        self, postgres_dsn: str
    ) -> None:
        """A fourth reader on a pool of three fails within acquire_timeout."""
        schema = f"exhaust_{random.randrange(10**9)}"
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, max_connections=3, acquire_timeout=1.0
        ) as store:
            data = blob(3 * MiB, seed=19)
            integrity = integrity_of(data)
            await store.put(integrity, data)
            async with contextlib.AsyncExitStack() as held:
                for _ in range(3):
                    await held.enter_async_context(store.open(integrity))
                async with asyncio.timeout(GUARD):
                    with pytest.raises(StoreUnavailable, match="acquire_timeout"):
                        await store.get(integrity)
            assert await store.get(integrity) == data
            await store.pool.execute(f'DROP SCHEMA "{schema}" CASCADE')

    @pytest.mark.postgres
    async def test_migration_over_one_shared_pool(self, postgres_dsn: str) -> None:
        """Two stores on one host pool of 4, concurrency 4: no deadlock."""
        import asyncpg  # noqa: PLC0415 -- the tests group has it

        pool = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
        suffix = random.randrange(10**9)
        try:
            async with (
                PostgresBlobStore(
                    pool=pool, schema=f"src_{suffix}", acquire_timeout=1.0
                ) as source,
                PostgresBlobStore(
                    pool=pool, schema=f"dst_{suffix}", acquire_timeout=1.0
                ) as target,
            ):
                blobs = {
                    integrity_of(blob(500, seed=n)): blob(500, seed=n)
                    for n in range(12)
                }
                for integrity, data in blobs.items():
                    await source.put(integrity, data)

                async with asyncio.timeout(GUARD):
                    report = await migrate(source, target, concurrency=4)

                for failure in report.failed:
                    assert "acquire_timeout" in failure.reason
                async with asyncio.timeout(GUARD):
                    again = await migrate(source, target, concurrency=1)
                assert again.ok
                assert await collect(target) == set(blobs)
                for schema in (source.schema, target.schema):
                    await pool.execute(f'DROP SCHEMA "{schema}" CASCADE')
        finally:
            await pool.close()


@pytest.mark.postgres
class TestPostgresDamage:
    """Items 11 and 12: a lost connection and a missing chunk row say so."""

    async def test_terminated_backend_mid_read(self, postgres_dsn: str) -> None:
        """pg_terminate_backend during open() raises StoreUnavailable."""
        schema = f"terminate_{random.randrange(10**9)}"
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=64 * 1024
        ) as store:
            data = blob(4 * MiB, seed=20)
            integrity = integrity_of(data)
            await store.put(integrity, data)
            import asyncpg  # noqa: PLC0415 -- the tests group has it

            admin = await asyncpg.connect(postgres_dsn)

            async def read_while_terminated() -> None:
                async with store.open(integrity) as reader:
                    await anext(reader)
                    await admin.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE pid <> pg_backend_pid() AND state <> 'idle'"
                    )
                    await reader.read()

            try:
                with pytest.raises(StoreUnavailable):
                    await read_while_terminated()
                # The pool replaces the connection it lost.
                assert await store.get(integrity) == data
                await admin.execute(f'DROP SCHEMA "{schema}" CASCADE')
            finally:
                await admin.close()

    async def test_missing_chunk_row_without_verification(
        self, postgres_dsn: str
    ) -> None:
        """verify=False never returns a blob short of a chunk row."""
        schema = f"short_{random.randrange(10**9)}"
        async with PostgresBlobStore(
            postgres_dsn, schema=schema, chunk_size=64 * 1024, verify=False
        ) as store:
            data = blob(500_000, seed=21)
            integrity = integrity_of(data)
            await store.put(integrity, data)
            await store.pool.execute(
                f"DELETE FROM {store.backend._sql.chunks} WHERE seq = 3"
            )

            with pytest.raises(StoreError, match="434464 of its 500000 bytes"):
                await store.get(integrity)
            with pytest.raises(StoreError, match="434464 of its 500000 bytes"):
                async with store.open(integrity) as reader:
                    await reader.read()
            await store.pool.execute(f'DROP SCHEMA "{schema}" CASCADE')


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str) -> Any:
    """Mount a tmpfs of *size* at *path* (root only); unmount afterwards."""
    import subprocess  # noqa: PLC0415 -- only these tests mount

    path.mkdir()
    try:
        subprocess.run(  # noqa: S603 -- fixed arguments
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],  # noqa: S607
            check=True,
            capture_output=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"can't mount a tmpfs here ({exc}); CI runs this")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)  # noqa: S603, S607


def remount_read_only(path: Path) -> None:
    """Make the tmpfs at *path* read-only."""
    import subprocess  # noqa: PLC0415 -- only these tests mount

    subprocess.run(  # noqa: S603 -- fixed arguments
        ["mount", "-o", "remount,ro", str(path)],  # noqa: S607
        check=True,
        capture_output=True,
    )


class TestClearErrors:
    """Item 13: bad input and a failing disk raise the library's errors."""

    async def test_directory_at_a_blob_path(self, tmp_path: Path) -> None:
        """A directory where a blob belongs is a StoreError naming it."""
        store = FilesystemBlobStore(tmp_path)
        integrity = integrity_of(b"x")
        store.path_of(integrity).mkdir(parents=True)

        for write in (store.put(integrity, b"x"), store.add(b"x")):
            with pytest.raises(StoreError, match="not a regular file") as excinfo:
                await write
            assert str(store.path_of(integrity)) in str(excinfo.value)
            assert ".tmp-" not in str(excinfo.value)

    async def test_file_where_a_directory_belongs(self, tmp_path: Path) -> None:
        """A file in place of a fan-out directory is a StoreError."""
        store = FilesystemBlobStore(tmp_path)
        integrity = integrity_of(b"x")
        store.path_of(integrity).parent.parent.mkdir(parents=True)
        store.path_of(integrity).parent.write_bytes(b"not a directory")

        with pytest.raises(StoreError, match="not a directory"):
            await store.put(integrity, b"x")

    async def test_root_that_is_a_file(self, tmp_path: Path) -> None:
        """A root that is a file fails every call with one clear message."""
        (tmp_path / "root").write_bytes(b"oops")
        store = FilesystemBlobStore(tmp_path / "root")
        integrity = integrity_of(b"x")

        for call in (
            store.put(integrity, b"x"),
            store.get(integrity),
            store.has(integrity),
            collect(store),
        ):
            with pytest.raises(StoreError, match=r"root .* is not a directory"):
                await call

    async def test_full_disk(self, tmp_path: Path) -> None:
        """ENOSPC is StoreUnavailable naming the blob, and leaves no temp file."""
        with small_tmpfs(tmp_path / "disk", "1m") as disk:
            store = FilesystemBlobStore(disk)
            data = blob(2 * MiB, seed=22)
            for write in (
                store.put(integrity_of(data), data),
                store.add(chunked(data, 256 * 1024)),
            ):
                with pytest.raises(StoreUnavailable, match="No space left"):
                    await write
            assert [p for p in disk.rglob("*") if p.is_file()] == []
            assert await store.add(b"small still fits")

    async def test_read_only_disk(self, tmp_path: Path) -> None:
        """EROFS is StoreUnavailable; the stored blobs still read."""
        with small_tmpfs(tmp_path / "disk", "4m") as disk:
            store = FilesystemBlobStore(disk)
            kept = await store.add(b"written before")
            remount_read_only(disk)

            with pytest.raises(StoreUnavailable, match="read-only"):
                await store.add(b"written after")
            assert await store.get(kept) == b"written before"
            await store.put(kept, b"written before")  # a no-op, still fine

    async def test_unsupported_integrity_object(self, store: BlobStore) -> None:
        """An Integrity built by hand with md5 is InvalidIntegrity before any I/O."""
        with pytest.raises(InvalidIntegrity, match="md5"):
            await store.put(Integrity("md5", bytes(16)), b"x")  # type: ignore[arg-type]
        with pytest.raises(InvalidIntegrity, match="64 bytes"):
            await store.get(Integrity("sha512", bytes(3)))

    def test_key_of_a_lone_surrogate(self) -> None:
        """The key codec refuses what UTF-8 can't encode, as InvalidIntegrity."""
        with pytest.raises(InvalidIntegrity, match="UTF-8"):
            integrity_to_key("sha512-\ud800")

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("part_size", 5.5 * MiB + 0.5),
            ("max_attempts", 2.5),
            ("max_concurrency", 8.0),
        ],
    )
    def test_float_for_an_integer_field(self, field: str, value: float) -> None:
        """An integer field refuses a float at construction, naming the field."""
        with pytest.raises(ConfigurationError, match=field) as excinfo:
            S3StoreConfig(
                bucket="b",
                access_key_id="k",
                secret_access_key="s",
                **{field: value},  # type: ignore[arg-type]
            )
        assert excinfo.value.fields == (field,)


@pytest.mark.s3
class TestCancelledStagingAdd:
    """Item 14: a cancelled add() never leaves a completed staging object."""

    async def test_cancel_while_the_staging_upload_completes(
        self,
        s3_config: S3StoreConfig,
        proxy: FaultProxy,
        s3_admin: S3Client,
    ) -> None:
        """Cancelled during CompleteMultipartUpload: the staging key still goes.

        The complete is held on its way to the server, and the abort that a
        cancelled upload sends fails: the complete lands after the cleanup
        had its chance, unless the cleanup waits for it.
        """
        complete, abort = ("POST ", "?uploadId="), ("DELETE ", "?uploadId=")
        proxy.inject(Fault("stall", match=complete, times=1, seconds=1.5))
        proxy.inject(Fault("status", match=abort, times=1000, status=403))
        data = blob(12 * MiB, seed=23)
        async with S3BlobStore(
            attrs_evolve(s3_config, endpoint=proxy.endpoint)
        ) as store:
            add = asyncio.ensure_future(store.add(chunked(data, MiB)))
            while not any(kind == "stall" for _, kind in proxy.hits):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            add.cancel()
            with pytest.raises(asyncio.CancelledError):
                await add
        await asyncio.sleep(2.0)  # the stalled complete has landed by now

        assert s3_leftovers(s3_admin, s3_config) == []


def cli_env(config: S3StoreConfig, root: Path) -> dict[str, str]:
    """The environment of a `sriblob` process using *config* as its S3 store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(S3_ENV)}
    env.update(
        {
            f"{S3_ENV}ENDPOINT": str(config.endpoint),
            f"{S3_ENV}BUCKET": config.bucket,
            f"{S3_ENV}REGION": str(config.region),
            f"{S3_ENV}ACCESS_KEY_ID": config.access_key_id,
            f"{S3_ENV}SECRET_ACCESS_KEY": config.secret_access_key,
            f"{S3_ENV}FORCE_PATH_STYLE": "true",
            "SRIBLOB_ROOT": str(root),
        }
    )
    return env


S3_ENV = "CHECKSTACK_SCRIPT_PACKAGES_S3_"


@pytest.mark.s3
class TestShellSignals:
    """Item 16: a signal during `get -o` leaves no temp file, and no traceback."""

    @pytest.mark.parametrize(
        ("signal_number", "code", "word"),
        [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")],
        ids=["SIGTERM", "SIGINT"],
    )
    @pytest.mark.usefixtures("sigint_reaches_children")
    async def test_signal_while_the_blob_downloads(
        self,
        *,
        s3_config: S3StoreConfig,
        proxy: FaultProxy,
        tmp_path: Path,
        signal_number: int,
        code: int,
        word: str,
    ) -> None:
        """The temp file beside the output goes, the exit status says why."""
        data = blob(2 * MiB, seed=51)
        async with S3BlobStore(s3_config) as store:
            integrity = await store.put(integrity_of(data), data)
        proxy.inject(Fault("stall", match="GET /", times=1, seconds=30))
        out = tmp_path / "out"
        out.mkdir()
        env = cli_env(attrs_evolve(s3_config, endpoint=proxy.endpoint), tmp_path / "fs")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sriblob",
            "get",
            integrity,
            "-o",
            str(out / "blob.tgz"),
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(GUARD):
            while not any(kind == "stall" for _, kind in proxy.hits):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            assert next(p.name for p in out.iterdir()).startswith(".blob.tgz.tmp-")
            process.send_signal(signal_number)
            _, stderr = await process.communicate()

        assert process.returncode == code
        assert f"sriblob: error: {word}" in stderr.decode()
        assert "Traceback" not in stderr.decode()
        assert list(out.iterdir()) == []

    @pytest.mark.usefixtures("sigint_reaches_children")
    def test_ctrl_c_at_start_up(self, tmp_path: Path) -> None:
        """Ctrl-C at 20 moments of a command's start-up never prints a traceback."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(S3_ENV)}
        env["SRIBLOB_ROOT"] = str(tmp_path)
        command = [sys.executable, "-m", "sriblob", "-v", "info"]
        # Before this much has passed, the interpreter is still starting up
        # (its own imports, site-packages): not sriblob's to catch.
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-c", "import sriblob._cli"], check=True, env=env
        )
        interpreter = time.monotonic() - started
        rng = random.Random(52)
        codes = []
        for _ in range(20):
            process = subprocess.Popen(  # noqa: S603 -- our own interpreter
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            time.sleep(interpreter * 1.5 + rng.uniform(0, 0.25))
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=GUARD)
            assert b"Traceback" not in stderr, stderr.decode()
            codes.append(process.returncode)
        # 130: sriblob caught it; -SIGINT: the interpreter had not started
        # running sriblob yet, or had finished, and died of the signal quietly.
        assert set(codes) <= {0, 130, -signal.SIGINT}
        assert 130 in codes  # the signal did land during the command at times


@pytest.mark.postgres
class TestDsnSecrets:
    """Item 15: no form of DSN gets its password into a message or a repr."""

    PASSWORD = "S3CRETpw"

    @pytest.mark.parametrize(
        "dsn",
        [
            "postgresql://app:1234/S3CRETpw@db.internal/blobs",
            "postgresql://app:S3CRETpw/x@db.internal/blobs",
            "postgresql://app:S3CRET#pw@db.internal/blobs",
            "postgresql://app:S3CRET?pw@db.internal/blobs",
        ],
    )
    def test_unencoded_specials_are_refused_unseen(self, dsn: str) -> None:
        """A '/', '#' or '?' in the password is refused, the password unshown."""
        secret = "S3CRET"
        with pytest.raises(ConfigurationError, match="percent-encode") as excinfo:
            PostgresBlobStore(dsn)
        assert secret not in str(excinfo.value)

        registry = default_registry({"SRIBLOB_POSTGRES_DSN": dsn}, root="/nonexistent")
        assert registry.writes_refused
        assert secret not in "\n".join(registry.describe())

    @pytest.mark.parametrize(
        ("dsn", "where"),
        [
            (
                "postgresql://app:S3CRETpw%2Fx@db.internal:5433/blobs",
                "db.internal:5433/blobs",
            ),
            ("postgresql://app:p@S3CRETpw@db.internal/blobs", "db.internal/blobs"),
            ("postgresql://:S3CRETpw@db.internal/blobs", "db.internal/blobs"),
            (
                "postgresql://app:S3CRETpw@h1:5432,h2:5433/blobs",
                "h1:5432,h2:5433/blobs",
            ),
            ("postgres://app:S3CRETpw@/blobs?host=/run/postgresql", "localhost/blobs"),
        ],
    )
    def test_accepted_forms_show_only_host_and_database(
        self, dsn: str, where: str
    ) -> None:
        """repr() of the store and its config show host and database only."""
        store = PostgresBlobStore(dsn)

        for text in (repr(store), repr(store.config)):
            assert where in text
            assert self.PASSWORD not in text
            assert "app" not in text

    async def test_connection_error_names_no_password(self) -> None:
        """A failed connection's StoreError and its endpoint hide the password."""
        import socket  # noqa: PLC0415 -- only here

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        store = PostgresBlobStore(
            f"postgresql://app:{self.PASSWORD}@127.0.0.1:{port}/blobs"
        )
        # The store opens with the server down; its first call says so.
        async with store:
            with pytest.raises(StoreUnavailable) as excinfo:
                await store.has(integrity_of(b"x"))

        assert self.PASSWORD not in str(excinfo.value)
        assert excinfo.value.endpoint == f"127.0.0.1:{port}/blobs"
