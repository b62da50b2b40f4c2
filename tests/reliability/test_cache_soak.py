"""A soak: three `sriblob serve` sharing one bucket and one cache, under attack.

Three ``sriblob serve`` processes read one SeaweedFS bucket through one
cache directory with a small cap (constant evictions across processes). A
bounded load generator on 127.0.0.1 sends GETs, Range requests and HEADs to
all three. Meanwhile a chaos loop runs ``sriblob gc`` against a keep file
(the blobs the load uses; each round adds unreferenced blobs for it to
collect), runs ``sriblob cache prune``, and damages cache files (a flipped
byte, a truncation, appended bytes, a symlink).

What must hold: no wrong byte, no complete response of the wrong length, no
5xx (nor any other failure), and every blob of the keep file still held by
the back at the end. A transfer the server aborts (a copy that changed while
it streamed) is counted, not failed: the client knows it is incomplete.

``pytest -m reliability --soak-seconds 300 -s tests/reliability/test_cache_soak.py``
runs it longer and prints the figures docs/reliability.md records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import attrs
import boto3
import httpx
import pytest

from sriblob import S3BlobStore, S3StoreConfig

from ..helpers import MOTO_REGION, blob, integrity_of
from .seaweedfs import seaweedfs_mini
from .test_serve import free_port

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.reliability

KiB: Final = 1024
MiB: Final = 1024 * KiB
SERVERS: Final = 3
CONCURRENCY: Final = 12
#: The most requests a run sends, whatever its length.
MAX_REQUESTS: Final = 200_000
CACHE_CAP: Final = 24 * MiB


@attrs.define
class Tally:
    """What the load generator saw."""

    requests: dict[str, int] = attrs.Factory(dict)
    latencies: list[float] = attrs.Factory(list)
    wrong: list[str] = attrs.Factory(list)
    aborted: int = 0

    def count(self, kind: str) -> None:
        """Count one request of *kind*."""
        self.requests[kind] = self.requests.get(kind, 0) + 1


@attrs.define
class Chaos:
    """What the chaos loop did."""

    gc_runs: int = 0
    collected: int = 0
    prunes: int = 0
    damaged: int = 0
    failures: list[str] = attrs.Factory(list)


def _blobs() -> dict[str, bytes]:
    """The blobs the load reads: many small, some of MiBs, two over 16 MiB."""
    rng = random.Random(2026)
    sizes = [rng.randrange(1, 100 * KiB) for _ in range(30)]
    sizes += [rng.randrange(512 * KiB, 2 * MiB) for _ in range(10)]
    sizes += [17 * MiB + 3, 18 * MiB + 5]
    return {
        integrity_of(data): data
        for data in (blob(size, seed=900 + n) for n, size in enumerate(sizes))
    }


@contextlib.contextmanager
def servers(env: dict[str, str], logs: Path) -> Iterator[list[str]]:
    """Start `sriblob serve` SERVERS times; yield their base URLs; stop them cleanly."""
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    bases = []
    try:
        for n in range(SERVERS):
            port = free_port()
            log = logs / f"serve-{n}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(  # noqa: S603 -- our own interpreter
                    [sys.executable, "-m", "sriblob", "serve", "--port", str(port)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=output,
                )
            processes.append((process, log))
            bases.append(f"http://127.0.0.1:{port}")
        for (process, log), base in zip(processes, bases, strict=True):
            deadline = time.monotonic() + 60
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    httpx.get(f"{base}/", timeout=1)
                    break
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "sriblob serve never answered"
                time.sleep(0.05)
        yield bases
    finally:
        for process, _ in processes:
            process.terminate()
        stuck = []
        for process, log in processes:
            try:
                status = process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                stuck.append(log.read_text()[-3000:])
            else:
                assert status == 0, log.read_text()[-3000:]
        assert stuck == [], "a server didn't stop within 60 s of SIGTERM"


async def _load(
    bases: list[str], blobs: dict[str, bytes], deadline: float, tally: Tally
) -> None:
    """Send GETs, ranges and HEADs until *deadline*; check every answer."""
    rng = random.Random(7)
    names = list(blobs)
    weights = [1 if len(blobs[name]) > 16 * MiB else 20 for name in names]
    sent = 0

    async def one(client: httpx.AsyncClient) -> None:
        name = rng.choices(names, weights)[0]
        data = blobs[name]
        url = f"{rng.choice(bases)}/blobs/{urllib.parse.quote(name, safe='')}"
        kind = rng.choices(["get", "range", "head"], [5, 4, 1])[0]
        headers = {}
        expected = data
        if kind == "range":
            start = rng.randrange(len(data))
            stop = rng.randrange(start, min(len(data), start + 3 * MiB)) + 1
            headers["range"] = f"bytes={start}-{stop - 1}"
            expected = data[start:stop]
        tally.count(kind)
        started = time.monotonic()
        try:
            if kind == "head":
                response = await client.head(url)
                body = b""
            else:
                async with client.stream("GET", url, headers=headers) as response:
                    body = b"".join([chunk async for chunk in response.aiter_raw()])
        except (httpx.RemoteProtocolError, httpx.ReadError):
            tally.aborted += 1  # aborted by the server: incomplete, and known to be
            return
        except httpx.HTTPError as exc:
            tally.wrong.append(f"{kind} {name[:20]}: {type(exc).__name__}: {exc}")
            return
        tally.latencies.append(time.monotonic() - started)
        problem = _check(kind, response, body, len(data), expected)
        if problem is not None:
            tally.wrong.append(f"{kind} {name[:20]} {headers}: {problem}")

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal sent
        while time.monotonic() < deadline and sent < MAX_REQUESTS:
            sent += 1
            await one(client)

    limits = httpx.Limits(max_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(CONCURRENCY)))


def _check(
    kind: str, response: httpx.Response, body: bytes, size: int, expected: bytes
) -> str | None:
    """What is wrong with one answer, or None."""
    status = {"get": 200, "range": 206, "head": 200}[kind]
    length = int(response.headers.get("content-length", -1))
    if response.status_code != status:
        return f"status {response.status_code}"
    if kind == "head":
        return None if length == size else f"length {length} != {size}"
    if body != expected or length != len(expected):
        return f"{len(body)} bytes, length {length}, expected {len(expected)}"
    return None


def _damage(cache: Path, rng: random.Random) -> bool:
    """Damage one random cache file behind the servers' backs."""
    files = [
        path
        for path in (cache / "blobs").rglob("*")
        if path.is_file() and not path.is_symlink() and not path.name.startswith(".")
    ]
    if not files:
        return False
    path = rng.choice(files)
    how = rng.choice(["flip", "truncate", "append", "symlink"])
    with contextlib.suppress(FileNotFoundError, PermissionError):
        path.chmod(0o644)
        size = path.stat().st_size
        if how == "flip" and size:
            with path.open("r+b") as file:
                file.seek(size // 2)
                byte = file.read(1)
                file.seek(size // 2)
                file.write(bytes([byte[0] ^ 0x40]))
        elif how == "truncate":
            os.truncate(path, size // 2)
        elif how == "append":
            with path.open("ab") as file:
                file.write(b"appended")
        else:
            decoy = path.with_name(".decoy")
            decoy.write_bytes(b"not the blob")
            path.unlink()
            path.symlink_to(decoy)
        return True
    return False


def _chaos(
    *,
    env: dict[str, str],
    config: S3StoreConfig,
    keep: Path,
    cache: Path,
    stop: threading.Event,
    chaos: Chaos,
) -> None:
    """gc, prune and damage, round after round, until *stop*."""
    rng = random.Random(11)
    cli = [sys.executable, "-m", "sriblob"]
    while not stop.is_set():
        try:
            extra = [
                blob(rng.randrange(1, 300 * KiB), seed=rng.randrange(10**9))
                for _ in range(3)
            ]
            asyncio.run(_put_all(config, extra))
            done = subprocess.run(  # noqa: S603 -- our own interpreter
                [
                    *cli,
                    "gc",
                    "--keep",
                    str(keep),
                    "--yes",
                    "--grace",
                    "0",
                    "--lease-timeout",
                    "60",
                    "--json",
                ],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                chaos.failures.append(
                    f"gc exit {done.returncode}: {done.stderr[-500:]}"
                )
            else:
                chaos.gc_runs += 1
                chaos.collected += len(json.loads(done.stdout)["deleted"])
            cap = rng.choice([0, CACHE_CAP // 4, CACHE_CAP // 2])
            done = subprocess.run(  # noqa: S603 -- our own interpreter
                [*cli, "cache", "prune", "--max-bytes", str(cap)],
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            if done.returncode != 0:
                chaos.failures.append(
                    f"prune exit {done.returncode}: {done.stderr[-500:]}"
                )
            else:
                chaos.prunes += 1
            for _ in range(3):
                chaos.damaged += _damage(cache, rng)
                stop.wait(0.3)
        except Exception as exc:  # noqa: BLE001 -- reported by the test
            chaos.failures.append(f"{type(exc).__name__}: {exc}")
            stop.wait(1)


async def _put_all(config: S3StoreConfig, blobs: Any) -> None:
    async with S3BlobStore(config) as store:
        for data in blobs:
            await store.add(data)


async def _missing(config: S3StoreConfig, blobs: dict[str, bytes]) -> list[str]:
    async with S3BlobStore(config) as store:
        return [name for name, data in blobs.items() if await store.get(name) != data]


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


def test_three_servers_one_cache_under_attack(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """No wrong byte, no wrong length, no 5xx, no lost blob, for the whole soak."""
    seconds = float(request.config.getoption("--soak-seconds"))
    blobs = _blobs()
    with seaweedfs_mini(tmp_path / "weed") as weed:
        bucket = f"soak-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=weed.endpoint,
            region_name=MOTO_REGION,
            aws_access_key_id=weed.access_key_id,
            aws_secret_access_key=weed.secret_access_key,
        ).create_bucket(Bucket=bucket)
        config = S3StoreConfig(
            bucket=bucket,
            access_key_id=weed.access_key_id,
            secret_access_key=weed.secret_access_key,
            endpoint=weed.endpoint,
            region=MOTO_REGION,
            force_path_style=True,
        )
        asyncio.run(_put_all(config, blobs.values()))
        keep = tmp_path / "keep.txt"
        keep.write_text("".join(f"{name}\n" for name in blobs))
        cache = tmp_path / "cache"
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if not k.startswith(("CHECKSTACK_", "SRIBLOB_"))
            },
            "CHECKSTACK_SCRIPT_PACKAGES_S3_BUCKET": bucket,
            "CHECKSTACK_SCRIPT_PACKAGES_S3_ACCESS_KEY_ID": weed.access_key_id,
            "CHECKSTACK_SCRIPT_PACKAGES_S3_SECRET_ACCESS_KEY": weed.secret_access_key,
            "CHECKSTACK_SCRIPT_PACKAGES_S3_ENDPOINT": weed.endpoint,
            "CHECKSTACK_SCRIPT_PACKAGES_S3_REGION": MOTO_REGION,
            "CHECKSTACK_SCRIPT_PACKAGES_S3_FORCE_PATH_STYLE": "true",
            "SRIBLOB_ROOT": str(tmp_path / "local"),
            "SRIBLOB_CACHE_DIR": str(cache),
            "SRIBLOB_CACHE_MAX_BYTES": str(CACHE_CAP),
        }
        tally, chaos = Tally(), Chaos()
        with servers(env, tmp_path) as bases:
            stop = threading.Event()
            loop = threading.Thread(
                target=_chaos,
                kwargs={
                    "env": env,
                    "config": config,
                    "keep": keep,
                    "cache": cache / "s3",
                    "stop": stop,
                    "chaos": chaos,
                },
            )
            loop.start()
            started = time.monotonic()
            try:
                asyncio.run(_load(bases, blobs, started + seconds, tally))
            finally:
                stop.set()
                loop.join(180)
            elapsed = time.monotonic() - started
        missing = asyncio.run(_missing(config, blobs))

    total = sum(tally.requests.values())
    figures = {
        "seconds": round(elapsed, 1),
        "requests": tally.requests,
        "total": total,
        "per_second": round(total / elapsed, 1),
        "p50_ms": round(1000 * _percentile(tally.latencies, 0.5), 1),
        "p99_ms": round(1000 * _percentile(tally.latencies, 0.99), 1),
        "mean_ms": round(1000 * statistics.fmean(tally.latencies or [0]), 1),
        "aborted": tally.aborted,
        "wrong": len(tally.wrong),
        "gc_runs": chaos.gc_runs,
        "collected": chaos.collected,
        "prunes": chaos.prunes,
        "damaged": chaos.damaged,
    }
    print(f"\nsoak: {json.dumps(figures)}")  # noqa: T201 -- the figures for the docs
    assert tally.wrong == [], tally.wrong[:20]
    assert missing == [], "blobs of the keep file were lost"
    assert chaos.failures == [], chaos.failures
    assert chaos.gc_runs >= 1
    assert chaos.collected >= 3
    assert chaos.damaged >= 1
    assert total >= 50
