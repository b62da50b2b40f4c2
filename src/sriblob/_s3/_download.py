"""The S3 download engine: one GetObject, or byte ranges on several connections.

A :class:`Downloader` is handed a bucket (``_bucket.Bucket``) and turns "the
bytes of this key, from here to there" into chunks in order. S3 serves each
request at a bounded rate (AWS: roughly 85-90 MB/s), so a large object is
read as byte ranges fetched on up to ``read_concurrency`` connections at
once and handed on in order, at most ``read_concurrency`` ranges buffered
whatever the object's size.

By default (no ``read_concurrency`` set) the choice is measured, on any
endpoint: a read starts as one GetObject of everything asked for; once
:data:`PROBE_BYTES` of it arrived, or :data:`PROBE_SECONDS` went by waiting
for them, and at least two ranges' worth remain, a stream whose typical
chunk (the median) arrived slower than :data:`SWITCH_RATE` is closed and the
rest is fetched as ranges on :data:`PARALLEL_READS` connections. A fast
stream (a local server, where one stream outruns the hashing and ranges can
cost the server more) is read to its end. The first range's answer gives the
object's size and ETag; every later range carries ``If-Match`` with that
ETag, so an object replaced mid-read fails the read (412) instead of mixing
two objects' bytes. Each answer's ``Content-Range`` is checked against what
was asked: a short range is an error, and a server that sends more than
asked (s3rver answers ``bytes=0-0`` with the whole object) is cut to the
bytes asked for.

It decides nothing about blobs; :class:`~sriblob.S3BlobStore` does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
import statistics
from typing import TYPE_CHECKING, Any, Final

import attrs
from botocore.exceptions import ClientError

from sriblob import _telemetry as telemetry
from sriblob._source import CHUNK_SIZE
from sriblob.exceptions import StoreError, StoreUnavailable

from ._errors import is_invalid_range, is_missing, is_no_such_key

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Callable

    from ._bucket import Bucket
    from ._http import Limits

logger = logging.getLogger("sriblob")

__all__ = [
    "PARALLEL_READS",
    "PROBE_BYTES",
    "PROBE_SECONDS",
    "SWITCH_RATE",
    "Downloader",
    "Opened",
    "Span",
    "parse_content_range",
]

_CONTENT_RANGE: Final = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
#: Connections a measured read switches to (and the most ranges it buffers).
PARALLEL_READS: Final = 8
#: Bytes of the first stream a measured read waits for before it decides.
PROBE_BYTES: Final = 4 * 1024 * 1024
#: Seconds of waiting on the first stream after which it decides anyway.
PROBE_SECONDS: Final = 0.1
#: Bytes a second below which one stream is slow enough for ranges: AWS
#: serves one request at ~85-90 MB/s; a local server streams far faster.
#: The rate compared is the median of the probe's chunks (each chunk's size
#: over the wait for it): a throttled connection is slow on every chunk, a
#: fast server on a busy machine only on a few (a scheduling stall, a
#: server fetching its next internal chunk), which a total would count.
SWITCH_RATE: Final = 200_000_000


@attrs.frozen
class Span:
    """A ``Content-Range`` answer: bytes *first* to *last* (inclusive) of *total*."""

    first: int
    last: int
    total: int


def parse_content_range(value: object) -> Span | None:
    """Parse ``bytes first-last/total``; None for anything else (or nothing)."""
    if not isinstance(value, str):
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last, total = (int(group) for group in match.groups())
    return Span(first, last, total)


@attrs.define
class Opened:
    """An object being read: its whole size, and the chunks asked for.

    :meth:`aclose` must be called (the store does, on leaving the reader):
    it cancels the ranges in flight and closes every connection they hold.
    """

    size: int
    chunks: AsyncIterator[bytes]
    _bodies: list[Any] = attrs.field(factory=list)

    async def aclose(self) -> None:
        aclose = getattr(self.chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        for body in self._bodies:
            body.close()


@attrs.frozen
class _Object:
    """What a read is of: the key, and the first answer's ETag and size.

    Every later range must match them (``If-Match``, the total in its
    ``Content-Range``), so an object replaced mid-read fails the read.
    """

    key: str
    etag: str | None
    size: int


@attrs.define(eq=False)
class _Range:
    """One range of a parallel read: its bytes so far, filled by its task."""

    start: int
    stop: int
    chunks: collections.deque[bytes] = attrs.Factory(collections.deque)
    received: int = 0
    arrived: asyncio.Event = attrs.Factory(asyncio.Event)
    task: asyncio.Task[None] | None = None

    def put(self, chunk: bytes) -> None:
        self.chunks.append(chunk)
        self.received += len(chunk)
        self.arrived.set()

    async def drain(self) -> AsyncGenerator[bytes]:
        """Yield the range's bytes as they arrive; raise what its task raised."""
        assert self.task is not None  # noqa: S101 -- set when it was queued
        while True:
            # Cleared before looking, so a chunk put meanwhile sets it again.
            self.arrived.clear()
            while self.chunks:
                yield self.chunks.popleft()
            if self.task.done():
                self.task.result()
                if not self.chunks:
                    return
            elif not self.chunks:
                await self.arrived.wait()


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover -- makes this an async generator


