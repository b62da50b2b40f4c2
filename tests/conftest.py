"""Fixtures: one ``backend`` per store kind, for the shared contract suite."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import uuid
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

# The contract suite lives in the package: let pytest explain its asserts.
pytest.register_assert_rewrite("sriblob.testing")

from sriblob import (
    BlobStore,
    CachedBlobStore,
    FilesystemBlobStore,
    Integrity,
    MemoryBlobStore,
    PostgresBlobStore,
    S3BlobStore,
    S3StoreConfig,
)
from sriblob.keys import integrity_to_key

from .helpers import (
    MOTO_REGION,
    Backend,
    S3Target,
    drain_closing_transports,
    interruptible_children,
    s3_leftovers,
)
from .postgres_server import (  # noqa: F401 -- fixtures
    _postgres_backend,
    _postgres_dsn,
    drop_schema,
    fresh_schema,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

#: Every backend the contract suite runs against; each needs a fixture
#: named ``<kind>_backend`` returning a :class:`Backend`.
BACKENDS = [
    "memory",
    "filesystem",
    "postgres",
    "checkstack",
    "s3",
    "cached_filesystem",
    "cached_s3",
]
#: The contract suite's backends that need the S3 server.
S3_BACKENDS = frozenset({"s3", "cached_s3"})


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--soak-seconds``: how long the reliability suite's cache soak runs."""
    parser.addoption(
        "--soak-seconds",
        type=float,
        default=45.0,
        help="seconds of load in the cache soak test (default: 45)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark contract tests of the S3 backend ``s3``, so ``-m "not s3"`` skips them."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("backend") in S3_BACKENDS:
            item.add_marker(pytest.mark.s3)


@pytest.fixture(name="memory_backend")
def _memory_backend() -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with MemoryBlobStore(**options) as store:
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, MemoryBlobStore)
        store.blobs[str(integrity)] = data

    async def leftovers(store: BlobStore) -> list[str]:
        return []

    return Backend("memory", make, corrupt, leftovers)


@pytest.fixture(name="s3_target", scope="session")
def _s3_target() -> Iterator[S3Target]:
    """The S3 server under test: the one SRIBLOB_TEST_S3_* names, else moto."""
    target = S3Target.from_env()
    if target is not None:
        yield target
        return
    # A real HTTP server on a free loopback port, not an in-process mock: the store
    # must speak real S3 over a socket.
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield S3Target.known(
        "moto",
        endpoint=f"http://{host}:{port}",
        access_key_id="testing",
        secret_access_key="testing",
    )
    server.stop()


@pytest.fixture(name="s3_admin", scope="session")
def _s3_admin(s3_target: S3Target) -> S3Client:
    """A plain boto3 client, to arrange and inspect buckets behind the store."""
    client: S3Client = boto3.client(
        "s3",
        endpoint_url=s3_target.endpoint,
        region_name=MOTO_REGION,
        aws_access_key_id=s3_target.access_key_id,
        aws_secret_access_key=s3_target.secret_access_key,
    )
    return client


@pytest.fixture(name="s3_config")
def _s3_config(s3_target: S3Target, s3_admin: S3Client) -> Iterator[S3StoreConfig]:
    """A config for a fresh, empty bucket on the server under test (path style)."""
    bucket = f"sriblob-{uuid.uuid4().hex}"
    s3_admin.create_bucket(Bucket=bucket)
    yield S3StoreConfig(
        bucket=bucket,
        access_key_id=s3_target.access_key_id,
        secret_access_key=s3_target.secret_access_key,
        endpoint=s3_target.endpoint,
        region=MOTO_REGION,
        force_path_style=True,
        part_size=5 * 1024 * 1024,
        multipart_threshold=5 * 1024 * 1024,
        # Reads of blobs over 1 MiB go as parallel ranges, so the contract
        # suite reads both ways.
        read_part_size=1024 * 1024,
        read_concurrency=4,
    )
    # Free the server's memory: every test's blobs would otherwise stay until exit.
    if s3_target.lists_uploads:
        for upload in s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3_admin.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for entry in page.get("Contents", []):
            s3_admin.delete_object(Bucket=bucket, Key=entry["Key"])
    s3_admin.delete_bucket(Bucket=bucket)


@pytest.fixture(name="s3_backend")
def _s3_backend(s3_config: S3StoreConfig, s3_admin: S3Client) -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with S3BlobStore(s3_config, **options) as store:
            yield store
        await drain_closing_transports()

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        key = integrity_to_key(integrity, prefix=s3_config.key_prefix)
        await asyncio.to_thread(
            s3_admin.put_object, Bucket=s3_config.bucket, Key=key, Body=data
        )

    async def leftovers(store: BlobStore) -> list[str]:
        return await asyncio.to_thread(s3_leftovers, s3_admin, s3_config)

    return Backend("s3", make, corrupt, leftovers)


@pytest.fixture(name="filesystem_backend")
def _filesystem_backend(tmp_path: Path) -> Backend:
    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with FilesystemBlobStore(tmp_path / "store", **options) as store:
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, FilesystemBlobStore)
        store.path_of(integrity).write_bytes(data)

    async def leftovers(store: BlobStore) -> list[str]:
        assert isinstance(store, FilesystemBlobStore)
        return sorted(str(path) for path in store.root.rglob(".tmp-*"))

    return Backend("filesystem", make, corrupt, leftovers)


