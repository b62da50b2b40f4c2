"""The maintenance lease across OS processes: races, waits and killed holders.

Each worker is ``python -m tests.lease_worker``: it opens the shared store,
says it is ready, waits for a go file (so the workers start at once), runs
``collect_garbage`` or ``migrate`` slowly enough that they overlap, and
reports whether it ran or found the store busy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from sriblob import (
    FilesystemBlobStore,
    Progress,
    S3BlobStore,
    StoreBusy,
    collect_garbage,
)

from ..helpers import blob
from .proxy import Fault, FaultProxy

if TYPE_CHECKING:
    from sriblob import S3StoreConfig

    from .conftest import Shared

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
#: Blobs each run handles, and seconds it spends on them (holding the lease).
BLOBS = 10
HOLD = 2.0
GUARD = 120


async def seed(shared: Shared, count: int, seed_: int) -> None:
    """Put *count* blobs into the shared store."""
    async with shared.open() as store:
        for n in range(count):
            await store.add(blob(2000, seed=seed_ * 1000 + n))


def source_root(tmp_path: Path, name: str, count: int) -> str:
    """A filesystem store of *count* blobs of its own, for a migrating worker."""
    root = tmp_path / name

    async def fill() -> None:
        async with FilesystemBlobStore(root) as store:
            for n in range(count):
                await store.add(f"{name}-{n}".encode() * 100)

    asyncio.run(fill())
    return str(root)


class Worker:
    """One ``tests.lease_worker`` process."""

    def __init__(self, shared: Shared, go: Path, **options: Any) -> None:
        spec = {
            "store": shared.spec,
            "go": str(go),
            "operation": "gc",
            "wait": None,
            "hold": HOLD,
            "blobs": BLOBS,
            **options,
        }
        self.process = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "tests.lease_worker", json.dumps(spec)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        self.events: list[dict[str, Any]] = []

    def next_event(self) -> dict[str, Any]:
        """The worker's next JSON line (fails the test if it ended)."""
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            _, err = self.process.communicate(timeout=GUARD)
            pytest.fail(f"worker {self.process.pid} ended: {err}")
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    def result(self) -> dict[str, Any]:
        """The worker's outcome: ``ran`` or ``busy``."""
        while True:
            event = self.next_event()
            if event["event"] in ("ran", "busy"):
                self.process.wait(timeout=GUARD)
                return event

    def kill(self) -> None:
        """Stop the worker if it still runs, and reap it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=GUARD)


def start_together(workers: list[Worker], go: Path) -> None:
    """Wait until every worker has its store open, then let them all go."""
    for worker in workers:
        assert worker.next_event()["event"] == "ready"
    go.touch()


class TestTwoAtOnce:
    """Two processes start the same operation on one store at the same moment."""

    @pytest.mark.parametrize("operation", ["gc", "migrate"])
    def test_exactly_one_runs(
        self, shared: Shared, tmp_path: Path, operation: str
    ) -> None:
        """One runs; the other gets StoreBusy naming the first's pid."""
        asyncio.run(seed(shared, BLOBS, 1))
        go = tmp_path / "go"
        workers = [
            Worker(
                shared,
                go,
                operation=operation,
                source_root=source_root(tmp_path, f"source-{n}", BLOBS),
            )
            for n in range(2)
        ]
        try:
            start_together(workers, go)
            results = [worker.result() for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        kinds = sorted(result["event"] for result in results)
        assert kinds == ["busy", "ran"]
        busy = next(r for r in results if r["event"] == "busy")
        runner = next(
            w for w, r in zip(workers, results, strict=True) if r["event"] == "ran"
        )
        assert busy["holder_pid"] == runner.process.pid
        assert f"(pid {runner.process.pid})" in busy["message"]

    def test_a_waiting_second_runs_after_the_first(
        self, shared: Shared, tmp_path: Path
    ) -> None:
        """With lease_timeout both migrations run, one after the other."""
        go = tmp_path / "go"
        workers = [
            Worker(
                shared,
                go,
                operation="migrate",
                wait=60,
                source_root=source_root(tmp_path, f"source-{n}", BLOBS),
            )
            for n in range(2)
        ]
        try:
            start_together(workers, go)
            results = [worker.result() for worker in workers]
        finally:
            for worker in workers:
                worker.kill()
        assert [result["event"] for result in results] == ["ran", "ran"]
        first, second = sorted(results, key=lambda r: r["started"])
        # The second began only after the first had held it for HOLD seconds.
        assert second["started"] >= first["started"] + HOLD * 0.9


class TestKilledHolder:
    """A holder SIGKILLed mid-gc never blocks the store past the expiry."""

    def test_the_next_taker_gets_it(self, shared: Shared, tmp_path: Path) -> None:
        """At once where a lock dies with its process; after lease_ttl on S3."""
        asyncio.run(seed(shared, BLOBS, 2))
        go = tmp_path / "go"
        holder = Worker(shared, go, hold=600.0)
        try:
            start_together([holder], go)
            assert holder.next_event()["event"] == "holding"
            os.kill(holder.process.pid, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            holder.kill()

        async def take() -> tuple[float, bool]:
            async with shared.open() as store:
                busy_at_once = False
                try:
                    async with store.lease("probe"):
                        pass
                except StoreBusy:
                    busy_at_once = True
                async with store.lease("probe", wait=60):
                    return time.monotonic() - killed, busy_at_once

        after, busy_at_once = asyncio.run(take())
        if shared.kind == "s3":
            ttl = shared.config.lease_ttl
            # The lease was last renewed at most ttl / 3 before the kill.
            assert busy_at_once
            assert after >= ttl * 2 / 3 - 1.0
            assert after < ttl + 10
        else:
            assert not busy_at_once
            assert after < 5


@pytest.mark.s3
class TestLostLease:
    """A holder that can't renew its S3 lease stops before anyone may take it."""

    async def test_renewals_failing_stop_the_holder(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """503s on every renewal: check_lease raises once 5/6 of the ttl passed."""
        config = attrs.evolve(proxied_config, lease_ttl=3, max_attempts=1)
        async with S3BlobStore(config) as store, store.lease("collect_garbage") as held:
            proxy.inject(
                Fault("status", match=(".lease", "PUT"), status=503, times=999)
            )
            await store.check_lease(held)  # fresh: fine
            await asyncio.sleep(2.0)
            await store.check_lease(held)  # renewals failed, but within the ttl
            await asyncio.sleep(1.0)
            with pytest.raises(StoreBusy, match="not renewed within its 3 s ttl"):
                await store.check_lease(held)
            assert any(kind == "status" for _, kind in proxy.hits)

    async def test_gc_stops_deleting_when_its_lease_is_lost(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """collect_garbage raises StoreBusy mid-run and deletes nothing more."""
        config = attrs.evolve(proxied_config, lease_ttl=3, max_attempts=1)
        async with S3BlobStore(config) as store:
            names = [await store.add(blob(500, seed=n)) for n in range(8)]

            def slow(progress: Progress) -> None:
                if progress.blobs_done == 1:  # the lease is held by now
                    proxy.inject(
                        Fault("status", match=(".lease", "PUT"), status=503, times=999)
                    )
                time.sleep(0.8)

            with pytest.raises(StoreBusy, match="lost"):
                await collect_garbage(
                    store, [], dry_run=False, grace=dt.timedelta(0), on_progress=slow
                )
            proxy.clear()
            left = [name for name in names if await store.has(name)]
        # It deleted some before the ttl ran out, and stopped for the rest.
        assert 0 < len(left) < len(names)
