"""The store-wide maintenance lease, in one process, on every backend.

Two store objects on one storage location stand for two replicas here (the
memory store shares one object: its lease is its process's); the
multi-process races and the killed holders are in
``tests/reliability/test_leases.py``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from sriblob import (
    FilesystemBlobStore,
    Lease,
    MemoryBlobStore,
    PostgresBlobStore,
    S3BlobStore,
    StoreBusy,
    collect_garbage,
    migrate,
    verify,
)

from .helpers import blob, collect
from .postgres_server import drop_schema, fresh_schema

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

    from sriblob import S3StoreConfig


class TestLease:
    """One holder at a time; the second is told who, and may wait."""

    async def test_a_second_taker_is_told_who_holds_it(self, pair: Any) -> None:
        """StoreBusy names the holder's purpose, host, pid and start."""
        async with pair() as (one, two), one.lease("collect_garbage") as held:
            with pytest.raises(StoreBusy) as caught:
                async with two.lease("migrate"):
                    pytest.fail("two holders at once")  # pragma: no cover
        holder = caught.value.holder
        assert isinstance(holder, Lease)
        assert (holder.purpose, holder.pid, holder.token) == (
            "collect_garbage",
            os.getpid(),
            held.token,
        )
        message = str(caught.value)
        assert f"collect_garbage on {held.host} (pid {os.getpid()})" in message
        assert "lease_timeout" in message

    async def test_a_waiting_taker_gets_it_when_released(self, pair: Any) -> None:
        """With wait=, the second taker gets the lease once the first lets go."""
        async with pair() as (one, two):
            holding, released = asyncio.Event(), asyncio.Event()

            async def hold() -> None:
                async with one.lease("first"):
                    holding.set()
                    await asyncio.sleep(0.5)
                    # Set before the release: the answer to the release and
                    # the second taker's create can come back in either
                    # order on one loop.
                    released.set()

            holder = asyncio.ensure_future(hold())
            # Not a fixed sleep: SeaweedFS takes ~200 ms over the first
            # write to a new bucket.
            await asyncio.wait_for(holding.wait(), 20)
            started = time.monotonic()
            async with two.lease("second", wait=20) as mine:
                assert released.is_set()
                assert mine.purpose == "second"
            assert time.monotonic() - started < 15
            await holder

    async def test_a_wait_that_runs_out_is_busy(self, pair: Any) -> None:
        """A busy lease stays busy past wait=: StoreBusy says how long it waited."""
        async with pair() as (one, two), one.lease("first"):
            started = time.monotonic()
            with pytest.raises(StoreBusy, match=r"waited 0\.3 s"):
                async with two.lease("second", wait=0.3):
                    pytest.fail("two holders at once")  # pragma: no cover
            assert time.monotonic() - started >= 0.3

    async def test_an_error_in_the_block_releases_it(self, pair: Any) -> None:
        """The lease is given back however the block ends."""
        async with pair() as (one, two):
            with pytest.raises(RuntimeError, match="boom"):
                async with one.lease("first"):
                    raise RuntimeError("boom")
            async with two.lease("second"):
                pass

    async def test_ordinary_calls_never_wait_for_it(self, pair: Any) -> None:
        """put, get, has, list and delete work while another holds the lease."""
        data = blob(1000, seed=1)
        async with pair() as (one, two), one.lease("collect_garbage"):
            integrity = await two.add(data)
            assert await two.get(integrity) == data
            assert await two.has(integrity)
            assert await collect(two) == {integrity}
            assert await two.delete(integrity)

    async def test_bad_wait_values_are_refused(self, pair: Any) -> None:
        """wait= must be None or seconds >= 0."""
        async with pair() as (one, _):
            for bad in (-1, True, "5", float("nan")):
                with pytest.raises(ValueError, match="wait"):
                    async with one.lease("x", wait=bad):
                        pass  # pragma: no cover


