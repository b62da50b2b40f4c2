"""Load: thousands of small puts mixed with large streams, then list and verify.

Marked ``reliability``: run by ``nox -s reliability``, not by the default
test session. Each test is bounded in count and time and talks to loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import resource
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
import uuid
from typing import TYPE_CHECKING

import attrs
import boto3
import pytest

from sriblob import FilesystemBlobStore, Integrity, S3BlobStore, S3StoreConfig, verify

from ..helpers import MOTO_REGION, collect, s3_leftovers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.reliability

MiB = 1024 * 1024
SMALL_PUTS = 5000
SMALL_CONCURRENCY = 64
STREAMS = 8
STREAM_SIZE = 64 * MiB
STREAM_CHUNK = MiB
#: Peak-RSS growth allowed while 8 x 64 MiB stream through: far below the
#: 512 MiB they add up to, so no stream is ever held whole.
RSS_BOUND = 400 * MiB


def small_blob(number: int) -> bytes:
    """Return the *number*-th small blob: 100 bytes to 4 KiB, all distinct."""
    return hashlib.sha512(b"%d" % number).digest() * (1 + number % 64)


async def stream(seed: int) -> AsyncIterator[bytes]:
    """Yield a 64 MiB blob made on the fly, never held whole."""
    block = hashlib.sha512(b"stream %d" % seed).digest() * (STREAM_CHUNK // 64)
    for number in range(STREAM_SIZE // STREAM_CHUNK):
        yield number.to_bytes(8, "big") + block[8:]


def stream_integrity(seed: int) -> str:
    """Return the integrity of ``stream(seed)``, hashing it chunk by chunk."""
    hasher = hashlib.sha512()
    block = hashlib.sha512(b"stream %d" % seed).digest() * (STREAM_CHUNK // 64)
    for number in range(STREAM_SIZE // STREAM_CHUNK):
        hasher.update(number.to_bytes(8, "big") + block[8:])
    return "sha512-" + base64.b64encode(hasher.digest()).decode()


def peak_rss() -> int:
    """Return this process's peak resident set size in bytes (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def free_port() -> int:
    """Return a loopback port nothing listens on (for the moment)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(name="moto_process", scope="module")
def _moto_process() -> Iterator[str]:
    """A moto S3 server in its own process, so this process's RSS is the client's."""
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 -- our own interpreter
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):  # noqa: S310 -- loopback
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:  # pragma: no cover -- moto hung
            server.kill()
            server.wait()


@pytest.fixture(name="load_config")
def _load_config(moto_process: str) -> tuple[S3StoreConfig, S3Client]:
    admin: S3Client = boto3.client(
        "s3",
        endpoint_url=moto_process,
        region_name=MOTO_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    bucket = f"load-{uuid.uuid4().hex}"
    admin.create_bucket(Bucket=bucket)
    return (
        S3StoreConfig(
            bucket=bucket,
            access_key_id="testing",
            secret_access_key="testing",
            endpoint=moto_process,
            region=MOTO_REGION,
            force_path_style=True,
            part_size=5 * MiB,
            multipart_threshold=5 * MiB,
            max_concurrency=SMALL_CONCURRENCY,
        ),
        admin,
    )


class TestS3Load:
    """S3BlobStore under mixed load against a moto server process."""

    async def test_small_puts_and_large_streams(
        self, load_config: tuple[S3StoreConfig, S3Client]
    ) -> None:
        """5,000 small puts beside 8 x 64 MiB streams: all listed and intact."""
        config, admin = load_config
        expected = {
            str(__import__("sriblob").Integrity.from_bytes(small_blob(n)))
            for n in range(SMALL_PUTS)
        }
        large = {seed: stream_integrity(seed) for seed in range(STREAMS)}
        baseline = peak_rss()
        started = time.monotonic()
        semaphore = asyncio.Semaphore(SMALL_CONCURRENCY)

        # Streams get their own store with 2 parts in flight each, the way a
        # deployment sizes memory: 8 x 3 x 5 MiB of parts at most.
        streams_config = attrs.evolve(config, max_concurrency=2)
        async with S3BlobStore(config) as store, S3BlobStore(streams_config) as bulk:

            async def small(number: int) -> None:
                data = small_blob(number)
                async with semaphore:
                    if number % 2:
                        await store.put(Integrity.from_bytes(data), data)
                    else:
                        await store.add(data)

            async def big(seed: int) -> str:
                if seed % 2:
                    await bulk.put(large[seed], stream(seed))
                    return large[seed]
                return await bulk.add(stream(seed))

            async with asyncio.timeout(240):
                results = await asyncio.gather(
                    *(big(seed) for seed in range(STREAMS)),
                    *(small(number) for number in range(SMALL_PUTS)),
                )
            assert results[:STREAMS] == [large[seed] for seed in range(STREAMS)]
            written = time.monotonic() - started
            grown = peak_rss() - baseline

            async with asyncio.timeout(240):
                listed = await collect(store)
                report = await verify(store, concurrency=8)

        assert listed == expected | set(large.values())
        assert report.ok, (report.corrupt, report.failed)
        assert report.checked == SMALL_PUTS + STREAMS
        assert s3_leftovers(admin, config) == []
        assert grown < RSS_BOUND, f"peak RSS grew {grown / MiB:.0f} MiB"
        print(  # noqa: T201 -- the numbers belong in the run's output
            f"\nS3 load: {SMALL_PUTS} small + {STREAMS}x64 MiB in {written:.1f}s, "
            f"peak RSS +{grown / MiB:.0f} MiB"
        )


FS_WORKER = """
import asyncio, hashlib, sys
from sriblob import FilesystemBlobStore

