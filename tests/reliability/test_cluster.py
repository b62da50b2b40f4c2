"""A replicated SeaweedFS cluster loses nodes; sriblob keeps every blob.

Everything goes through :class:`sriblob.S3BlobStore` against the cluster's S3
gateway (see ``seaweedfs.py``): one master, three volume servers with
replication 001, one filer, one gateway, all on 127.0.0.1. The tests run in
order on one cluster: put 500 blobs and lose a volume server; bring it back
and lose another; lose the gateway mid-upload; two processes at once. Each
prints what it measured (run with ``-s`` to see it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any, Final

import boto3
import pytest

from sriblob import S3BlobStore, S3StoreConfig, StoreUnavailable, verify
from sriblob.keys import integrity_to_key

from ..helpers import blob, integrity_of
from .seaweedfs import Cluster, seaweedfs_cluster

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from mypy_boto3_s3 import S3Client

pytestmark = [pytest.mark.reliability, pytest.mark.cluster]

KiB: Final = 1024
MiB: Final = 1024 * KiB
#: How long a put may keep failing while the cluster reorganises.
RETRY_FOR: Final = 30.0
#: No step of these tests may take longer than this.
GUARD: Final = 300.0


def sizes() -> list[int]:
    """500 sizes from 1 KiB to 24 MiB: mostly small, some in several parts."""
    rng = random.Random(61)
    return (
        [rng.randint(KiB, 256 * KiB) for _ in range(450)]
        + [rng.randint(256 * KiB, 8 * MiB) for _ in range(40)]
        + [rng.randint(12 * MiB, 24 * MiB) for _ in range(10)]
    )


@pytest.fixture(name="cluster", scope="module")
def _cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with seaweedfs_cluster(tmp_path_factory.mktemp("seaweedfs")) as cluster:
        yield cluster


@pytest.fixture(name="admin", scope="module")
def _admin(cluster: Cluster) -> S3Client:
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=cluster.endpoint,
        aws_access_key_id=cluster.access_key_id,
        aws_secret_access_key=cluster.secret_access_key,
        region_name="us-east-1",
    )
    return client


@pytest.fixture(name="config", scope="module")
def _config(cluster: Cluster, admin: S3Client) -> S3StoreConfig:
    admin.create_bucket(Bucket="sriblob-cluster")
    return S3StoreConfig(
        bucket="sriblob-cluster",
        access_key_id=cluster.access_key_id,
        secret_access_key=cluster.secret_access_key,
        endpoint=cluster.endpoint,
        region="us-east-1",
        force_path_style=True,
        part_size=5 * MiB,
        multipart_threshold=8 * MiB,
        connect_timeout=2.0,
        read_timeout=10.0,
        max_attempts=6,
    )


#: integrity -> size of every blob the tests stored, shared in order.
STORED: dict[str, int] = {}


async def put_all(store: S3BlobStore, blobs: list[tuple[int, int]]) -> float:
    """Put blobs (seed, size) at concurrency 16; return the seconds it took."""
    gate = asyncio.Semaphore(16)
    started = time.monotonic()

    async def one(seed: int, size: int) -> None:
        data = blob(size, seed=seed)
        async with gate:
            STORED[await put_patiently(store, data)] = size

    await asyncio.gather(*(one(seed, size) for seed, size in blobs))
    return time.monotonic() - started


async def put_patiently(store: S3BlobStore, data: bytes) -> str:
    """Put *data*, retrying StoreUnavailable for up to RETRY_FOR seconds."""
    deadline = time.monotonic() + RETRY_FOR
    while True:
        try:
            return await store.put(integrity_of(data), data)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


async def read_everything(store: S3BlobStore) -> int:
    """Read every stored blob with get() and with open(); return the bytes read."""
    gate = asyncio.Semaphore(16)
    total = 0

    async def one(integrity: str, size: int) -> None:
        nonlocal total
        async with gate:
            data = await store.get(integrity)  # verified
            assert data is not None, integrity
            assert len(data) == size
            streamed = 0
            async with store.open(integrity) as reader:  # verified as it streams
                async for chunk in reader:
                    streamed += len(chunk)
            assert streamed == size
            total += size + streamed

    await asyncio.gather(*(one(i, size) for i, size in STORED.items()))
    return total


def report(**figures: Any) -> None:
    """Print what a step measured, as one JSON line (see docs/reliability.md)."""
    print("cluster:", json.dumps(figures))  # noqa: T201 -- the figures for the docs


class TestCluster:
    """The four steps, in order, on one cluster."""

    async def test_1_lose_a_volume_server(
        self, cluster: Cluster, config: S3StoreConfig
    ) -> None:
        """500 blobs, then SIGKILL volume1: all read back verified, puts go on."""
        async with S3BlobStore(config) as store, asyncio.timeout(GUARD):
            put_seconds = await put_all(store, list(enumerate(sizes())))
            assert len(STORED) == 500
            cluster.kill("volume1")
            killed = time.monotonic()

            read = await read_everything(store)
            recovered = time.monotonic() - killed
            report_ = await verify(store, concurrency=8)
            assert report_.ok
            assert report_.checked == 500
            more = await put_all(store, [(1000 + n, 64 * KiB + n) for n in range(50)])
            assert len(STORED) == 550
        report(
            step="lose volume1",
            blobs=500,
            bytes=sum(sizes()),
            put_seconds=round(put_seconds, 1),
            read_back_seconds=round(recovered, 1),
            bytes_read=read,
            puts_after=50,
            puts_after_seconds=round(more, 1),
        )

    async def test_2_lose_another(
        self, cluster: Cluster, config: S3StoreConfig
    ) -> None:
        """volume1 back, then SIGKILL volume2: everything reads back again."""
        cluster.restart("volume1")
        cluster.wait_for_volume_servers(3)
        cluster.kill("volume2")
        killed = time.monotonic()
        async with S3BlobStore(config) as store, asyncio.timeout(GUARD):
            read = await read_everything(store)
            recovered = time.monotonic() - killed
            report_ = await verify(store, concurrency=8)
            assert report_.ok
            assert report_.checked == len(STORED)
            await put_all(store, [(2000 + n, 32 * KiB + n) for n in range(20)])
        cluster.restart("volume2")
        report(
            step="lose volume2",
            blobs=len(STORED),
            read_back_seconds=round(recovered, 1),
            bytes_read=read,
        )

    async def test_3_lose_the_gateway_mid_upload(
        self, cluster: Cluster, config: S3StoreConfig, admin: S3Client
    ) -> None:
        """SIGKILL the S3 gateway during a 64 MiB upload: absent or whole, no orphan."""
        data = blob(64 * MiB, seed=3000)
        integrity = integrity_of(data)
        pulled = 0
        killed = asyncio.Event()

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal pulled
            for start in range(0, len(data), MiB):
                if pulled >= 24 * MiB and not killed.is_set():
                    cluster.kill("s3")  # parts are in flight now
                    killed.set()
                pulled += MiB
                yield data[start : start + MiB]

        fast = S3StoreConfig(
            **{**_fields(config), "max_attempts": 2, "connect_timeout": 1.0}
        )
        async with S3BlobStore(fast) as store, asyncio.timeout(GUARD):
            with pytest.raises(StoreUnavailable):
                await store.put(integrity, chunks())
            assert killed.is_set()
            cluster.restart("s3")
            # Absent or whole, never torn under its name.
            found = await store.get(integrity)
            assert found in (None, data)
            # The failed put's abort couldn't reach the gateway: one orphan.
            orphans = uploads(admin, config.bucket)
            assert orphans == [integrity_to_key(integrity)]
            # The retried put succeeds, and on its way aborts what the
            # failed one couldn't.
            assert await put_patiently(store, data) == integrity
            assert await store.get(integrity) == data
        assert uploads(admin, config.bucket) == []
        STORED[integrity] = len(data)
        report(step="lose the gateway", orphans_before_retry=len(orphans))

    def test_4_two_processes_at_once(
        self, cluster: Cluster, config: S3StoreConfig, admin: S3Client
    ) -> None:
        """Two store processes write and read the same 200 blobs at once."""
        blobs = [(4000 + n, random.Random(n).randint(KiB, 3 * MiB)) for n in range(200)]
        env = {**os.environ, "SRIBLOB_CLUSTER_TEST": json.dumps(_fields(config))}
        started = time.monotonic()
        workers = [
            subprocess.Popen(  # noqa: S603 -- our own interpreter and script
                [sys.executable, "-c", WORKER, json.dumps(blobs), str(order)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for order in (1, 2)
        ]
        outputs = [worker.communicate(timeout=GUARD) for worker in workers]
        elapsed = time.monotonic() - started
        for worker, (out, err) in zip(workers, outputs, strict=True):
            assert worker.returncode == 0, err.decode()
            assert json.loads(out) == {"put": 200, "read": 200}

        async def check() -> None:
            async with S3BlobStore(config) as store:
                for seed, size in blobs:
                    assert await store.get(integrity_of(blob(size, seed=seed))) == blob(
                        size, seed=seed
                    )

        asyncio.run(check())
        assert uploads(admin, config.bucket) == []
        report(step="two processes", blobs=200, seconds=round(elapsed, 1))


def uploads(admin: S3Client, bucket: str) -> list[str]:
    """The keys of the bucket's unfinished multipart uploads."""
    listed = admin.list_multipart_uploads(Bucket=bucket)
    return [upload["Key"] for upload in listed.get("Uploads", [])]


def _fields(config: S3StoreConfig) -> dict[str, Any]:
    import attrs  # noqa: PLC0415 -- only here

    return attrs.asdict(config)


#: One store process of test 4: put every blob (in its own order), then
#: read every blob back verified; print the counts.
WORKER: Final = """
import asyncio, json, os, random, sys
from sriblob import S3BlobStore, S3StoreConfig, StoreUnavailable
from sriblob.testing import blob, integrity_of

async def main():
    config = S3StoreConfig(**json.loads(os.environ["SRIBLOB_CLUSTER_TEST"]))
    blobs = json.loads(sys.argv[1])
    random.Random(int(sys.argv[2])).shuffle(blobs)
    put = read = 0
    async with S3BlobStore(config) as store:
        gate = asyncio.Semaphore(8)
        async def one(seed, size):
            nonlocal put
            data = blob(size, seed=seed)
            async with gate:
                await store.put(integrity_of(data), data)
            put += 1
        await asyncio.gather(*(one(s, n) for s, n in blobs))
        for seed, size in blobs:
            data = blob(size, seed=seed)
            assert await store.get(integrity_of(data)) == data
            read += 1
    print(json.dumps({"put": put, "read": read}))

asyncio.run(main())
"""
