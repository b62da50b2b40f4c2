"""Serve blobs over HTTP: an ASGI application, no web framework needed.

::

    from sriblob.asgi import BlobApp

    app = BlobApp(store)  # or a BlobStoreRegistry, read with fallback

``GET`` and ``HEAD /blobs/{integrity}`` answer with the blob, named by its
integrity URL-encoded (``sha512-...%2B...%3D%3D``) or by its hex key (the
``script-packages/blobs/`` key without the prefix). Content addressing makes
the HTTP side simple: the integrity is a strong ETag, the response never
changes (``Cache-Control: public, max-age=31536000, immutable``), and
``Repr-Digest`` (RFC 9530) carries the digest. ``If-None-Match`` gives 304;
one ``Range`` gives 206 or 416. A full response is verified as it streams,
with its last chunk held back until the blob verified: corrupt stored bytes
abort the connection, so a client never takes a short or wrong body for the
blob. A byte range is not verified (it has no integrity of its own).

Run it under uvicorn, hypercorn or any ASGI server, or mount it in
Starlette, FastAPI or Litestar; ``sriblob serve`` runs it on the active
store. The store (or registry) must be open (``async with``) while it serves.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import base64
import logging
import re
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Final, TypeAlias

from . import _telemetry as telemetry
from ._integrity import Integrity
from ._registry import BlobStoreRegistry
from ._store import BlobStore
from .exceptions import (
    BlobNotFound,
    IntegrityMismatch,
    InvalidIntegrity,
    StoreError,
    StoreUnavailable,
)
from .keys import key_to_integrity

if TYPE_CHECKING:
    from ._backend import BlobInfo
    from ._reader import BlobReader

__all__ = ["BlobApp"]

logger = logging.getLogger("sriblob")

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]

#: A year: what "never changes" means to caches.
_IMMUTABLE: Final = b"public, max-age=31536000, immutable"
#: RFC 9530 names of the algorithms SRI uses (sha-384 is not registered).
_DIGEST_NAMES: Final = {"sha256": "sha-256", "sha512": "sha-512"}
#: Longer names are refused before parsing.
_MAX_NAME: Final = 1024
_HEX: Final = re.compile(r"(?:[0-9a-f]{2})+")
_RANGE: Final = re.compile(r"bytes=([0-9]*)-([0-9]*)")
#: Range numbers with more digits than this are past the end of any blob.
#: (``int()`` refuses more than 4,300 digits: such a header must not be a 500.)
_MAX_DIGITS: Final = 19
_BEYOND: Final = 10**_MAX_DIGITS
#: HTTP methods counted by name (OpenTelemetry's semantic conventions);
#: any other is counted as ``_OTHER``.
_METHODS: Final = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


class _Reply(Exception):
    """A short, complete answer (an error or a redirect) instead of the blob."""

    def __init__(
        self, status: int, text: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers or []


class BlobApp:
    """An ASGI application that serves the blobs of a store or a registry.

    Args:
        source: The store to serve, or a registry: then each blob comes from
            the first store that holds it (:meth:`~sriblob.BlobStoreRegistry.
            stat_with_fallback`), the active one first.
        prefix: The path under which blobs are served; ``/blobs`` by default,
            ``""`` for the root.
        redirect: Answer ``GET`` with ``307`` to a presigned URL when the
            serving store can presign (S3), instead of proxying the bytes.
            Stores that can't presign are proxied as usual.
        presign_expires_in: How long a redirect's presigned URL stays valid,
            in seconds.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        source: BlobStore | BlobStoreRegistry,
        /,
        *,
        prefix: str = "/blobs",
        redirect: bool = False,
        presign_expires_in: int = 300,
    ) -> None:
        if not isinstance(source, BlobStore | BlobStoreRegistry):
            msg = (
                "BlobApp serves a BlobStore or a BlobStoreRegistry, not "
                f"{type(source).__name__}."
            )
            raise TypeError(msg)
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            msg = (
                f"prefix must be '' or start with '/' and not end with one: {prefix!r}."
            )
            raise ValueError(msg)
        self._source = source
        self._prefix = prefix.encode("ascii") + b"/"
        self._redirect = redirect
        self._expires_in = presign_expires_in

    def __repr__(self) -> str:
        prefix = self._prefix.decode()[:-1]
        return f"<BlobApp {self._source!r} prefix={prefix!r} redirect={self._redirect}>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection (``http``; ``lifespan`` is acknowledged)."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        counted = _Counted(send, scope.get("method", ""))
        try:
            try:
                await self._serve(scope, counted)
            except _Reply as reply:
                await _answer(counted, reply.status, reply.text, reply.headers)
        except BaseException as exc:
            counted.aborted(exc)
            raise
        counted.answered()

    # -- one request -----------------------------------------------------------

    async def _serve(self, scope: Scope, send: Send) -> None:
        integrity = self._integrity(scope)
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            raise _Reply(405, "Only GET and HEAD.", [(b"allow", b"GET, HEAD")])
        headers = _headers(scope)
        info, store = await self._find(integrity)
        integrity = Integrity.parse(info.integrity)
        etag = f'"{integrity}"'.encode()
        common = [
            (b"etag", etag),
            (b"cache-control", _IMMUTABLE),
            (b"accept-ranges", b"bytes"),
            *_digest(integrity),
        ]
        if _matches(headers.get(b"if-none-match"), etag):
            raise _Reply(304, "", common)
        if method == "GET" and self._redirect and store.can_presign:
            url = await store.presign(integrity, expires_in=self._expires_in)
            raise _Reply(
                307,
                "",
                [(b"location", url.encode()), (b"cache-control", b"no-store")],
            )
        span = _range(headers, etag, info.size)
        if method == "HEAD":
            await _start(send, 200, info.size, common)
            await send({"type": "http.response.body", "body": b""})
            return
        if span is None:
            await self._send_whole(send, store, integrity, info.size, common)
        else:
            await self._send_range(
                send, store, integrity, span=span, size=info.size, common=common
            )

    # -- the body: its length and its bytes from one opened reader --------------

    def _integrity(self, scope: Scope) -> Integrity:
        """The integrity the path names (raw path: `%2F` stays a slash in it)."""
        path = _app_path(scope)
        if not path.startswith(self._prefix) or path == self._prefix:
            raise _Reply(404, "Not found.")
        name = path[len(self._prefix) :]
        if len(name) > _MAX_NAME:
            raise _Reply(400, "Invalid integrity: it is too long.")
        try:
            text = urllib.parse.unquote(name.decode("ascii"), errors="strict")
        except (UnicodeDecodeError, UnicodeError):
            raise _Reply(400, "Invalid integrity: not URL-encoded ASCII.") from None
        if _HEX.fullmatch(text):
            text = key_to_integrity(text, prefix="") or text
        try:
            integrity = Integrity.parse(text)
        except InvalidIntegrity as exc:
            raise _Reply(400, _printable(str(exc))) from None
        if str(integrity) != text:
            # One canonical name a blob: other spellings (padded with
            # whitespace, several hashes, ...) aren't served.
            raise _Reply(400, "Invalid integrity: not in canonical form.")
        return integrity

    async def _find(self, integrity: Integrity) -> tuple[BlobInfo, BlobStore]:
        """Which store serves the blob, and its size; 404 if none holds it."""
        source = self._source
        try:
            if isinstance(source, BlobStore):
                info = await source.stat(integrity)
                found = None if info is None else (info, source)
            else:
                answer = await source.stat_with_fallback(integrity)
                found = None if answer is None else (answer[0], source.get(answer[1]))
        except StoreError as exc:
            raise _unavailable(integrity, exc) from exc
        if found is None:
            raise _Reply(404, f"No blob {integrity}.")
        return found

    async def _send_whole(
        self,
        send: Send,
        store: BlobStore,
        integrity: Integrity,
        size: int,
        common: list[tuple[bytes, bytes]],
    ) -> None:
        """Send the blob, its Content-Length from the reader that streams it.

        *size* (the stat's) is used only when the reader doesn't know its
        own. The body goes out as :func:`_stream` sends it.
        """
        async with _opened(store, integrity) as reader:
            length = size if reader.size is None else reader.size
            await _start(send, 200, length, common)
            try:
                await _stream(send, reader, length, integrity, store)
            except IntegrityMismatch:
                logger.error(  # noqa: TRY400 -- one line; the cause is in it
                    "serve integrity=%s store=%s: the stored bytes are corrupt; "
                    "the connection is aborted",
                    integrity,
                    store.id,
                    extra=telemetry.fields(store.id, "serve", integrity),
                )
                raise

    async def _send_range(
        self,
        send: Send,
        store: BlobStore,
        integrity: Integrity,
        *,
        span: tuple[int, int],
        size: int,
        common: list[tuple[bytes, bytes]],
    ) -> None:
        """Send one range; the reader must agree with the stat on the blob's size.

        A range is computed from the blob's size, so a reader that knows
        another size (a damaged copy somewhere) is refused before any byte.
        The body goes out as :func:`_stream` sends it.
        """
        start, stop = span
        async with _opened(store, integrity, start, stop) as reader:
            if reader.size is not None and reader.size != size:
                logger.error(
                    "serve integrity=%s store=%s: the store's copy has %d bytes, "
                    "its stat says %d; not served",
                    integrity,
                    store.id,
                    reader.size,
                    size,
                    extra=telemetry.fields(store.id, "serve", integrity),
                )
                raise _Reply(502, "The store failed; try again later.")
            length = stop - start
            content_range = f"bytes {start}-{stop - 1}/{size}".encode()
            await _start(
                send, 206, length, [*common, (b"content-range", content_range)]
            )
            await _stream(send, reader, length, integrity, store)


