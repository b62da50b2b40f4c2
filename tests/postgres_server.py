"""PostgreSQL for the tests: a server (given, or a throwaway cluster) and the backend.

``SRIBLOB_TEST_POSTGRES_DSN`` names a server to use; its user must be
allowed to create schemas and roles (tests work in fresh schemas and drop
them). Otherwise the session
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
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import pytest

from sriblob import BlobStore, Integrity, PostgresBlobStore

from .helpers import Backend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

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
            # pg_ctl hands the options to a shell.
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port}"
                f" -c {shlex.quote(f'unix_socket_directories={root}')}"
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


def fresh_schema() -> str:
    """Return a schema name no other test uses."""
    return f"sriblob_test_{uuid.uuid4().hex[:16]}"


async def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema and everything in it."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture(name="postgres_backend")
def _postgres_backend(postgres_dsn: str) -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        # Each store gets its own schema, so tests never see each other.
        schema = fresh_schema()
        try:
            async with PostgresBlobStore(
                postgres_dsn, schema=schema, **options
            ) as store:
                yield store
        finally:
            await drop_schema(postgres_dsn, schema)

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, PostgresBlobStore)
        sql = store.backend._sql
        async with store.pool.acquire() as conn, conn.transaction():
            blob_id = await conn.fetchval(
                f"SELECT id FROM {sql.blobs} WHERE integrity = $1", str(integrity)
            )
            await conn.execute(f"DELETE FROM {sql.chunks} WHERE blob_id = $1", blob_id)
            size = store.chunk_size
            for seq, start in enumerate(range(0, len(data), size)):
                await conn.execute(
                    sql.insert_chunk, blob_id, seq, data[start : start + size]
                )

    async def leftovers(store: BlobStore) -> list[str]:
        assert isinstance(store, PostgresBlobStore)
        sql = store.backend._sql
        orphans = await store.pool.fetch(
            f"SELECT DISTINCT c.blob_id FROM {sql.chunks} c"
            f" LEFT JOIN {sql.blobs} b ON b.id = c.blob_id WHERE b.id IS NULL"
        )
        return [f"chunk rows of blob id {row[0]}" for row in orphans]

    return Backend("postgres", make, corrupt, leftovers)