class TestOperationsTakeIt:
    """gc, migrate and verify with deletion hold the lease; dry runs don't."""

    async def test_gc_refuses_a_busy_store_and_deletes_nothing(self, pair: Any) -> None:
        """collect_garbage raises StoreBusy before deleting anything."""
        async with pair() as (one, two):
            integrity = await one.add(blob(500, seed=2))
            async with one.lease("migrate"):
                with pytest.raises(StoreBusy, match="migrate on"):
                    await collect_garbage(two, [], dry_run=False, grace=dt.timedelta(0))
                report = await collect_garbage(two, [], grace=dt.timedelta(0))
                assert report.deleted == (integrity,)  # a dry run needs no lease
            assert await two.has(integrity)
            report = await collect_garbage(
                two, [], dry_run=False, grace=dt.timedelta(0), lease_timeout=5
            )
            assert report.deleted == (integrity,)

    async def test_migrate_takes_the_targets_lease(self, pair: Any) -> None:
        """Migrating into a busy store fails fast; with lease_timeout= it waits."""
        async with pair() as (one, two), MemoryBlobStore(id="source") as source:
            integrity = await source.add(blob(700, seed=3))
            async with one.lease("collect_garbage"):
                with pytest.raises(StoreBusy):
                    await migrate(source, two)
                assert not await two.has(integrity)

            async def later() -> None:
                async with one.lease("collect_garbage"):
                    await asyncio.sleep(0.3)

            holder = asyncio.ensure_future(later())
            await asyncio.sleep(0.05)
            report = await migrate(source, two, lease_timeout=20)
            await holder
            assert report.copied == 1

    async def test_migrate_deleting_takes_the_sources_lease(self, pair: Any) -> None:
        """With delete_source the source's lease is held too."""
        async with pair() as (one, two), MemoryBlobStore(id="target") as target:
            await one.add(blob(300, seed=4))
            async with one.lease("collect_garbage"):
                await migrate(two, target)  # copying only: the source is free
                with pytest.raises(StoreBusy):
                    await migrate(two, target, delete_source=True)

    async def test_verify_takes_it_only_to_delete(self, pair: Any) -> None:
        """A busy store can be verified; deleting what is corrupt needs the lease."""
        async with pair() as (one, two):
            await one.add(blob(300, seed=5))
            async with one.lease("collect_garbage"):
                assert (await verify(two)).ok
                with pytest.raises(StoreBusy):
                    await verify(two, delete_corrupt=True)


