"""`sriblob serve`'s GET /metrics: Prometheus text, scraped by a real Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import uuid
from typing import TYPE_CHECKING

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sriblob import FilesystemBlobStore, S3BlobStore, S3StoreConfig
from sriblob.keys import integrity_to_key

from .helpers import blob
from .prometheus_server import prometheus

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from .helpers import S3Target

S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
DATA = blob(3000, seed=26)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serve_env(root: Path, **variables: str) -> dict[str, str]:
    """The environment of a `sriblob serve` child on the filesystem store at *root*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHECKSTACK_", "SRIBLOB_", "OTEL_"))
    }
    env["SRIBLOB_ROOT"] = str(root)
    env.update(variables)
    return env


class Served:
    """A running `sriblob serve`: its base URL, its stderr so far."""

    def __init__(self, base: str, log: Path) -> None:
        self.base = base
        self.log = log

    @property
    def lines(self) -> list[str]:
        """What it printed on stderr so far."""
        return self.log.read_text(encoding="utf-8").splitlines()

    def url(self, integrity: str, prefix: str = "/blobs") -> str:
        """The URL of a blob, as `sriblob url` gives it."""
        return f"{self.base}{prefix}/{urllib.parse.quote(integrity, safe='')}"


@contextlib.contextmanager
def serving(
    root: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Run `sriblob serve --port PORT ARGS` until it says it serves; stop it after."""
    port = free_port()
    log = root.parent / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "sriblob", "serve", "--port", str(port), *args],
            env=serve_env(root) if env is None else env,
            stdout=subprocess.DEVNULL,
            stderr=output,
            stdin=subprocess.DEVNULL,
        )
    served = Served(f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 30
        # Its sockets listen before it prints where it serves.
        while not any(line.startswith("INFO:") for line in served.lines):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "sriblob serve never started"
            time.sleep(0.05)
        yield served
    finally:
        process.terminate()
        assert process.wait(15) == 0, log.read_text()  # a clean stop


def stored(root: Path, *blobs: bytes) -> list[str]:
    """Put *blobs* into the filesystem store at *root*; return their integrities."""

    async def put() -> list[str]:
        async with FilesystemBlobStore(root) as store:
            return [str(await store.add(data)) for data in blobs]

    return asyncio.run(put())


def samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """The samples of a Prometheus exposition, by name, then by labels.

    The labels every OpenTelemetry metric carries (its scope) are left out.
    """
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = tuple(
                sorted(
                    (k, v)
                    for k, v in sample.labels.items()
                    if not k.startswith("otel_")
                )
            )
            found.setdefault(sample.name, {})[labels] = sample.value
    return found


def http_counts(text: str, name: str) -> dict[tuple[str, str], float]:
    """``sriblob_http_*`` samples by (method, status)."""
    counts = {}
    for labels, value in samples(text).get(name, {}).items():
        shown = dict(labels)
        assert set(shown) <= {
            "http_request_method",
            "http_response_status_code",
            "error_type",
        }, shown
        if "error_type" not in shown:
            counts[shown["http_request_method"], shown["http_response_status_code"]] = (
                value
            )
    return counts


class TestBesideTheBlobs:
    """By default GET /metrics answers on the blob port, whatever the prefix."""

    def test_the_library_and_http_metrics(self, tmp_path: Path) -> None:
        """Store calls and requests served are counted, by outcome and status."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        missing = str(stored(tmp_path / "other", b"elsewhere")[0])
        with serving(root) as served:
            assert served.lines[1] == f"sriblob: metrics at {served.base}/metrics"
            with httpx.Client(timeout=10) as client:
                for _ in range(2):
                    assert client.get(served.url(integrity)).content == DATA
                assert client.head(served.url(integrity)).status_code == 200
                ranged = client.get(
                    served.url(integrity), headers={"Range": "bytes=0-9"}
                )
                assert ranged.status_code == 206
                assert client.get(served.url(missing)).status_code == 404
                assert client.get(f"{served.base}/blobs/nope").status_code == 400
                assert client.post(served.url(integrity)).status_code == 405
                assert client.request("BREW", served.url(integrity)).status_code == 405
                response = client.get(f"{served.base}/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = response.text
        assert http_counts(text, "sriblob_http_requests_total") == {
            ("GET", "200"): 2,
            ("HEAD", "200"): 1,
            ("GET", "206"): 1,
            ("GET", "404"): 1,
            ("GET", "400"): 1,
            ("POST", "405"): 1,
            ("_OTHER", "405"): 1,  # a made-up method is not a label value
        }
        sent = http_counts(text, "sriblob_http_response_bytes_total")
        assert sent["GET", "200"] == 2 * len(DATA)
        assert sent["GET", "206"] == 10
        assert ("HEAD", "200") not in sent  # no body
        operations = samples(text)["sriblob_operations_total"]
        ok = (("sriblob_op", "open"), ("sriblob_outcome", "ok"))
        assert operations[(*ok, ("sriblob_store", "filesystem"))] == 3
        assert "sriblob_operation_duration_seconds_bucket" in samples(text)

    def test_openmetrics_when_asked(self, tmp_path: Path) -> None:
        """A scraper that asks for OpenMetrics gets it; HEAD gets no body."""
        with serving(tmp_path / "store") as served:
            openmetrics = httpx.get(
                f"{served.base}/metrics",
                headers={"Accept": "application/openmetrics-text; version=1.0.0"},
            )
            head = httpx.head(f"{served.base}/metrics")

        assert openmetrics.headers["content-type"].startswith(
            "application/openmetrics-text"
        )
        assert openmetrics.text.endswith("# EOF\n")
        assert head.status_code == 200
        assert head.content == b""

    def test_under_the_root_prefix(self, tmp_path: Path) -> None:
        """With --prefix '', /metrics is still the metrics; blobs are at the root."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        with serving(root, "--prefix", "") as served:
            blob_response = httpx.get(served.url(integrity, prefix=""))
            metrics = httpx.get(f"{served.base}/metrics")

        assert blob_response.content == DATA
        assert metrics.status_code == 200
        assert http_counts(metrics.text, "sriblob_http_requests_total") == {
            ("GET", "200"): 1
        }

    def test_an_aborted_response_names_its_error(self, tmp_path: Path) -> None:
        """A response aborted on corrupt bytes is counted with its error type."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        FilesystemBlobStore(root).path_of(integrity).write_bytes(DATA[::-1])
        with serving(root) as served:
            with pytest.raises(httpx.RemoteProtocolError):
                httpx.get(served.url(integrity))
            text = httpx.get(f"{served.base}/metrics").text

        requests = samples(text)["sriblob_http_requests_total"]
        assert requests == {
            (
                ("error_type", "sriblob.exceptions.IntegrityMismatch"),
                ("http_request_method", "GET"),
                ("http_response_status_code", "200"),
            ): 1
        }
        assert sum(samples(text)["sriblob_integrity_failures_total"].values()) == 1


class TestNoMetrics:
    """--no-metrics: /metrics is a path like any other."""

    @pytest.mark.parametrize(("prefix", "status"), [("/blobs", 404), ("", 400)])
    def test_metrics_is_not_answered(
        self, tmp_path: Path, prefix: str, status: int
    ) -> None:
        """/metrics is outside /blobs (404), or no valid integrity at the root (400)."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        with serving(root, "--no-metrics", "--prefix", prefix) as served:
            metrics = httpx.get(f"{served.base}/metrics")
            blob_response = httpx.get(served.url(integrity, prefix=prefix))
            assert not any("metrics at" in line for line in served.lines)

        assert metrics.status_code == status
        assert "sriblob_" not in metrics.text
        assert blob_response.content == DATA


class TestWithoutTheSdk:
    """Without the serve extra's metrics packages, serve says what to install."""

    @pytest.fixture(name="no_prometheus_client")
    def _no_prometheus_client(self, tmp_path: Path) -> dict[str, str]:
        """An environment where prometheus-client can't be imported."""
        stubs = tmp_path / "stubs"
        stubs.mkdir()
        (stubs / "prometheus_client.py").write_text(
            "raise ImportError('not installed (a test stub)')\n"
        )
        return serve_env(tmp_path / "store", PYTHONPATH=str(stubs))

    def test_exits_1_naming_the_packages(
        self, tmp_path: Path, no_prometheus_client: dict[str, str]
    ) -> None:
        """One line names the packages to install, the extra, and --no-metrics."""
        result = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "sriblob", "serve", "--port", str(free_port())],
            env=no_prometheus_client,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            (
                "sriblob: error: sriblob serve's /metrics needs the OpenTelemetry SDK "
                "and its Prometheus exporter: python -m pip install opentelemetry-sdk "
                "opentelemetry-exporter-prometheus (or install sriblob with its serve "
                "extra), or pass --no-metrics"
            )
        ]

    def test_no_metrics_needs_none_of_them(
        self, tmp_path: Path, no_prometheus_client: dict[str, str]
    ) -> None:
        """--no-metrics serves the blobs without the metrics packages."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        with serving(root, "--no-metrics", env=no_prometheus_client) as served:
            assert httpx.get(served.url(integrity)).content == DATA


class TestMetricsListen:
    """--metrics-listen HOST:PORT moves /metrics off the blob port."""

    def test_on_its_own_port(self, tmp_path: Path) -> None:
        """The metrics port answers /metrics (404 elsewhere); the blob port doesn't."""
        root = tmp_path / "store"
        [integrity] = stored(root, DATA)
        port = free_port()
        with serving(root, "--metrics-listen", f"127.0.0.1:{port}") as served:
            assert (
                served.lines[1]
                == f"sriblob: metrics at http://127.0.0.1:{port}/metrics"
            )
            assert httpx.get(served.url(integrity)).content == DATA
            on_blob_port = httpx.get(f"{served.base}/metrics")
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics")
            elsewhere = httpx.get(f"http://127.0.0.1:{port}/blobs/{integrity}")

        assert on_blob_port.status_code == 404
        assert metrics.status_code == 200
        assert http_counts(metrics.text, "sriblob_http_requests_total") == {
            ("GET", "200"): 1,
            ("GET", "404"): 1,  # the blob app answered the blob port's /metrics
        }
        assert elsewhere.status_code == 404
        assert "sriblob_" not in elsewhere.text

    @pytest.mark.parametrize(
        "value", ["9464", "127.0.0.1", ":9464", "127.0.0.1:0", "127.0.0.1:65536", "h:x"]
    )
    def test_a_bad_address_exits_2(self, tmp_path: Path, value: str) -> None:
        """An address without a host or a port from 1 to 65535 is one usage line."""
        result = run_serve(tmp_path, "--metrics-listen", value)

        assert result.returncode == 2
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert result.stderr.startswith("sriblob: error: --metrics-listen ")
        assert "1 to 65535" in result.stderr

    def test_the_blob_port_exits_1(self, tmp_path: Path) -> None:
        """The blob port itself is taken: one line, exit status 1."""
        port = free_port()
        result = run_serve(
            tmp_path, "--port", str(port), "--metrics-listen", f"127.0.0.1:{port}"
        )

        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"sriblob: error: can't listen on 127.0.0.1:{port}: Address already in use"
        ]

    def test_not_with_no_metrics(self, tmp_path: Path) -> None:
        """--metrics-listen and --no-metrics contradict each other: a usage error."""
        result = run_serve(tmp_path, "--no-metrics", "--metrics-listen", "127.0.0.1:1")

        assert result.returncode == 2
        assert "not allowed with argument --no-metrics" in result.stderr


