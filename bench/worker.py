"""One benchmark measurement in a fresh process; prints one JSON line.

``python bench/worker.py --contender sriblob --workload w1put --endpoint URL``

The orchestrator (``bench/run.py``) starts one of these per (contender,
workload, round), so imports, connection pools and peak RSS never leak from
one measurement into the next. Timed regions cover only the operations;
setup (clients, temp files, seeding) stays outside them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import random
import resource
import socket
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Self

MiB = 1024 * 1024
#: The repeating block bench data is made of: random, odd-sized so parts of
#: a multipart upload differ, generated once (no generation cost in the
#: timed regions) and small, so it adds ~2 MiB to a worker's peak RSS.
BLOCK_SIZE = MiB + 4099
#: Chunks handed to streaming contenders.
STREAM_CHUNK = MiB
# moto accepts any credentials; run.py passes Ceph RGW's throwaway user's.
ACCESS_KEY = os.environ.get("BENCH_S3_ACCESS_KEY_ID", "bench")
SECRET_KEY = os.environ.get("BENCH_S3_SECRET_ACCESS_KEY", "bench-secret")
REGION = "us-east-1"
SMALL_CONCURRENCY = 32
#: Ranges the obstore-ranges contender fetches at once.
OBSTORE_RANGES = 8


def ru_maxrss_mib() -> float:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (Linux: KiB), as the issue asks.

    Beware: Linux carries the peak of the image a process replaced at
    ``execve`` into ``ru_maxrss``, and CPython's subprocess spawns with
    ``vfork``, whose image is the parent's: a worker's ``ru_maxrss`` never
    reads below the orchestrator's own RSS (~100 MiB with boto3 and sriblob
    imported). Reported for reference; :func:`peak_rss_mib` is the figure.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_rss_mib() -> float:
    """Peak resident set size of this process's own memory (``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:  # pragma: no cover -- not Linux
        pass
    return ru_maxrss_mib()


# -- data --------------------------------------------------------------------


class Data:
    """A deterministic blob of *size* bytes, streamed from a doubled block."""

    def __init__(self, size: int, seed: str) -> None:
        block = random.Random(seed).randbytes(min(BLOCK_SIZE, max(size, 1)))
        self.size = size
        self._block = len(block)
        # Doubled so any window up to one block long is one contiguous slice.
        self._double = memoryview(block + block)

    def chunks(self, chunk: int = STREAM_CHUNK) -> Iterator[memoryview]:
        offset = 0
        while offset < self.size:
            take = min(chunk, self.size - offset, self._block)
            start = offset % self._block
            yield self._double[start : start + take]
            offset += take

    async def achunks(self, chunk: int = STREAM_CHUNK) -> AsyncIterator[memoryview]:
        for piece in self.chunks(chunk):
            yield piece

    def to_bytes(self) -> bytes:
        return b"".join(self.chunks(self._block))

    def to_file(self, path: Path) -> None:
        with path.open("wb") as file:
            for piece in self.chunks(self._block):
                file.write(piece)

    def integrity(self) -> str:
        return sri(self.chunks(self._block))


def sri(chunks: Iterator[Any]) -> str:
    """The sha512 SRI of *chunks*, by hashlib alone.

    Downloads are checked with this rather than sriblob's own hashing, so the
    check doesn't rely on the code under test.
    """
    hasher = hashlib.sha512()
    for chunk in chunks:
        hasher.update(chunk)
    return sri_of(hasher)


def sri_of(hasher: Any) -> str:
    return "sha512-" + base64.b64encode(hasher.digest()).decode()


def small_blobs(count: int, seed: str, size: int = 4096) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(size) for _ in range(count)]


def file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as file:
        while piece := file.read(8 * MiB):
            yield piece


# -- clients -----------------------------------------------------------------


