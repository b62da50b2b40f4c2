"""Parallel ranged reads when the network or the server misbehaves.

Every read here spans many ranges (64 KiB each, up to 4 connections), and
every fault is injected after the first answer, so it hits the ranges
fetched in the background.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from sriblob import S3BlobStore, StoreUnavailable

from ..helpers import blob, integrity_of
from .proxy import Fault, FaultProxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob import S3StoreConfig

pytestmark = [pytest.mark.reliability, pytest.mark.s3]

RANGE = 64 * 1024
DATA = blob(40 * RANGE + 123, seed=31)
INTEGRITY = integrity_of(DATA)


def acquired_connections(store: S3BlobStore) -> int:
    """Count the connections the store's aiohttp pools hand out right now."""
    client = store.backend._connected.bucket.client
    http = client._endpoint.http_session  # type: ignore[attr-defined]
    return sum(len(session.connector._acquired) for session in http._sessions.values())


#: The proxy's own tasks on this loop: its handlers, and the tasks asyncio's
#: server runs to accept a connection before handing it to them (a range the
#: store cancelled may have connected just before).
_PROXY_TASKS = ("FaultProxy.", "BaseSelectorEventLoop._accept_connection")


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of this loop besides the running one and the proxy's."""
    return {
        task
        for task in asyncio.all_tasks()
        if task is not asyncio.current_task()
        and not getattr(task.get_coro(), "__qualname__", "").startswith(_PROXY_TASKS)
    }


@pytest.fixture(name="store")
async def _store(proxied_config: S3StoreConfig) -> AsyncIterator[S3BlobStore]:
    config = attrs.evolve(proxied_config, read_part_size=RANGE, read_concurrency=4)
    async with S3BlobStore(config) as store:
        await store.put(INTEGRITY, DATA)
        yield store


async def read_with(store: S3BlobStore, proxy: FaultProxy, fault: Fault) -> bytes:
    """Open the blob, queue *fault* for the ranges after the first, read it."""
    async with store.open(INTEGRITY) as reader:
        proxy.inject(fault)
        return await reader.read()


class TestFaultsInRanges:
    """A fault in a background range is retried, or fails the read; never torn."""

    @pytest.mark.parametrize(
        "fault",
        [
            pytest.param(Fault("reset_response", match="GET", after=5000), id="reset"),
            pytest.param(Fault("short_range", match="GET", after=100), id="short"),
            pytest.param(Fault("status", match="GET", status=503), id="503"),
            pytest.param(Fault("stall", match="GET", seconds=3.0), id="stall"),
        ],
    )
    async def test_a_fault_that_clears_is_invisible(
        self, store: S3BlobStore, proxy: FaultProxy, fault: Fault
    ) -> None:
        """One broken range answer is fetched again; the blob reads whole."""
        assert await read_with(store, proxy, fault) == DATA
        assert [kind for _, kind in proxy.hits] == [fault.kind]
        assert acquired_connections(store) == 0

    @pytest.mark.parametrize(
        ("fault", "match"),
        [
            pytest.param(
                Fault("reset_response", match="GET", after=5000, times=1000),
                "unreachable",
                id="reset",
            ),
            pytest.param(
                Fault("short_range", match="GET", after=100, times=1000),
                "asked for bytes",
                id="short",
            ),
        ],
    )
    async def test_a_fault_that_stays_fails_the_read(
        self, store: S3BlobStore, proxy: FaultProxy, fault: Fault, match: str
    ) -> None:
        """A range that keeps breaking fails the read with StoreUnavailable."""
        got = b""
        with pytest.raises(StoreUnavailable, match=match):  # noqa: PT012 -- a read
            async with store.open(INTEGRITY) as reader:
                proxy.inject(fault)
                async for chunk in reader:
                    got += chunk
        assert len(got) < len(DATA)
        assert got == DATA[: len(got)]
        assert other_tasks() == set()
        assert acquired_connections(store) == 0
        proxy.clear()
        assert await store.get(INTEGRITY) == DATA

    async def test_a_short_first_answer_is_completed_by_ranges(
        self, store: S3BlobStore, proxy: FaultProxy
    ) -> None:
        """A first answer shorter than asked (but saying so) is read on from its end."""
        proxy.inject(Fault("short_range", match="GET", after=RANGE - 10))
        async with store.open(INTEGRITY) as reader:
            assert await reader.read() == DATA
        assert [kind for _, kind in proxy.hits] == ["short_range"]

    async def test_one_connection_refuses_a_short_answer(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """With read_concurrency=1 a short ranged answer is an error, not a cut blob."""
        config = attrs.evolve(proxied_config, read_concurrency=1, max_attempts=1)
        async with S3BlobStore(config) as store:
            await store.put(INTEGRITY, DATA)
            proxy.inject(Fault("short_range", match="GET", after=1000))
            with pytest.raises(StoreUnavailable, match="asked for bytes"):
                async with store.open(INTEGRITY, start=10) as reader:
                    await reader.read()

    async def test_a_lying_range_cannot_pass_as_the_blob(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """With verify=False, a short range still fails: lengths are checked."""
        config = attrs.evolve(
            proxied_config, read_part_size=RANGE, read_concurrency=4, max_attempts=1
        )
        async with S3BlobStore(config, verify=False) as store:
            await store.put(INTEGRITY, DATA)
            with pytest.raises(StoreUnavailable, match="asked for bytes"):
                await read_with(
                    store,
                    proxy,
                    Fault("short_range", match="GET", after=1, times=1000),
                )
            assert acquired_connections(store) == 0


class TestCancelRanges:
    """Cancelling a reader cancels its ranges at once and frees their connections."""

    @pytest.mark.parametrize("chunks_read", [0, 1])
    async def test_cancel_while_ranges_are_stalled(
        self, store: S3BlobStore, proxy: FaultProxy, chunks_read: int
    ) -> None:
        """Ranges held 30 s by the server are cancelled, not waited for.

        The first range (one chunk) came before the stall; the reader is
        cancelled before it or after it, waiting for the held ranges.
        """
        opened = asyncio.Event()

        async def read() -> None:
            async with store.open(INTEGRITY) as reader:
                proxy.inject(Fault("stall", match="GET", seconds=30.0, times=1000))
                for _ in range(chunks_read):
                    await anext(reader)
                opened.set()
                await reader.read()

        task = asyncio.ensure_future(read())
        await asyncio.wait_for(opened.wait(), 10)
        await asyncio.sleep(0.3)  # the ranges are sent, and held
        assert len(other_tasks()) > 1  # the reader and its stalled ranges
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)  # far less than the stall
        assert done == {task}
        assert task.cancelled()
        assert other_tasks() == set()
        assert acquired_connections(store) == 0
        proxy.clear()
        assert await store.get(INTEGRITY) == DATA