def cached_backend(name: str, front: Path, back: Backend) -> Backend:
    """*back* behind a cache whose front is at *front*, for the contract suite.

    ``corrupt`` damages the copy in the back (the store of record) and the
    one in the front, if it holds one: a read must then fail, not serve the
    front's good copy of bytes the back has lost.
    """

    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with (
            back.make(**options) as behind,
            CachedBlobStore(
                FilesystemBlobStore(front), behind, max_bytes=64 * 1024 * 1024
            ) as store,
        ):
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        assert isinstance(store, CachedBlobStore)
        await back.corrupt(store.back, integrity, data)
        path = store.front.path_of(integrity)
        if path.exists():
            path.chmod(0o644)
            path.write_bytes(data)

    async def leftovers(store: BlobStore) -> list[str]:
        assert isinstance(store, CachedBlobStore)
        temps = sorted(str(path) for path in front.rglob(".tmp-*"))
        return temps + await back.leftovers(store.back)

    return Backend(name, make, corrupt, leftovers)


@pytest.fixture(name="cached_filesystem_backend")
def _cached_filesystem_backend(tmp_path: Path, filesystem_backend: Backend) -> Backend:
    return cached_backend("cached_filesystem", tmp_path / "front", filesystem_backend)


@pytest.fixture(name="cached_s3_backend")
def _cached_s3_backend(tmp_path: Path, s3_backend: Backend) -> Backend:
    return cached_backend("cached_s3", tmp_path / "front", s3_backend)


#: The original system's table, as its DDL creates it.
CHECKSTACK_SCHEMA = '"plugin_script-packages-store-postgres"'
CHECKSTACK_TABLE = f"{CHECKSTACK_SCHEMA}.script_package_blob_data"


@pytest.fixture(name="checkstack_backend")
async def _checkstack_backend(postgres_dsn: str) -> AsyncIterator[Backend]:
    """The original system's table (created for the test, dropped after)."""
    import asyncpg  # noqa: PLC0415 -- the tests group has it

    conn = await asyncpg.connect(postgres_dsn)
    await conn.execute(f"DROP SCHEMA IF EXISTS {CHECKSTACK_SCHEMA} CASCADE")
    await conn.execute(
        f"CREATE SCHEMA {CHECKSTACK_SCHEMA}; CREATE TABLE {CHECKSTACK_TABLE} ("
        " integrity text primary key, data text not null,"
        " size_bytes bigint not null, created_at timestamp not null default now())"
    )

    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[BlobStore]:
        async with PostgresBlobStore(
            postgres_dsn, layout="checkstack", **options
        ) as store:
            yield store

    async def corrupt(store: BlobStore, integrity: Integrity, data: bytes) -> None:
        await conn.execute(
            f"UPDATE {CHECKSTACK_TABLE} SET data = $2, size_bytes = $3"
            " WHERE integrity = $1",
            str(integrity),
            base64.b64encode(data).decode(),
            len(data),
        )

    try:
        yield Backend("checkstack", make, corrupt)
    finally:
        await conn.execute(f"DROP SCHEMA IF EXISTS {CHECKSTACK_SCHEMA} CASCADE")
        await conn.close()


@pytest.fixture(name="backend", params=BACKENDS)
def _backend(request: pytest.FixtureRequest) -> Backend:
    backend = request.getfixturevalue(f"{request.param}_backend")
    assert isinstance(backend, Backend)
    return backend


@pytest.fixture(name="store")
async def _store(backend: Backend) -> AsyncIterator[BlobStore]:
    async with backend.make() as store:
        yield store


@pytest.fixture(name="root")
def _root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store root in SRIBLOB_ROOT and no S3 settings, for the CLI tests."""
    for name in list(os.environ):
        if name.startswith("CHECKSTACK_SCRIPT_PACKAGES_S3_"):
            monkeypatch.delenv(name)
    root = tmp_path / "store"
    monkeypatch.setenv("SRIBLOB_ROOT", str(root))
    return root


@pytest.fixture(
    name="pair",
    params=[
        "memory",
        "filesystem",
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def _pair(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Two stores sharing one location, as two replicas would (memory: one)."""
    kind = request.param

    @contextlib.asynccontextmanager
    async def make(**options: Any) -> AsyncIterator[tuple[BlobStore, BlobStore]]:
        if kind == "memory":
            async with MemoryBlobStore(**options) as store:
                yield store, store
        elif kind == "filesystem":
            async with (
                FilesystemBlobStore(tmp_path / "shared", **options) as one,
                FilesystemBlobStore(tmp_path / "shared", **options) as two,
            ):
                yield one, two
        elif kind == "s3":
            config = request.getfixturevalue("s3_config")
            async with (
                S3BlobStore(config, **options) as one,
                S3BlobStore(config, **options) as two,
            ):
                yield one, two
        else:
            dsn = request.getfixturevalue("postgres_dsn")
            schema = fresh_schema()
            try:
                async with (
                    PostgresBlobStore(dsn, schema=schema, **options) as one,
                    PostgresBlobStore(dsn, schema=schema, **options) as two,
                ):
                    yield one, two
            finally:
                await drop_schema(dsn, schema)

    return make


@pytest.fixture(name="sigint_reaches_children")
def _sigint_reaches_children() -> Iterator[None]:
    """Children started by the test take SIGINT however the suite was started."""
    with interruptible_children():
        yield