class _Counted:
    """The server's ``send``, counting the response for the metrics on its way.

    ``sriblob.http.requests`` counts each answered request by method and
    status, ``sriblob.http.response.bytes`` the body bytes handed to the
    server (as they go, so a long download shows while it runs). Nothing
    else of the request is recorded: no path, header or query (a presigned
    redirect's URL carries a signature).
    """

    __slots__ = ("_send", "method", "status")

    def __init__(self, send: Send, method: str) -> None:
        self._send = send
        #: Unknown methods are one value: a client can't make up labels.
        self.method = method if method in _METHODS else "_OTHER"
        self.status: int | None = None

    async def __call__(self, message: Message) -> None:
        await self._send(message)
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and self.status is not None:
            telemetry.note_http_bytes(
                self.method, self.status, len(message.get("body", b""))
            )

    def answered(self) -> None:
        """The response went out whole."""
        telemetry.note_http(self.method, self.status or 500)

    def aborted(self, exc: BaseException) -> None:
        """The app raised: before a response (the server answers 500) or in one."""
        kind = type(exc)
        telemetry.note_http(
            self.method, self.status or 500, f"{kind.__module__}.{kind.__qualname__}"
        )


class _ShortBodyError(StoreError):
    """The store streamed another number of bytes than the response announced."""


