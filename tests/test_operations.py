"""migrate(), verify() and collect_garbage(), through the public API."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import logging
from typing import TYPE_CHECKING, Any

import attrs
import pytest

import sriblob
from sriblob import (
    BlobBody,
    BlobInfo,
    BlobStore,
    Integrity,
    InvalidIntegrity,
    MemoryBlobStore,
    Progress,
    StoreUnavailable,
    collect_garbage,
    migrate,
    verify,
)
from sriblob._memory import MemoryBackend

from .helpers import Backend, blob, collect, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob import BlobSource

UTC = dt.UTC
HOUR = dt.timedelta(hours=1)
ZERO = dt.timedelta(0)


class InstrumentedBackend(MemoryBackend):
    """A memory store that can be slowed down, made to fail, or to lie.

    Attributes:
        delay: Seconds each ``open()`` waits before yielding, so that copies
            overlap.
        in_flight: Blobs open right now; ``max_in_flight`` is the peak.
        opened: Every integrity opened, in order.
        fail_puts: Make every ``put()`` fail with StoreUnavailable.
        puts_before_failing: When set, ``fail_puts`` turns on after this
            many more successful puts.
        fail_open: Integrities whose ``open()`` raises an empty OSError.
        dated: Whether ``stat()`` reports the storage time.
        mangle: Flip the first byte of every blob written, after the write.
        ghosts: Integrities the listing yields although they aren't stored.
        list_error_after: Make the listing fail after this many names.
        listing_open: Whether a listing is suspended mid-way right now.
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        super().__init__()
        self.mangle = False
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.opened: list[str] = []
        self.fail_puts = False
        self.puts_before_failing: int | None = None
        self.fail_open: set[str] = set()
        self.dated = True
        self.ghosts: list[str] = []
        self.list_error_after: int | None = None
        self.listing_open = False

    async def write_blob(self, source: BlobSource) -> None:
        """Store, or fail as configured."""
        if self.puts_before_failing is not None:
            if self.puts_before_failing == 0:
                self.fail_puts = True
            self.puts_before_failing -= 1
        if self.fail_puts:
            msg = "the disk is on fire"
            raise StoreUnavailable(msg, backend=self.id)
        await super().write_blob(source)
        if self.mangle:
            name = str(source.integrity)
            self.blobs[name] = bytes([self.blobs[name][0] ^ 1]) + self.blobs[name][1:]

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity) -> AsyncIterator[BlobBody]:
        """Open, counting and delaying as configured."""
        self.opened.append(str(integrity))
        if str(integrity) in self.fail_open:
            raise OSError
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            async with super().read_blob(integrity) as opened:
                yield opened
        finally:
            self.in_flight -= 1

    async def stat_blob(self, integrity: Integrity) -> BlobInfo | None:
        """Report, without the time if undated."""
        info = await super().stat_blob(integrity)
        if info is None:
            return None
        stored_at = info.stored_at if self.dated else None
        return attrs.evolve(info, stored_at=stored_at)

    async def list_names(self) -> AsyncIterator[str]:
        """List, with ghosts, failing as configured."""
        self.listing_open = True
        try:
            listed = 0
            async for name in super().list_names():
                if listed == self.list_error_after:
                    msg = "listing broke"
                    raise StoreUnavailable(msg, backend=self.id)
                listed += 1
                yield name
            for name in self.ghosts:
                yield name
        finally:
            self.listing_open = False


