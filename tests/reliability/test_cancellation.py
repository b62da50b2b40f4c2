"""Cancelling S3 writes and reads at every chunk boundary leaves nothing behind."""

from __future__ import annotations

import asyncio
import gc
from typing import TYPE_CHECKING

import pytest

from sriblob import S3BlobStore

from ..helpers import blob, integrity_of, s3_leftovers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from mypy_boto3_s3 import S3Client

    from sriblob import S3StoreConfig

# The suite already turns every warning into an error (pyproject's
# filterwarnings); these make the point explicit for leaked sockets, aiohttp
# sessions and stores collected while open.
pytestmark = [
    pytest.mark.reliability,
    pytest.mark.s3,
    pytest.mark.filterwarnings("error::ResourceWarning"),
    pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning"),
]

MiB = 1024 * 1024
#: Chunks of the test blob: 4 parts of 5 MiB (the test config) and change.
CHUNKS = 21


def stored(s3_admin: S3Client, config: S3StoreConfig) -> list[str]:
    """Return every key in the bucket."""
    listed = s3_admin.list_objects_v2(Bucket=config.bucket)
    return [entry["Key"] for entry in listed.get("Contents", [])]


class Gate:
    """A chunked source that stops after *at* chunks until it is cancelled."""

    def __init__(self, data: bytes, at: int) -> None:
        self.data = data
        self.at = at
        self.reached = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for number, start in enumerate(range(0, len(self.data), MiB)):
            if number == self.at:
                self.reached.set()
                await asyncio.Event().wait()
            yield self.data[start : start + MiB]
        self.reached.set()


@pytest.fixture(name="data", scope="module")
def _data() -> bytes:
    return blob(CHUNKS * MiB - 12345, seed=11)


class TestCancelWrites:
    """A put or add cancelled at any chunk boundary leaves no trace."""

    @pytest.mark.parametrize("how", ["put", "add"])
    async def test_every_chunk_boundary(
        self, s3_config: S3StoreConfig, s3_admin: S3Client, data: bytes, how: str
    ) -> None:
        """Cancel at each of the blob's chunk boundaries: no object, upload or key."""
        integrity = integrity_of(data)
        async with S3BlobStore(s3_config) as store:
            for at in range(CHUNKS):
                gate = Gate(data, at)
                write = store.put(integrity, gate) if how == "put" else store.add(gate)
                task = asyncio.ensure_future(write)
                await asyncio.wait_for(gate.reached.wait(), 30)
                # Let parts already handed over reach the server first.
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert s3_leftovers(s3_admin, s3_config) == [], at
                assert stored(s3_admin, s3_config) == [], at
            # The store still works after all that.
            assert await store.add(data) == integrity
        gc.collect()

    async def test_cancel_during_a_part_upload(
        self, s3_config: S3StoreConfig, s3_admin: S3Client, data: bytes
    ) -> None:
        """Cancel while parts are on the wire, at growing delays: nothing is left."""
        integrity = integrity_of(data)
        async with S3BlobStore(s3_config) as store:
            for delay in (0.0, 0.01, 0.05, 0.1, 0.2, 0.4):
                task = asyncio.ensure_future(store.put(integrity, data))
                await asyncio.sleep(delay)
                task.cancel()
                try:
                    await task
                except asyncio.CancelledError:
                    # A cancel that lands while CompleteMultipartUpload is on
                    # the wire can't unsend it: the server may have committed
                    # the blob. Then it must be whole, never torn.
                    if stored(s3_admin, s3_config):
                        assert await store.get(integrity) == data, delay
                        await store.delete(integrity)
                else:
                    # Finished before the cancel arrived: then it is whole.
                    assert await store.get(integrity) == data
                    await store.delete(integrity)
                assert s3_leftovers(s3_admin, s3_config) == [], delay
        gc.collect()


class TestCancelReads:
    """Cancelling a reader releases its connection."""

    async def test_cancel_open_at_every_chunk(
        self, s3_config: S3StoreConfig, data: bytes
    ) -> None:
        """A reader cancelled after n chunks leaks nothing, and the store goes on."""
        integrity = integrity_of(data)
        async with S3BlobStore(s3_config) as store:
            await store.put(integrity, data)
            for at in range(1, CHUNKS + 1):
                reading = asyncio.Event()

                async def read(at: int, reading: asyncio.Event) -> None:
                    async with store.open(integrity) as reader:
                        count = 0
                        async for _ in reader:
                            count += 1
                            if count == at:
                                reading.set()
                                await asyncio.Event().wait()
                    reading.set()

                task = asyncio.ensure_future(read(at, reading))
                await asyncio.wait_for(reading.wait(), 30)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            assert await store.get(integrity) == data
        gc.collect()


class TestUnclosed:
    """A store dropped while open says so."""

    async def test_unclosed_store_warns(self, s3_config: S3StoreConfig) -> None:
        """An S3BlobStore collected while open emits a ResourceWarning."""
        store = S3BlobStore(s3_config)
        await store.__aenter__()
        context = store.backend._connected.client_context
        assert context is not None

        with pytest.warns(ResourceWarning, match="never closed"):  # noqa: PT031
            del store  # refcounting collects it right here
            gc.collect()

        await context.aclose()

    async def test_closed_and_unopened_stores_do_not_warn(
        self, s3_config: S3StoreConfig
    ) -> None:
        """Closed or never-opened stores are collected silently."""
        async with S3BlobStore(s3_config) as store:
            assert await store.has(integrity_of(b"x")) is False
        unopened = S3BlobStore(s3_config)
        assert repr(unopened).startswith("<S3BlobStore")
        del store, unopened
        gc.collect()
