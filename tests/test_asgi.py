"""sriblob.asgi.BlobApp under a real uvicorn on loopback, fetched by httpx and curl."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import urllib.parse
from typing import TYPE_CHECKING

import httpx
import pytest
import uvicorn

from sriblob import (
    BlobStore,
    BlobStoreRegistry,
    Integrity,
    MemoryBlobStore,
    PresignUnsupported,
    S3BlobStore,
    S3StoreConfig,
)
from sriblob.asgi import BlobApp
from sriblob.keys import integrity_to_key

from .helpers import Backend, blob, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

DATA = blob(3 * 1024 * 1024 + 11, seed=81)
INTEGRITY = integrity_of(DATA)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: BlobApp) -> AsyncIterator[str]:
    """Run *app* under uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:  # uvicorn has no event for it
        if task.done():
            await task
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def url_of(base: str, integrity: str, *, hex_key: bool = False) -> str:
    """The blob's URL: the integrity URL-encoded, or its hex key."""
    name = (
        integrity_to_key(integrity, prefix="")
        if hex_key
        else urllib.parse.quote(integrity, safe="")
    )
    return f"{base}/blobs/{name}"


@pytest.fixture(name="memory")
async def _memory() -> AsyncIterator[MemoryBlobStore]:
    async with MemoryBlobStore() as store:
        await store.put(INTEGRITY, DATA)
        yield store


@pytest.fixture(name="base")
async def _base(memory: MemoryBlobStore) -> AsyncIterator[str]:
    async with serving(BlobApp(memory)) as base:
        yield base


def expected_headers(integrity: str) -> dict[str, str]:
    """The headers every full answer for *integrity* carries."""
    digest = base64.b64encode(Integrity.parse(integrity).digest).decode()
    return {
        "etag": f'"{integrity}"',
        "cache-control": "public, max-age=31536000, immutable",
        "accept-ranges": "bytes",
        "repr-digest": f"sha-512=:{digest}:",
    }


class TestWholeBlob:
    @pytest.mark.parametrize("hex_key", [False, True], ids=["encoded", "hex-key"])
    async def test_get(self, base: str, hex_key: bool) -> None:
        """GET answers 200 with the blob and every header, by either name."""
        async with httpx.AsyncClient() as client:
            response = await client.get(url_of(base, INTEGRITY, hex_key=hex_key))

        assert response.status_code == 200
        assert response.content == DATA
        assert response.headers["content-length"] == str(len(DATA))
        for name, value in expected_headers(INTEGRITY).items():
            assert response.headers[name] == value

    async def test_head_has_the_headers_and_no_body(self, base: str) -> None:
        """HEAD answers the same headers, and no body."""
        async with httpx.AsyncClient() as client:
            response = await client.head(url_of(base, INTEGRITY))

        assert response.status_code == 200
        assert response.content == b""
        assert response.headers["content-length"] == str(len(DATA))
        assert response.headers["etag"] == f'"{INTEGRITY}"'

    @pytest.mark.parametrize(
        "header", [f'"{INTEGRITY}"', f'W/"{INTEGRITY}"', "*", f'"x", "{INTEGRITY}"']
    )
    async def test_if_none_match_is_304(self, base: str, header: str) -> None:
        """A client that has the blob gets 304, with the ETag and no body."""
        async with httpx.AsyncClient() as client:
            response = await client.get(
                url_of(base, INTEGRITY), headers={"If-None-Match": header}
            )

        assert response.status_code == 304
        assert response.content == b""
        assert response.headers["etag"] == f'"{INTEGRITY}"'

    async def test_curl_downloads_the_blob(self, base: str, tmp_path: object) -> None:
        """The blob downloads whole with curl, which sees the headers."""
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-D", "-", "-o", "/dev/stdout", url_of(base, INTEGRITY),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()

        assert process.returncode == 0
        head, _, body = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert f'etag: "{INTEGRITY}"'.encode() in head
        assert body == DATA


