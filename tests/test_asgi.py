"""sriblob.asgi.BlobApp under a real uvicorn on loopback, fetched by httpx and curl."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import socket
import threading
import urllib.parse
from typing import TYPE_CHECKING, Any

import fastapi
import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from sriblob import (
    BlobStore,
    BlobStoreRegistry,
    Integrity,
    MemoryBlobStore,
    PostgresBlobStore,
    PresignUnsupported,
    S3BlobStore,
    S3StoreConfig,
)
from sriblob.asgi import BlobApp
from sriblob.keys import integrity_to_key

from .helpers import Backend, blob, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator, MutableMapping

DATA = blob(3 * 1024 * 1024 + 11, seed=81)
INTEGRITY = integrity_of(DATA)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def serving(app: Any, *, root_path: str = "") -> AsyncIterator[str]:
    """Run *app* under uvicorn on a free loopback port; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            root_path=root_path,
        )
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


def stripping_mount(app: Any, mount: str) -> Callable[..., Any]:
    """Mount *app* at *mount* the way Starlette before 0.33 did.

    Those versions took the mount point off ``path`` (and added it to
    ``root_path``) but left ``raw_path`` whole; Starlette 0.33 and later
    keep ``path`` whole, as the ASGI spec says.
    """

    async def mounted(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(mount + "/"):
            scope = {
                **scope,
                "root_path": scope.get("root_path", "") + mount,
                "path": scope["path"][len(mount) :],
            }
        await app(scope, receive, send)

    return mounted


class TestMounted:
    """Item 1: mounted in a framework, the app serves under the mount point."""

    async def test_fastapi_mount(self, memory: MemoryBlobStore) -> None:
        """The docs' FastAPI sample serves the blob under /packages, by either name."""
        registry = BlobStoreRegistry()
        registry.register(memory)

        @contextlib.asynccontextmanager
        async def lifespan(_: fastapi.FastAPI) -> AsyncIterator[None]:
            async with registry:
                yield

        app = fastapi.FastAPI(lifespan=lifespan)
        app.mount("/packages", BlobApp(registry, prefix=""))
        async with serving(app) as base, httpx.AsyncClient() as client:
            encoded = await client.get(
                f"{base}/packages/{urllib.parse.quote(INTEGRITY, safe='')}"
            )
            hex_key = await client.get(
                f"{base}/packages/{integrity_to_key(INTEGRITY, prefix='')}"
            )
            ranged = await client.get(
                f"{base}/packages/{urllib.parse.quote(INTEGRITY, safe='')}",
                headers={"Range": "bytes=5-9"},
            )
            outside = await client.get(f"{base}/packages/")

        assert encoded.status_code == 200
        assert encoded.content == DATA
        assert hex_key.content == DATA
        assert ranged.status_code == 206
        assert ranged.content == DATA[5:10]
        assert outside.status_code == 404

    @pytest.mark.parametrize("prefix", ["", "/blobs"])
    async def test_starlette_mount(self, memory: MemoryBlobStore, prefix: str) -> None:
        """Under Starlette's Mount the app's own prefix follows the mount point."""
        app = Starlette(routes=[Mount("/packages", app=BlobApp(memory, prefix=prefix))])
        name = urllib.parse.quote(INTEGRITY, safe="")
        async with serving(app) as base, httpx.AsyncClient() as client:
            response = await client.get(f"{base}/packages{prefix}/{name}")
            head = await client.head(f"{base}/packages{prefix}/{name}")

        assert response.status_code == 200
        assert response.content == DATA
        assert head.headers["etag"] == f'"{INTEGRITY}"'

    async def test_mount_that_strips_the_path(self, memory: MemoryBlobStore) -> None:
        """A mount that takes its point off `path` (old Starlette) serves too."""
        app = stripping_mount(BlobApp(memory, prefix=""), "/packages")
        async with serving(app) as base, httpx.AsyncClient() as client:
            response = await client.get(
                f"{base}/packages/{urllib.parse.quote(INTEGRITY, safe='')}"
            )

        assert response.status_code == 200
        assert response.content == DATA

    async def test_server_root_path(self, memory: MemoryBlobStore) -> None:
        """A server root path (uvicorn --root-path) leaves the prefix where it was."""
        async with (
            serving(BlobApp(memory), root_path="/mirror") as base,
            httpx.AsyncClient() as client,
        ):
            response = await client.get(url_of(base, INTEGRITY))

        assert response.status_code == 200
        assert response.content == DATA


class TestHostile:
    """Item 5: odd requests get a 4xx or the blob, never a 500."""

    @pytest.mark.parametrize(
        ("header", "status", "expected"),
        [
            ("bytes=" + "9" * 5000 + "-", 416, b""),
            ("bytes=0-" + "9" * 5000, 206, DATA),
            ("bytes=-" + "9" * 5000, 206, DATA),
            ("bytes=" + "0" * 4999 + "7-" + "0" * 4998 + "10", 206, DATA[7:11]),
        ],
        ids=["huge-start", "huge-end", "huge-suffix", "zero-padded"],
    )
    async def test_range_numbers_of_5000_digits(
        self, base: str, header: str, status: int, expected: bytes
    ) -> None:
        """Range numbers past int()'s digit limit answer 416 or the bytes asked."""
        async with httpx.AsyncClient() as client:
            response = await client.get(
                url_of(base, INTEGRITY), headers={"Range": header}
            )

        assert response.status_code == status
        if status == 416:
            assert response.headers["content-range"] == f"bytes */{len(DATA)}"
        else:
            assert response.content == expected

    @pytest.mark.parametrize("pad", ["%20", "%09", "%0A", "%0D", "%0B%0C", "+"])
    @pytest.mark.parametrize("where", ["before", "after"])
    async def test_padded_names_are_400(self, base: str, pad: str, where: str) -> None:
        """A name padded with encoded whitespace isn't the canonical name: 400."""
        name = urllib.parse.quote(INTEGRITY, safe="")
        padded = pad + name if where == "before" else name + pad
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{base}/blobs/{padded}")

        assert response.status_code == 400
        assert b"canonical" in response.content or b"Invalid" in response.content


#: A small blob for the fuzzers: each example is cheap to serve and check.
FUZZ_DATA = blob(5000, seed=82)
FUZZ_INTEGRITY = integrity_of(FUZZ_DATA)
_FUZZ_NAME = urllib.parse.quote(FUZZ_INTEGRITY, safe="")
_FUZZ_KEY = integrity_to_key(FUZZ_INTEGRITY, prefix="")

# Mostly requests that reach the parser's later steps (a known prefix, a
# name near the blob's, GET or HEAD), and some of anything.
_canonical = st.sampled_from([_FUZZ_NAME, _FUZZ_KEY, FUZZ_INTEGRITY])
_names = st.one_of(
    _canonical,
    st.builds(
        lambda pad, before: (pad + _FUZZ_NAME) if before else (_FUZZ_NAME + pad),
        st.sampled_from(["%20", "%09", "%0A", "%00", "%2F", "/", "..", "%25", "?a"]),
        st.booleans(),
    ),
    st.builds(
        lambda name, at, text: name[:at] + text + name[at:],
        st.sampled_from([_FUZZ_NAME, _FUZZ_KEY]),
        st.integers(0, len(_FUZZ_KEY)),
        st.text(
            alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
            max_size=5,
        ),
    ),
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E),
        max_size=300,
    ),
    st.builds(lambda n: "A" * n, st.integers(0, 3000)),
)
_paths = st.builds(
    lambda prefix, name: (prefix + name).encode("latin-1", "replace"),
    st.sampled_from(
        ["/blobs/"] * 6 + ["/blobs", "/", "/other/", "/blobs//", "/blobs/%2E%2E/"]
    ),
    _names,
)
_digits = st.one_of(
    st.just(""),
    st.integers(0, 20_000).map(str),
    st.builds(lambda n, d: d * n, st.integers(1, 30), st.sampled_from("019")),
    # Past int()'s limit of 4,300 digits.
    st.builds(lambda n, d: d * n, st.integers(4200, 6000), st.sampled_from("019")),
)
_ranges = st.one_of(
    st.builds(lambda a, b: f"bytes={a}-{b}".encode(), _digits, _digits),
    st.builds(
        lambda a, b, c, d: f"bytes={a}-{b},{c}-{d}".encode(),
        _digits,
        _digits,
        _digits,
        _digits,
    ),
    st.binary(max_size=200),
)
_tags = st.one_of(
    st.sampled_from(
        [
            f'"{FUZZ_INTEGRITY}"'.encode(),
            f'W/"{FUZZ_INTEGRITY}"'.encode(),
            b"*",
            b'"other"',
            b"",
        ]
    ),
    st.binary(max_size=200),
    st.builds(lambda n: b'"x", ' * n, st.integers(0, 20_000)),
)
_headers = st.fixed_dictionaries(
    {},
    optional={
        b"range": _ranges,
        b"if-none-match": _tags,
        b"if-range": _tags,
        b"x-padding": st.builds(lambda n: b"p" * n, st.integers(0, 100_000)),
    },
)
_methods = st.one_of(
    st.sampled_from(["GET", "HEAD", "POST", "get"]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12),
)
#: (method, raw path, headers): half of them a GET or HEAD of the blob's own
#: name, so the header parsers see every kind of header.
_requests = st.one_of(
    st.tuples(
        st.sampled_from(["GET", "HEAD"]),
        _canonical.map(lambda name: f"/blobs/{name}".encode()),
        _headers,
    ),
    st.tuples(_methods, _paths, _headers),
)