@pytest.mark.s3
class TestBucketLease:
    """The S3 lease object: hidden, expiring on the server's clock, guarded."""

    def lease_key(self, config: S3StoreConfig) -> str:
        """The key of the bucket's lease object."""
        return config.key_prefix + ".lease"

    def dead_holder(self, s3_admin: S3Client, config: S3StoreConfig) -> Lease:
        """Leave a lease object no one renews, as a killed holder would."""
        lease = attrs.evolve(Lease.mine("collect_garbage"), pid=999_999)
        s3_admin.put_object(
            Bucket=config.bucket, Key=self.lease_key(config), Body=lease.to_json()
        )
        return lease

    async def test_the_lease_object_is_not_a_blob(
        self, s3_config: S3StoreConfig
    ) -> None:
        """list() skips the lease object, and counts it as nothing foreign."""
        skipped: list[str] = []
        async with S3BlobStore(s3_config) as store, store.lease("collect_garbage"):
            integrity = await store.add(b"listed")
            assert {name async for name in store.list(on_skip=skipped.append)} == {
                integrity
            }
        assert skipped == []

    async def test_an_expired_lease_is_taken_over_not_before(
        self, s3_config: S3StoreConfig, s3_admin: S3Client
    ) -> None:
        """A lease not renewed for lease_ttl (server clock) goes to the next taker."""
        # 5 s, not 3: the first take must still find the dead lease live
        # after opening the store on a loaded machine.
        config = attrs.evolve(s3_config, lease_ttl=5)
        dead = self.dead_holder(s3_admin, config)
        async with S3BlobStore(config) as store:
            with pytest.raises(StoreBusy) as caught:
                async with store.lease("migrate"):
                    pytest.fail("took a live lease")  # pragma: no cover
            assert getattr(caught.value.holder, "pid", None) == dead.pid
            started = time.monotonic()
            async with store.lease("migrate", wait=30) as mine:
                waited = time.monotonic() - started
                stored = s3_admin.get_object(
                    Bucket=config.bucket, Key=self.lease_key(config)
                )["Body"].read()
                assert Lease.from_json(stored) == mine
        # LastModified has one-second resolution on the server.
        assert waited >= 5 - 1.5
        with pytest.raises(s3_admin.exceptions.NoSuchKey):
            s3_admin.get_object(Bucket=config.bucket, Key=self.lease_key(config))

    async def test_a_holder_renews_it(
        self, s3_config: S3StoreConfig, s3_admin: S3Client
    ) -> None:
        """Its holder rewrites the lease every ttl / 3: it never expires while held."""
        config = attrs.evolve(s3_config, lease_ttl=3)
        async with (
            S3BlobStore(config) as one,
            S3BlobStore(config) as two,
            one.lease("collect_garbage") as held,
        ):
            first = s3_admin.head_object(
                Bucket=config.bucket, Key=self.lease_key(config)
            )["LastModified"]
            await asyncio.sleep(4.5)  # past the ttl
            with pytest.raises(StoreBusy):
                async with two.lease("migrate"):
                    pytest.fail("took a renewed lease")  # pragma: no cover
            await one.check_lease(held)
            later = s3_admin.head_object(
                Bucket=config.bucket, Key=self.lease_key(config)
            )["LastModified"]
        assert later > first

    async def test_a_lease_taken_over_is_lost(
        self, s3_config: S3StoreConfig, s3_admin: S3Client, s3_target: Any
    ) -> None:
        """A holder whose lease object was replaced stops: check_lease raises."""
        if not s3_target.conditional_puts:  # pragma: no cover -- s3rver
            pytest.skip(f"{s3_target.name} ignores If-Match on PutObject")
        config = attrs.evolve(s3_config, lease_ttl=3)
        async with S3BlobStore(config) as store, store.lease("collect_garbage") as held:
            self.dead_holder(s3_admin, config)  # another process's, now
            # The next renewal (1 s after the take) is refused; poll for it
            # rather than guess how long a loaded server takes to answer.
            lost = None
            for _ in range(100):
                await asyncio.sleep(0.1)
                try:
                    await store.check_lease(held)
                except StoreBusy as exc:
                    lost = exc
                    break
            assert lost is not None
            assert "lost: another process replaced it" in str(lost)


@pytest.mark.postgres
async def test_a_postgres_lease_dies_with_its_connection(postgres_dsn: str) -> None:
    """Terminating the holder's connection frees the lock; the holder learns it."""
    schema = fresh_schema()
    try:
        async with (
            PostgresBlobStore(postgres_dsn, schema=schema) as one,
            PostgresBlobStore(postgres_dsn, schema=schema) as two,
            one.lease("collect_garbage") as held,
        ):
            conn = one.backend._lease_conns[held.token]
            pid = conn.get_server_pid()
            async with two.pool.acquire() as admin:
                await admin.execute("SELECT pg_terminate_backend($1)", pid)
            lost = None
            for _ in range(100):  # the client learns of it on its next read
                try:
                    await one.check_lease(held)
                except StoreBusy as exc:
                    lost = exc
                    break
                await asyncio.sleep(0.05)
            assert lost is not None
            assert "lost" in str(lost)
            async with two.lease("migrate"):
                pass
    finally:
        await drop_schema(postgres_dsn, schema)