class TestRanges:
    @pytest.mark.parametrize(
        ("header", "start", "stop"),
        [
            ("bytes=0-99", 0, 100),
            ("bytes=1048570-1048590", 1048570, 1048591),
            (f"bytes={len(DATA) - 5}-", len(DATA) - 5, len(DATA)),
            ("bytes=-100", len(DATA) - 100, len(DATA)),
            (f"bytes=10-{10 * len(DATA)}", 10, len(DATA)),
        ],
        ids=["first", "middle", "last", "suffix", "clipped"],
    )
    async def test_one_range_is_206(
        self, base: str, header: str, start: int, stop: int
    ) -> None:
        """One byte range answers 206 with exactly those bytes."""
        async with httpx.AsyncClient() as client:
            response = await client.get(
                url_of(base, INTEGRITY), headers={"Range": header}
            )

        assert response.status_code == 206
        assert response.content == DATA[start:stop]
        assert (
            response.headers["content-range"] == f"bytes {start}-{stop - 1}/{len(DATA)}"
        )
        assert response.headers["content-length"] == str(stop - start)

    @pytest.mark.parametrize("header", [f"bytes={len(DATA)}-", "bytes=-0"])
    async def test_unsatisfiable_is_416(self, base: str, header: str) -> None:
        """A range past the end answers 416 with the size."""
        async with httpx.AsyncClient() as client:
            response = await client.get(
                url_of(base, INTEGRITY), headers={"Range": header}
            )

        assert response.status_code == 416
        assert response.headers["content-range"] == f"bytes */{len(DATA)}"

    @pytest.mark.parametrize(
        "headers",
        [
            {"Range": "bytes=0-1,5-6"},
            {"Range": "lines=1-2"},
            {"Range": "bytes=0-10", "If-Range": '"another"'},
        ],
        ids=["several", "other-unit", "if-range-mismatch"],
    )
    async def test_ignored_ranges_send_the_whole_blob(
        self, base: str, headers: dict[str, str]
    ) -> None:
        """Ranges the app doesn't serve are ignored: 200 and the whole blob."""
        async with httpx.AsyncClient() as client:
            response = await client.get(url_of(base, INTEGRITY), headers=headers)

        assert response.status_code == 200
        assert response.content == DATA

    async def test_curl_resumes(
        self, base: str, tmp_path: pytest.TempPathFactory
    ) -> None:
        """A download cut short is finished by `curl -C -`, with a Range request."""
        target = f"{tmp_path}/partial"
        with open(target, "wb") as file:  # noqa: PTH123, ASYNC230 -- a small file
            file.write(DATA[:1000])
        process = await asyncio.create_subprocess_exec(
            "curl", "-sS", "-C", "-", "-o", target, url_of(base, INTEGRITY)
        )  # fmt: skip
        assert await process.wait() == 0

        with open(target, "rb") as file:  # noqa: PTH123, ASYNC230 -- a small file
            assert file.read() == DATA


class TestRefusals:
    @pytest.mark.parametrize(
        "path",
        [
            "/blobs/sha512-bad",
            "/blobs/..%2F..%2Fetc%2Fpasswd",
            "/blobs/../../etc/passwd",
            "/blobs/%00",
            f"/blobs/{urllib.parse.quote(INTEGRITY)}%00",
            "/blobs/md5-AAAAAAAAAAAAAAAAAAAAAA%3D%3D",
            "/blobs/" + "A" * 2000,
        ],
        ids=[
            "malformed",
            "encoded-traversal",
            "traversal",
            "nul",
            "trailing-nul",
            "md5",
            "long",
        ],
    )
    async def test_malformed_is_400_without_a_traceback(
        self, base: str, path: str
    ) -> None:
        """A name that isn't an integrity answers 400 (or 404 outside the prefix)."""
        async with httpx.AsyncClient() as client:
            response = await client.get(base + path)

        assert response.status_code in (400, 404)
        assert "Traceback" not in response.text
        assert len(response.content) < 500

    async def test_a_megabyte_name(self, base: str) -> None:
        """A 1 MB integrity is refused (by the server or the app), never served.

        httpx won't send such a URL, so the request goes over a raw socket.
        """
        port = int(base.rsplit(":", 1)[1])
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"GET /blobs/sha512-" + b"A" * 1_000_000 + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        answer = b""
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            answer = await reader.read()
        writer.close()

        status = answer.split(b"\r\n", 1)[0]
        # Refused with a 4xx, or the connection closed: never a 200.
        assert status == b"" or status.split()[1].startswith(b"4")
        assert b"Traceback" not in answer

    async def test_unknown_blob_is_404(self, base: str) -> None:
        """A blob no store holds answers 404."""
        async with httpx.AsyncClient() as client:
            response = await client.get(url_of(base, integrity_of(b"absent")))

        assert response.status_code == 404

    async def test_outside_the_prefix_is_404(self, base: str) -> None:
        """Paths outside the prefix answer 404."""
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{base}/other/{INTEGRITY}")

        assert response.status_code == 404

    @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
    async def test_other_methods_are_405(self, base: str, method: str) -> None:
        """Only GET and HEAD: anything else answers 405 with Allow."""
        async with httpx.AsyncClient() as client:
            response = await client.request(method, url_of(base, INTEGRITY))

        assert response.status_code == 405
        assert response.headers["allow"] == "GET, HEAD"


