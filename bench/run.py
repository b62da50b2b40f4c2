"""Run sriblob's benchmarks against local S3 servers: ``nox -s bench``.

Runs lanes one after the other, each against its own loopback server:

- ``moto``: moto's S3 server, every workload;
- ``seaweedfs``: SeaweedFS (``weed mini`` via ``compat/seaweedfs.sh``), W1;
- ``s3like``: the same SeaweedFS behind ``bench/throttle.py``, which caps
  each connection at 64 MB/s and delays each answer's first byte by 5 ms (a
  model of S3's per-request bandwidth), W1;
- ``rgw`` (only when asked): Ceph RGW via ``compat/ceph-rgw.sh``, W1.

In each lane every (contender, workload) runs in a fresh
``bench/worker.py`` process, contenders alternating (A B C A B C ...) over
``--rounds`` rounds; tables show medians with min-max. Writes
``bench/results/latest.json`` and, with ``--write-docs``,
``docs/benchmarks.json``, the charts and the generated part of
``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shlex
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
WORKER = HERE / "worker.py"
MiB = 1024 * 1024
BUCKET = "bench"
LIST_BUCKET = "bench-list"
BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

S3_CONTENDERS = ["sriblob", "aioboto3", "boto3", "obstore"]
#: W1 get also runs sriblob on one stream (read_concurrency=1) and on 8
#: connections from the start (read_concurrency=8), and obstore's ranges.
W1GET_CONTENDERS = [
    "sriblob",
    "sriblob-single",
    "sriblob-ranged",
    "aioboto3",
    "boto3",
    "obstore",
    "obstore-ranges",
]
SMALL_CONTENDERS = ["sriblob", "aioboto3", "obstore"]
#: The cache workload: this many small blobs of this size, read at this
#: concurrency, and one large blob.
CACHE_SMALL_COUNT = 300
CACHE_SMALL_SIZE = 64 * 1024
CACHE_CONCURRENCY = 16
CACHE_LARGE = 64 * MiB
#: The telemetry overhead (issue 26): W2 with telemetry off, with no SDK (the
#: API's no-op objects) and with the SDK exporting to nowhere.
OTEL_CONTENDERS = ["sriblob-otel-off", "sriblob", "sriblob-otel-sdk"]
#: At least this many rounds for the telemetry overhead, whatever --rounds.
OTEL_ROUNDS = 5
#: W1 put also runs sriblob with sign_payloads=False (informational).
W1PUT_CONTENDERS = [*S3_CONTENDERS, "sriblob-unsigned"]
LIST_CONTENDERS = ["sriblob", "aioboto3", "boto3", "obstore"]
FS_CONTENDERS = ["sriblob-fs", "copy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto S3 server in its own process on loopback; killed on exit."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 -- closed in finally
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(endpoint + "/", timeout=2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(
                        "moto server did not start: " + log.read().decode()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield endpoint
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


RGW_SCRIPT = ROOT / "compat" / "ceph-rgw.sh"


@contextlib.contextmanager
def ceph_rgw() -> Iterator[str]:
    """A throwaway Ceph RGW on loopback via compat/ceph-rgw.sh; stopped on exit.

    Its S3 user's credentials reach the workers through the environment.
    """
    if not RGW_SCRIPT.exists():
        msg = f"{RGW_SCRIPT.relative_to(ROOT)} is not in this checkout"
        raise SystemExit(msg)
    directory = tempfile.mkdtemp(prefix="bench-rgw-")
    try:
        subprocess.run(
            ["bash", str(RGW_SCRIPT), "start", directory], check=True, timeout=600
        )
        printed = subprocess.run(
            ["bash", str(RGW_SCRIPT), "env", directory],
            check=True,
            timeout=60,
            capture_output=True,
            text=True,
        ).stdout
        found = {}
        for line in printed.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            found[name.strip()] = value.strip().strip("'\"")
        os.environ["BENCH_S3_ACCESS_KEY_ID"] = found["SRIBLOB_TEST_S3_ACCESS_KEY_ID"]
        os.environ["BENCH_S3_SECRET_ACCESS_KEY"] = found[
            "SRIBLOB_TEST_S3_SECRET_ACCESS_KEY"
        ]
        yield found["SRIBLOB_TEST_S3_ENDPOINT"]
    finally:
        subprocess.run(
            ["bash", str(RGW_SCRIPT), "stop", directory], check=False, timeout=300
        )


SEAWEEDFS_SCRIPT = ROOT / "compat" / "seaweedfs.sh"
THROTTLE = HERE / "throttle.py"
#: The S3-like lane's model: bytes a second per connection, first-byte delay.
S3LIKE_RATE = 64e6
S3LIKE_FIRST_BYTE = 0.005


def script_env(script: Path, directory: str) -> dict[str, str]:
    printed = subprocess.run(
        ["bash", str(script), "env", directory],
        check=True,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout
    found = {}
    for line in printed.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        found[name.strip()] = value.strip().strip("'\"")
    return found


@contextlib.contextmanager
def seaweedfs() -> Iterator[tuple[str, dict[str, str]]]:
    """SeaweedFS (``weed mini``) on loopback via compat/seaweedfs.sh.

    Yields its endpoint and the credentials of its one S3 identity.
    """
    directory = tempfile.mkdtemp(prefix="bench-seaweedfs-")
    try:
        subprocess.run(
            ["bash", str(SEAWEEDFS_SCRIPT), "start", directory], check=True, timeout=300
        )
        found = script_env(SEAWEEDFS_SCRIPT, directory)
        yield (
            found["SRIBLOB_TEST_S3_ENDPOINT"],
            {
                "BENCH_S3_ACCESS_KEY_ID": found["SRIBLOB_TEST_S3_ACCESS_KEY_ID"],
                "BENCH_S3_SECRET_ACCESS_KEY": found[
                    "SRIBLOB_TEST_S3_SECRET_ACCESS_KEY"
                ],
            },
        )
    finally:
        subprocess.run(
            ["bash", str(SEAWEEDFS_SCRIPT), "stop", directory], check=False, timeout=120
        )


@contextlib.contextmanager
def throttled(endpoint: str) -> Iterator[str]:
    """``bench/throttle.py`` in front of *endpoint*; yields the proxy's endpoint."""
    upstream = endpoint.rsplit(":", 1)[1].rstrip("/")
    process = subprocess.Popen(
        [
            sys.executable,
            str(THROTTLE),
            "--upstream",
            upstream,
            "--rate",
            str(S3LIKE_RATE),
            "--first-byte",
            str(S3LIKE_FIRST_BYTE),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None  # piped above
        port = int(process.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def boto3_admin(endpoint: str) -> Any:
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=os.environ.get("BENCH_S3_ACCESS_KEY_ID", "bench"),
        aws_secret_access_key=os.environ.get(
            "BENCH_S3_SECRET_ACCESS_KEY", "bench-secret"
        ),
        region_name="us-east-1",
        config=Config(
            max_pool_connections=64,
            s3={"addressing_style": "path"},
            signature_version="s3v4",
        ),
    )


def seed_listing(endpoint: str, count: int) -> float:
    """Put *count* sriblob-named 1-byte objects into the listing bucket, once."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    import sriblob  # noqa: PLC0415
    from sriblob.keys import integrity_to_key  # noqa: PLC0415

    client = boto3_admin(endpoint)
    keys = [
        integrity_to_key(sriblob.Integrity.from_bytes(f"listing-{i}".encode()))
        for i in range(count)
    ]
    started = time.perf_counter()
    with ThreadPoolExecutor(32) as pool:
        list(
            pool.map(
                lambda k: client.put_object(Bucket=LIST_BUCKET, Key=k, Body=b"x"), keys
            )
        )
    return time.perf_counter() - started


def run_worker(
    contender: str, workload: str, extra: list[str], timeout: float
) -> dict[str, Any]:
    command = [
        sys.executable,
        str(WORKER),
        "--contender",
        contender,
        "--workload",
        workload,
        *extra,
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if process.returncode != 0 or not lines:
        return {"error": (err or out).strip()[-1500:] or f"exit {process.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def summarize(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def versions() -> dict[str, str]:
    found = {}
    for name in (
        "sriblob",
        "aioboto3",
        "aiobotocore",
        "botocore",
        "boto3",
        "s3transfer",
        "aiohttp",
        "obstore",
        "moto",
    ):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    found["python"] = platform.python_version()
    return found


def machine() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "kernel": platform.release(),
    }


def curl_mbps(url: str) -> dict[str, Any]:
    """One ``curl -o /dev/null`` of *url*: the single-stream ceiling of a lane."""
    done = subprocess.run(
        ["curl", "-s", "-f", "-o", "/dev/null", "-w", "%{speed_download}", url],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if done.returncode != 0:
        return {"error": f"curl exit {done.returncode}: {done.stderr.strip()}"}
    return {"curl_mbps": float(done.stdout) / 1e6}


#: What each lane runs: moto runs everything; the others the 256 MiB blob.
LANE_WORKLOADS = {
    "moto": None,
    "seaweedfs": {"limits", "w1put", "w1get", "cache"},
    "s3like": {"limits", "w1put", "w1get", "cache"},
    "rgw": {"limits", "w1put", "w1get"},
    "endpoint": None,
}


class Bench:
    def __init__(self, args: argparse.Namespace, endpoint: str, lane: str) -> None:
        self.args = args
        self.endpoint = endpoint
        self.lane = lane
        self.raw: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.errors: list[str] = []
        quick = args.quick
        self.big = 32 * MiB if quick else 256 * MiB
        self.huge = 64 * MiB if quick else 1024 * MiB
        self.count = 200 if quick else 2000
        self.list_count = 1000 if quick else 10_000
        self.rounds = 1 if quick else args.rounds
        self.only = set(args.only.split(",")) if args.only else None

    def wanted(self, workload: str) -> bool:
        lane = LANE_WORKLOADS.get(self.lane)
        if lane is not None and workload not in lane:
            return False
        return self.only is None or workload in self.only

    def record(self, workload: str, contender: str, result: dict[str, Any]) -> None:
        label = f"{self.lane} {workload} {contender}"
        if "error" in result:
            self.errors.append(f"{label}: {result['error']}")
            print(f"  {label}: ERROR {result['error'][-300:]}", flush=True)
            return
        if "skipped" in result:
            print(f"  {label}: skipped ({result['skipped']})", flush=True)
            return
        self.raw.setdefault(workload, {}).setdefault(contender, []).append(result)
        shown = {
            k: round(v, 2) if isinstance(v, float) else v
            for k, v in result.items()
            if k not in {"contender", "workload", "rss_series"}
        }
        print(f"  {label}: {shown}", flush=True)

    def worker(
        self, contender: str, workload: str, *extra: str, timeout: float = 600
    ) -> dict[str, Any]:
        common = [
            "--endpoint",
            self.endpoint,
            "--bucket",
            BUCKET,
            "--list-bucket",
            LIST_BUCKET,
        ]
        if self.args.tmp:
            common += ["--tmp", self.args.tmp]
        return run_worker(contender, workload, [*common, *extra], timeout)

    def run(self) -> None:
        big_seed = "w1"
        big_integrity = self._integrity(self.big, big_seed)
        import sriblob  # noqa: PLC0415
        from sriblob.keys import integrity_to_key  # noqa: PLC0415

        big_key = integrity_to_key(sriblob.Integrity.parse(big_integrity))
        size = ["--size", str(self.big), "--seed", big_seed]
        url = None
        if self.wanted("w1get") or self.wanted("cache"):
            # The blob every contender downloads, stored under sriblob's key.
            print("seeding the W1 blob", flush=True)
            seeded = self.worker(
                "sriblob", "w1put", *size, "--integrity", big_integrity
            )
            if "error" in seeded:
                self.errors.append(f"seed w1: {seeded['error']}")
            url = boto3_admin(self.endpoint).generate_presigned_url(
                "get_object", Params={"Bucket": BUCKET, "Key": big_key}, ExpiresIn=7200
            )
        if self.wanted("w3"):
            print(f"seeding {self.list_count} objects for W3", flush=True)
            took = seed_listing(self.endpoint, self.list_count)
            print(f"  seeded in {took:.1f} s", flush=True)
        for round_ in range(1, self.rounds + 1):
            print(f"round {round_}/{self.rounds}", flush=True)
            if self.wanted("limits"):
                self.record(
                    "limits",
                    "limits",
                    self.worker("limits", "limits", "--size", str(self.big)),
                )
                if url is not None:
                    self.record("limits", "curl", curl_mbps(url))
            if self.wanted("w1put"):
                for contender in W1PUT_CONTENDERS:
                    extra = [*size, "--integrity", big_integrity]
                    self.record(
                        "w1put", contender, self.worker(contender, "w1put", *extra)
                    )
            if self.wanted("w1get"):
                for contender in W1GET_CONTENDERS:
                    extra = [*size, "--key", big_key, "--integrity", big_integrity]
                    self.record(
                        "w1get", contender, self.worker(contender, "w1get", *extra)
                    )
            if self.wanted("cache"):
                # Issue 27's measurement: 300 gets of 64 KiB at concurrency
                # 16, and one 64 MiB get, cold then warm.
                extra = [
                    "--size",
                    str(CACHE_LARGE // (4 if self.args.quick else 1)),
                    "--seed",
                    f"cache-{round_}",
                    "--count",
                    str(CACHE_SMALL_COUNT),
                    "--small-size",
                    str(CACHE_SMALL_SIZE),
                    "--concurrency",
                    str(CACHE_CONCURRENCY),
                ]
                self.record(
                    "cache",
                    "sriblob-cached",
                    self.worker("sriblob-cached", "cache", *extra),
                )
            if self.wanted("w1b"):
                extra = ["--size", str(self.huge), "--seed", "w1b"]
                self.record("w1b", "sriblob", self.worker("sriblob", "w1b", *extra))
            if self.wanted("w2"):
                for contender in SMALL_CONTENDERS:
                    extra = ["--count", str(self.count), "--seed", f"w2-{round_}"]
                    self.record("w2", contender, self.worker(contender, "w2", *extra))
            if self.wanted("otel"):
                self._otel(round_)
            if self.wanted("w3"):
                for contender in LIST_CONTENDERS:
                    self.record("w3", contender, self.worker(contender, "w3"))
            if self.wanted("w4"):
                for contender in FS_CONTENDERS:
                    extra = ["--size", str(self.big), "--seed", "w4"]
                    self.record("w4", contender, self.worker(contender, "w4", *extra))
            if self.wanted("w4small"):
                for contender in FS_CONTENDERS:
                    extra = ["--count", str(self.count), "--seed", f"w4s-{round_}"]
                    self.record(
                        "w4small", contender, self.worker(contender, "w4small", *extra)
                    )

    def _otel(self, round_: int) -> None:
        """W2 by telemetry mode, alternated; extra rounds after the last."""
        rounds = [round_]
        if round_ == self.rounds and not self.args.quick:
            rounds += range(round_ + 1, OTEL_ROUNDS + 1)
        for each in rounds:
            for contender in OTEL_CONTENDERS:
                extra = ["--count", str(self.count), "--seed", f"otel-{each}"]
                self.record("otel", contender, self.worker(contender, "w2", *extra))

    def _integrity(self, size: int, seed: str) -> str:
        sys.path.insert(0, str(HERE))
        import worker  # noqa: PLC0415

        return worker.Data(size, seed).integrity()

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        out: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
        for workload, by_contender in self.raw.items():
            for contender, results in by_contender.items():
                metrics: dict[str, list[float]] = {}
                for result in results:
                    for key, value in result.items():
                        if isinstance(value, int | float) and not isinstance(
                            value, bool
                        ):  # rss_series (a list) stays in the raw results
                            metrics.setdefault(key, []).append(float(value))
                out.setdefault(workload, {})[contender] = {
                    key: summarize(values) for key, values in metrics.items()
                }
        return out


def median(
    summary: dict[str, Any], workload: str, contender: str, key: str
) -> float | None:
    try:
        return float(summary[workload][contender][key]["median"])
    except KeyError:
        return None


def targets(lanes: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every lane's targets (issues 8 and 15), as ratios of medians of one run."""
    rows: list[dict[str, Any]] = []
    for lane, summary in lanes.items():
        found = lane_targets(lane, summary)
        for row in found:
            row["target"] = f"{lane}: {row['target']}"
            row["lane"] = lane
        rows += found
    return rows


def lane_targets(lane: str, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of one lane (issues 8, 15, 26 and 27)."""

    def m(workload: str, contender: str, key: str) -> float | None:
        return median(summary, workload, contender, key)

    rows: list[dict[str, Any]] = []

    def ratio(
        name: str,
        value: float | None,
        reference: float | None,
        target: float,
        *,
        lower_is_better: bool = False,
    ) -> None:
        if value is None or reference is None or reference == 0:
            rows.append(
                {
                    "target": name,
                    "ratio": None,
                    "goal": target,
                    "lower_is_better": lower_is_better,
                    "pass": None,
                }
            )
            return
        r = value / reference
        ok = r <= target if lower_is_better else r >= target
        rows.append(
            {
                "target": name,
                "value": value,
                "reference": reference,
                "ratio": r,
                "goal": target,
                "lower_is_better": lower_is_better,
                "pass": ok,
            }
        )

    def absolute(name: str, value: float | None, limit: float) -> None:
        rows.append(
            {
                "target": name,
                "value": value,
                "goal": limit,
                "lower_is_better": True,
                "pass": None if value is None else value <= limit,
            }
        )

    _get_targets(lane, m, ratio, absolute)
    _put_targets(lane, m, ratio, absolute)
    _cache_targets(m, ratio)
    if lane == "moto":
        _moto_targets(m, ratio, absolute)
    return rows


def _get_targets(lane: str, m: Any, ratio: Any, absolute: Any) -> None:
    """W1 get: the default (measured) read against one stream and the peers."""
    default = m("w1get", "sriblob", "get_mbps")
    single = m("w1get", "sriblob-single", "get_mbps")
    if lane == "s3like":
        ratio(
            "W1 get: sriblob default / boto3 download_file",
            default,
            m("w1get", "boto3", "get_mbps"),
            1.0,
        )
        ratio(
            "W1 get: sriblob default / one stream (read_concurrency=1)",
            default,
            single,
            4.0,
        )
        ratio(
            "W1 get (informational): sriblob default / obstore get_ranges",
            default,
            m("w1get", "obstore-ranges", "get_mbps"),
            1.0,
        )
    else:
        ratio(
            "W1 get: sriblob default / one stream (read_concurrency=1)",
            default,
            single,
            0.95,
        )
        ratio(
            "W1 get (informational): sriblob verified / aioboto3 unverified",
            default,
            m("w1get", "aioboto3", "get_mbps"),
            1.0,
        )
        ratio(
            "W1 get (informational): sriblob verified / sha512 one-core limit",
            default,
            m("limits", "limits", "sha512_mbps"),
            0.7,
        )
    absolute(
        "W1 get: sriblob default peak RSS, MiB",
        m("w1get", "sriblob", "peak_rss_mib"),
        96,
    )


def _put_targets(lane: str, m: Any, ratio: Any, absolute: Any) -> None:
    """W1 put with the defaults, streamed, against the best peer."""
    peers = [m("w1put", peer, "put_mbps") for peer in ("aioboto3", "boto3", "obstore")]
    best = max((v for v in peers if v is not None), default=None)
    goal = 0.9 if lane == "moto" else 1.0
    ratio(
        "W1 put (defaults, streamed): sriblob / best of aioboto3, boto3, obstore",
        m("w1put", "sriblob", "put_mbps"),
        best,
        goal,
    )
    ratio(
        "W1 put (informational): sriblob with sign_payloads=False / the same best",
        m("w1put", "sriblob-unsigned", "put_mbps"),
        best,
        goal,
    )
    absolute(
        "W1 put: sriblob peak RSS, MiB", m("w1put", "sriblob", "peak_rss_mib"), 160
    )


def _cache_targets(m: Any, ratio: Any) -> None:
    """Reads through CachedBlobStore against the back (S3) alone."""

    def c(key: str) -> float | None:
        found: float | None = m("cache", "sriblob-cached", key)
        return found

    if c("s3_small_ops") is None:
        return
    ratio(
        "Cache: cold 64 KiB gets / S3 alone",
        c("cold_small_ops"),
        c("s3_small_ops"),
        0.9,
    )
    ratio(
        "Cache: cold 64 MiB get / S3 alone",
        c("cold_large_mbps"),
        c("s3_large_mbps"),
        0.9,
    )
    ratio(
        "Cache: warm 64 KiB gets / S3 alone",
        c("warm_small_ops"),
        c("s3_small_ops"),
        10.0,
    )
    ratio(
        "Cache (informational): warm 64 MiB get / the filesystem store alone",
        c("warm_large_mbps"),
        c("fs_large_mbps"),
        0.8,
    )


def _moto_targets(m: Any, ratio: Any, absolute: Any) -> None:
    """W1b, W2 (with the telemetry overhead), W3 and W4: the moto lane's."""
    absolute(
        "W1b: sriblob peak RSS, 1 GiB both ways, MiB",
        m("w1b", "sriblob", "peak_rss_mib"),
        200,
    )
    for phase in ("put", "has", "get"):
        ratio(
            f"W2 {phase}: sriblob CPU per op / aioboto3",
            m("w2", "sriblob", f"{phase}_cpu_ms"),
            m("w2", "aioboto3", f"{phase}_cpu_ms"),
            1.05,
            lower_is_better=True,
        )
        ratio(
            f"W2 {phase} (informational): sriblob ops/s / aioboto3",
            m("w2", "sriblob", f"{phase}_ops"),
            m("w2", "aioboto3", f"{phase}_ops"),
            0.95,
        )
    for phase in ("put", "has", "get"):
        off = m("otel", "sriblob-otel-off", f"{phase}_cpu_ms")
        ratio(
            f"Telemetry, W2 {phase}: CPU per op, no SDK / SRIBLOB_TELEMETRY=off",
            m("otel", "sriblob", f"{phase}_cpu_ms"),
            off,
            1.03,
            lower_is_better=True,
        )
        ratio(
            f"Telemetry, W2 {phase}: CPU per op, SDK and no-op exporter / off",
            m("otel", "sriblob-otel-sdk", f"{phase}_cpu_ms"),
            off,
            1.10,
            lower_is_better=True,
        )
    ratio(
        "W3: sriblob list time / aioboto3 paginator",
        m("w3", "sriblob", "list_s"),
        m("w3", "aioboto3", "list_s"),
        1.1,
        lower_is_better=True,
    )
    sha512 = m("limits", "limits", "sha512_mbps")
    for phase in ("put", "get"):
        copy = m("w4", "copy", f"{phase}_mbps")
        limit = None if copy is None or sha512 is None else min(copy, sha512)
        ratio(
            f"W4 {phase} 256 MiB: filesystem store / min(plain copy, sha512)",
            m("w4", "sriblob-fs", f"{phase}_mbps"),
            limit,
            0.8,
        )


# -- report -------------------------------------------------------------------

COLUMNS: dict[str, list[tuple[str, str, str]]] = {
    # workload: (metric key, heading, format)
    "limits": [
        ("sha512_mbps", "sha512 MB/s", "{:.0f}"),
        ("sha256_mbps", "sha256 MB/s", "{:.0f}"),
        ("tcp_mbps", "loopback TCP MB/s", "{:.0f}"),
        ("hash_write_mbps", "sha512 + write, two threads, MB/s", "{:.0f}"),
        ("curl_mbps", "one stream, curl, MB/s", "{:.0f}"),
    ],
    "w1put": [
        ("put_mbps", "put MB/s", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ],
    "w1get": [
        ("get_mbps", "get MB/s", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ],
    "w1b": [
        ("put_mbps", "put MB/s", "{:.0f}"),
        ("get_mbps", "get MB/s", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ],
    "w2": [
        ("put_ops", "put ops/s", "{:.0f}"),
        ("has_ops", "has ops/s", "{:.0f}"),
        ("get_ops", "get ops/s", "{:.0f}"),
        ("put_cpu_ms", "CPU ms/put", "{:.2f}"),
        ("has_cpu_ms", "CPU ms/has", "{:.2f}"),
        ("get_cpu_ms", "CPU ms/get", "{:.2f}"),
    ],
    "w3": [("list_s", "seconds", "{:.2f}")],
    "otel": [
        ("put_cpu_ms", "CPU ms/put", "{:.3f}"),
        ("has_cpu_ms", "CPU ms/has", "{:.3f}"),
        ("get_cpu_ms", "CPU ms/get", "{:.3f}"),
        ("put_ops", "put ops/s", "{:.0f}"),
        ("has_ops", "has ops/s", "{:.0f}"),
        ("get_ops", "get ops/s", "{:.0f}"),
    ],
    "cache": [
        ("s3_small_ops", "64 KiB S3 alone gets/s", "{:.0f}"),
        ("cold_small_ops", "64 KiB cold gets/s", "{:.0f}"),
        ("warm_small_ops", "64 KiB warm gets/s", "{:.0f}"),
        ("s3_large_mbps", "64 MiB S3 alone MB/s", "{:.0f}"),
        ("cold_large_mbps", "64 MiB cold MB/s", "{:.0f}"),
        ("warm_large_mbps", "64 MiB warm MB/s", "{:.0f}"),
        ("fs_large_mbps", "64 MiB filesystem alone MB/s", "{:.0f}"),
    ],
    "w4": [
        ("put_mbps", "put MB/s", "{:.0f}"),
        ("get_mbps", "get MB/s", "{:.0f}"),
        ("peak_rss_mib", "peak RSS MiB", "{:.0f}"),
    ],
    "w4small": [
        ("put_ops", "put ops/s", "{:.0f}"),
        ("get_ops", "get ops/s", "{:.0f}"),
        ("put_cpu_ms", "CPU ms/put", "{:.2f}"),
        ("get_cpu_ms", "CPU ms/get", "{:.2f}"),
    ],
}
TITLES = {
    "limits": (
        "Limits: hashes on one core, sha512 + write on two, and one stream of "
        "the W1 blob by `curl -o /dev/null` of a presigned URL"
    ),
    "w1put": "W1 put: one 256 MiB blob",
    "w1get": "W1 get: one 256 MiB blob",
    "w1b": "W1b: one 1 GiB blob streamed both ways",
    "w2": "W2: 2,000 blobs of 4 KiB at concurrency 32",
    "w3": "W3: listing 10,000 blobs",
    "otel": (
        "Telemetry overhead: W2 with SRIBLOB_TELEMETRY=off, with no SDK, and "
        "with the SDK exporting to nowhere (at least 5 alternated rounds)"
    ),
    "cache": (
        "Cache: 300 gets of 64 KiB at concurrency 16 and one 64 MiB get through "
        "CachedBlobStore(filesystem, S3), cold then warm, against S3 alone"
    ),
    "w4": "W4: filesystem, one 256 MiB blob",
    "w4small": "W4: filesystem, 2,000 blobs of 4 KiB",
}


def cell(stats: dict[str, float] | None, fmt: str) -> str:
    if stats is None:
        return "—"
    text = fmt.format(stats["median"])
    if stats["n"] > 1:
        text += f" [{fmt.format(stats['min'])}–{fmt.format(stats['max'])}]"
    return text


def markdown(report: dict[str, Any]) -> str:
    host = report["machine"]
    servers = "; ".join(
        f"{lane}: {found['server']}" for lane, found in report["lanes"].items()
    )
    lines = [
        (
            f"Run {report['date']} with `{report['command']}` "
            f"({report['duration_s'] / 60:.0f} min): {report['rounds']} round(s) per "
            "lane, each (contender, workload) in a fresh process, contenders "
            "alternated; medians [min–max]. MB = 10^6 bytes."
        ),
        "",
        (
            f"Machine: {host['nproc']} cores, {host['cpu']}, {host['memory']} RAM, "
            f"Linux {host['kernel']}. Lanes: {servers}."
        ),
        "",
        "Versions: "
        + ", ".join(f"{k} {v}" for k, v in report["versions"].items())
        + ".",
        "",
        "### Targets",
        "",
        "| target | sriblob | reference | ratio | goal | |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["targets"]:
        value = row.get("value")
        reference = row.get("reference")
        r = row.get("ratio")
        goal = ("≤ " if row.get("lower_is_better") else "≥ ") + f"{row['goal']:g}"
        if "reference" not in row and r is None and value is not None:
            goal += " MiB"
        verdict = {True: "pass", False: "**miss**", None: "not measured"}[row["pass"]]
        lines.append(
            f"| {row['target']} | {'—' if value is None else f'{value:.2f}'} | "
            f"{'—' if reference is None else f'{reference:.2f}'} | "
            f"{'—' if r is None else f'{r:.2f}×'} | {goal} | {verdict} |"
        )
    for image, alt in CHARTS:
        if (ROOT / "docs" / image).exists():
            lines += ["", f"![{alt}]({image})"]
    for lane, found in report["lanes"].items():
        for workload, columns in COLUMNS.items():
            results = found["summary"].get(workload)
            if not results:
                continue
            lines += ["", f"### {lane}: {TITLES[workload]}", ""]
            lines.append("| contender | " + " | ".join(h for _, h, _ in columns) + " |")
            lines.append("|---" * (len(columns) + 1) + "|")
            for contender, stats in results.items():
                lines.append(
                    f"| {contender} | "
                    + " | ".join(cell(stats.get(key), fmt) for key, _, fmt in columns)
                    + " |"
                )
    if report["errors"]:
        lines += ["", "### Errors", ""]
        lines += [
            f"- `{e.splitlines()[0][:120]}` … `{e.splitlines()[-1][-300:]}`"
            for e in report["errors"]
        ]
    return "\n".join(lines) + "\n"


#: The charts bench/charts.py draws into docs/, and their alt texts.
CHARTS = [
    ("images/bench-throughput.png", "W1 throughput by lane and contender"),
    ("images/bench-memory.png", "RSS over time of W1 get and put, S3-like lane"),
    ("images/bench-limits.png", "W1 beside the limits: sha512 on one core, one stream"),
    ("images/bench-cache.png", "Reads through the cache, cold and warm, by lane"),
]


def docs_json(report: dict[str, Any]) -> str:
    """*report* for docs/: RSS series of first rounds only, one sample a line."""
    trimmed = json.loads(json.dumps(report))
    for lane in trimmed["lanes"].values():
        for contenders in lane["raw"].values():
            for results in contenders.values():
                for result in results[1:]:
                    result.pop("rss_series", None)
    text = json.dumps(trimmed, indent=2)
    return re.sub(r"\[\s*(-?[\d.]+),\s*(-?[\d.]+)\s*\]", r"[\1, \2]", text) + "\n"


def write_docs(report: dict[str, Any]) -> None:
    import charts  # noqa: PLC0415 -- matplotlib, only for --write-docs

    charts.draw(report, ROOT / "docs")
    (ROOT / "docs" / "benchmarks.json").write_text(docs_json(report))
    page = ROOT / "docs" / "benchmarks.md"
    text = page.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    page.write_text(text[:start] + "\n" + markdown(report) + text[end:])


MOTO_ENV = {
    "BENCH_S3_ACCESS_KEY_ID": "bench",
    "BENCH_S3_SECRET_ACCESS_KEY": "bench-secret",
}
LANES = ("moto", "seaweedfs", "s3like", "rgw")


def start_lane(
    lane: str, stack: contextlib.ExitStack, shared: dict[str, Any]
) -> tuple[str, str]:
    """Start *lane*'s server; return its endpoint and a description."""
    if lane == "moto":
        os.environ.update(MOTO_ENV)
        return stack.enter_context(moto_server()), "moto server " + versions()["moto"]
    if lane == "rgw":
        return stack.enter_context(ceph_rgw()), (
            "Ceph RGW (compat/ceph-rgw.sh, single-node memstore)"
        )
    if "seaweedfs" not in shared:
        shared["seaweedfs"] = shared["stack"].enter_context(seaweedfs())
    endpoint, env = shared["seaweedfs"]
    os.environ.update(env)
    weed = subprocess.run(
        ["weed", "version"], capture_output=True, text=True, check=False
    ).stdout.split("\n")[0]
    name = f"SeaweedFS `weed mini` ({weed.strip() or 'version unknown'})"
    if lane == "seaweedfs":
        return endpoint, name
    proxy = stack.enter_context(throttled(endpoint))
    return proxy, (
        f"{name} behind bench/throttle.py: {S3LIKE_RATE / 1e6:.0f} MB/s per "
        f"connection each way, {S3LIKE_FIRST_BYTE * 1000:.0f} ms before each "
        "answer's first byte"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--only", default="", help="comma-separated workloads")
    parser.add_argument("--tmp", default="", help="directory for temp files (W4)")
    parser.add_argument(
        "--write-docs", action="store_true", help="update docs/benchmarks.*"
    )
    parser.add_argument(
        "--lanes",
        default="moto,seaweedfs,s3like",
        help=f"comma-separated lanes, run in this order, from {', '.join(LANES)}",
    )
    parser.add_argument(
        "--endpoint", default="", help="one lane against this loopback S3 server"
    )
    parser.add_argument(
        "--report",
        default="",
        help="run nothing: print (and with --write-docs, write) this results JSON",
    )
    args = parser.parse_args(argv)
    if args.report:
        report = json.loads(Path(args.report).read_text())
        print(markdown(report))
        if args.write_docs:
            write_docs(report)
        return 0
    lanes = ["endpoint"] if args.endpoint else args.lanes.split(",")
    for lane in lanes:
        if lane not in (*LANES, "endpoint"):
            parser.error(f"unknown lane {lane!r}; choose from {', '.join(LANES)}")
    started = dt.datetime.now(dt.UTC)
    found: dict[str, dict[str, Any]] = {}
    errors: list[str] = []
    rounds = 0
    with contextlib.ExitStack() as outer:
        shared: dict[str, Any] = {"stack": outer}
        for lane in lanes:
            with contextlib.ExitStack() as stack:
                if lane == "endpoint":
                    endpoint, server = (
                        args.endpoint,
                        f"the S3 server at {args.endpoint}",
                    )
                else:
                    endpoint, server = start_lane(lane, stack, shared)
                if not endpoint.startswith(("http://127.0.0.1", "http://localhost")):
                    parser.error("benchmarks talk to loopback servers only")
                admin = boto3_admin(endpoint)
                for bucket in (BUCKET, LIST_BUCKET):
                    with contextlib.suppress(Exception):
                        admin.create_bucket(Bucket=bucket)
                print(f"lane {lane}: {server} at {endpoint}", flush=True)
                bench = Bench(args, endpoint, lane)
                bench.run()
            rounds = bench.rounds
            errors += [f"{lane}: {error}" for error in bench.errors]
            found[lane] = {
                "server": server,
                "summary": bench.summary(),
                "raw": bench.raw,
            }
    report = {
        "date": started.strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": round((dt.datetime.now(dt.UTC) - started).total_seconds()),
        "command": shlex.join(["python", "bench/run.py", *argv]),
        "rounds": rounds,
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "s3like": {"rate": S3LIKE_RATE, "first_byte_s": S3LIKE_FIRST_BYTE},
        "lanes": found,
        "targets": targets({lane: data["summary"] for lane, data in found.items()}),
        "errors": errors,
    }
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    (results / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    if args.write_docs:
        write_docs(report)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
