"""S3BlobStore against a real S3 server over HTTP: what the contract can't see.

moto unless ``SRIBLOB_TEST_S3_*`` names another server (``nox -s compat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import socket
import urllib.parse
import uuid
from typing import TYPE_CHECKING, Any

import aioboto3
import attrs
import boto3
import pytest
import requests
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from sriblob import (
    AccessDenied,
    BucketNotFound,
    Integrity,
    IntegrityMismatch,
    S3BlobStore,
    S3StoreConfig,
    StoreClosed,
    StoreError,
    StoreUnavailable,
)
from sriblob._s3 import _signing as s3_signing
from sriblob._s3 import _upload as s3_module
from sriblob._s3._store import S3Backend
from sriblob._s3._upload import BLIND_PUT_MAX, part_size_for, streamed_part_size
from sriblob.keys import integrity_to_key

from .helpers import (
    MOTO_REGION,
    Backend,
    CountingSource,
    S3Target,
    blob,
    chunked,
    collect,
    drain_closing_transports,
    integrity_of,
    open_uploads,
    s3_leftovers,
)

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Coroutine,
        Iterator,
    )

    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

pytestmark = pytest.mark.s3

MiB = 1024 * 1024


@attrs.define
class Sent:
    """One request the store's client sent."""

    operation: str
    url: str
    headers: dict[str, str]


def record(store: S3BlobStore) -> list[Sent]:
    """Return a list that fills with every request *store* sends from now on."""
    sent: list[Sent] = []

    def before_send(request: Any, event_name: str, **_: Any) -> None:
        headers = {
            k.lower(): v.decode() if isinstance(v, bytes) else str(v)
            for k, v in request.headers.items()
        }
        sent.append(Sent(event_name.rsplit(".", 1)[-1], request.url, headers))

    store.backend._connected.bucket.client.meta.events.register(
        "before-send.s3", before_send
    )
    return sent


def client_error(code: str, status: int, operation: str) -> ClientError:
    """The error botocore raises when the server answers *status* with *code*."""
    return ClientError(
        {
            "Error": {"Code": code, "Message": "injected"},
            "ResponseMetadata": {"HTTPStatusCode": status},  # type: ignore[typeddict-item]
        },
        operation,
    )


def operations(sent: list[Sent]) -> list[str]:
    """Return the operation names of *sent*, in order."""
    return [request.operation for request in sent]


def spy_on_parts(store: S3BlobStore) -> dict[str, int]:
    """Count UploadPart calls and the most that were in flight at once."""
    stats = {"calls": 0, "in_flight": 0, "max_in_flight": 0}
    client = store.backend._connected.bucket.client
    upload_part = client.upload_part

    async def spy(**kwargs: Any) -> Any:
        stats["calls"] += 1
        stats["in_flight"] += 1
        stats["max_in_flight"] = max(stats["max_in_flight"], stats["in_flight"])
        try:
            return await upload_part(**kwargs)
        finally:
            stats["in_flight"] -= 1

    client.upload_part = spy  # type: ignore[method-assign]
    return stats


@contextlib.asynccontextmanager
async def opened(config: S3StoreConfig, **options: Any) -> AsyncIterator[S3BlobStore]:
    """Open an S3BlobStore on *config*."""
    async with S3BlobStore(config, **options) as store:
        yield store
    await drain_closing_transports()


def free_port() -> int:
    """Return a loopback port nothing listens on (for the moment)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def tcp_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[int]:
    """Serve *handle* on a free loopback port; yield the port."""
    tasks: set[asyncio.Task[None]] = set()

    async def connection(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            tasks.discard(task)

    server = await asyncio.start_server(connection, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()


def other_config(config: S3StoreConfig, **changes: Any) -> S3StoreConfig:
    """Return *config* with *changes*."""
    return attrs.evolve(config, **changes)


@pytest.fixture(name="store")
async def _store(s3_config: S3StoreConfig) -> AsyncIterator[S3BlobStore]:
    async with S3BlobStore(s3_config) as store:
        yield store
    await drain_closing_transports()


@pytest.fixture(name="leftovers")
def _leftovers(s3_admin: S3Client, s3_config: S3StoreConfig) -> Callable[[], list[str]]:
    return lambda: s3_leftovers(s3_admin, s3_config)


def stored_keys(s3_admin: S3Client, config: S3StoreConfig) -> list[str]:
    """Return every key in the bucket."""
    listed = s3_admin.list_objects_v2(Bucket=config.bucket)
    return [entry["Key"] for entry in listed.get("Contents", [])]


class TestLifecycle:
    """Opening, sharing and closing the one client."""

    async def test_unopened_store_says_how_to_open_it(
        self, s3_config: S3StoreConfig
    ) -> None:
        """A store used before `async with` raises StoreClosed naming the fix."""
        store = S3BlobStore(s3_config)

        with pytest.raises(StoreClosed, match="async with S3BlobStore"):
            await store.has(integrity_of(b"x"))
        await store.aclose()

    async def test_backend_outside_its_store_says_how_to_open_it(
        self, s3_config: S3StoreConfig
    ) -> None:
        """The backend called directly, before open or after close, says to open it."""
        integrity = Integrity.parse(integrity_of(b"x"))
        store = S3BlobStore(s3_config)
        with pytest.raises(RuntimeError, match="async with S3BlobStore"):
            await store.backend.has_blob(integrity)
        async with store:
            assert await store.backend.has_blob(integrity) is False
        with pytest.raises(RuntimeError, match="is not open"):
            await store.backend.stat_blob(integrity)

    def test_config_must_be_a_config(self) -> None:
        """Passing anything but an S3StoreConfig is a TypeError that says what to do."""
        with pytest.raises(TypeError, match="S3StoreConfig"):
            S3BlobStore({"bucket": "b"})  # type: ignore[arg-type]

    async def test_one_client_for_every_call(
        self, s3_config: S3StoreConfig, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One session and one client serve every operation until aclose()."""
        created: list[str] = []
        client: Any = aioboto3.Session.client

        def counting(self: Any, service: str, **kwargs: Any) -> Any:
            created.append(service)
            return client(self, service, **kwargs)

        monkeypatch.setattr(aioboto3.Session, "client", counting)
        async with S3BlobStore(s3_config) as store:
            first = store.backend._connected.bucket.client
            integrity = await store.add(blob(6 * MiB))
            await store.get(integrity)
            await store.has(integrity)
            await collect(store)
            await store.delete(integrity)
            assert store.backend._connected.bucket.client is first
        assert created == ["s3"]
        assert store.backend._connected_or_none is None

    async def test_pool_fits_the_concurrency(self, s3_config: S3StoreConfig) -> None:
        """The connection pool holds at least max_concurrency connections."""
        config = other_config(s3_config, max_concurrency=20)
        async with opened(config) as store:
            client_config: Any = store.backend._connected.bucket.client.meta.config
            pool = client_config.max_pool_connections
        assert 20 <= pool <= 30

    async def test_repr_names_bucket_not_secret(self, s3_config: S3StoreConfig) -> None:
        """repr() shows bucket and endpoint and never the secret."""
        secret = "very-secret-value"
        config = other_config(s3_config, secret_access_key=secret)
        async with opened(config) as store:
            text = repr(store)
        assert config.bucket in text
        assert str(config.endpoint) in text
        assert secret not in text