async def _stream(
    send: Send,
    reader: BlobReader,
    length: int,
    integrity: Integrity,
    store: BlobStore,
) -> None:
    """Send the reader's chunks as the body of *length* bytes, the last one held.

    The last chunk waits until the reader ended (the blob verified) and the
    byte count matched: otherwise the connection ends short, and no client
    takes the body for the blob.
    """
    held: bytes | None = None
    sent = 0
    async for chunk in reader:
        if held is not None:
            await send(_body(held, more=True))
        held = chunk
        sent += len(chunk)
        _check_length(sent, length, integrity, store, final=False)
    _check_length(sent, length, integrity, store, final=True)
    await send(_body(held or b"", more=False))


def _check_length(
    sent: int, length: int, integrity: Integrity, store: BlobStore, *, final: bool
) -> None:
    """Abort a response whose body came out longer, or (at the end) shorter."""
    if sent > length or (final and sent != length):
        logger.error(
            "serve integrity=%s store=%s: the store streamed %s bytes where %d "
            "were announced; the connection is aborted",
            integrity,
            store.id,
            sent if final else f"more than {length}",
            length,
            extra=telemetry.fields(store.id, "serve", integrity),
        )
        msg = f"{store.id!r} streamed {sent} bytes of {integrity}, not {length}."
        raise _ShortBodyError(msg, backend=store.id)


def _app_path(scope: Scope) -> bytes:
    """The request's path below the app's mount point, still percent-encoded.

    Mounted (Starlette's ``Mount``, FastAPI's ``app.mount``), the app's
    ``root_path`` is the mount point. Servers and framework versions differ
    on whether ``path`` includes it (the ASGI spec says it does; Starlette
    before 0.33 stripped it), and ``raw_path`` is the whole request target
    either way, unless a proxy stripped the root path before the server saw
    the request. The raw form keeps ``%2F`` apart from ``/``, so it is used
    when it names the same path, with or without the mount point; else the
    decoded ``path`` is encoded again.
    """
    path: str = scope.get("path") or "/"
    root: str = scope.get("root_path") or ""
    if root and (path == root or path.startswith(root.rstrip("/") + "/")):
        path = path[len(root.rstrip("/")) :]
    raw: bytes | None = scope.get("raw_path")
    if raw:
        raw = raw.split(b"?", 1)[0]
        quoted_root = urllib.parse.quote(root.rstrip("/")).encode("ascii")
        choices = [raw]
        if quoted_root and raw.startswith(quoted_root):
            choices.insert(0, raw[len(quoted_root) :])
        for choice in choices:
            decoded = urllib.parse.unquote(choice.decode("latin-1"), errors="replace")
            if decoded == path:
                return choice
    return urllib.parse.quote(path).encode("ascii")


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {name.lower(): value for name, value in scope.get("headers", [])}