#: The paths that name the fuzz blob: its encoded integrity, its hex key, and
#: the integrity as is (a raw '/' inside the name stays part of it).
_SERVED_PATHS = {
    f"/blobs/{name}".encode() for name in (_FUZZ_NAME, _FUZZ_KEY, FUZZ_INTEGRITY)
}


def check_answer(
    status: int,
    headers: dict[bytes, bytes],
    body: bytes,
    *,
    method: str,
    raw_path: bytes,
) -> None:
    """A fuzzed request's answer: no 5xx, and a body that is the blob or its range.

    Only a canonical name of the blob is answered 200, 206 or 304.
    """
    assert status < 500, (status, body[:200])
    if status in (200, 206, 304):
        assert raw_path.split(b"?", 1)[0] in _SERVED_PATHS, (status, raw_path[:100])
    if (
        status == 200
        and method == "GET"
        and headers.get(b"content-type", b"").startswith(b"application/octet-stream")
    ):
        assert body == FUZZ_DATA
    elif status == 206:
        match = re.fullmatch(rb"bytes (\d+)-(\d+)/(\d+)", headers[b"content-range"])
        assert match is not None
        start, last, size = (int(number) for number in match.groups())
        assert size == len(FUZZ_DATA)
        assert body == FUZZ_DATA[start : last + 1]
        assert body
    else:
        # Errors, 304s, HEAD: a short text or nothing, never bytes of the blob.
        assert len(body) < 2048
        assert FUZZ_DATA[:64] not in body