class TestAddressing:
    """Endpoint, addressing style and checksum headers on the wire."""

    async def test_path_style(self, store: S3BlobStore) -> None:
        """force_path_style=True sends http://host/bucket/key."""
        sent = record(store)
        integrity = integrity_of(b"path")

        await store.put(integrity, b"path")

        key = integrity_to_key(integrity)
        put = sent[-1]
        assert put.operation == "PutObject"
        assert put.url == f"{store.config.endpoint}/{store.config.bucket}/{key}"

    @pytest.mark.parametrize("prefix", ["tenant-a/blobs/", ""])
    async def test_key_prefix(
        self,
        s3_config: S3StoreConfig,
        s3_admin: S3Client,
        store: S3BlobStore,
        prefix: str,
    ) -> None:
        """A store keeps its blobs, staging keys included, under its own prefix."""
        data = blob(3 * MiB + 1)
        config = other_config(s3_config, key_prefix=prefix, multipart_threshold=MiB)
        async with opened(config) as prefixed:
            integrity = await prefixed.add(chunked(data, MiB))
            assert await prefixed.get(integrity) == data
            assert await collect(prefixed) == {integrity}

        assert stored_keys(s3_admin, s3_config) == [
            integrity_to_key(integrity, prefix=prefix)
        ]
        assert s3_leftovers(s3_admin, config) == []
        # The default-prefix store of the same bucket doesn't see it.
        assert not await store.has(integrity)
        assert await collect(store) == set()

    async def test_virtual_hosted_style(
        self,
        s3_config: S3StoreConfig,
        s3_target: S3Target,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """Without force_path_style the bucket goes in the host name, end to end."""
        port = urllib.parse.urlsplit(s3_target.endpoint).port
        assert port is not None
        host = s3_target.virtual_host
        request_lines: list[str] = []

        async def proxy(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            # An HTTP proxy, because `<bucket>.<host>` does not resolve
            # here; it records each connection's first request line.
            head = await reader.readuntil(b"\r\n\r\n")
            request_lines.append(head.split(b"\r\n", 1)[0].decode())
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            up_writer.write(head)

            async def pipe(
                src: asyncio.StreamReader, dst: asyncio.StreamWriter
            ) -> None:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()

            try:
                await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
            finally:
                up_writer.close()

        async with tcp_server(proxy) as proxy_port:
            original = S3Backend._client_config

            def with_proxy(self: S3Backend) -> Any:
                return original(self).merge(
                    AioConfig(proxies={"http": f"http://127.0.0.1:{proxy_port}"})
                )

            monkeypatch.setattr(S3Backend, "_client_config", with_proxy)
            config = other_config(
                s3_config,
                endpoint=f"http://{host}:{port}",
                force_path_style=False,
            )
            async with opened(config) as store:
                sent = record(store)
                integrity = await store.add(b"virtual")
                assert await store.get(integrity) == b"virtual"

        key = integrity_to_key(integrity)
        expected = f"http://{config.bucket}.{host}:{port}/{key}"
        assert expected in [request.url for request in sent]
        assert any(f" http://{config.bucket}.{host}:" in line for line in request_lines)

    @pytest.mark.parametrize(
        ("mode", "sends_checksum"),
        [("when_required", False), ("when_supported", True)],
    )
    async def test_checksum_mode(
        self, s3_config: S3StoreConfig, mode: str, sends_checksum: bool
    ) -> None:
        """Flexible checksums are sent only when checksum_mode asks for them."""
        async with opened(other_config(s3_config, checksum_mode=mode)) as store:
            sent = record(store)
            await store.add(b"checksums")

        put = next(request for request in sent if request.operation == "PutObject")
        flexible = [h for h in put.headers if h.startswith("x-amz-checksum-")]
        assert bool(flexible) is sends_checksum

    @pytest.mark.parametrize(
        ("sign_payloads", "signed"), [(None, True), (True, True), (False, False)]
    )
    async def test_payload_signing(
        self, s3_config: S3StoreConfig, sign_payloads: bool | None, signed: bool
    ) -> None:
        """Over http bodies are SHA-256 signed unless sign_payloads=False."""
        data = blob(6 * MiB)
        config = other_config(s3_config, sign_payloads=sign_payloads)
        async with opened(config) as store:
            sent = record(store)
            await store.put(integrity_of(b"signed?"), b"signed?")
            await store.put(integrity_of(data), chunked(data, MiB))
            assert await store.get(integrity_of(data)) == data

        uploads = [r for r in sent if r.operation in {"PutObject", "UploadPart"}]
        assert {r.operation for r in uploads} == {"PutObject", "UploadPart"}
        for request in uploads:
            unsigned = request.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
            assert unsigned is not signed

    @pytest.mark.parametrize(
        ("endpoint", "sign_payloads", "signed"),
        [
            (None, None, False),
            ("https://s3.example", None, False),
            ("HTTPS://s3.example", None, False),
            ("http://s3.example", None, True),
            ("https://s3.example", True, True),
            ("http://s3.example", False, False),
        ],
    )
    def test_payload_signing_follows_the_scheme(
        self, endpoint: str | None, sign_payloads: bool | None, signed: bool
    ) -> None:
        """By default bodies are signed over http only: TLS protects https."""
        config = S3StoreConfig(
            bucket="b",
            access_key_id="a",
            secret_access_key="s",
            endpoint=endpoint,
            sign_payloads=sign_payloads,
        )

        client_config: Any = S3BlobStore(config).backend._client_config()
        assert client_config.s3["payload_signing_enabled"] is signed


class TestPut:
    """put(): single PutObject, multipart, dedupe and clean failure."""

    async def test_small_blob_is_one_put_object(self, store: S3BlobStore) -> None:
        """Bytes up to the multipart threshold go up in a single PutObject."""
        sent = record(store)
        data = blob(store.config.multipart_threshold)

        await store.put(integrity_of(data), data)

        # The bucket was seen when the store opened: no HeadBucket here.
        assert operations(sent) == ["HeadObject", "PutObject"]

    async def test_tiny_blob_is_put_without_asking_first(
        self, store: S3BlobStore
    ) -> None:
        """put() and add() of bytes up to BLIND_PUT_MAX send only a PutObject."""
        data = blob(BLIND_PUT_MAX)
        sent = record(store)

        await store.put(integrity_of(data), data)
        await store.put(integrity_of(data), data)
        await store.add(data)

        assert operations(sent) == ["PutObject"] * 3
        assert await store.get(integrity_of(data)) == data

    async def test_tiny_put_replaces_a_damaged_object(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """The one-request put writes the verified bytes over whatever is stored."""
        data = blob(1000)
        key = integrity_to_key(integrity_of(data))
        s3_admin.put_object(Bucket=store.config.bucket, Key=key, Body=b"damaged")

        await store.put(integrity_of(data), data)

        body = s3_admin.get_object(Bucket=store.config.bucket, Key=key)["Body"]
        assert body.read() == data

    async def test_tiny_put_without_verification_asks_first(
        self, s3_backend: Backend
    ) -> None:
        """With verify=False a small put asks HeadObject first, keeping the object."""
        async with s3_backend.make(verify=False) as store:
            assert isinstance(store, S3BlobStore)
            name = integrity_of(b"upstream")
            await store.put(name, b"derived")
            sent = record(store)

            await store.put(name, b"other derived bytes")

            assert operations(sent) == ["HeadObject"]
            assert await store.get(name) == b"derived"

    @pytest.mark.parametrize("size", [BLIND_PUT_MAX + 1, 12 * MiB, 17 * MiB])
    async def test_existing_blob_is_not_uploaded_again(
        self, store: S3BlobStore, s3_target: S3Target, size: int
    ) -> None:
        """put() of a stored blob's bytes costs one HeadObject: its ETag is theirs."""
        if size > store.config.multipart_threshold and not s3_target.multipart_etags:
            pytest.skip("this server's multipart ETags aren't S3's: can't compare")
        data = blob(size)
        await store.put(integrity_of(data), data)
        sent = record(store)

        await store.put(integrity_of(data), data)

        assert operations(sent) == ["HeadObject"]

    async def test_a_stored_blob_put_as_a_stream_is_uploaded_over(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """A stream can't be compared unread: it replaces the stored object."""
        data = blob(BLIND_PUT_MAX + 1)
        key = integrity_to_key(integrity_of(data))
        await store.put(integrity_of(data), data)
        damaged = data[:-1] + bytes([data[-1] ^ 1])
        s3_admin.put_object(Bucket=store.config.bucket, Key=key, Body=damaged)
        sent = record(store)

        await store.put(integrity_of(data), chunked(data))

        assert operations(sent) == ["HeadObject", "PutObject"]
        body = s3_admin.get_object(Bucket=store.config.bucket, Key=key)["Body"]
        assert body.read() == data

    async def test_an_object_written_another_way_is_replaced_once(
        self, store: S3BlobStore, s3_admin: S3Client, s3_target: S3Target
    ) -> None:
        """An object whose ETag isn't the store's layout's is rewritten, then kept."""
        if not s3_target.multipart_etags:
            pytest.skip("this server's multipart ETags aren't S3's: can't compare")
        data = blob(17 * MiB)
        key = integrity_to_key(integrity_of(data))
        # Another tool's multipart layout: two parts, not the store's.
        upload = s3_admin.create_multipart_upload(Bucket=store.config.bucket, Key=key)
        parts: list[CompletedPartTypeDef] = []
        for number, start in enumerate((0, 9 * MiB), start=1):
            part = s3_admin.upload_part(
                Bucket=store.config.bucket,
                Key=key,
                UploadId=upload["UploadId"],
                PartNumber=number,
                Body=data[start : start + 9 * MiB],
            )
            parts.append({"PartNumber": number, "ETag": part["ETag"]})
        s3_admin.complete_multipart_upload(
            Bucket=store.config.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            MultipartUpload={"Parts": parts},
        )
        sent = record(store)

        await store.put(integrity_of(data), data)
        rewritten = operations(sent)
        sent.clear()
        await store.put(integrity_of(data), data)

        assert rewritten[0] == "HeadObject"
        assert len(rewritten) > 1
        assert operations(sent) == ["HeadObject"]
        assert await store.get(integrity_of(data)) == data

    async def test_multipart_parts_in_parallel(
        self, store: S3BlobStore, s3_admin: S3Client, s3_target: S3Target
    ) -> None:
        """A large blob goes up in part_size parts, several in flight at once."""
        stats = spy_on_parts(store)
        data = blob(4 * 5 * MiB + 1)
        integrity = integrity_of(data)

        await store.put(integrity, data)

        assert stats["calls"] == 5
        assert stats["max_in_flight"] >= 2
        head = s3_admin.head_object(
            Bucket=store.config.bucket, Key=integrity_to_key(integrity)
        )
        # s3rver's multipart ETag is a plain MD5, without S3's "-<parts>".
        assert head["ETag"].endswith('-5"') is s3_target.multipart_etags
        assert await store.get(integrity) == data

    async def test_parts_in_flight_are_bounded(self, s3_config: S3StoreConfig) -> None:
        """No more than max_concurrency parts are ever uploading at once."""
        async with opened(other_config(s3_config, max_concurrency=2)) as store:
            stats = spy_on_parts(store)
            data = blob(5 * 5 * MiB)

            await store.put(integrity_of(data), chunked(data, MiB))

        assert stats["calls"] == 5
        assert stats["max_in_flight"] == 2

    async def test_stream_memory_is_bounded(self, s3_config: S3StoreConfig) -> None:
        """A stream is read at most (in-flight + 1) parts ahead of the uploads."""
        part = s3_config.part_size
        data = blob(8 * part)
        source = CountingSource(data, chunk=MiB)
        ahead: list[int] = []
        async with opened(other_config(s3_config, max_concurrency=2)) as store:
            client = store.backend._connected.bucket.client
            upload_part = client.upload_part
            finished = 0

            async def spy(**kwargs: Any) -> Any:
                nonlocal finished
                ahead.append(source.pulled - finished * part)
                result = await upload_part(**kwargs)
                finished += 1
                return result

            client.upload_part = spy  # type: ignore[method-assign]
            await store.put(integrity_of(data), source)

        assert len(ahead) == 8
        assert max(ahead) <= part * (2 + 1)

    async def test_multipart_mismatch_leaves_nothing(
        self, store: S3BlobStore, s3_admin: S3Client, leftovers: Callable[[], list[str]]
    ) -> None:
        """A multipart stream that fails verification is aborted without a trace."""
        data = blob(12 * MiB)
        integrity = integrity_of(data)
        stats = spy_on_parts(store)

        with pytest.raises(IntegrityMismatch):
            await store.put(integrity, chunked(data[:-1] + b"?", MiB))

        assert stats["calls"] >= 2
        assert leftovers() == []
        assert stored_keys(s3_admin, store.config) == []

    async def test_cancellation_mid_upload_leaves_nothing(
        self,
        store: S3BlobStore,
        s3_admin: S3Client,
        s3_target: S3Target,
        leftovers: Callable[[], list[str]],
    ) -> None:
        """Cancelling a put while parts are uploading aborts the multipart upload."""
        data = blob(11 * MiB)
        uploading = asyncio.Event()
        client = store.backend._connected.bucket.client
        upload_part = client.upload_part

        async def spy(**kwargs: Any) -> Any:
            if kwargs["PartNumber"] == 2:
                uploading.set()
            return await upload_part(**kwargs)

        client.upload_part = spy  # type: ignore[method-assign]

        async def stalls() -> AsyncIterator[bytes]:
            yield data
            await asyncio.Event().wait()
            yield b""  # pragma: no cover -- never reached

        task = asyncio.create_task(store.put(integrity_of(data + b"!"), stalls()))
        await asyncio.wait_for(uploading.wait(), 10)
        if s3_target.lists_uploads:
            assert open_uploads(s3_admin, store.config.bucket)
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
        assert leftovers() == []
        assert stored_keys(s3_admin, store.config) == []

    async def test_second_cancellation_waits_for_the_abort(
        self, store: S3BlobStore, s3_admin: S3Client, leftovers: Callable[[], list[str]]
    ) -> None:
        """Cancelling again while the abort runs still lets the abort finish."""
        data = blob(11 * MiB)
        uploading = asyncio.Event()
        aborting = asyncio.Event()
        client = store.backend._connected.bucket.client
        upload_part = client.upload_part
        abort = client.abort_multipart_upload

        async def spy_part(**kwargs: Any) -> Any:
            uploading.set()
            return await upload_part(**kwargs)

        async def slow_abort(**kwargs: Any) -> Any:
            aborting.set()
            await asyncio.sleep(0.3)
            return await abort(**kwargs)

        client.upload_part = spy_part  # type: ignore[method-assign]
        client.abort_multipart_upload = slow_abort  # type: ignore[method-assign]

        async def stalls() -> AsyncIterator[bytes]:
            yield data
            await asyncio.Event().wait()
            yield b""  # pragma: no cover -- never reached

        task = asyncio.create_task(store.add(stalls()))
        await asyncio.wait_for(uploading.wait(), 10)
        task.cancel()
        await asyncio.wait_for(aborting.wait(), 10)
        task.cancel()

        with pytest.raises(asyncio.CancelledError):
            await task
        assert leftovers() == []
        assert stored_keys(s3_admin, store.config) == []

    async def test_empty_stream(self, store: S3BlobStore) -> None:
        """An empty stream is stored as an empty object with one PutObject."""
        sent = record(store)
        integrity = integrity_of(b"")

        await store.put(integrity, chunked(b""))

        assert operations(sent)[-1] == "PutObject"
        assert await store.get(integrity) == b""

    async def test_failed_part_aborts(
        self, store: S3BlobStore, leftovers: Callable[[], list[str]]
    ) -> None:
        """A part the server keeps refusing aborts the upload and raises StoreError."""
        client = store.backend._connected.bucket.client
        upload_part = client.upload_part

        async def failing(**kwargs: Any) -> Any:
            if kwargs["PartNumber"] == 2:
                raise client_error("InternalError", 500, "UploadPart")
            return await upload_part(**kwargs)

        client.upload_part = failing  # type: ignore[method-assign]
        data = blob(30 * MiB)

        with pytest.raises(StoreUnavailable, match="UploadPart"):
            await store.put(integrity_of(data), chunked(data, MiB))

        assert leftovers() == []
        assert await collect(store) == set()

    async def test_failed_abort_is_logged_and_the_cause_raised(
        self, store: S3BlobStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """If the abort itself fails, it is logged and the original error wins."""

        async def failing_abort(**kwargs: Any) -> Any:
            raise ConnectionResetError

        store.backend._connected.bucket.client.abort_multipart_upload = failing_abort  # type: ignore[method-assign]
        data = blob(12 * MiB)

        with pytest.raises(IntegrityMismatch):
            await store.put(integrity_of(data), chunked(data[:-1] + b"?", MiB))

        assert "abort backend=s3" in caplog.text
        assert "ConnectionResetError" in caplog.text

    async def test_too_many_parts(
        self,
        store: S3BlobStore,
        monkeypatch: pytest.MonkeyPatch,
        leftovers: Callable[[], list[str]],
    ) -> None:
        """A stream needing more parts than S3 allows is refused and aborted."""
        monkeypatch.setattr(s3_module, "MAX_PARTS", 2)
        data = blob(11 * MiB)

        with pytest.raises(ValueError, match="part_size"):
            await store.put(integrity_of(data), chunked(data, MiB))

        assert leftovers() == []

    async def test_invalid_bucket_name(self, s3_config: S3StoreConfig) -> None:
        """A request botocore refuses to send is a StoreError naming the bucket."""
        async with opened(other_config(s3_config, bucket="no/slashes")) as store:
            with pytest.raises(StoreError, match="no/slashes"):
                await store.has(integrity_of(b"x"))


class TestPartSizes:
    """How part sizes are chosen."""

    def test_known_size_keeps_the_configured_part_size(self) -> None:
        """A size that fits in 10,000 parts keeps the configured part size."""
        assert part_size_for(10_000 * 8 * MiB, 8 * MiB) == 8 * MiB
        assert part_size_for(None, 8 * MiB) == 8 * MiB

    def test_known_size_grows_the_part_size(self) -> None:
        """A size that needs more than 10,000 parts gets whole-MiB larger parts."""
        size = 10_000 * 8 * MiB + 1
        grown = part_size_for(size, 8 * MiB)
        assert grown == 9 * MiB
        assert -(-size // grown) <= 10_000

    def test_streamed_part_size_doubles_every_thousand_parts(self) -> None:
        """Parts of an unknown-size stream double every 1,000, capped at 5 GiB."""
        assert streamed_part_size(1, 8 * MiB) == 8 * MiB
        assert streamed_part_size(1000, 8 * MiB) == 8 * MiB
        assert streamed_part_size(1001, 8 * MiB) == 16 * MiB
        assert streamed_part_size(10_000, 8 * MiB) == 4096 * MiB
        assert streamed_part_size(10_000, 64 * MiB) == 5 * 1024 * MiB
        total = sum(streamed_part_size(n, 8 * MiB) for n in range(1, 10_001))
        assert total > 5 * 1024**4


class TestAdd:
    """add(): staging key, server-side copy and cleanup."""

    async def test_stream_goes_through_staging(
        self, store: S3BlobStore, leftovers: Callable[[], list[str]]
    ) -> None:
        """A multi-part stream is staged, copied into place and the staging deleted."""
        sent = record(store)
        data = blob(11 * MiB)

        integrity = await store.add(chunked(data, MiB))

        staging = store.config.key_prefix + ".staging/"
        ops = operations(sent)
        assert "CopyObject" in ops
        assert ops[-1] == "DeleteObject"
        assert sent[-1].url.split("/", 4)[-1].startswith(staging)
        assert await store.get(integrity) == data
        assert leftovers() == []

    async def test_multipart_copy(
        self,
        store: S3BlobStore,
        s3_target: S3Target,
        leftovers: Callable[[], list[str]],
    ) -> None:
        """Above the copy threshold the move is a multipart UploadPartCopy."""
        store.backend._connected.uploader.copy_threshold = (
            store.backend._connected.uploader.copy_part_size
        ) = 5 * MiB
        sent = record(store)
        data = blob(12 * MiB)

        integrity = await store.add(chunked(data, MiB))

        if s3_target.copies_parts:
            assert operations(sent).count("UploadPartCopy") == 3
        else:
            # s3rver lacks UploadPartCopy: the store copied through itself.
            assert "UploadPartCopy" in operations(sent)
            assert "GetObject" in operations(sent)
        assert await store.get(integrity) == data
        assert leftovers() == []

    async def test_copy_without_upload_part_copy(
        self,
        store: S3BlobStore,
        leftovers: Callable[[], list[str]],
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Without UploadPartCopy on the server, the store copies through itself."""
        store.backend._connected.uploader.copy_threshold = (
            store.backend._connected.uploader.copy_part_size
        ) = 5 * MiB

        async def lacking(**kwargs: Any) -> Any:
            raise client_error("NotImplemented", 501, "UploadPartCopy")

        store.backend._connected.bucket.client.upload_part_copy = lacking  # type: ignore[method-assign]
        data = blob(12 * MiB + 5)
        caplog.set_level("INFO", logger="sriblob")

        integrity = await store.add(chunked(data, MiB))

        assert await store.get(integrity) == data
        assert await collect(store) == {integrity}
        assert leftovers() == []
        assert "UploadPartCopy not implemented" in caplog.text

    async def test_failed_copy_deletes_staging(
        self, store: S3BlobStore, leftovers: Callable[[], list[str]]
    ) -> None:
        """When the copy into place fails, the staging key is still deleted."""

        async def failing(**kwargs: Any) -> Any:
            raise client_error("AccessDenied", 403, "CopyObject")

        store.backend._connected.bucket.client.copy_object = failing  # type: ignore[method-assign]

        with pytest.raises(AccessDenied, match="CopyObject"):
            await store.add(chunked(blob(11 * MiB), MiB))

        assert leftovers() == []
        assert await collect(store) == set()

    async def test_failed_staging_cleanup_is_logged(
        self, store: S3BlobStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A staging key that can't be deleted is logged; the blob is still added."""
        client = store.backend._connected.bucket.client
        delete = client.delete_object
        staging = store.config.key_prefix + ".staging/"

        async def failing_delete(**kwargs: Any) -> Any:
            if kwargs["Key"].startswith(staging):
                raise ConnectionResetError
            return await delete(**kwargs)

        client.delete_object = failing_delete  # type: ignore[method-assign]
        data = blob(11 * MiB)

        integrity = await store.add(chunked(data, MiB))

        assert integrity == integrity_of(data)
        assert "staging cleanup backend=s3" in caplog.text

    async def test_staging_keys_are_never_listed(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """An object left under the staging prefix is not reported by list()."""
        staging = store.config.key_prefix + ".staging/" + uuid.uuid4().hex
        s3_admin.put_object(Bucket=store.config.bucket, Key=staging, Body=b"partial")

        assert await collect(store) == set()


class TestRead:
    """get() and open() streaming."""

    async def test_open_streams_megabyte_chunks(self, store: S3BlobStore) -> None:
        """open() yields chunks of 1 MiB (the last one shorter), not tiny reads."""
        data = blob(3 * MiB + 10)
        integrity = await store.add(data)

        async with store.open(integrity) as reader:
            sizes = [len(chunk) async for chunk in reader]

        assert sizes == [MiB, MiB, MiB, 10]

    async def test_early_exit_releases_the_connection(
        self, s3_config: S3StoreConfig
    ) -> None:
        """Leaving open() before the end frees the connection for later calls."""
        async with opened(other_config(s3_config, max_concurrency=1)) as store:
            integrity = await store.add(blob(3 * MiB))
            for _ in range(12):
                async with store.open(integrity) as reader:
                    await anext(reader)
            async with asyncio.timeout(10):
                assert await store.has(integrity)

    async def test_corrupted_multipart_object(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """A large object whose bytes changed raises IntegrityMismatch on get()."""
        data = blob(6 * MiB)
        integrity = await store.add(data)
        s3_admin.put_object(
            Bucket=store.config.bucket,
            Key=integrity_to_key(integrity),
            Body=data[:-1] + b"\0",
        )

        with pytest.raises(IntegrityMismatch):
            await store.get(integrity)


#: Ranges of parallel-read tests: small, so a few hundred KiB spans many.
RANGE = 64 * 1024


def acquired_connections(store: S3BlobStore) -> int:
    """Count the connections the store's aiohttp pools hand out right now."""
    http = store.backend._connected.bucket.client._endpoint.http_session  # type: ignore[attr-defined]
    return sum(len(session.connector._acquired) for session in http._sessions.values())


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks of this loop besides the running one."""
    return asyncio.all_tasks() - {asyncio.current_task()}


class TestParallelReads:
    """Blobs above ``read_part_size`` are read as ranges on several connections."""

    @pytest.fixture(name="ranged")
    async def _ranged(self, s3_config: S3StoreConfig) -> AsyncIterator[S3BlobStore]:
        config = other_config(s3_config, read_part_size=RANGE, read_concurrency=4)
        async with opened(config) as store:
            yield store

    @pytest.mark.parametrize(
        "size",
        [0, 1, RANGE - 1, RANGE, RANGE + 1, 3 * RANGE + 17, 20 * RANGE, 999_999],
    )
    async def test_sizes_around_the_range(self, ranged: S3BlobStore, size: int) -> None:
        """get(), open() and ranges of every kind equal the blob, at any size."""
        data = blob(size, seed=size)
        integrity = await ranged.add(data)

        assert await ranged.get(integrity) == data
        async with ranged.open(integrity) as reader:
            assert reader.size == size
            assert await reader.read() == data
        for start, end in [(0, None), (1, None), (RANGE - 1, RANGE + 1), (7, size)]:
            if start > size or (end is not None and not start <= end <= size):
                continue
            async with ranged.open(integrity, start=start, end=end) as reader:
                assert await reader.read() == data[start:end]

    async def test_first_bytes_come_before_the_last_range(
        self, s3_config: S3StoreConfig
    ) -> None:
        """The first chunk is handed on before later ranges are even asked for."""
        config = other_config(s3_config, read_part_size=RANGE, read_concurrency=2)
        data = blob(40 * RANGE, seed=5)
        async with opened(config) as store:
            integrity = await store.add(data)
            sent = record(store)
            async with store.open(integrity) as reader:
                first = await anext(reader)
                ranges = [call for call in sent if call.operation == "GetObject"]
                assert len(ranges) <= 3  # the first, and at most the window
                rest = await reader.read()
            assert first + rest == data
            ranges = [call for call in sent if call.operation == "GetObject"]
            assert len(ranges) == 40

    async def test_a_flipped_byte_in_one_range_is_detected(
        self, ranged: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """A corrupt byte in any range fails get() and open() with IntegrityMismatch."""
        data = blob(10 * RANGE, seed=9)
        integrity = await ranged.add(data)
        for at in (0, RANGE, 5 * RANGE + 3, len(data) - 1):
            bad = bytearray(data)
            bad[at] ^= 0x01
            s3_admin.put_object(
                Bucket=ranged.config.bucket,
                Key=integrity_to_key(integrity),
                Body=bytes(bad),
            )
            with pytest.raises(IntegrityMismatch):
                await ranged.get(integrity)
            with pytest.raises(IntegrityMismatch):
                async with ranged.open(integrity) as reader:
                    await reader.read()

    @pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "resized"])
    async def test_an_object_replaced_mid_read_is_an_error(
        self, s3_config: S3StoreConfig, s3_admin: S3Client, same_size: bool
    ) -> None:
        """Bytes of another object never join a read: it fails after the swap."""
        config = other_config(s3_config, read_part_size=RANGE, read_concurrency=2)
        data = blob(20 * RANGE, seed=11)
        other = blob(len(data) if same_size else len(data) + 1, seed=12)
        async with opened(config, verify=False) as store:
            integrity = await store.add(data)
            got = b""
            with pytest.raises(StoreError, match="changed") as caught:  # noqa: PT012 -- a read
                async with store.open(integrity) as reader:
                    got += await anext(reader)
                    # Let the range in flight finish first: s3rver rewrites an
                    # object in place, so a GET answered before the swap could
                    # stream the new bytes under the old headers, which no
                    # client can tell from the real thing.
                    await asyncio.sleep(0.5)
                    s3_admin.put_object(
                        Bucket=config.bucket,
                        Key=integrity_to_key(integrity),
                        Body=other,
                    )
                    async for chunk in reader:
                        got += chunk
        assert not isinstance(caught.value, IntegrityMismatch)
        assert len(got) < len(data)
        assert got == data[: len(got)]

    async def test_leaving_at_every_range_leaks_nothing(
        self, s3_config: S3StoreConfig
    ) -> None:
        """An early exit after any range cancels the rest and frees every connection."""
        config = other_config(s3_config, read_part_size=RANGE, read_concurrency=4)
        data = blob(8 * RANGE, seed=13)
        async with opened(config) as store:
            integrity = await store.add(data)
            for at in range(8):
                async with store.open(integrity) as reader:
                    for _ in range(at + 1):
                        await anext(reader)
                assert acquired_connections(store) == 0
                assert other_tasks() == set()
            assert await store.get(integrity) == data

    async def test_cancelling_a_reader_cancels_its_ranges(
        self, s3_config: S3StoreConfig
    ) -> None:
        """A reader's task cancelled mid-read leaves no range task or connection."""
        config = other_config(s3_config, read_part_size=RANGE, read_concurrency=4)
        data = blob(40 * RANGE, seed=14)
        async with opened(config) as store:
            integrity = await store.add(data)
            for at in (1, 2, 5, 17, 39):
                started = asyncio.Event()

                async def read(at: int, started: asyncio.Event) -> None:
                    async with store.open(integrity) as reader:
                        for _ in range(at):
                            await anext(reader)
                        started.set()
                        await asyncio.Event().wait()

                task = asyncio.ensure_future(read(at, started))
                await asyncio.wait_for(started.wait(), 30)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert other_tasks() == set()
                assert acquired_connections(store) == 0
            assert await store.get(integrity) == data


class TestStat:
    """stat() through one HeadObject."""

    async def test_size_and_stored_at(self, store: S3BlobStore) -> None:
        """stat() gives ContentLength and LastModified (UTC) without a GetObject."""
        data = blob(1000)
        before = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(
            seconds=1
        )
        integrity = await store.add(data)
        sent = record(store)

        info = await store.stat(integrity)

        assert info is not None
        assert info.integrity == integrity
        assert info.size == 1000
        assert info.stored_at is not None
        assert info.stored_at.utcoffset() == dt.timedelta(0)
        assert before <= info.stored_at <= dt.datetime.now(dt.UTC)
        assert operations(sent) == ["HeadObject"]

    async def test_missing_blob(self, store: S3BlobStore) -> None:
        """stat() of an absent blob is None, after checking the bucket exists."""
        sent = record(store)

        assert await store.stat(integrity_of(b"absent")) is None
        assert operations(sent)[0] == "HeadObject"
        assert "GetObject" not in operations(sent)

    async def test_multipart_size(self, store: S3BlobStore) -> None:
        """stat() gives a multipart object's whole size."""
        data = blob(6 * MiB + 3)
        integrity = await store.add(data)

        info = await store.stat(integrity)

        assert info is not None
        assert info.size == len(data)


class TestList:
    """list() paging and filtering."""

    async def test_pages(self, s3_config: S3StoreConfig) -> None:
        """list() follows ListObjectsV2 pages of list_page_size keys."""
        async with opened(other_config(s3_config, list_page_size=2)) as store:
            expected = {await store.add(blob(10, seed=n)) for n in range(7)}
            sent = record(store)

            assert await collect(store) == expected

        assert operations(sent).count("ListObjectsV2") == 4

    async def test_yields_as_pages_arrive(self, s3_config: S3StoreConfig) -> None:
        """The first integrity is yielded before the second page is requested."""
        async with opened(other_config(s3_config, list_page_size=1)) as store:
            for n in range(3):
                await store.add(blob(10, seed=n))
            sent = record(store)

            listing = store.list()
            await anext(listing)
            assert operations(sent) == ["ListObjectsV2"]
            await listing.aclose()

    async def test_skips_foreign_keys(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """Keys that don't decode to a canonical integrity are skipped."""
        integrity = await store.add(b"mine")
        prefix = store.config.key_prefix
        bucket = store.config.bucket
        upper = integrity_to_key(integrity_of(b"x"), prefix=prefix).upper()
        for key in [
            prefix + "README",
            prefix + upper[len(prefix) :],
            prefix + b"not an integrity".hex(),
            "elsewhere/" + integrity_to_key(integrity_of(b"y"), prefix=""),
        ]:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=b"foreign")

        assert await collect(store) == {integrity}


class TestInterop:
    """Objects shared with plain boto3."""

    async def test_reads_what_boto3_wrote(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """An object put by plain boto3 under integrity_to_key() is served."""
        data = blob(2 * MiB + 1)
        integrity = integrity_of(data)
        s3_admin.put_object(
            Bucket=store.config.bucket, Key=integrity_to_key(integrity), Body=data
        )

        assert await store.has(integrity)
        assert await store.get(integrity) == data
        assert await collect(store) == {integrity}

    async def test_boto3_reads_what_the_store_wrote(
        self, store: S3BlobStore, s3_admin: S3Client
    ) -> None:
        """A multipart blob written by the store is read back identical by boto3."""
        data = blob(11 * MiB + 7)

        integrity = await store.add(chunked(data, MiB))

        got = s3_admin.get_object(
            Bucket=store.config.bucket, Key=integrity_to_key(integrity)
        )
        assert got["Body"].read() == data


class TestErrors:
    """Failures mapped to sriblob exceptions."""

    async def test_missing_bucket_at_open(self, s3_config: S3StoreConfig) -> None:
        """Opening a store on a bucket that doesn't exist raises BucketNotFound."""
        config = other_config(s3_config, bucket=f"missing-{uuid.uuid4().hex}")

        with pytest.raises(BucketNotFound) as excinfo:
            async with opened(config):
                pass

        assert config.bucket in str(excinfo.value)
        assert excinfo.value.bucket == config.bucket
        assert excinfo.value.endpoint == config.endpoint

    async def test_missing_bucket(
        self, s3_config: S3StoreConfig, s3_admin: S3Client, s3_target: S3Target
    ) -> None:
        """Every operation on a bucket gone since the open raises BucketNotFound.

        (A server that creates missing buckets on a put, SeaweedFS, brings
        it back instead: puts are left out there.)
        """
        config = other_config(s3_config, bucket=f"missing-{uuid.uuid4().hex}")
        s3_admin.create_bucket(Bucket=config.bucket)
        integrity = integrity_of(b"x")
        async with opened(config) as store:
            s3_admin.delete_bucket(Bucket=config.bucket)
            store.backend._bucket_seen = False  # as a new process would be
            calls: list[Coroutine[Any, Any, object]] = [
                store.has(integrity),
                store.get(integrity),
                store.delete(integrity),
                store.stat(integrity),
                collect(store),
                store.open(integrity).__aenter__(),
            ]
            if not s3_target.creates_missing_buckets:
                calls += [store.put(integrity, b"x"), store.add(b"x")]
            for call in calls:
                with pytest.raises(BucketNotFound) as excinfo:
                    await call
                assert config.bucket in str(excinfo.value)
                assert str(config.endpoint) in str(excinfo.value)
                assert excinfo.value.bucket == config.bucket
                assert excinfo.value.endpoint == config.endpoint

    async def test_unreachable_endpoint(self, s3_config: S3StoreConfig) -> None:
        """A closed port raises StoreUnavailable naming the endpoint."""
        endpoint = f"http://127.0.0.1:{free_port()}"
        config = other_config(s3_config, endpoint=endpoint, max_attempts=1)
        async with opened(config) as store:
            with pytest.raises(StoreUnavailable, match=endpoint) as excinfo:
                await store.has(integrity_of(b"x"))
        assert excinfo.value.endpoint == endpoint

    async def test_read_timeout(self, s3_config: S3StoreConfig) -> None:
        """A server that never answers raises StoreUnavailable after read_timeout."""

        async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
            await reader.read()

        async with tcp_server(silent) as port:
            config = other_config(
                s3_config,
                endpoint=f"http://127.0.0.1:{port}",
                read_timeout=0.2,
                max_attempts=1,
            )
            async with opened(config) as store, asyncio.timeout(10):
                with pytest.raises(StoreUnavailable, match="timed out"):
                    await store.get(integrity_of(b"x"))

    async def test_not_implemented_is_not_retried(
        self, s3_config: S3StoreConfig
    ) -> None:
        """A 501 NotImplemented is a StoreError at once, not StoreUnavailable."""
        requests_seen: list[bytes] = []
        body = (
            b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NotImplemented"
            b"</Code><Message>not here</Message></Error>"
        )

        async def lacking(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            while head := await reader.readuntil(b"\r\n\r\n"):
                requests_seen.append(head.split(b"\r\n", 1)[0])
                writer.write(
                    b"HTTP/1.1 501 Not Implemented\r\nContent-Type: application/xml"
                    b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()

        async with tcp_server(lacking) as port:
            config = other_config(
                s3_config, endpoint=f"http://127.0.0.1:{port}", max_attempts=3
            )
            async with opened(config) as store:
                opening = len(requests_seen)  # HeadBucket, left for later
                with pytest.raises(StoreError, match="does not implement") as excinfo:
                    await collect(store)

        assert not isinstance(excinfo.value, StoreUnavailable)
        # (This fake server answers HEAD with a body, which breaks the
        # connection, so the opening HeadBucket may take a few attempts.)
        assert opening >= 1
        assert len(requests_seen) - opening == 1

    async def test_server_errors_are_retried(self, s3_config: S3StoreConfig) -> None:
        """5xx answers are retried max_attempts times, then StoreUnavailable."""
        requests_seen: list[bytes] = []

        async def failing(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            while head := await reader.readuntil(b"\r\n\r\n"):
                requests_seen.append(head.split(b"\r\n", 1)[0])
                writer.write(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Length: 0\r\n"
                    b"Connection: keep-alive\r\n\r\n"
                )
                await writer.drain()

        async with tcp_server(failing) as port:
            config = other_config(
                s3_config, endpoint=f"http://127.0.0.1:{port}", max_attempts=2
            )
            async with opened(config) as store:
                opening = len(requests_seen)  # HeadBucket, retried, left for later
                with pytest.raises(StoreUnavailable, match="503"):
                    await store.has(integrity_of(b"x"))

        assert opening == 2
        assert len(requests_seen) - opening == 2


@pytest.fixture(name="iam_user")
def _iam_user(
    s3_target: S3Target, s3_config: S3StoreConfig
) -> Iterator[tuple[str, str]]:
    """Turn on authentication and yield a permitted user's key pair.

    Other servers always authenticate: their key pair is the target's. moto
    checks signatures and policies once its count of unauthenticated
    requests is used up; ``/moto-api/reset-auth`` sets that count for the
    whole server, so it is restored afterwards for the other tests.
    """
    if s3_target.name != "moto":
        yield s3_target.access_key_id, s3_target.secret_access_key
        return
    reset = f"{s3_target.endpoint}/moto-api/reset-auth"
    requests.post(reset, data=b"3", timeout=10).raise_for_status()
    try:
        iam = boto3.client(
            "iam",
            endpoint_url=s3_target.endpoint,
            region_name=MOTO_REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        name = f"sriblob-{uuid.uuid4().hex[:8]}"
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        iam.put_user_policy(
            UserName=name,
            PolicyName="s3",
            PolicyDocument=(
                '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow",'
                ' "Action": "s3:*", "Resource": "*"}]}'
            ),
        )
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        requests.post(reset, data=b"inf", timeout=10).raise_for_status()


class TestPayloadHashes:
    """Signed bodies: hashed off the event loop, and exactly botocore's hash."""

    async def test_every_signed_body_carries_its_sha256(
        self, s3_config: S3StoreConfig, s3_admin: S3Client
    ) -> None:
        """Each PutObject and UploadPart says the SHA-256 of the bytes it sends."""
        data = blob(13 * MiB + 5, seed=41)
        small = blob(2 * MiB, seed=42)
        async with opened(s3_config) as store:
            bodies: list[tuple[str, str, bytes]] = []

            def before_send(request: Any, event_name: str, **_: Any) -> None:
                body = request.body
                raw = (
                    body.getvalue() if hasattr(body, "getvalue") else bytes(body or b"")
                )
                sent = request.headers.get("X-Amz-Content-SHA256", b"")
                if isinstance(sent, bytes):
                    sent = sent.decode()
                bodies.append((event_name, sent, raw))

            store.backend._connected.bucket.client.meta.events.register(
                "before-send.s3.UploadPart", before_send
            )
            store.backend._connected.bucket.client.meta.events.register(
                "before-send.s3.PutObject", before_send
            )
            await store.put(integrity_of(data), chunked(data, MiB))
            await store.put(integrity_of(small), small)
        assert len(bodies) >= 4  # three parts and one PutObject
        for _, sent, raw in bodies:
            assert sent == hashlib.sha256(raw).hexdigest()
        assert (
            s3_admin.get_object(
                Bucket=s3_config.bucket, Key=integrity_to_key(integrity_of(data))
            )["Body"].read()
            == data
        )

    async def test_a_wrong_hash_is_refused_where_the_server_checks(
        self,
        s3_config: S3StoreConfig,
        s3_target: S3Target,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """The hash sent is the one the server checks (Ceph RGW checks it).

        The hashing thread is made to lie; a server that checks refuses the
        upload, and the store stores nothing. Servers that don't check
        (moto, s3rver, SeaweedFS) store it: the test asserts what each does.
        """

        def wrong(view: memoryview) -> str:
            view.release()
            return "0" * 64

        monkeypatch.setattr(s3_signing, "_sha256_hex", wrong)
        data = blob(2 * MiB, seed=43)
        async with opened(other_config(s3_config, max_attempts=1)) as store:
            if s3_target.checks_payload_hash:
                with pytest.raises(StoreError):
                    await store.put(integrity_of(data), data)
                assert not await store.has(integrity_of(data))
            else:
                await store.put(integrity_of(data), data)
                assert await store.get(integrity_of(data)) == data


def _seconds_until_expired(url: str, expires_in: int) -> float:
    """Seconds from now until the presigned *url* expires, by its X-Amz-Date."""
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
    stamp = query["X-Amz-Date"][0] + "+0000"
    signed = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ%z")
    expires = signed + dt.timedelta(seconds=expires_in)
    return max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds())


class TestPresignedExpiry:
    async def test_expired_url_is_refused(
        self, s3_config: S3StoreConfig, s3_target: S3Target
    ) -> None:
        """A presigned URL works until it expires, then the server refuses it.

        Where the server checks presigned URLs (s3rver, Ceph RGW, SeaweedFS;
        in ``nox -s compat``). moto's authentication fails on query-signed
        requests (a 500), so there an expired URL still works: the test
        asserts what each server does.
        """
        expires_in = 3
        async with opened(s3_config) as store:
            integrity = await store.add(b"for a few seconds")
            url = await store.presign(integrity, expires_in=expires_in)
            fresh = await asyncio.to_thread(requests.get, url, timeout=10)
            # The signature's clock is X-Amz-Date, truncated to the second: the
            # URL expires at that second plus expires_in, which may be up to a
            # second sooner than "now plus expires_in". Sleep past it by the
            # URL's own clock, not by a guess.
            await asyncio.sleep(_seconds_until_expired(url, expires_in) + 1.5)
            stale = await asyncio.to_thread(requests.get, url, timeout=10)

        assert fresh.status_code == 200, fresh.text
        assert fresh.content == b"for a few seconds"
        if s3_target.checks_presigned_expiry:
            assert stale.status_code == 403
        else:
            assert stale.status_code == 200


class TestCredentials:
    """Authentication failures, with moto's IAM checks on."""

    async def test_right_credentials_work(
        self, s3_config: S3StoreConfig, iam_user: tuple[str, str]
    ) -> None:
        """With authentication on, the permitted user's keys work (the control)."""
        key_id, secret = iam_user
        config = other_config(s3_config, access_key_id=key_id, secret_access_key=secret)
        async with opened(config) as store:
            integrity = await store.add(b"authenticated")
            assert await store.get(integrity) == b"authenticated"

    @pytest.mark.parametrize("wrong", ["secret", "key id"])
    async def test_wrong_credentials(
        self,
        s3_config: S3StoreConfig,
        s3_target: S3Target,
        iam_user: tuple[str, str],
        wrong: str,
    ) -> None:
        """A wrong secret or key id raises AccessDenied that never shows the secret."""
        key_id, secret = iam_user
        bad_secret = "wrong-" + secret if wrong == "secret" else secret
        bad_key_id = "AKIA" + "X" * 16 if wrong == "key id" else key_id
        config = other_config(
            s3_config, access_key_id=bad_key_id, secret_access_key=bad_secret
        )
        if wrong == "secret" and not s3_target.checks_signatures:
            # s3rver checks a SigV4 request's key id, never its signature: a
            # wrong secret works there (docs/compatibility.md says so).
            async with opened(config) as store:
                assert await store.add(b"unchecked") == integrity_of(b"unchecked")
            return
        async with opened(config) as store:
            for call in [
                store.has(integrity_of(b"x")),
                store.put(integrity_of(b"x"), b"x"),
                store.get(integrity_of(b"x")),
                store.stat(integrity_of(b"x")),
                collect(store),
            ]:
                with pytest.raises(AccessDenied) as excinfo:
                    await call
                error: BaseException | None = excinfo.value
                assert config.bucket in str(excinfo.value)
                assert str(config.endpoint) in str(excinfo.value)
                while error is not None:
                    assert bad_secret not in str(error)
                    assert bad_secret not in repr(vars(error))
                    error = error.__cause__
                assert isinstance(excinfo.value, StoreError)
