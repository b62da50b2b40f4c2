"""A real Prometheus server for the tests, scraping one target on loopback.

Debian's ``prometheus`` package gives the binary (``.ci/install-prometheus.sh``
installs it). The server listens on a free 127.0.0.1 port, keeps its data in
a temp directory, scrapes the target every second and stops at the end.

Without the binary the test skips locally and fails when ``CI`` is set: in
CI it must run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

#: How long Prometheus may take to start, and a scrape to show up.
DEADLINE = 60.0


def prometheus_binary() -> str:
    """The ``prometheus`` binary; skip without one (fail under CI)."""
    found = shutil.which("prometheus")
    if found is None:
        reason = (
            "prometheus is not installed (apt-get install -y "
            "--no-install-recommends prometheus; .ci/install-prometheus.sh)."
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} In CI the Prometheus test must run.")
        pytest.skip(reason)
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def prometheus(target: str, directory: Path) -> Iterator[Prometheus]:
    """Run Prometheus scraping ``http://TARGET/metrics`` every second.

    Args:
        target: ``host:port`` of the metrics endpoint.
        directory: Where its configuration, data and log go.
    """
    binary = prometheus_binary()
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    # JSON is YAML: no YAML writer needed.
    config.write_text(
        json.dumps(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
                "scrape_configs": [
                    {
                        "job_name": "sriblob",
                        "metrics_path": "/metrics",
                        "static_configs": [{"targets": [target]}],
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    port = _free_port()
    log = directory / "prometheus.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 -- the packaged binary
            [
                binary,
                f"--config.file={config}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--storage.tsdb.path={directory / 'data'}",
                "--log.level=warn",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    server = Prometheus(f"http://127.0.0.1:{port}", process, log)
    try:
        server.wait_ready()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:  # pragma: no cover -- a hung server
            process.kill()
            process.wait(30)


class Prometheus:
    """A running Prometheus: its URL, and its HTTP query API."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log

    def wait_ready(self) -> None:
        """Wait (bounded) until the server answers ``/-/ready``."""
        deadline = time.monotonic() + DEADLINE
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200:
                    return
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "Prometheus never got ready"
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``/api/v1/query`` answers for *promql*."""
        response = httpx.get(
            f"{self.url}/api/v1/query", params={"query": promql}, timeout=10
        )
        response.raise_for_status()
        answer = response.json()
        assert answer["status"] == "success", answer
        assert answer["data"]["resultType"] == "vector", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(self, promql: str, value: float) -> list[dict[str, Any]]:
        """Query until the result's samples add up to *value* (bounded); return it.

        Prometheus scrapes every second: the first answers may be empty or
        hold an older scrape's values.
        """
        deadline = time.monotonic() + DEADLINE
        while True:
            result = self.query(promql)
            if sum(float(sample["value"][1]) for sample in result) == value:
                return result
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, (
                f"{promql} never reached {value}: last {result}\n"
                f"targets: {httpx.get(f'{self.url}/api/v1/targets').text}"
            )
            time.sleep(0.5)