class Downloader:
    """Reads objects of one bucket, in one request or in parallel ranges.

    Args:
        bucket: The bucket, through the store's open client.
        limits: The per-request bounds (a body's minimum rate among them).
        operation_timeout: A bound on a whole body, or None.
        part_size: Bytes per range.
        concurrency: Connections one read may use; 1 reads in one request.
            None measures: one request, switched to ranges on
            :data:`PARALLEL_READS` connections if it proves slow.
        max_attempts: Tries per range whose body broke off mid-way.
    """

    def __init__(
        self,
        *,
        bucket: Bucket,
        limits: Limits,
        operation_timeout: float | None,
        part_size: int,
        concurrency: int | None,
        max_attempts: int,
    ) -> None:
        self._bucket = bucket
        self._where = bucket.where
        self._limits = limits
        self._operation_timeout = operation_timeout
        self._part_size = part_size
        self._measures = concurrency is None
        self._concurrency = PARALLEL_READS if concurrency is None else concurrency
        self._max_attempts = max_attempts
        #: Reads this object switched to ranges (measured ones only).
        self.switches = 0

    # -- opening ---------------------------------------------------------

    async def open(
        self, key: str, start: int, end: int | None, check: Callable[[int], int]
    ) -> Opened | None:
        """Start reading *key*'s bytes *start* to *end* (None: its end).

        *check* is handed the object's size once known and returns where the
        read stops (or raises for a range past the end). Returns None if
        there is no such key.
        """
        if self._concurrency == 1 or self._measures:
            first_stop = end
        else:
            first_stop = start + self._part_size
            if end is not None:
                first_stop = min(first_stop, end)
        with self._where.translate("GetObject"):
            try:
                response = await self._get(key, start, first_stop)
            except ClientError as error:
                if is_no_such_key(error):
                    return None
                if not is_invalid_range(error):
                    raise
                response = None
        if response is None:
            return await self._unsatisfiable(key, start, check)
        return self._opened(key, response, start, first_stop, check)

    async def _get(
        self,
        key: str,
        start: int,
        stop: int | None,
        *,
        if_match: str | None = None,
    ) -> Any:
        """Send one GetObject for bytes *start* to *stop* (None: the end).

        Its errors are botocore's: the caller translates them.
        """
        arguments: dict[str, Any] = {"Bucket": self._bucket.name, "Key": key}
        if start > 0 or stop is not None:
            last = "" if stop is None else str(stop - 1)
            arguments["Range"] = f"bytes={start}-{last}"
        if if_match is not None:
            arguments["IfMatch"] = if_match
        return await self._bucket.client.get_object(**arguments)

    async def _unsatisfiable(
        self, key: str, start: int, check: Callable[[int], int]
    ) -> Opened | None:
        """Answer a 416: ask for the size, so *check* can say what was wrong.

        S3 answers 416 to any range of an empty object, and to a range
        starting at or past the end.
        """
        with self._where.translate("HeadObject"):
            try:
                head = await self._bucket.client.head_object(
                    Bucket=self._bucket.name, Key=key
                )
            except ClientError as error:
                if is_missing(error):
                    return None
                raise
        size = int(head["ContentLength"])
        if check(size) != start:
            what = (
                f"the server refused bytes from {start} of an object of {size} "
                "bytes (416)"
            )
            raise self._where.failed(StoreError, "GetObject", what)
        return Opened(size, _nothing())

    def _opened(
        self,
        key: str,
        response: Any,
        start: int,
        asked_stop: int | None,
        check: Callable[[int], int],
    ) -> Opened:
        """Plan the read from the first answer: its size, ETag and range."""
        body = response["Body"]
        try:
            span, covered, stop = self._plan(response, start, asked_stop, check)
        except BaseException:
            body.close()
            raise
        skip = start - span.first
        chunks: AsyncIterator[bytes] = self._body(
            body, skip=skip, count=covered - start
        )
        whole = _Object(key, response.get("ETag"), span.total)
        if self._measures and covered == stop:
            chunks = self._measured(body, whole, skip=skip, start=start, stop=stop)
        elif covered < stop:
            chunks = self._ranged(chunks, whole, start=covered, stop=stop)
        return Opened(span.total, chunks, [body])

    def _plan(
        self,
        response: Any,
        start: int,
        asked_stop: int | None,
        check: Callable[[int], int],
    ) -> tuple[Span, int, int]:
        """Return the first answer's span, where its bytes end, where the read does."""
        length = int(response.get("ContentLength", 0))
        span = parse_content_range(response.get("ContentRange"))
        stop = check(length if span is None else span.total)
        if span is None:
            # A 200: the whole object (no range asked, or it was ignored).
            return Span(0, length - 1, length), stop, stop
        # What this answer covers, up to what was asked even if the server
        # sent more (s3rver answers bytes=0-0 with the whole object).
        covered = min(span.last + 1, stop)
        if asked_stop is not None:
            covered = min(covered, asked_stop)
        if (
            span.last + 1 - span.first != length
            or span.first > start
            or (covered <= start < stop)
            or (covered < stop and (self._concurrency == 1 or self._measures))
        ):
            raise self._bad_range(start, asked_stop, span, length)
        return span, covered, stop

    def _bad_range(
        self, start: int, stop: int | None, span: Span, length: int
    ) -> StoreError:
        asked = f"{start}-{'' if stop is None else stop - 1}"
        what = (
            f"asked for bytes {asked}, the server answered bytes "
            f"{span.first}-{span.last} of {span.total} with {length} bytes"
        )
        return self._where.failed(StoreUnavailable, "GetObject", what)

    # -- measuring -------------------------------------------------------

    async def _measured(
        self, body: Any, whole: _Object, *, skip: int, start: int, stop: int
    ) -> AsyncGenerator[bytes]:
        """Yield bytes *start* to *stop* of *body*, or switch to ranges.

        A chunk's rate is its size over the time spent waiting for it (not
        the time the consumer took with the one before, during which bytes
        keep arriving): a consumer slower than the network never looks like
        a slow network. The median of the probe's chunks is compared.
        """
        loop = asyncio.get_running_loop()
        first = self._body(body, skip=skip, count=stop - start)
        position = start
        waited = 0.0
        rates: list[float] | None = []
        async with contextlib.aclosing(first):
            while True:
                began = loop.time()
                chunk = await anext(first, None)
                wait = loop.time() - began
                if chunk is None:
                    return
                yield chunk
                position += len(chunk)
                if rates is None:
                    continue
                waited += wait
                rates.append(len(chunk) / max(wait, 1e-6))
                if position - start < PROBE_BYTES and waited < PROBE_SECONDS:
                    continue
                rate, rates = statistics.median(rates), None
                switch = rate < SWITCH_RATE and stop - position >= 2 * self._part_size
                logger.debug(
                    "read key=%s: %d bytes, %.0f MB/s a chunk (median); %s",
                    whole.key,
                    position - start,
                    rate / 1e6,
                    "switching to ranges" if switch else "one stream",
                    extra=telemetry.fields(self._where.backend, "get"),
                )
                if switch:
                    break
        # Slow, and enough left: drop this stream, fetch the rest as ranges.
        body.close()
        self.switches += 1
        ranged = self._ranged(_nothing(), whole, start=position, stop=stop)
        async with contextlib.aclosing(ranged):
            async for chunk in ranged:
                yield chunk

    # -- ranges ----------------------------------------------------------

    async def _ranged(
        self, first: AsyncIterator[bytes], whole: _Object, *, start: int, stop: int
    ) -> AsyncGenerator[bytes]:
        """Yield *first*, then bytes *start* to *stop* fetched as ranges.

        Ranges are fetched while *first* streams, ``concurrency`` requests in
        flight in all. The range whose turn it is streams on as its bytes
        arrive; the others collect theirs until their turn, and the next
        range starts as one is finished, so at most ``concurrency - 1``
        ranges are held besides the one streaming.
        """
        step = self._part_size
        starts = iter(range(start, stop, step))
        pending: collections.deque[_Range] = collections.deque()

        def refill(limit: int) -> None:
            while len(pending) < limit:
                begin = next(starts, None)
                if begin is None:
                    return
                part = _Range(begin, min(begin + step, stop))
                part.task = asyncio.ensure_future(self._fill(part, whole))
                pending.append(part)

        try:
            refill(self._concurrency - 1)
            async for chunk in first:
                yield chunk
            refill(self._concurrency)
            while pending:
                async with contextlib.aclosing(pending[0].drain()) as chunks:
                    async for chunk in chunks:
                        yield chunk
                pending.popleft()
                refill(self._concurrency)
        finally:
            tasks = [part.task for part in pending if part.task is not None]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            aclose = getattr(first, "aclose", None)
            if aclose is not None:
                await aclose()

    async def _fill(self, part: _Range, whole: _Object) -> None:
        """Fetch *part* of the object *whole* into its buffer.

        A body that breaks off mid-way is fetched again from where it broke,
        up to ``max_attempts`` in all (botocore retries only before the body).
        """
        try:
            for attempt in range(1, self._max_attempts + 1):
                try:
                    begin = part.start + part.received
                    # Closed here, not left to the garbage collector, whose
                    # finalizer would schedule a stray task after a cancel.
                    async with contextlib.aclosing(
                        self._range_body(whole, begin, part.stop)
                    ) as chunks:
                        async for chunk in chunks:
                            part.put(chunk)
                except StoreUnavailable:
                    if attempt == self._max_attempts:
                        raise
                else:
                    return
        finally:
            part.arrived.set()

    async def _range_body(
        self, whole: _Object, start: int, stop: int
    ) -> AsyncGenerator[bytes]:
        """Yield bytes *start* to *stop* of the object *whole*, still the same."""
        etag, size = whole.etag, whole.size
        with self._where.translate("GetObject"):
            response = await self._get(whole.key, start, stop, if_match=etag)
        body = response["Body"]
        try:
            length = int(response.get("ContentLength", 0))
            span = parse_content_range(response.get("ContentRange"))
            if span is None:
                span = Span(0, length - 1, length)
            now = response.get("ETag")
            if span.total != size or (etag is not None and now not in (None, etag)):
                # If-Match should have made it a 412; not every server checks.
                what = (
                    f"the object changed while it was read (from {size} bytes, "
                    f"ETag {etag}, to {span.total} bytes, ETag {now}); read it again"
                )
                raise self._where.failed(StoreError, "GetObject", what)
            if (
                span.first > start
                or span.last + 1 < stop
                or span.last + 1 - span.first != length
            ):
                raise self._bad_range(start, stop, span, length)
            skip = start - span.first
            async with contextlib.aclosing(
                self._body(body, skip=skip, count=stop - start)
            ) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            body.close()

    # -- bodies ----------------------------------------------------------

    def stalled(self, size: int | None, rate: int) -> StoreUnavailable:
        """The error for a body slower than *rate* bytes a second."""
        what = (
            f"the body of {size} bytes arrived slower than {rate} bytes/s "
            "(min_transfer_rate); the server stalled"
        )
        return self._where.failed(StoreUnavailable, "GetObject", what)

    def short(self, received: int, expected: int) -> StoreUnavailable:
        """The error for a body that ended after *received* of *expected* bytes."""
        what = f"the body ended after {received} of {expected} bytes"
        return self._where.failed(StoreUnavailable, "GetObject", what)

    async def _body(self, body: Any, *, skip: int, count: int) -> AsyncGenerator[bytes]:
        """Yield *count* bytes of *body* after its first *skip*, in ~1 MiB chunks.

        A body that ends before is an error, even if a layer below let it
        pass; bytes after the ones asked for are left unread (closing the
        body drops them with the connection). The whole body must arrive
        within the time ``min_transfer_rate`` allows for its size (and
        ``operation_timeout``, if set).
        """
        loop = asyncio.get_running_loop()
        wanted = skip + count
        deadline = loop.time() + self._limits.body(wanted)
        if self._operation_timeout is not None:
            deadline = min(deadline, loop.time() + self._operation_timeout)
        pieces: list[bytes] = []
        buffered = 0
        received = 0
        while received < wanted:
            if received < skip:
                ask = min(CHUNK_SIZE, skip - received)
            else:
                ask = min(CHUNK_SIZE - buffered, wanted - received)
            with self._where.translate("GetObject"):
                try:
                    async with asyncio.timeout_at(deadline):
                        piece: bytes = await body.read(ask)
                except TimeoutError:
                    raise self.stalled(wanted, self._limits.min_rate) from None
            if not piece:
                raise self.short(received, wanted)
            received += len(piece)
            if received <= skip:
                continue  # asked for at most the bytes left to skip
            pieces.append(piece)
            buffered += len(piece)
            if buffered >= CHUNK_SIZE and received < wanted:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, buffered = [], 0
        if pieces:
            yield pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def read_bytes(self, key: str, check: Callable[[int], int]) -> bytes | None:
        """Return the whole object (None if absent), fetched as :meth:`open` does."""
        opened = await self.open(key, 0, None, check)
        if opened is None:
            return None
        try:
            return b"".join([chunk async for chunk in opened.chunks])
        finally:
            await opened.aclose()
