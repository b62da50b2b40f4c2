"""The default read measures its one stream and switches to ranges if slow.

A proxy trickles the first GetObject (the whole blob, no Range) to model a
server that caps each connection; the ranges that follow go through at
full speed. The requests the proxy saw say what the store did.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import attrs
import pytest

from sriblob import S3BlobStore
from sriblob._s3 import _download

from ..helpers import blob, integrity_of
from .proxy import Fault
from .test_ranged_reads import acquired_connections, other_tasks

if TYPE_CHECKING:
    from sriblob import S3StoreConfig

    from .proxy import FaultProxy

pytestmark = [pytest.mark.reliability, pytest.mark.s3]

RANGE = 64 * 1024
DATA = blob(40 * RANGE + 123, seed=41)
INTEGRITY = integrity_of(DATA)
#: One quarter-second step of the trickle, then another: slow by any measure.
SLOW = 4_000_000


def gets(proxy: FaultProxy) -> int:
    """How many GetObject requests went through the proxy."""
    return sum(line.startswith("GET ") and "?" not in line for line in proxy.requests)


async def stored(config: S3StoreConfig) -> None:
    """Put the test blob through a store of *config*."""
    async with S3BlobStore(config) as store:
        await store.put(INTEGRITY, DATA)


async def read_in_one_stream(
    config: S3StoreConfig, proxy: FaultProxy, *faults: Fault
) -> None:
    """Read the test blob with *faults* queued; assert one GetObject, no switch."""
    await stored(config)
    async with S3BlobStore(config) as store:
        proxy.requests.clear()
        for fault in faults:
            proxy.inject(fault)
        assert await store.get(INTEGRITY) == DATA
        assert store.backend._connected.downloader.switches == 0
        assert gets(proxy) == 1


class TestMeasuredReads:
    """read_concurrency unset: one stream, or ranges once it proves slow."""

    @pytest.mark.parametrize("how", ["open", "get"])
    async def test_a_slow_stream_switches_to_ranges(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy, how: str
    ) -> None:
        """The trickled first GET is dropped; the rest comes as ranges, whole."""
        config = attrs.evolve(
            proxied_config, read_part_size=RANGE, read_concurrency=None
        )
        await stored(config)
        async with S3BlobStore(config) as store:
            proxy.requests.clear()
            proxy.inject(Fault("trickle", match="GET ", times=1, rate=SLOW))
            if how == "open":
                async with store.open(INTEGRITY) as reader:
                    assert await reader.read() == DATA
            else:
                assert await store.get(INTEGRITY) == DATA
            assert store.backend._connected.downloader.switches == 1
            # The first stream, then the ~1.5 MiB left in 64 KiB ranges.
            assert gets(proxy) > 10
            assert acquired_connections(store) == 0

    async def test_a_fast_stream_is_read_in_one_request(
        self,
        proxied_config: S3StoreConfig,
        proxy: FaultProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """No trickle, a threshold any loopback stream beats: one GetObject."""
        monkeypatch.setattr(_download, "SWITCH_RATE", 1_000_000)
        config = attrs.evolve(
            proxied_config, read_part_size=RANGE, read_concurrency=None
        )
        await read_in_one_stream(config, proxy)

    async def test_one_hiccup_in_a_fast_stream_is_not_a_slow_stream(
        self,
        proxied_config: S3StoreConfig,
        proxy: FaultProxy,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """A fast stream held 0.3 s once in its probe is read to its end.

        The probe's total rate (3 MiB over 0.3 s and more, ~10 MB/s) is far
        under the threshold; the typical chunk's rate isn't. A fast server
        on a busy machine stalls like this (SeaweedFS fetching an internal
        chunk); switching to ranges then only costs it more.
        """
        monkeypatch.setattr(_download, "SWITCH_RATE", 20_000_000)
        data = blob(8 * 1024 * 1024 + 5, seed=42)
        config = attrs.evolve(proxied_config, read_concurrency=None)
        async with S3BlobStore(config) as store:
            integrity = await store.add(data)
            proxy.requests.clear()
            proxy.inject(Fault("pause", match="GET ", after=2_500_000, seconds=0.3))
            assert await store.get(integrity) == data
            assert store.backend._connected.downloader.switches == 0
            assert gets(proxy) == 1

    async def test_an_explicit_read_concurrency_wins(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """read_concurrency=1 reads a slow stream to its end in one request."""
        config = attrs.evolve(proxied_config, read_part_size=RANGE, read_concurrency=1)
        await read_in_one_stream(
            config, proxy, Fault("trickle", match="GET ", times=1, rate=SLOW)
        )

    async def test_too_little_left_stays_one_stream(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """Slow, but under two ranges left once measured: not worth switching."""
        config = attrs.evolve(
            proxied_config, read_part_size=2 * 1024 * 1024, read_concurrency=None
        )
        await read_in_one_stream(
            config, proxy, Fault("trickle", match="GET ", times=1, rate=SLOW)
        )

    async def test_leaving_a_switched_read_leaves_nothing_running(
        self, proxied_config: S3StoreConfig, proxy: FaultProxy
    ) -> None:
        """A reader closed right after the switch: no task, no connection held."""
        config = attrs.evolve(
            proxied_config, read_part_size=RANGE, read_concurrency=None
        )
        await stored(config)
        async with S3BlobStore(config) as store:
            proxy.inject(Fault("trickle", match="GET ", times=1, rate=SLOW))
            async with store.open(INTEGRITY) as reader:
                first = await anext(reader)  # the trickled stream's first chunk
                second = await anext(reader)  # from the ranges
                assert DATA.startswith(first + second)
            assert store.backend._connected.downloader.switches == 1
            await asyncio.sleep(0)
            assert other_tasks() == set()
            assert acquired_connections(store) == 0