root, worker, workers, small, streams = sys.argv[1:6]
worker, workers, small, streams = int(worker), int(workers), int(small), int(streams)

def small_blob(number):
    return hashlib.sha512(b"%d" % number).digest() * (1 + number % 64)

async def stream(seed):
    block = hashlib.sha512(b"stream %d" % seed).digest() * (1024 * 1024 // 64)
    for number in range(64):
        yield number.to_bytes(8, "big") + block[8:]

async def main():
    store = FilesystemBlobStore(root)
    semaphore = asyncio.Semaphore(64)

    async def put(number):
        async with semaphore:
            await store.add(small_blob(number))

    # Every worker puts every blob: the same names race across processes.
    await asyncio.gather(
        *(store.add(stream(seed)) for seed in range(worker, streams, workers)),
        *(put(number) for number in range(small)),
    )

asyncio.run(main())
"""


class TestFilesystemLoad:
    """FilesystemBlobStore written by 4 processes at once."""

    def test_processes_share_a_root(self, tmp_path: Path) -> None:
        """4 processes x 5,000 small adds and 8 x 64 MiB streams: all intact."""
        workers = 4
        started = time.monotonic()
        children = [
            subprocess.Popen(  # noqa: S603 -- our own interpreter and code
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(FS_WORKER),
                    str(tmp_path),
                    str(worker),
                    str(workers),
                    str(SMALL_PUTS),
                    str(STREAMS),
                ],
                stderr=subprocess.PIPE,
            )
            for worker in range(workers)
        ]
        try:
            for child in children:
                _, stderr = child.communicate(timeout=240)
                assert child.returncode == 0, stderr.decode()
        finally:
            for child in children:
                if child.poll() is None:  # pragma: no cover -- only on timeout
                    child.kill()
                    child.wait()
        written = time.monotonic() - started
        expected = {
            str(Integrity.from_bytes(small_blob(number)))
            for number in range(SMALL_PUTS)
        } | {stream_integrity(seed) for seed in range(STREAMS)}

        async def check() -> tuple[set[str], bool, int]:
            async with FilesystemBlobStore(tmp_path) as store:
                listed = await collect(store)
                report = await verify(store, concurrency=8)
            return listed, report.ok, report.checked

        listed, ok, checked = asyncio.run(check())
        assert listed == expected
        assert ok
        assert checked == len(expected)
        assert not list(tmp_path.rglob(".tmp-*"))
        print(  # noqa: T201 -- the numbers belong in the run's output
            f"\nFS load: {workers} processes x {SMALL_PUTS} small + "
            f"{STREAMS}x64 MiB in {written:.1f}s"
        )