def sriblob_config(args: argparse.Namespace, bucket: str) -> Any:
    import sriblob  # noqa: PLC0415

    # The library's defaults, except a pool that fits W2's concurrency, and
    # unsigned bodies for the "sriblob-unsigned" contender.
    options: dict[str, Any] = {}
    if args.workload == "w2":
        options["max_concurrency"] = args.concurrency
    if args.contender == "sriblob-unsigned":
        options["sign_payloads"] = False
    if args.contender == "sriblob-ranged":
        # Ranges on 8 connections from the first request.
        options["read_concurrency"] = 8
    if args.contender == "sriblob-single":
        # One stream, whatever its speed: the reference for the default.
        options["read_concurrency"] = 1
    return sriblob.S3StoreConfig(
        bucket=bucket,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        endpoint=args.endpoint,
        region=REGION,
        force_path_style=True,
        **options,
    )


def aioboto3_client(args: argparse.Namespace) -> Any:
    import aioboto3  # noqa: PLC0415
    from aiobotocore.config import AioConfig  # noqa: PLC0415

    session = aioboto3.Session(
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
    )
    config = AioConfig(
        max_pool_connections=max(args.concurrency, 10),
        s3={"addressing_style": "path"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return session.client("s3", endpoint_url=args.endpoint, config=config)


def boto3_client(args: argparse.Namespace) -> Any:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=args.endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=Config(
            max_pool_connections=max(args.concurrency, 10),
            s3={"addressing_style": "path"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def obstore_store(args: argparse.Namespace, bucket: str) -> Any:
    from obstore.store import S3Store  # noqa: PLC0415

    return S3Store(
        bucket,
        endpoint=args.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region=REGION,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "pool_max_idle_per_host": "64"},
    )


# -- timing ------------------------------------------------------------------


class RssSampler:
    """Sample this process's RSS every *interval* seconds in a thread.

    ``series`` holds ``[seconds since start, MiB]`` pairs, for the memory
    charts; sampling reads ``/proc/self/statm`` (a few microseconds).
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.series: list[list[float]] = []
        self._stop = threading.Event()
        self._page_mib = os.sysconf("SC_PAGE_SIZE") / MiB
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _rss(self) -> float:
        with open("/proc/self/statm") as statm:  # noqa: PTH123 -- hot path
            return int(statm.read().split()[1]) * self._page_mib

    def _run(self) -> None:
        started = time.perf_counter()
        while not self._stop.is_set():
            self.series.append([round(time.perf_counter() - started, 3), self._rss()])
            self._stop.wait(self.interval)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def thinned(self, points: int = 300) -> list[list[float]]:
        step = max(1, len(self.series) // points)
        return [[t, round(mib, 1)] for t, mib in self.series[::step]]


class Timer:
    """Wall and process CPU time of a region."""

    def __enter__(self) -> Self:
        self.wall0 = time.perf_counter()
        self.cpu0 = time.process_time()
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


async def bounded(
    count: int, concurrency: int, op: Callable[[int], Awaitable[Any]]
) -> None:
    """Run ``op(i)`` for every i with at most *concurrency* in flight."""
    queue = iter(range(count))

    async def lane() -> None:
        for i in queue:
            await op(i)

    await asyncio.gather(*(lane() for _ in range(concurrency)))


def small_result(timers: dict[str, Timer], count: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for phase, timer in timers.items():
        out[f"{phase}_ops"] = count / timer.wall
        out[f"{phase}_cpu_ms"] = timer.cpu * 1000 / count
    return out


# -- sriblob (S3) ----------------------------------------------------------


async def sriblob_run(args: argparse.Namespace) -> dict[str, Any]:
    import sriblob  # noqa: PLC0415

    workload = args.workload
    if workload == "w3":
        async with sriblob.S3BlobStore(sriblob_config(args, args.list_bucket)) as store:
            with Timer() as t:
                count = sum([1 async for _ in store.list()])
        return {"list_s": t.wall, "listed": count}
    async with sriblob.S3BlobStore(sriblob_config(args, args.bucket)) as store:
        if workload in {"w1put", "w1get", "w1b"}:
            data = Data(args.size, args.seed)
            integrity = args.integrity or data.integrity()
            out: dict[str, Any] = {}
            if workload in {"w1put", "w1b"}:
                await store.delete(integrity)
                with Timer() as t:
                    await store.put(integrity, data.achunks())
                out["put_mbps"] = args.size / t.wall / 1e6
            if workload in {"w1get", "w1b"}:
                got = 0
                with Timer() as t:
                    async with store.open(integrity) as reader:
                        async for chunk in reader:  # verified as it streams
                            got += len(chunk)
                if got != args.size:
                    raise SystemExit(f"short read: {got} != {args.size}")
                out["get_mbps"] = args.size / t.wall / 1e6
                out["verified"] = True
            if workload == "w1b":
                await store.delete(integrity)
            return out
        if workload == "w2":
            blobs = small_blobs(args.count, args.seed)
            names = [sri(iter([blob])) for blob in blobs]
            for name in names:
                await store.delete(name)
            timers = {"put": Timer(), "has": Timer(), "get": Timer()}

            async def put(i: int) -> None:
                await store.put(names[i], blobs[i])

            async def has(i: int) -> None:
                if not await store.has(names[i]):
                    raise SystemExit("missing blob")

            async def get(i: int) -> None:
                if await store.get(names[i]) is None:
                    raise SystemExit("missing blob")

            for phase, op in (("put", put), ("has", has), ("get", get)):
                with timers[phase]:
                    await bounded(args.count, args.concurrency, op)
            await bounded(
                args.count, args.concurrency, lambda i: store.delete(names[i])
            )
            return small_result(timers, args.count)
    raise SystemExit(f"sriblob has no workload {workload}")


async def cached_run(args: argparse.Namespace) -> dict[str, Any]:
    """The cache: gets through CachedBlobStore(filesystem, S3), cold then warm.

    Against S3 alone (the back) and the filesystem store alone, in one
    process: ``--count`` blobs of ``--small-size`` bytes at ``--concurrency``,
    and one blob of ``--size`` bytes.
    """
    import sriblob  # noqa: PLC0415

    data = Data(args.size, args.seed)
    integrity = args.integrity or data.integrity()
    blobs = small_blobs(args.count, f"{args.seed}-small", args.small_size)
    names = [sri(iter([blob])) for blob in blobs]
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        config = sriblob_config(args, args.bucket)
        async with (
            sriblob.S3BlobStore(config) as s3,
            sriblob.FilesystemBlobStore(root / "fs") as fs,
        ):
            await bounded(
                args.count, args.concurrency, lambda i: s3.put(names[i], blobs[i])
            )
            await s3.put(integrity, data.achunks())
            await fs.put(integrity, data.achunks())

            async def timed_large(store: Any, key: str) -> None:
                with Timer() as t:
                    got = await store.get(integrity)
                if got is None or len(got) != args.size:
                    raise SystemExit("short read")
                del got
                out[key] = args.size / t.wall / 1e6

            async def timed_small(store: Any, key: str) -> None:
                async def get(i: int) -> None:
                    if await store.get(names[i]) is None:
                        raise SystemExit("missing blob")

                with Timer() as t:
                    await bounded(args.count, args.concurrency, get)
                out[key] = args.count / t.wall

            await timed_large(s3, "s3_large_mbps")
            await timed_large(fs, "fs_large_mbps")
            await timed_small(s3, "s3_small_ops")
            front = sriblob.FilesystemBlobStore(root / "front")
            back = sriblob.S3BlobStore(config)
            async with sriblob.CachedBlobStore(
                front, back, max_bytes=2 * args.size + args.count * args.small_size
            ) as cache:
                await timed_large(cache, "cold_large_mbps")
                await timed_large(cache, "warm_large_mbps")
                await timed_small(cache, "cold_small_ops")
                await timed_small(cache, "warm_small_ops")
            await bounded(args.count, args.concurrency, lambda i: s3.delete(names[i]))
            await s3.delete(integrity)
    return out


# -- raw aioboto3 ----------------------------------------------------------


async def aioboto3_run(args: argparse.Namespace) -> dict[str, Any]:
    workload = args.workload
    bucket = args.bucket
    async with aioboto3_client(args) as client:
        if workload == "w1put":
            data = Data(args.size, args.seed).to_bytes()  # the contender's shape
            key = f"raw/aioboto3/{args.seed}"
            with Timer() as t:
                await client.put_object(Bucket=bucket, Key=key, Body=data)
            del data
            await client.delete_object(Bucket=bucket, Key=key)
            return {"put_mbps": args.size / t.wall / 1e6}
        if workload == "w1get":
            with Timer() as t:
                response = await client.get_object(Bucket=bucket, Key=args.key)
                async with response["Body"] as body:
                    data = await body.read()
            if len(data) != args.size:
                raise SystemExit("short read")
            out = {"get_mbps": args.size / t.wall / 1e6, "verified": False}
            if args.integrity and sri(iter([data])) != args.integrity:
                raise SystemExit("corrupt download")
            return out
        if workload == "w2":
            blobs = small_blobs(args.count, args.seed)
            keys = [f"raw/aioboto3/w2/{args.seed}/{i}" for i in range(args.count)]
            timers = {"put": Timer(), "has": Timer(), "get": Timer()}

            async def put(i: int) -> None:
                await client.put_object(Bucket=bucket, Key=keys[i], Body=blobs[i])

            async def has(i: int) -> None:
                await client.head_object(Bucket=bucket, Key=keys[i])

            async def get(i: int) -> None:
                response = await client.get_object(Bucket=bucket, Key=keys[i])
                async with response["Body"] as body:
                    await body.read()

            for phase, op in (("put", put), ("has", has), ("get", get)):
                with timers[phase]:
                    await bounded(args.count, args.concurrency, op)

            async def delete(i: int) -> None:
                await client.delete_object(Bucket=bucket, Key=keys[i])

            await bounded(args.count, args.concurrency, delete)
            return small_result(timers, args.count)
        if workload == "w3":
            paginator = client.get_paginator("list_objects_v2")
            with Timer() as t:
                count = 0
                async for page in paginator.paginate(Bucket=args.list_bucket):
                    count += len(page.get("Contents", ()))
            return {"list_s": t.wall, "listed": count}
    raise SystemExit(f"aioboto3 has no workload {workload}")


# -- boto3 upload_file / download_file (s3transfer) ------------------------


def boto3_run(args: argparse.Namespace) -> dict[str, Any]:
    workload = args.workload
    client = boto3_client(args)
    bucket = args.bucket
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = Path(tmp) / "blob"
        if workload == "w1put":
            Data(args.size, args.seed).to_file(path)
            key = f"raw/boto3/{args.seed}"
            with Timer() as t:
                client.upload_file(str(path), bucket, key)
            client.delete_object(Bucket=bucket, Key=key)
            return {"put_mbps": args.size / t.wall / 1e6}
        if workload == "w1get":
            with Timer() as t:
                client.download_file(bucket, args.key, str(path))
            if path.stat().st_size != args.size:
                raise SystemExit("short read")
            if args.integrity and sri(file_chunks(path)) != args.integrity:
                raise SystemExit("corrupt download")
            return {"get_mbps": args.size / t.wall / 1e6, "verified": False}
        if workload == "w3":
            paginator = client.get_paginator("list_objects_v2")
            with Timer() as t:
                count = sum(
                    len(page.get("Contents", ()))
                    for page in paginator.paginate(Bucket=args.list_bucket)
                )
            return {"list_s": t.wall, "listed": count}
    raise SystemExit(f"boto3 has no workload {workload}")


# -- obstore ---------------------------------------------------------------


async def obstore_ranges(store: Any, args: argparse.Namespace) -> dict[str, Any]:
    """W1 get as 8 MiB ``get_range`` calls, 8 in flight, hashed inline in order.

    (``get_ranges`` would coalesce adjacent ranges into one request.)
    """
    import obstore  # noqa: PLC0415

    hasher = hashlib.sha512()
    step = 8 * MiB
    starts = iter(range(0, args.size, step))
    got = 0
    with Timer() as t:
        pending: list[asyncio.Task[Any]] = []

        def refill() -> None:
            while len(pending) < OBSTORE_RANGES:
                start = next(starts, None)
                if start is None:
                    return
                end = min(start + step, args.size)
                pending.append(
                    asyncio.ensure_future(
                        obstore.get_range_async(store, args.key, start=start, end=end)
                    )
                )

        refill()
        while pending:
            piece = await pending.pop(0)
            refill()
            view = memoryview(piece)
            hasher.update(view)
            got += view.nbytes
    if got != args.size:
        raise SystemExit("short read")
    if args.integrity and sri_of(hasher) != args.integrity:
        raise SystemExit("corrupt download")
    return {"get_mbps": args.size / t.wall / 1e6, "verified": True}


async def obstore_run(args: argparse.Namespace) -> dict[str, Any]:
    import obstore  # noqa: PLC0415

    workload = args.workload
    store = obstore_store(args, args.bucket)
    if workload == "w1put":
        data = Data(args.size, args.seed)
        key = f"raw/obstore/{args.seed}"
        with Timer() as t:
            # Streams: obstore uploads an async iterable as a multipart upload.
            await obstore.put_async(store, key, data.achunks(8 * MiB))
        await obstore.delete_async(store, key)
        return {"put_mbps": args.size / t.wall / 1e6}
    if workload == "w1get" and args.contender == "obstore-ranges":
        return await obstore_ranges(store, args)
    if workload == "w1get":
        hasher = hashlib.sha512()
        got = 0
        with Timer() as t:
            result = await obstore.get_async(store, args.key)
            async for chunk in result.stream(min_chunk_size=MiB):
                view = memoryview(chunk)
                hasher.update(view)
                got += view.nbytes
        if got != args.size:
            raise SystemExit("short read")
        if args.integrity and sri_of(hasher) != args.integrity:
            raise SystemExit("corrupt download")
        # Hashed inline on the event loop's thread, as a user would.
        return {"get_mbps": args.size / t.wall / 1e6, "verified": True}
    if workload == "w2":
        blobs = small_blobs(args.count, args.seed)
        keys = [f"raw/obstore/w2/{args.seed}/{i}" for i in range(args.count)]
        timers = {"put": Timer(), "has": Timer(), "get": Timer()}

        async def put(i: int) -> None:
            await obstore.put_async(store, keys[i], blobs[i])

        async def has(i: int) -> None:
            await obstore.head_async(store, keys[i])

        async def get(i: int) -> None:
            result = await obstore.get_async(store, keys[i])
            await result.bytes_async()

        for phase, op in (("put", put), ("has", has), ("get", get)):
            with timers[phase]:
                await bounded(args.count, args.concurrency, op)
        await bounded(
            args.count,
            args.concurrency,
            lambda i: obstore.delete_async(store, keys[i]),
        )
        return small_result(timers, args.count)
    if workload == "w3":
        listed = obstore_store(args, args.list_bucket)
        with Timer() as t:
            count = 0
            async for batch in obstore.list(listed, chunk_size=1000):
                count += len(batch)
        return {"list_s": t.wall, "listed": count}
    raise SystemExit(f"obstore has no workload {workload}")


# -- filesystem -------------------------------------------------------------


async def fs_run(args: argparse.Namespace) -> dict[str, Any]:
    """W4: sriblob's FilesystemBlobStore, or a plain file copy."""
    workload = args.workload
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        if args.contender == "copy":
            return copy_run(args, root)
        try:
            from sriblob import FilesystemBlobStore  # noqa: PLC0415
        except ImportError:
            return {"skipped": "sriblob.FilesystemBlobStore is not available"}
        store = FilesystemBlobStore(root / "store")
        async with store:
            if workload == "w4":
                data = Data(args.size, args.seed)
                integrity = data.integrity()
                with Timer() as t:
                    await store.put(integrity, data.achunks())
                put_mbps = args.size / t.wall / 1e6
                got = 0
                with Timer() as t:
                    async with store.open(integrity) as reader:
                        async for chunk in reader:
                            got += len(chunk)
                if got != args.size:
                    raise SystemExit("short read")
                return {
                    "put_mbps": put_mbps,
                    "get_mbps": args.size / t.wall / 1e6,
                    "verified": True,
                }
            if workload == "w4small":
                blobs = small_blobs(args.count, args.seed)
                names = [sri(iter([blob])) for blob in blobs]
                timers = {"put": Timer(), "get": Timer()}

                async def put(i: int) -> None:
                    await store.put(names[i], blobs[i])

                async def get(i: int) -> None:
                    if await store.get(names[i]) is None:
                        raise SystemExit("missing blob")

                for phase, op in (("put", put), ("get", get)):
                    with timers[phase]:
                        await bounded(args.count, args.concurrency, op)
                return small_result(timers, args.count)
    raise SystemExit(f"filesystem has no workload {workload}")


def copy_run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The plain-copy baseline: write the bytes to a file, read them back."""
    if args.workload == "w4":
        data = Data(args.size, args.seed)
        source = root / "source"
        data.to_file(source)
        target = root / "target"
        # What a store's put must do at least: copy the bytes into a new file
        # and make them durable.
        with Timer() as t, target.open("wb") as out:
            for piece in data.chunks(MiB):
                out.write(piece)
            out.flush()
            os.fsync(out.fileno())
        put_mbps = args.size / t.wall / 1e6
        with Timer() as t:
            got = sum(len(piece) for piece in file_chunks(target))
        if got != args.size:
            raise SystemExit("short read")
        return {"put_mbps": put_mbps, "get_mbps": args.size / t.wall / 1e6}
    if args.workload == "w4small":
        blobs = small_blobs(args.count, args.seed)
        (root / "d").mkdir()
        with Timer() as put:
            for i, blob in enumerate(blobs):
                with (root / "d" / str(i)).open("wb") as out:
                    out.write(blob)
                    out.flush()
                    os.fsync(out.fileno())
        with Timer() as get:
            for i in range(len(blobs)):
                (root / "d" / str(i)).read_bytes()
        return small_result({"put": put, "get": get}, len(blobs))
    raise SystemExit(f"copy has no workload {args.workload}")


# -- physical limits --------------------------------------------------------


def limits_run(args: argparse.Namespace) -> dict[str, Any]:
    size = args.size
    data = Data(size, args.seed)
    out: dict[str, Any] = {}
    for algorithm in ("sha512", "sha256"):
        hasher = hashlib.new(algorithm)
        with Timer() as t:
            for piece in data.chunks(MiB):
                hasher.update(piece)
        out[f"{algorithm}_mbps"] = size / t.wall / 1e6
    out["tcp_mbps"] = loopback_mbps(size)
    out["hash_write_mbps"] = hash_write_mbps(data, args.tmp)
    return out


def hash_write_mbps(data: Data, tmp: str | None) -> float:
    """A verified write in plain Python: sha512 in one thread, writes in another.

    The main thread writes 1 MiB pieces to a new file and syncs it every
    8 MiB and at the end, while a second thread hashes the same pieces (four
    queued at most): the best a store that hashes what it writes can do on
    two cores, with no event loop involved.
    """
    import queue  # noqa: PLC0415

    hasher = hashlib.sha512()
    pieces: queue.Queue[memoryview | None] = queue.Queue(4)

    def hash_pieces() -> None:
        while (piece := pieces.get()) is not None:
            hasher.update(piece)

    thread = threading.Thread(target=hash_pieces)
    fd, path = tempfile.mkstemp(dir=tmp)
    try:
        with Timer() as t:
            thread.start()
            for n, piece in enumerate(data.chunks(MiB), 1):
                pieces.put(piece)
                os.write(fd, piece)
                if n % 8 == 0:
                    os.fdatasync(fd)
            pieces.put(None)
            thread.join()
            os.fsync(fd)
    finally:
        os.close(fd)
        Path(path).unlink()
    return data.size / t.wall / 1e6


def loopback_mbps(size: int) -> float:
    """Bytes per second through one loopback TCP connection (1 MiB writes)."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    received = 0

    def sink() -> None:
        nonlocal received
        connection, _ = server.accept()
        with connection:
            buffer = bytearray(MiB)
            while n := connection.recv_into(buffer):
                received += n

    thread = threading.Thread(target=sink, daemon=True)
    thread.start()
    payload = memoryview(os.urandom(MiB))
    with socket.create_connection(("127.0.0.1", port)) as client, Timer() as t:
        sent = 0
        while sent < size:
            client.sendall(payload)
            sent += payload.nbytes
        client.shutdown(socket.SHUT_WR)
        thread.join(timeout=60)
    server.close()
    return sent / t.wall / 1e6


# -- main -------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--contender", required=True)
    parser.add_argument("--workload", required=True)
    parser.add_argument("--endpoint", default="")
    parser.add_argument("--bucket", default="bench")
    parser.add_argument("--list-bucket", default="bench-list")
    parser.add_argument("--size", type=int, default=256 * MiB)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--small-size", type=int, default=4096, help="bytes per small blob"
    )
    parser.add_argument("--concurrency", type=int, default=SMALL_CONCURRENCY)
    parser.add_argument("--seed", default="0")
    parser.add_argument("--key", default="", help="object to download")
    parser.add_argument("--integrity", default="", help="expected sha512 SRI")
    parser.add_argument("--tmp", default=None, help="directory for temp files")
    return parser.parse_args(argv)


def telemetry_mode(contender: str) -> None:
    """Set up OpenTelemetry for a ``sriblob-otel-*`` contender, before any call.

    ``sriblob-otel-off``: ``SRIBLOB_TELEMETRY=off`` (the baseline).
    ``sriblob-otel-sdk``: the SDK's tracer and meter providers, spans batched
    to an exporter that drops them and metrics aggregated for a reader that
    exports every 60 s to one that drops them too. Plain ``sriblob`` runs
    with no SDK: OpenTelemetry's no-op API.
    """
    if contender == "sriblob-otel-off":
        os.environ["SRIBLOB_TELEMETRY"] = "off"
        return
    if contender != "sriblob-otel-sdk":
        return
    from opentelemetry import metrics, trace  # noqa: PLC0415
    from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
    from opentelemetry.sdk.metrics.export import (  # noqa: PLC0415
        MetricExporter,
        MetricExportResult,
        PeriodicExportingMetricReader,
    )
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import (  # noqa: PLC0415
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    class DropSpans(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:  # noqa: ARG002
            return SpanExportResult.SUCCESS

    class DropMetrics(MetricExporter):
        def export(self, *_: Any, **__: Any) -> MetricExportResult:
            return MetricExportResult.SUCCESS

        def force_flush(self, timeout_millis: float = 0) -> bool:  # noqa: ARG002
            return True

        def shutdown(self, *_: Any, **__: Any) -> None:
            return None

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    trace.set_tracer_provider(tracer_provider)
    reader = PeriodicExportingMetricReader(DropMetrics(), export_interval_millis=60_000)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))


def main(argv: list[str]) -> None:
    args = parse(argv)
    telemetry_mode(args.contender)
    runners: dict[str, Callable[[argparse.Namespace], Any]] = {
        "sriblob": sriblob_run,
        "sriblob-unsigned": sriblob_run,
        "sriblob-ranged": sriblob_run,
        "sriblob-single": sriblob_run,
        "sriblob-otel-off": sriblob_run,
        "sriblob-otel-sdk": sriblob_run,
        "obstore-ranges": obstore_run,
        "aioboto3": aioboto3_run,
        "boto3": boto3_run,
        "obstore": obstore_run,
        "sriblob-fs": fs_run,
        "sriblob-cached": cached_run,
        "copy": fs_run,
        "limits": limits_run,
    }
    runner = runners[args.contender]
    with RssSampler() as sampler:
        result = runner(args)
        if asyncio.iscoroutine(result):
            result = asyncio.run(result)
    if args.workload in {"w1put", "w1get"}:
        result["rss_series"] = sampler.thinned()
    result.update(
        contender=args.contender,
        workload=args.workload,
        peak_rss_mib=peak_rss_mib(),
        ru_maxrss_mib=ru_maxrss_mib(),
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
    # Don't wait for library threads (executors, obstore's runtime) at exit.
    sys.stdout.flush()
    os._exit(0)
