"""`sriblob serve` as a process, and `sriblob url`: where a blob is served."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from typing import TYPE_CHECKING

import httpx
import pytest

from sriblob import FilesystemBlobStore, default_registry
from sriblob._cli import main

from .helpers import blob, integrity_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DATA = blob(70_000, seed=83)
INTEGRITY = integrity_of(DATA)
ENCODED = urllib.parse.quote(INTEGRITY, safe="")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cli_env(root: Path) -> dict[str, str]:
    """The environment of a `sriblob` child on the filesystem store at *root*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CHECKSTACK_", "SRIBLOB_"))
    }
    env["SRIBLOB_ROOT"] = str(root)
    return env


def run_serve(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `sriblob serve ARGS` to its end (it must fail to start)."""
    return subprocess.run(  # noqa: S603 -- our own interpreter
        [sys.executable, "-m", "sriblob", "serve", *args],
        env=cli_env(root),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextlib.contextmanager
def serving(root: Path, *args: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run `sriblob serve ARGS`; yield its first stderr line and the process."""
    with subprocess.Popen(  # noqa: S603 -- our own interpreter
        [sys.executable, "-m", "sriblob", "serve", *args],
        env=cli_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stderr is not None
            yield process.stderr.readline(), process
        finally:
            process.terminate()
            assert process.wait(15) == 0  # a clean stop


class TestPortErrors:
    """Item 4: a bad or busy port is one line and a documented exit status."""

    @pytest.mark.parametrize("port", ["99999", "65536"])
    def test_port_out_of_range_exits_2(self, tmp_path: Path, port: str) -> None:
        """A port past 65535 is a usage error on one line, no traceback."""
        result = run_serve(tmp_path, "--port", port)

        assert result.returncode == 2
        assert result.stderr.splitlines() == [
            f"sriblob: error: --port {port} is not a TCP port: give one from 1 to 65535"
        ]

    def test_port_in_use_exits_1(self, tmp_path: Path) -> None:
        """A port another socket listens on is one line and exit status 1."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]

            result = run_serve(tmp_path, "--port", str(port))

        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(
            f"sriblob: error: can't listen on 127.0.0.1:{port}: "
        )
        assert "in use" in lines[0]

    def test_unknown_host_exits_1(self, tmp_path: Path) -> None:
        """A host that doesn't resolve is one line and exit status 1."""
        result = run_serve(tmp_path, "--host", "no-such-host.invalid")

        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith("sriblob: error: can't listen on no-such-host")


class TestUrl:
    """Item 6: `sriblob url` prints where the blob is served."""

    def test_the_path_under_the_prefix(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Without a base URL, the path: the prefix and the encoded integrity."""
        monkeypatch.delenv("SRIBLOB_BASE_URL", raising=False)

        assert main(["url", INTEGRITY]) == 0
        assert main(["url", "--prefix", "/packages", INTEGRITY]) == 0
        assert main(["url", "--prefix", "", INTEGRITY]) == 0

        assert capsys.readouterr().out.splitlines() == [
            f"/blobs/{ENCODED}",
            f"/packages/{ENCODED}",
            f"/{ENCODED}",
        ]

    def test_a_full_url(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--base-url, else SRIBLOB_BASE_URL, makes it a full URL."""
        monkeypatch.setenv("SRIBLOB_BASE_URL", "https://blobs.example/mirror/")

        assert main(["url", INTEGRITY]) == 0
        assert main(["url", "--base-url", "http://127.0.0.1:8080", INTEGRITY]) == 0

        assert capsys.readouterr().out.splitlines() == [
            f"https://blobs.example/mirror/blobs/{ENCODED}",
            f"http://127.0.0.1:8080/blobs/{ENCODED}",
        ]

    def test_the_strongest_of_several_hashes(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A multi-hash SRI string gives the URL of its strongest hash."""
        sha256 = integrity_of(DATA, "sha256")

        assert main(["url", "--base-url", "http://h:1", f"{sha256} {INTEGRITY}"]) == 0

        assert capsys.readouterr().out == f"http://h:1/blobs/{ENCODED}\n"

    @pytest.mark.parametrize(
        ("args", "needle"),
        [
            (["url", "sha512-nope"], "sha512-nope"),
            (["url", "--base-url", "ftp://h", INTEGRITY], "--base-url must be"),
            (["url", "--base-url", "127.0.0.1:8080", INTEGRITY], "http://"),
            (["url", "--prefix", "blobs", INTEGRITY], "--prefix must be"),
        ],
        ids=["integrity", "scheme", "no-scheme", "prefix"],
    )
    def test_bad_input_exits_2(
        self,
        root: Path,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        needle: str,
    ) -> None:
        """A malformed integrity, base URL or prefix is a one-line usage error."""
        assert main(args) == 2

        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1
        assert needle in err

    def test_reads_no_store(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The URL is printed even when no store can be opened (PostgreSQL down)."""
        monkeypatch.setenv("SRIBLOB_ROOT", str(tmp_path))
        monkeypatch.setenv(
            "SRIBLOB_POSTGRES_DSN", "postgresql://app:pw@127.0.0.1:1/app"
        )

        assert main(["url", INTEGRITY]) == 0

        assert capsys.readouterr().out == f"/blobs/{ENCODED}\n"

    def test_the_variable_is_a_known_setting(self, tmp_path: Path) -> None:
        """SRIBLOB_BASE_URL is a setting (writes go on); a typo of it is flagged."""
        known = default_registry(
            {"SRIBLOB_ROOT": str(tmp_path), "SRIBLOB_BASE_URL": "http://h:1"}
        )
        typo = default_registry(
            {"SRIBLOB_ROOT": str(tmp_path), "SRIBLOB_BASE_ULR": "http://h:1"}
        )

        assert not known.writes_refused
        assert typo.writes_refused
        assert "SRIBLOB_BASE_ULR (did you mean SRIBLOB_BASE_URL?)" in str(
            typo.problems["environment"]
        )


class TestServeLogsItsUrl:
    """Item 6: `sriblob serve` says where it serves; `sriblob url` agrees."""

    @pytest.mark.parametrize("prefix", ["/blobs", "/packages", ""])
    def test_the_logged_url_serves_the_blob(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], prefix: str
    ) -> None:
        """The start-up line names the root URL; url's URL under it is the blob."""
        asyncio.run(FilesystemBlobStore(tmp_path).put(INTEGRITY, DATA))
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with serving(tmp_path, "--port", str(port), "--prefix", prefix) as (line, _):
            assert line == (
                f"sriblob: serving the registry's stores at {base}{prefix}/ "
                f"(base URL {base})\n"
            )
            assert main(["url", "--prefix", prefix, "--base-url", base, INTEGRITY]) == 0
            url = capsys.readouterr().out.strip()
            deadline = time.monotonic() + 30
            while True:
                try:
                    response = httpx.get(url, timeout=5)
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)

        assert response.status_code == 200
        assert response.content == DATA


class TestShutdown:
    """SIGTERM stops serve within --shutdown-timeout, a stalled client or not."""

    def test_a_stalled_download_doesnt_hold_the_process(self, tmp_path: Path) -> None:
        """A client that reads a little of a 64 MiB blob and stops reading.

        uvicorn's graceful stop waits for requests in flight; without a
        bound, one stuck response kept the process alive for good.
        """
        data = blob(64 * 1024 * 1024, seed=84)
        integrity = asyncio.run(FilesystemBlobStore(tmp_path).add(data))
        port = free_port()
        url = f"http://127.0.0.1:{port}/blobs/{urllib.parse.quote(integrity, safe='')}"
        with subprocess.Popen(  # noqa: S603 -- our own interpreter
            [
                sys.executable,
                "-m",
                "sriblob",
                "serve",
                "--port",
                str(port),
                "--no-metrics",
                "--shutdown-timeout",
                "2",
            ],
            env=cli_env(tmp_path),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            assert process.stderr is not None
            process.stderr.readline()
            deadline = time.monotonic() + 30
            while True:
                try:
                    client = socket.create_connection(("127.0.0.1", port), timeout=5)
                    break
                except ConnectionRefusedError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
            with client:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                path = url.split(f":{port}", 1)[1]
                client.sendall(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
                )
                assert client.recv(4096).startswith(b"HTTP/1.1 200")
                time.sleep(0.5)  # the server fills the socket and waits
                stopped = time.monotonic()
                process.terminate()
                status = process.wait(30)
                took = time.monotonic() - stopped
            assert status == 0
            assert took < 15, took  # 2 s of grace, then the request is cut
            assert "Traceback" not in process.stderr.read()
