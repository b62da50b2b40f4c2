"""A PostgreSQL server for the tests: the one given, or a throwaway cluster.

``SRIBLOB_TEST_POSTGRES_DSN`` names a server to use. Otherwise the session
starts its own cluster with the local PostgreSQL binaries (Debian's
``postgresql`` package; ``.ci/install-postgres.sh`` installs it): ``initdb``
into a temp dir, as an unprivileged user when running as root, listening on
a free loopback port with trust authentication, stopped at the end.

Without a server the PostgreSQL tests skip locally and fail when ``CI`` is
set: in CI they must run.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Names a PostgreSQL server for the tests instead of a throwaway cluster.
DSN_VARIABLE = "SRIBLOB_TEST_POSTGRES_DSN"
#: The user a throwaway cluster runs as when the tests run as root.
UNPRIVILEGED_USER = "nobody"


def find_binary(name: str) -> str | None:
    """Return the newest PostgreSQL server binary *name* found, or None."""
    # Debian keeps server binaries off PATH, one directory per major version.
    found = [
        path
        for path in Path("/usr/lib/postgresql").glob(f"*/bin/{name}")
        if path.parts[-3].isdigit()
    ]
    if found:
        return str(max(found, key=lambda path: int(path.parts[-3])))
    return shutil.which(name)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(command: list[str], user: str | None) -> None:
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(  # noqa: S603 -- our own fixed command lines
        command, capture_output=True, text=True, check=False, timeout=120
    )
    if result.returncode:
        msg = (
            f"{' '.join(command)} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )
        raise RuntimeError(msg)


@contextlib.contextmanager
def throwaway_cluster(initdb: str, pg_ctl: str) -> Iterator[str]:
    """Run a fresh cluster in a temp dir; yield its DSN; stop and remove it."""
    user = UNPRIVILEGED_USER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="sriblob-pg-"))
    data = root / "data"
    log = root / "server.log"
    started = False
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        _run(
            [
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user,
        )
        for attempt in range(3):  # another process may take the free port
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port}"
                f" -c unix_socket_directories={root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
                " -c max_connections=300"
            )
            command = [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-t", "60"]
            try:
                _run([*command, "-o", options, "start"], user)
            except RuntimeError:
                if attempt == 2:  # the last of three
                    server_log = log.read_text() if log.exists() else ""
                    msg = f"PostgreSQL did not start; its log:\n{server_log}"
                    raise RuntimeError(msg) from None
                continue
            started = True
            break
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        if started:
            _run([pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], user)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(name="postgres_dsn", scope="session")
def _postgres_dsn() -> Iterator[str]:
    """The DSN of a PostgreSQL server the tests may create schemas in."""
    given = os.environ.get(DSN_VARIABLE)
    if given:
        yield given
        return
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        reason = (
            f"No PostgreSQL server: set {DSN_VARIABLE}, or install the server "
            "binaries (initdb, pg_ctl; run .ci/install-postgres.sh)."
        )
        if os.environ.get("CI"):
            pytest.fail(f"{reason} In CI the PostgreSQL tests must run.")
        pytest.skip(reason)
    with throwaway_cluster(initdb, pg_ctl) as dsn:
        yield dsn
