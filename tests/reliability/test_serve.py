"""`sriblob serve` under load and with a real package manager as its client."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final

import httpx
import pytest

from sriblob import FilesystemBlobStore
from sriblob.keys import integrity_to_key

from ..helpers import blob

if TYPE_CHECKING:
    from collections.abc import Iterator

pytestmark = pytest.mark.reliability

MiB: Final = 1024 * 1024


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def sriblob_serve(root: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `sriblob serve` on the filesystem store at *root*; yield URL and process."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHECKSTACK_")}
    env["SRIBLOB_ROOT"] = str(root)
    log = root.parent / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "sriblob", "serve", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=output,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"{base}/", timeout=1)
                break
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "sriblob serve never answered"
            time.sleep(0.05)
        yield base, process
    finally:
        process.terminate()
        assert process.wait(15) == 0, log.read_text()  # a clean stop


def peak_rss(pid: int) -> int:
    """The process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    msg = "no VmHWM"
    raise AssertionError(msg)


def stored(root: Path, data: bytes) -> str:
    """Put *data* into the filesystem store at *root*; return its integrity."""
    return asyncio.run(FilesystemBlobStore(root).add(data))


class TestLoad:
    def test_64_concurrent_downloads_of_64_mib(self, tmp_path: Path) -> None:
        """64 clients download a 64 MiB blob at once; the server never holds it.

        4 GiB go out; the server's peak memory must stay far below one blob
        per client (it streams, with a few chunks in flight per download).
        """
        data = blob(64 * MiB, seed=91)
        integrity = stored(tmp_path, data)
        expected = hashlib.sha512(data).digest()
        with sriblob_serve(tmp_path) as (base, process):
            before = peak_rss(process.pid)
            url = f"{base}/blobs/{integrity_to_key(integrity, prefix='')}"

            async def download(client: httpx.AsyncClient) -> bytes:
                digest = hashlib.sha512()
                async with client.stream("GET", url) as response:
                    assert response.status_code == 200
                    async for chunk in response.aiter_bytes():
                        digest.update(chunk)
                return digest.digest()

            async def everyone() -> list[bytes]:
                limits = httpx.Limits(max_connections=64)
                async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                    return await asyncio.gather(*(download(client) for _ in range(64)))

            started = time.monotonic()
            digests = asyncio.run(everyone())
            seconds = time.monotonic() - started
            after = peak_rss(process.pid)

        assert digests == [expected] * 64
        grown = after - before
        print(  # noqa: T201 -- the figure for the docs
            f"serve: 64 x 64 MiB in {seconds:.1f} s; server peak RSS "
            f"{before / MiB:.0f} MiB before, {after / MiB:.0f} MiB after "
            f"(+{grown / MiB:.0f} MiB)"
        )
        # A blob per client would be 4 GiB; a few 1 MiB chunks each is the design.
        assert grown < 64 * 6 * MiB


@pytest.fixture(name="npm")
def _npm() -> str:
    """The npm command; CI installs it (compat/install.sh)."""
    found = shutil.which("npm")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("npm is missing; compat/install.sh installs it")
        pytest.skip("npm is not installed here")
    return found


def npm_package(tmp_path: Path, npm: str) -> tuple[bytes, str]:
    """Pack a tiny npm package; return the tarball and npm's integrity for it."""
    source = tmp_path / "demo"
    source.mkdir()
    (source / "package.json").write_text(
        json.dumps({"name": "sriblob-demo", "version": "1.0.0", "main": "index.js"})
    )
    (source / "index.js").write_text("module.exports = 'served by sriblob';\n")
    packed = subprocess.run(  # noqa: S603 -- npm, fixed arguments
        [npm, "pack", "--json", "--pack-destination", str(tmp_path)],
        cwd=source,
        capture_output=True,
        check=True,
    )
    [info] = json.loads(packed.stdout)
    return (tmp_path / info["filename"]).read_bytes(), info["integrity"]


def npm_ci(
    npm: str, project: Path, url: str, integrity: str
) -> subprocess.CompletedProcess[str]:
    """`npm ci` a project whose lockfile takes the package from *url*."""
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps(
            {"name": "app", "version": "1.0.0", "dependencies": {"sriblob-demo": url}}
        )
    )
    (project / "package-lock.json").write_text(
        json.dumps(
            {
                "name": "app",
                "version": "1.0.0",
                "lockfileVersion": 3,
                "requires": True,
                "packages": {
                    "": {
                        "name": "app",
                        "version": "1.0.0",
                        "dependencies": {"sriblob-demo": url},
                    },
                    "node_modules/sriblob-demo": {
                        "version": "1.0.0",
                        "resolved": url,
                        "integrity": integrity,
                    },
                },
            }
        )
    )
    return subprocess.run(  # noqa: S603 -- npm, fixed arguments
        [
            npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts",
            "--registry", "http://127.0.0.1:9/",  # nothing else is fetched
            "--cache", str(project / ".npm-cache"),
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip


class TestNpm:
    def test_npm_installs_a_tarball_served_by_sriblob(
        self, tmp_path: Path, npm: str
    ) -> None:
        """`npm ci` fetches the package from `sriblob serve`, checking its integrity."""
        tarball, integrity = npm_package(tmp_path, npm)
        root = tmp_path / "store"
        assert stored(root, tarball) == integrity  # npm's integrity names the blob
        with sriblob_serve(root) as (base, _):
            url = f"{base}/blobs/{integrity_to_key(integrity, prefix='')}"
            installed = npm_ci(npm, tmp_path / "app", url, integrity)

        assert installed.returncode == 0, installed.stderr
        module = tmp_path / "app" / "node_modules" / "sriblob-demo" / "index.js"
        assert "served by sriblob" in module.read_text()

    def test_npm_refuses_a_corrupt_copy(self, tmp_path: Path, npm: str) -> None:
        """A corrupt stored tarball never installs: the transfer is cut short."""
        tarball, integrity = npm_package(tmp_path, npm)
        root = tmp_path / "store"
        stored(root, tarball)
        path = FilesystemBlobStore(root).path_of(integrity)
        path.chmod(0o644)
        path.write_bytes(tarball[:-1] + bytes([tarball[-1] ^ 1]))
        with sriblob_serve(root) as (base, _):
            url = f"{base}/blobs/{integrity_to_key(integrity, prefix='')}"
            installed = npm_ci(npm, tmp_path / "app", url, integrity)

        assert installed.returncode != 0
        assert not (tmp_path / "app" / "node_modules" / "sriblob-demo").exists()