def run_serve(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `sriblob serve ARGS` to its end (it must fail to start)."""
    return subprocess.run(  # noqa: S603 -- our own interpreter
        [sys.executable, "-m", "sriblob", "serve", *args],
        env=serve_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestSecrets:
    """The metrics never show a credential, a signature or a presigned URL."""

    @pytest.mark.s3
    def test_s3_credentials_stay_out(
        self, tmp_path: Path, s3_target: S3Target, s3_config: S3StoreConfig
    ) -> None:
        """Serving S3 with --redirect: nothing secret in /metrics, in either format."""
        secret = (
            s3_config.secret_access_key
            if s3_target.checks_signatures
            else f"sEcReT/{uuid.uuid4().hex}+key"
        )
        config = S3StoreConfig(
            bucket=s3_config.bucket,
            access_key_id=s3_config.access_key_id,
            secret_access_key=secret,
            endpoint=s3_config.endpoint,
            region=s3_config.region,
            force_path_style=True,
        )

        async def put() -> str:
            async with S3BlobStore(config) as store:
                return str(await store.add(DATA))

        integrity = asyncio.run(put())
        env = serve_env(
            tmp_path / "store",
            **{
                f"{S3}ENDPOINT": str(config.endpoint),
                f"{S3}BUCKET": config.bucket,
                f"{S3}REGION": str(config.region),
                f"{S3}ACCESS_KEY_ID": config.access_key_id,
                f"{S3}SECRET_ACCESS_KEY": secret,
                f"{S3}FORCE_PATH_STYLE": "true",
            },
        )
        with serving(tmp_path / "store", "--redirect", env=env) as served:
            redirect = httpx.get(served.url(integrity))
            by_key = httpx.head(
                f"{served.base}/blobs/{integrity_to_key(integrity, prefix='')}"
            )
            texts = [
                httpx.get(f"{served.base}/metrics").text,
                httpx.get(
                    f"{served.base}/metrics",
                    headers={"Accept": "application/openmetrics-text"},
                ).text,
            ]

        assert redirect.status_code == 307
        signature = urllib.parse.parse_qs(
            urllib.parse.urlsplit(redirect.headers["location"]).query
        )["X-Amz-Signature"][0]
        assert by_key.status_code == 200
        for text in texts:
            assert ("GET", "307") in http_counts(text, "sriblob_http_requests_total")
            assert 'sriblob_store="s3"' in text
            for needle in (
                secret,
                config.access_key_id,
                signature,
                "X-Amz",
                "Location",
            ):
                assert needle not in text


class TestPrometheus:
    """A real Prometheus server scrapes `sriblob serve` and finds its metrics."""

    def test_prometheus_finds_sriblob_operations_total(self, tmp_path: Path) -> None:
        """After three GETs, Prometheus's query API has sriblob_operations_total."""
        root = tmp_path / "store"
        integrities = stored(root, DATA, DATA[:100], b"third")
        with serving(root) as served:
            for integrity in integrities:
                assert httpx.get(served.url(integrity)).status_code == 200
            target = served.base.removeprefix("http://")
            with prometheus(target, tmp_path / "prometheus") as server:
                opened = server.wait_for(
                    'sriblob_operations_total{sriblob_op="open",sriblob_outcome="ok"}',
                    3,
                )
                requests = server.wait_for(
                    'sriblob_http_requests_total{http_response_status_code="200"}', 3
                )
                sent = server.wait_for(
                    "sriblob_http_response_bytes_total", len(DATA) + 100 + 5
                )
                up = server.query('up{job="sriblob"}')

        [sample] = opened
        assert sample["metric"]["job"] == "sriblob"
        assert sample["metric"]["instance"] == target
        assert sample["metric"]["sriblob_store"] == "filesystem"
        assert requests[0]["metric"]["http_request_method"] == "GET"
        assert sent
        assert [float(s["value"][1]) for s in up] == [1.0]