async def call_app(
    app: BlobApp, method: str, raw_path: bytes, headers: dict[bytes, bytes]
) -> tuple[int, dict[bytes, bytes], bytes]:
    """Send one request through the ASGI interface; return status, headers, body."""
    target = raw_path.split(b"?", 1)[0]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": urllib.parse.unquote(target.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": b"",
        "root_path": "",
        "headers": list(headers.items()),
    }
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    assert start["type"] == "http.response.start"
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert sent[-1].get("more_body", False) is False
    return start["status"], dict(start["headers"]), body


@pytest.fixture(name="fuzz_app", scope="module")
def _fuzz_app() -> BlobApp:
    store = MemoryBlobStore()
    asyncio.run(store.put(FUZZ_INTEGRITY, FUZZ_DATA))
    return BlobApp(store)


class TestFuzz:
    """Item 5: fuzzed paths, methods, Range and If-* headers never make a 5xx."""

    @settings(
        max_examples=400,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=_requests)
    @example(request=("GET", f"/blobs/%20{_FUZZ_NAME}".encode(), {}))
    @example(
        request=(
            "GET",
            f"/blobs/{_FUZZ_NAME}".encode(),
            {b"range": b"bytes=" + b"9" * 5000 + b"-"},
        )
    )
    def test_the_app(
        self, fuzz_app: BlobApp, request: tuple[str, bytes, dict[bytes, bytes]]
    ) -> None:
        """Through ASGI: no exception, no 5xx, and only the blob or its range."""
        method, raw_path, headers = request
        status, answer, body = asyncio.run(
            call_app(fuzz_app, method, raw_path, headers)
        )

        check_answer(status, answer, body, method=method, raw_path=raw_path)

    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(request=_requests)
    @example(request=("GET", f"/blobs/{_FUZZ_NAME}%0A".encode(), {}))
    @example(
        request=(
            "GET",
            f"/blobs/{_FUZZ_NAME}".encode(),
            {b"range": b"bytes=0-" + b"1" * 5000},
        )
    )
    def test_over_http(
        self, fuzz_server: int, request: tuple[str, bytes, dict[bytes, bytes]]
    ) -> None:
        """Through uvicorn over a raw socket: no 5xx, only the blob or its range."""
        method, raw_path, headers = request
        message = method.encode() + b" " + (raw_path or b"/") + b" HTTP/1.1\r\n"
        message += b"host: 127.0.0.1\r\nconnection: close\r\n"
        for name, value in headers.items():
            message += name + b": " + value + b"\r\n"
        with socket.create_connection(("127.0.0.1", fuzz_server), timeout=30) as sock:
            sock.sendall(message + b"\r\n")
            answer = b""
            with contextlib.suppress(ConnectionError):
                while chunk := sock.recv(65536):
                    answer += chunk
        if not answer:
            return  # the server closed the connection: refused, not served
        head, _, body = answer.partition(b"\r\n\r\n")
        status_line, *lines = head.split(b"\r\n")
        status = int(status_line.split()[1])
        fields = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(b":") for line in lines)
        }
        if b"content-length" in fields:
            body = body[: int(fields[b"content-length"])]
        check_answer(status, fields, body, method=method, raw_path=raw_path)


@pytest.fixture(name="fuzz_server", scope="module")
def _fuzz_server(fuzz_app: BlobApp) -> Iterator[int]:
    """Serve the fuzz blob with uvicorn in a thread of its own; yield its port."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(fuzz_app, host="127.0.0.1", port=port, log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        threading.Event().wait(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


class TestStoreDown:
    async def test_a_down_postgres_is_read_past(self, memory: MemoryBlobStore) -> None:
        """With PostgreSQL unreachable, the blob comes from the next store, else 503."""
        registry = BlobStoreRegistry()
        registry.register(
            PostgresBlobStore("postgresql://app:pw@127.0.0.1:1/app", connect_timeout=1)
        )
        registry.register(memory)
        async with (
            registry,
            serving(BlobApp(registry)) as base,
            httpx.AsyncClient() as client,
        ):
            found = await client.get(url_of(base, INTEGRITY))
            absent = await client.get(url_of(base, integrity_of(b"nowhere")))

        assert found.status_code == 200
        assert found.content == DATA
        assert absent.status_code == 503
        assert "pw" not in absent.text


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