def test_cli_reports_a_busy_store_with_exit_75(tmp_path: Path) -> None:
    """`sriblob gc --yes` on a store another process leases: one line, exit 75."""
    script = (
        "import asyncio, sys\n"
        "from sriblob import FilesystemBlobStore\n"
        "async def main():\n"
        f"    async with FilesystemBlobStore({str(tmp_path)!r}) as s:\n"
        "        async with s.lease('collect_garbage'):\n"
        "            print('held', flush=True)\n"
        "            sys.stdin.readline()\n"
        "asyncio.run(main())\n"
    )
    holder = subprocess.Popen(  # noqa: S603 -- our own interpreter
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        env = {**os.environ, "SRIBLOB_ROOT": str(tmp_path)}
        env = {k: v for k, v in env.items() if "_S3_" not in k and "POSTGRES" not in k}
        done = subprocess.run(
            [sys.executable, "-m", "sriblob", "gc", "--keep", "-", "--yes"],
            input="",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    finally:
        holder.communicate(input="\n", timeout=30)
    assert done.returncode == 75, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1
    assert f"collect_garbage on {socket.gethostname()} (pid {holder.pid})" in lines[0]
    assert "--lease-timeout" in lines[0]


@pytest.mark.postgres
async def test_a_version_1_schema_is_migrated_for_the_lease(postgres_dsn: str) -> None:
    """Tables made before the lease existed get its table when a store opens."""
    schema = fresh_schema()
    try:
        async with PostgresBlobStore(postgres_dsn, schema=schema) as old:
            integrity = await old.add(b"kept across the upgrade")
            lease_table = f'"{schema}"."{old.table_prefix}lease"'
            version_table = old.backend._sql.version
            usage_table = f'"{schema}"."{old.table_prefix}usage"'
            counter = f'"{schema}"."{old.table_prefix}count_usage"'
            async with old.pool.acquire() as conn:
                # Back to version 1: no lease table, no running total.
                await conn.execute(f"DROP TABLE {lease_table}")
                await conn.execute(f"DROP TABLE {usage_table}")
                await conn.execute(f"DROP FUNCTION {counter}() CASCADE")
                await conn.execute(f"UPDATE {version_table} SET version = 1")
        async with (
            PostgresBlobStore(postgres_dsn, schema=schema) as store,
            store.lease("collect_garbage") as held,
            store.pool.acquire() as conn,
        ):
            assert await store.get(integrity) == b"kept across the upgrade"
            row = await conn.fetchrow(f"SELECT * FROM {lease_table}")
            version = await conn.fetchval(f"SELECT version FROM {version_table}")
        assert row is not None
        assert row["token"] == held.token
        assert version == 3  # the lease (2) and the running total (3)
    finally:
        await drop_schema(postgres_dsn, schema)


async def test_a_taker_waits_for_a_new_filesystem_holder_to_name_itself(
    tmp_path: Path,
) -> None:
    """A holder that locked .lease but hasn't written it yet is named, not unknown."""
    import fcntl  # noqa: PLC0415
    import threading  # noqa: PLC0415

    store = FilesystemBlobStore(tmp_path)
    holder = Lease(
        purpose="collect_garbage",
        host="web-2",
        pid=4242,
        since=dt.datetime.now(dt.UTC),
        token="t",
    )
    fd = os.open(tmp_path / ".lease", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # taken; the name comes 0.3 s later
        writer = threading.Timer(0.3, os.pwrite, (fd, holder.to_json(), 0))
        writer.start()
        with pytest.raises(StoreBusy) as caught:
            async with store.lease("migrate"):
                pass
        writer.join()
    finally:
        os.close(fd)
    assert caught.value.holder == holder


@pytest.mark.postgres
async def test_a_taker_waits_for_a_new_postgres_holder_to_commit(
    postgres_dsn: str,
) -> None:
    """A holder whose lock and row are still in their transaction is named."""
    import asyncpg  # noqa: PLC0415

    schema = fresh_schema()
    try:
        async with PostgresBlobStore(postgres_dsn, schema=schema) as store:
            conn = await asyncpg.connect(postgres_dsn)
            try:
                since = dt.datetime.now(dt.UTC)
                transaction = conn.transaction()
                await transaction.start()
                await conn.execute(
                    "SELECT pg_advisory_lock($1)", store.backend._sql.lease_key
                )
                await conn.execute(
                    store.backend._sql.write_lease,
                    "collect_garbage",
                    "web-3",
                    4343,
                    since,
                    "t",
                )

                async def commit_later() -> None:
                    await asyncio.sleep(0.3)
                    await transaction.commit()

                later = asyncio.ensure_future(commit_later())
                with pytest.raises(StoreBusy) as caught:
                    async with store.lease("migrate"):
                        pass
                await later
            finally:
                await conn.close()
        held = caught.value.holder
        assert isinstance(held, Lease)
        assert (held.host, held.pid) == ("web-3", 4343)
    finally:
        await drop_schema(postgres_dsn, schema)