class Instrumented(BlobStore):
    """A memory store over :class:`InstrumentedBackend`, its knobs at hand.

    Reading or setting one of the backend's knobs (``delay``, ``fail_puts``,
    ``opened``, ...) on the store reads or sets it on the backend.
    """

    _KNOBS = frozenset(
        {
            "mangle",
            "delay",
            "in_flight",
            "max_in_flight",
            "opened",
            "fail_puts",
            "puts_before_failing",
            "fail_open",
            "dated",
            "ghosts",
            "list_error_after",
            "listing_open",
            "_blobs",
            "_stored_at",
        }
    )

    def __init__(
        self, *, id: str = "instrumented", delay: float = 0.0, verify: bool = True
    ) -> None:
        super().__init__(InstrumentedBackend(delay=delay), id=id, verify=verify)

    def __getattr__(self, name: str) -> Any:
        if name in Instrumented._KNOBS:
            return getattr(self.backend, name.lstrip("_"))
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in Instrumented._KNOBS:
            setattr(self.backend, name.lstrip("_"), value)
        else:
            super().__setattr__(name, value)


async def fill(store: BlobStore, count: int, size: int = 1000) -> dict[str, bytes]:
    """Put *count* distinct blobs into *store*; return them by integrity."""
    blobs = {}
    for seed in range(count):
        data = blob(size + seed, seed)
        integrity = integrity_of(data)
        await store.put(integrity, data)
        blobs[integrity] = data
    return blobs


async def assert_holds(store: BlobStore, blobs: dict[str, bytes]) -> None:
    """Assert *store* holds exactly *blobs*, each reading back verified."""
    assert await collect(store) == set(blobs)
    for integrity, data in blobs.items():
        async with store.open(integrity) as reader:
            assert await reader.read() == data


def assert_growing(progress: list[Progress]) -> None:
    """Assert no count in a series of progress values ever decreases."""
    fields = ("blobs_done", "bytes_done", "copied", "skipped", "failed")
    for before, after in itertools.pairwise(progress):
        for field in fields:
            assert getattr(after, field) >= getattr(before, field), field
    assert [p.blobs_done for p in progress] == list(range(1, len(progress) + 1))


@pytest.fixture(name="source")
async def _source() -> AsyncIterator[Instrumented]:
    async with Instrumented(id="source") as store:
        yield store


@pytest.fixture(name="target")
async def _target() -> AsyncIterator[Instrumented]:
    async with Instrumented(id="target") as store:
        yield store