def _digest(integrity: Integrity) -> list[tuple[bytes, bytes]]:
    name = _DIGEST_NAMES.get(integrity.algorithm)
    if name is None:
        return []
    value = base64.b64encode(integrity.digest).decode("ascii")
    return [(b"repr-digest", f"{name}=:{value}:".encode())]


def _matches(header: bytes | None, etag: bytes) -> bool:
    """Whether an If-None-Match (or If-Range) header names our ETag."""
    if header is None:
        return False
    tags = [tag.strip() for tag in header.split(b",")]
    return b"*" in tags or any(tag.removeprefix(b"W/") == etag for tag in tags)


def _range(
    headers: dict[bytes, bytes], etag: bytes, size: int
) -> tuple[int, int] | None:
    """The one byte range asked for, as [start, stop); None for the whole blob.

    Several ranges, or a header that isn't a byte range, are ignored (the
    whole blob is sent, as RFC 9110 allows); so is a Range under an
    ``If-Range`` that names another ETag. An unsatisfiable range is a 416.
    """
    header = headers.get(b"range")
    if header is None:
        return None
    if_range = headers.get(b"if-range")
    if if_range is not None and if_range.strip() != etag:
        return None
    match = _RANGE.fullmatch(header.decode("latin-1").strip())
    if match is None:
        return None
    first, last = (_number(text) for text in match.groups())
    if first is not None:
        start = first
        stop = min(last + 1, size) if last is not None else size
        if last is not None and last < start:
            return None  # not a valid range: ignored
    elif last is not None:
        start, stop = max(size - last, 0), size
        if last == 0:
            start = size  # an empty suffix can't be satisfied
    else:
        return None
    if start >= size:
        raise _Reply(
            416,
            "Range not satisfiable.",
            [(b"content-range", f"bytes */{size}".encode())],
        )
    return start, stop


def _number(digits: str) -> int | None:
    """A range number (None if absent); a huge one is past any blob's end."""
    if not digits:
        return None
    digits = digits.lstrip("0") or "0"
    return _BEYOND if len(digits) > _MAX_DIGITS else int(digits)


class _opened:  # noqa: N801 -- used like a function, as contextlib's are
    """Open the blob, mapping store failures to HTTP answers before any byte."""

    def __init__(
        self,
        store: BlobStore,
        integrity: Integrity,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self._opening = store.open(integrity, start=start, end=end)
        self._integrity = integrity

    async def __aenter__(self) -> BlobReader:
        try:
            return await self._opening.__aenter__()
        except BlobNotFound:
            raise _Reply(404, f"No blob {self._integrity}.") from None
        except StoreError as exc:
            raise _unavailable(self._integrity, exc) from exc

    async def __aexit__(self, *exc_info: object) -> bool | None:
        return await self._opening.__aexit__(*exc_info)  # type: ignore[arg-type]


def _unavailable(integrity: Integrity, exc: StoreError) -> _Reply:
    logger.error(
        "serve integrity=%s failed: %s: %s",
        integrity,
        type(exc).__name__,
        exc,
        extra=telemetry.fields(None, "serve", integrity),
    )
    status = 503 if isinstance(exc, StoreUnavailable) else 502
    return _Reply(status, "The store failed; try again later.")


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


async def _start(
    send: Send, status: int, length: int, headers: list[tuple[bytes, bytes]]
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/octet-stream"),
                (b"content-length", str(length).encode()),
                *headers,
            ],
        }
    )


def _body(data: bytes, *, more: bool) -> Message:
    return {"type": "http.response.body", "body": data, "more_body": more}


async def _answer(
    send: Send, status: int, text: str, headers: list[tuple[bytes, bytes]]
) -> None:
    body = (text + "\n").encode() if text else b""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown: the host opens and closes the stores."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