class TestCorruption:
    async def test_download_fails_on_every_backend(
        self, backend: Backend, store: BlobStore, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Corrupt stored bytes abort the transfer: no client gets a whole body."""
        await store.put(INTEGRITY, DATA)
        await backend.corrupt(store, Integrity.parse(INTEGRITY), DATA[:-1] + b"!")

        async with serving(BlobApp(store)) as base, httpx.AsyncClient() as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(url_of(base, INTEGRITY))
            process = await asyncio.create_subprocess_exec(
                "curl", "-sS", "-o", "/dev/null", url_of(base, INTEGRITY),
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await process.communicate()

        assert process.returncode != 0  # curl: transfer closed with data left
        assert b"transfer closed" in err or b"Partial" in err
        assert "stored bytes are corrupt" in caplog.text


class TestRegistry:
    async def test_reads_with_fallback(self, memory: MemoryBlobStore) -> None:
        """With a registry, each blob comes from the first store that holds it."""
        registry = BlobStoreRegistry()
        registry.register(MemoryBlobStore(id="empty"))
        registry.register(memory)
        async with serving(BlobApp(registry)) as base, httpx.AsyncClient() as client:
            response = await client.get(url_of(base, INTEGRITY))

        assert response.status_code == 200
        assert response.content == DATA


class TestMisuse:
    def test_source_must_be_a_store_or_registry(self) -> None:
        """BlobApp refuses anything else, saying what it takes."""
        with pytest.raises(TypeError, match="BlobStore or a BlobStoreRegistry"):
            BlobApp(object())  # type: ignore[arg-type]

    @pytest.mark.parametrize("prefix", ["blobs", "/blobs/"])
    def test_prefix_shape(self, prefix: str) -> None:
        """A prefix is '' or a path starting, and not ending, with '/'."""
        with pytest.raises(ValueError, match="prefix"):
            BlobApp(MemoryBlobStore(), prefix=prefix)

    async def test_stores_that_cant_presign_say_so(self) -> None:
        """presign() on a store without presigned URLs is a clear error."""
        store = MemoryBlobStore()
        assert not store.can_presign
        with pytest.raises(PresignUnsupported, match="can't hand out presigned URLs"):
            await store.presign(INTEGRITY)
        assert isinstance(PresignUnsupported("x", backend="m"), NotImplementedError)


@pytest.mark.s3
class TestPresigned:
    async def test_presigned_get_and_head(self, s3_config: S3StoreConfig) -> None:
        """A presigned URL fetches the blob with no credentials; HEAD too."""
        async with S3BlobStore(s3_config) as store, httpx.AsyncClient() as client:
            integrity = await store.add(b"presigned bytes")
            assert store.can_presign

            got = await client.get(await store.presign(integrity))
            head = await client.head(await store.presign(integrity, method="HEAD"))

        assert got.status_code == 200
        assert got.content == b"presigned bytes"
        assert head.status_code == 200
        assert "X-Amz-Signature=" in str(got.url)  # SigV4, not the legacy query

    async def test_redirect_to_a_presigned_url(self, s3_config: S3StoreConfig) -> None:
        """redirect=True answers 307 to the presigned URL, which serves the blob."""
        async with S3BlobStore(s3_config) as store:
            integrity = await store.add(b"redirected bytes")
            async with (
                serving(BlobApp(store, redirect=True)) as base,
                httpx.AsyncClient() as client,
            ):
                response = await client.get(url_of(base, integrity))
                assert response.status_code == 307
                assert response.headers["cache-control"] == "no-store"
                followed = await client.get(response.headers["location"])

        assert followed.content == b"redirected bytes"

    @pytest.mark.parametrize("expires_in", [0, 604801, 1.5, True])
    async def test_expiry_bounds(
        self, s3_config: S3StoreConfig, expires_in: object
    ) -> None:
        """expires_in must be 1 s to 7 days."""
        async with S3BlobStore(s3_config) as store:
            with pytest.raises(ValueError, match="expires_in"):
                await store.presign(INTEGRITY, expires_in=expires_in)  # type: ignore[arg-type]