class TestMigrate:
    """migrate() copies a store into another, resumably."""

    @pytest.mark.parametrize("direction", ["from_backend", "into_backend"])
    async def test_copies_every_blob(self, backend: Backend, direction: str) -> None:
        """Every blob arrives in the target intact, and the report counts them."""
        async with backend.make() as store, MemoryBlobStore() as memory:
            source, target = (
                (store, memory) if direction == "from_backend" else (memory, store)
            )
            blobs = await fill(source, 7)
            blobs.update(await fill(source, 1, size=3 * 1024 * 1024 + 1))

            report = await migrate(source, target)

            assert report.ok
            assert report.copied == len(blobs)
            assert report.skipped == 0
            assert report.deleted == 0
            assert report.bytes_copied == sum(map(len, blobs.values()))
            await assert_holds(target, blobs)
            assert await collect(source) == set(blobs)

    async def test_skips_blobs_the_target_has(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """Blobs already in the target are counted as skipped and never read."""
        blobs = await fill(source, 6)
        present = sorted(blobs)[:2]
        for integrity in present:
            await target.put(integrity, blobs[integrity])

        report = await migrate(source, target)

        assert (report.copied, report.skipped) == (4, 2)
        assert report.bytes_copied == sum(
            len(data) for i, data in blobs.items() if i not in present
        )
        assert not set(present) & set(source.opened)
        await assert_holds(target, blobs)

    async def test_resumes_after_the_target_failed(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """Puts that failed are reported; a second run copies only those."""
        blobs = await fill(source, 10)
        target.puts_before_failing = 3

        first = await migrate(source, target, concurrency=2)

        assert not first.ok
        assert first.copied == 3
        assert len(first.failed) == 7
        assert {f.integrity for f in first.failed} == set(blobs) - await collect(target)
        assert all(
            f.reason == "StoreUnavailable: the disk is on fire" for f in first.failed
        )

        target.fail_puts = False
        second = await migrate(source, target, concurrency=2)

        assert second.ok
        assert (second.copied, second.skipped) == (7, 3)
        await assert_holds(target, blobs)
        assert (await verify(target)).ok

    async def test_resumes_after_cancellation(self, backend: Backend) -> None:
        """A cancelled run stops cleanly, and a second run finishes the job."""
        async with Instrumented(delay=0.005) as source, backend.make() as target:
            blobs = await fill(source, 12)
            enough = asyncio.Event()

            def on_progress(progress: Progress, /) -> None:
                if progress.blobs_done == 4:
                    enough.set()

            task = asyncio.create_task(
                migrate(source, target, concurrency=2, on_progress=on_progress)
            )
            await enough.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

            assert source.in_flight == 0
            await asyncio.sleep(0)  # let the loop finalize the inner listing
            assert not source.listing_open
            copied = await collect(target)
            assert 4 <= len(copied) < len(blobs)

            report = await migrate(source, target)

            assert report.ok
            assert report.skipped == len(copied)
            assert report.copied == len(blobs) - len(copied)
            await assert_holds(target, blobs)
            assert (await verify(target)).ok

    async def test_corrupt_source_blob_is_recorded(self, backend: Backend) -> None:
        """A corrupt source blob fails alone, is not copied, and the run goes on."""
        async with backend.make() as source, MemoryBlobStore() as target:
            blobs = await fill(source, 5)
            bad = min(blobs)
            await backend.corrupt(source, Integrity.parse(bad), b"rotten bytes")

            report = await migrate(source, target)

            assert [f.integrity for f in report.failed] == [bad]
            assert report.failed[0].reason.startswith("IntegrityMismatch: ")
            assert "\n" not in report.failed[0].reason
            assert report.copied == 4
            del blobs[bad]
            await assert_holds(target, blobs)

    async def test_size_cap_of_the_target(self, backend: Backend) -> None:
        """Blobs over the target's max_blob_size fail alone; the rest is copied."""
        async with (
            MemoryBlobStore() as source,
            backend.make(max_blob_size=1500) as target,
        ):
            small = await fill(source, 2)
            big = await fill(source, 1, size=3 * 1024 * 1024)

            report = await migrate(source, target)

            assert [f.integrity for f in report.failed] == list(big)
            assert report.failed[0].reason.startswith("BlobTooLarge: ")
            await assert_holds(target, small)

    async def test_delete_source_after_verified_presence(
        self, backend: Backend
    ) -> None:
        """With delete_source, every blob moves: the source ends up empty."""
        async with backend.make() as source, MemoryBlobStore() as target:
            blobs = await fill(source, 5)
            await target.put(*next(iter(blobs.items())))

            report = await migrate(source, target, delete_source=True)

            assert report.ok
            assert (report.copied, report.skipped, report.deleted) == (4, 1, 5)
            assert await collect(source) == set()
            await assert_holds(target, blobs)

    async def test_delete_source_keeps_unconfirmed_blobs(
        self, source: Instrumented
    ) -> None:
        """A copy that doesn't read back as written keeps the blob in the source."""
        blobs = await fill(source, 3)
        target = Instrumented(id="target", verify=False)
        target.mangle = True  # flips a byte of every blob it writes

        report = await migrate(source, target, delete_source=True)

        assert report.deleted == 0
        # A copy that doesn't read back as written doesn't count as copied.
        assert report.copied == 0
        assert {f.integrity for f in report.failed} == set(blobs)
        assert "not deleted from the source" in report.failed[0].reason
        await assert_holds(source, blobs)

    async def test_delete_source_keeps_blobs_that_failed(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """A blob that failed to copy is never deleted from the source."""
        blobs = await fill(source, 3)
        bad = sorted(blobs)[1]
        source._blobs[bad] = b"rotten bytes"

        report = await migrate(source, target, delete_source=True)

        assert report.deleted == 2
        assert [f.integrity for f in report.failed] == [bad]
        assert await collect(source) == {bad}
        assert await collect(target) == set(blobs) - {bad}

    async def test_delete_source_vanished_blob(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """A listed blob that isn't there any more is reported, not deleted."""
        await fill(source, 2)
        ghost = integrity_of(b"ghost")
        await target.put(ghost, b"ghost")
        source.ghosts = [ghost]

        report = await migrate(source, target, delete_source=True)

        assert report.deleted == 2
        assert [f.integrity for f in report.failed] == [ghost]
        assert "vanished from the source" in report.failed[0].reason

    async def test_delete_source_refuses_shared_storage(self) -> None:
        """Two store objects over one storage are refused before any deletion."""
        async with MemoryBlobStore() as source, MemoryBlobStore() as target:
            target.backend.blobs = source.backend.blobs
            target.backend.stored_at = source.backend.stored_at
            blobs = await fill(source, 3)

            with pytest.raises(ValueError, match="only copy"):
                await migrate(source, target, delete_source=True)

            await assert_holds(source, blobs)

    async def test_refuses_one_store_twice(self) -> None:
        """Migrating a store into itself is refused."""
        async with MemoryBlobStore() as store:
            with pytest.raises(ValueError, match="same store"):
                await migrate(store, store)

    @pytest.mark.parametrize("concurrency", [0, -1, True, 1.5])
    async def test_refuses_bad_concurrency(self, concurrency: int) -> None:
        """A concurrency that isn't a positive int is refused."""
        async with MemoryBlobStore() as source, MemoryBlobStore() as target:
            with pytest.raises(ValueError, match="concurrency"):
                await migrate(source, target, concurrency=concurrency)

    @pytest.mark.parametrize("concurrency", [1, 3])
    async def test_concurrency_is_bounded(
        self, target: Instrumented, concurrency: int
    ) -> None:
        """At most `concurrency` blobs are open at once, with a fixed task count."""
        async with Instrumented(delay=0.002) as source:
            await fill(source, 20)
            baseline = len(asyncio.all_tasks())
            tasks: list[int] = []

            def on_progress(progress: Progress, /) -> None:
                tasks.append(len(asyncio.all_tasks()))

            await migrate(
                source, target, concurrency=concurrency, on_progress=on_progress
            )

            assert source.max_in_flight == concurrency
            # The producer and the workers; no task per blob.
            assert max(tasks) <= baseline + 1 + concurrency

    async def test_progress_counts_grow(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """on_progress sees every blob once, with counts that only grow."""
        blobs = await fill(source, 8)
        await target.put(*next(iter(blobs.items())))
        source.fail_open = {max(blobs)}
        progress: list[Progress] = []

        report = await migrate(source, target, on_progress=progress.append)

        assert_growing(progress)
        assert {p.current for p in progress} == set(blobs)
        last = progress[-1]
        assert (last.copied, last.skipped, last.failed) == (6, 1, 1)
        assert last.bytes_done == report.bytes_copied
        assert report.failed[0].reason == "OSError"

    async def test_listing_failure_propagates(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """A failing source listing stops the run with its own exception."""
        await fill(source, 6)
        source.list_error_after = 2

        with pytest.raises(StoreUnavailable, match="listing broke"):
            await migrate(source, target, concurrency=2)

        assert source.in_flight == 0

    async def test_progress_callback_error_propagates(
        self, source: Instrumented, target: Instrumented
    ) -> None:
        """An exception raised by on_progress stops the run and propagates."""
        await fill(source, 6)

        def on_progress(progress: Progress, /) -> None:
            raise RuntimeError(progress.current)

        with pytest.raises(RuntimeError):
            await migrate(source, target, on_progress=on_progress)

    async def test_logs_a_summary(
        self,
        source: Instrumented,
        target: Instrumented,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """One info line sums the run up; debug lines name each blob."""
        blobs = await fill(source, 3)
        caplog.set_level(logging.DEBUG, logger="sriblob")

        await migrate(source, target)

        infos = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
        total = sum(map(len, blobs.values()))
        summary = (
            "migrate source=source target=target copied=3 skipped=0 failed=0 "
            f"bytes_copied={total} deleted=0 repaired=0 foreign=0"
        )
        assert infos == [summary]
        debug = "\n".join(r.getMessage() for r in caplog.records)
        for integrity, data in blobs.items():
            assert f"migrate copied integrity={integrity} size={len(data)}" in debug


class TestVerify:
    """verify() reads every blob and reports the corrupt ones."""

    async def test_intact_store(self, store: BlobStore) -> None:
        """An intact store verifies ok, every blob checked."""
        blobs = await fill(store, 5)
        progress: list[Progress] = []

        report = await verify(store, on_progress=progress.append)

        assert report.ok
        assert report.checked == 5
        assert report.bytes_checked == sum(map(len, blobs.values()))
        assert (report.corrupt, report.failed, report.deleted) == ((), (), 0)
        assert_growing(progress)
        assert progress[-1].bytes_done == report.bytes_checked

    async def test_finds_corrupt_blob(self, backend: Backend, store: BlobStore) -> None:
        """A corrupted blob is reported as corrupt and left in place."""
        blobs = await fill(store, 5)
        bad = sorted(blobs)[2]
        await backend.corrupt(store, Integrity.parse(bad), b"bit rot")
        progress: list[Progress] = []

        report = await verify(store, on_progress=progress.append)

        assert not report.ok
        assert report.corrupt == (bad,)
        assert report.checked == 4
        assert report.deleted == 0
        assert await store.has(bad)
        assert progress[-1].failed == 1

    async def test_deletes_corrupt_blob(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """delete_corrupt removes the corrupt blob so a healthy copy can be put."""
        blobs = await fill(store, 4)
        bad = min(blobs)
        await backend.corrupt(store, Integrity.parse(bad), b"bit rot")

        report = await verify(store, delete_corrupt=True)

        assert report.corrupt == (bad,)
        assert report.deleted == 1
        assert not await store.has(bad)
        await store.put(bad, blobs[bad])
        assert (await verify(store)).ok

    async def test_refuses_unverifying_store(self, backend: Backend) -> None:
        """A store opened with verify=False is refused with a pointer to the fix."""
        async with backend.make(verify=False) as store:
            with pytest.raises(ValueError, match="verify=True"):
                await verify(store)

    async def test_records_unreadable_blobs(self) -> None:
        """A blob that can't be read is a failure, not corruption."""
        async with Instrumented() as store:
            blobs = await fill(store, 3)
            unreadable = sorted(blobs)[1]
            store.fail_open = {unreadable}

            report = await verify(store)

            assert report.corrupt == ()
            assert [f.integrity for f in report.failed] == [unreadable]
            assert report.checked == 2

    async def test_records_failed_deletion(self) -> None:
        """A corrupt blob that can't be deleted is reported corrupt and failed."""

        class Undeletable(MemoryBackend):
            async def delete_blob(
                self, integrity: Integrity, *, stored_before: dt.datetime | None
            ) -> bool:
                msg = "read-only"
                raise PermissionError(msg)

        async with BlobStore(Undeletable()) as store:
            blobs = await fill(store, 2)
            bad = min(blobs)
            store.backend.blobs[bad] = b"bit rot"  # type: ignore[attr-defined]
            progress: list[Progress] = []

            report = await verify(
                store, delete_corrupt=True, on_progress=progress.append
            )

            assert report.corrupt == (bad,)
            assert report.deleted == 0
            assert [f.reason for f in report.failed] == ["PermissionError: read-only"]
            assert progress[-1].failed == 1


def far_future() -> dt.datetime:
    """Return a time after every blob a test stores."""
    return dt.datetime.now(UTC) + dt.timedelta(days=1)


class TestCollectGarbage:
    """collect_garbage() deletes what isn't live, and spares what is fresh."""

    async def test_dry_run_deletes_nothing(self, store: BlobStore) -> None:
        """A dry run reports the garbage and the bytes it holds, and keeps it."""
        blobs = await fill(store, 5)
        live = sorted(blobs)[:2]
        garbage = sorted(blobs)[2:]

        report = await collect_garbage(store, live, grace=ZERO, now=far_future())

        assert report.dry_run
        assert report.deleted == tuple(garbage)
        assert report.bytes_freed == sum(len(blobs[i]) for i in garbage)
        assert report.kept == 2
        assert await collect(store) == set(blobs)

    async def test_deletes_blobs_not_live(self, store: BlobStore) -> None:
        """Without dry_run, only the live blobs remain."""
        blobs = await fill(store, 5)
        live = sorted(blobs)[:2]

        report = await collect_garbage(
            store, live, dry_run=False, grace=ZERO, now=far_future()
        )

        assert not report.dry_run
        assert report.deleted == tuple(sorted(blobs)[2:])
        assert report.bytes_freed == sum(len(blobs[i]) for i in report.deleted)
        assert (report.kept, report.spared_fresh) == (2, 0)
        assert await collect(store) == set(live)

    async def test_progress(self, store: BlobStore) -> None:
        """on_progress sees every snapshot blob, the total, and the bytes freed."""
        blobs = await fill(store, 4)
        live = sorted(blobs)[:1]
        progress: list[Progress] = []

        report = await collect_garbage(
            store, live, grace=ZERO, now=far_future(), on_progress=progress.append
        )

        assert [p.blobs_done for p in progress] == [1, 2, 3, 4]
        assert {p.total for p in progress} == {4}
        assert {p.current for p in progress} == set(blobs)
        assert progress[-1].bytes_done == report.bytes_freed > 0

    async def test_spares_fresh_blobs(self) -> None:
        """Blobs stored within the grace period before `now` are spared."""
        async with MemoryBlobStore() as store:
            blobs = await fill(store, 4)

            report = await collect_garbage(store, [], dry_run=False)

            assert report.deleted == ()
            assert report.spared_fresh == 4
            assert await collect(store) == set(blobs)

    async def test_grace_boundary(self) -> None:
        """A blob is fresh while its storage time is later than now - grace."""
        async with MemoryBlobStore() as store:
            integrity = integrity_of(b"data")
            await store.put(integrity, b"data")
            info = await store.stat(integrity)
            assert info is not None
            assert info.stored_at is not None
            tick = dt.timedelta(microseconds=1)

            fresh = await collect_garbage(
                store, [], dry_run=False, now=info.stored_at + HOUR - tick
            )
            assert (fresh.deleted, fresh.spared_fresh) == ((), 1)

            old = await collect_garbage(
                store, [], dry_run=False, now=info.stored_at + HOUR
            )
            assert (old.deleted, old.spared_fresh) == ((integrity,), 0)
            assert not await store.has(integrity)

    @pytest.mark.parametrize("dated", [True, False])
    async def test_spares_blobs_put_during_collection(self, dated: bool) -> None:
        """A blob put while the collection runs survives it, dated or not."""
        async with Instrumented() as store:
            store.dated = dated
            old = await fill(store, 3)
            fresh = integrity_of(b"new upload")

            async def live() -> AsyncIterator[str]:
                # A writer stores a blob after the listing, before it is live.
                await store.put(fresh, b"new upload")
                yield min(old)

            report = await collect_garbage(store, live(), dry_run=False, grace=ZERO)

            assert report.deleted == tuple(sorted(old)[1:])
            assert await collect(store) == {min(old), fresh}

    async def test_undated_blobs_spared_while_grace_positive(self) -> None:
        """Blobs without a storage time are spared unless grace is zero."""
        async with Instrumented() as store:
            store.dated = False
            blobs = await fill(store, 3)

            spared = await collect_garbage(store, [], dry_run=False, now=far_future())
            assert (spared.deleted, spared.spared_fresh) == ((), 3)

            swept = await collect_garbage(store, [], dry_run=False, grace=ZERO)
            assert swept.deleted == tuple(sorted(blobs))
            assert await collect(store) == set()

    async def test_invalid_live_integrity_deletes_nothing(
        self, store: BlobStore
    ) -> None:
        """A malformed live integrity raises before anything is deleted."""
        blobs = await fill(store, 3)

        async def live() -> AsyncIterator[str]:
            yield min(blobs)
            yield "sha512-not-base64!"

        with pytest.raises(InvalidIntegrity):
            await collect_garbage(store, live(), dry_run=False, grace=ZERO)

        assert await collect(store) == set(blobs)

    async def test_live_names_any_hash(self, store: BlobStore) -> None:
        """Live integrities may be Integrity objects or multi-hash strings."""
        blobs = await fill(store, 3)
        first, second, third = sorted(blobs)
        live: list[str | Integrity] = [
            Integrity.parse(first),
            f"{integrity_of(blobs[second], 'sha256')} {second}?x",
        ]

        report = await collect_garbage(
            store, live, dry_run=False, grace=ZERO, now=far_future()
        )

        assert report.deleted == (third,)
        assert await collect(store) == {first, second}

    async def test_vanished_blob_is_ignored(self) -> None:
        """A listed blob that is gone by the time it is looked at is skipped."""
        async with Instrumented() as store:
            store.ghosts = [integrity_of(b"ghost")]

            report = await collect_garbage(store, [], dry_run=False, grace=ZERO)

            assert report == sriblob.GarbageReport((), 0, 0, 0, dry_run=False)

    @pytest.mark.parametrize(
        ("options", "error"),
        [
            ({"grace": -HOUR}, ValueError),
            ({"grace": 3600}, ValueError),
            ({"now": dt.datetime(2026, 1, 1)}, ValueError),  # noqa: DTZ001
            ({"live": "sha512-abc"}, TypeError),
        ],
    )
    async def test_refuses_bad_arguments(
        self, options: dict[str, object], error: type[Exception]
    ) -> None:
        """Negative grace, naive now and a single-string live set are refused."""
        async with MemoryBlobStore() as store:
            await fill(store, 1)
            kwargs: dict[str, object] = {"live": [], "dry_run": False} | options
            with pytest.raises(error):
                await collect_garbage(store, **kwargs)  # type: ignore[arg-type]
            assert len(await collect(store)) == 1

    async def test_logs_a_summary(self, caplog: pytest.LogCaptureFixture) -> None:
        """One info line sums the run up."""
        async with MemoryBlobStore(id="mem") as store:
            blobs = await fill(store, 2)
            caplog.set_level(logging.INFO, logger="sriblob")

            await collect_garbage(store, [], grace=ZERO, now=far_future())

            total = sum(map(len, blobs.values()))
            summary = (
                "collect_garbage store=mem dry_run=True deleted=2 "
                f"bytes_freed={total} kept=0 spared_fresh=0"
            )
            assert [r.getMessage() for r in caplog.records] == [summary]


class TestExports:
    """The operations are part of the public API."""

    def test_exported(self) -> None:
        """Every operation name is exported, and __all__ stays sorted."""
        names = {
            "Failure",
            "GarbageReport",
            "MigrationReport",
            "Progress",
            "VerifyReport",
            "collect_garbage",
            "migrate",
            "verify",
        }
        assert names <= set(sriblob.__all__)
        assert sriblob.__all__ == sorted(sriblob.__all__)
        assert all(hasattr(sriblob, name) for name in names)

    def test_reports_are_frozen(self) -> None:
        """Reports are immutable values."""
        report = sriblob.MigrationReport(1, 0, (), 10, 0)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            report.copied = 2  # type: ignore[misc]
        assert report.ok
