"""The S3 upload engine: single puts, multipart uploads, copies and sweeps.

An :class:`Uploader` is handed a bucket (``_bucket.Bucket``) and owns
everything between "these bytes go under this key" and the key holding
them: one PutObject, or a multipart upload with a bounded number of parts in
flight that is aborted on any error, the orphan-sweep protocol for lost
CreateMultipartUpload answers, and server-side copies with a client-side
fallback. It decides nothing about blobs; :class:`~sriblob.S3BlobStore` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import attrs

from sriblob import _telemetry as telemetry
from sriblob._config import MAX_PART_SIZE, MAX_PARTS, MiB
from sriblob._tasks import wait_out
from sriblob.exceptions import StoreError, StoreUnavailable

from ._errors import TRANSLATED, is_no_such_upload, is_not_implemented

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CopySourceTypeDef,
    )

    from sriblob._compat import Buffer

    from ._bucket import Bucket

__all__ = [
    "BLIND_PUT_MAX",
    "Part",
    "Uploader",
    "close_iterator",
    "part_size_for",
    "rechunk",
    "split_first",
    "streamed_part_size",
    "wait_out",
]

#: One part of an upload: a slice of bytes-like input, or a filled buffer.
Part: TypeAlias = "Buffer | io.BytesIO"

logger = logging.getLogger("sriblob")

#: Objects up to this size are moved with one CopyObject (S3's limit).
COPY_THRESHOLD: Final = MAX_PART_SIZE
#: Part size for server-side multipart copies (no client memory involved).
COPY_PART_SIZE: Final = 512 * MiB
#: Streamed parts keep the configured size for this many parts, then double,
#: so a stream of unknown size can grow past ``part_size * 10,000``.
PARTS_PER_SIZE_STEP: Final = 1000
#: Blobs of known size up to this many bytes are put without asking first
#: whether the bucket has them: the HeadObject would cost as much as the
#: PutObject it might save (a round trip and ~2 ms of botocore CPU each), and
#: checking a stored copy would cost it too. The PutObject replaces whatever
#: is stored with the verified bytes. Larger blobs are looked up first, so an
#: intact stored one (its ETag is theirs) isn't re-sent.
BLIND_PUT_MAX: Final = 256 * 1024
#: Seconds after a retried CreateMultipartUpload returned (or failed for
#: good) before the key's uploads are swept a last time: an attempt the
#: client gave up on (a reset, a timeout) can still reach the server later
#: and create an upload nobody knows the id of.
LATE_SWEEP_DELAY: Final = 2.0


def body(data: Part) -> io.BytesIO:
    """Return *data* as a request body, copying only slices of larger buffers.

    A file object, because aiohttp warns (and we treat warnings as errors)
    that large raw bytes bodies may block the event loop; a ``BytesIO`` is
    sent in chunks. ``BytesIO(bytes)`` shares the bytes instead of copying.
    """
    if isinstance(data, io.BytesIO):
        data.seek(0)
        return data
    view = memoryview(data)
    if isinstance(view.obj, bytes) and len(view.obj) == view.nbytes:
        return io.BytesIO(view.obj)
    return io.BytesIO(view)


def _round_up(size: int, unit: int) -> int:
    return -(-size // unit) * unit


def part_size_for(size: int | None, configured: int) -> int:
    """Return the part size for a blob of *size* bytes (None: unknown).

    A known size that would need more than 10,000 parts of *configured*
    bytes gets the smallest whole-MiB part size that fits.
    """
    if size is None or size <= configured * MAX_PARTS:
        return configured
    return min(MAX_PART_SIZE, _round_up(math.ceil(size / MAX_PARTS), MiB))


def streamed_part_size(number: int, configured: int) -> int:
    """Return the size of part *number* (from 1) of a stream of unknown size.

    The configured size for the first 1,000 parts, doubling every 1,000
    parts after that (capped at 5 GiB): memory stays at the configured size
    for all but huge streams, and from the default 8 MiB, 10,000 parts reach
    S3's 5 TiB object limit.
    """
    step = (number - 1) // PARTS_PER_SIZE_STEP
    return min(MAX_PART_SIZE, configured << step)


async def rechunk(
    chunks: AsyncIterator[Buffer], size_of: Callable[[int], int]
) -> AsyncIterator[io.BytesIO]:
    """Regroup *chunks* into parts; part *n* has ``size_of(n)`` bytes.

    The last part may be shorter; it is yielded only after *chunks* ended
    (which is when a :class:`~sriblob.BlobSource` has verified the data).
    """
    number = 1
    target = size_of(number)
    part = io.BytesIO()
    async for chunk in chunks:
        view = memoryview(chunk).cast("B")
        offset = 0
        while offset < view.nbytes:
            take = min(target - part.tell(), view.nbytes - offset)
            part.write(view[offset : offset + take])
            offset += take
            if part.tell() == target:
                yield part
                number += 1
                target = size_of(number)
                part = io.BytesIO()
    if part.tell():
        yield part


async def slices(view: memoryview, size: int) -> AsyncIterator[memoryview]:
    """Yield *view* in parts of *size* bytes."""
    for start in range(0, view.nbytes, size):
        yield view[start : start + size]


async def _prepend(first: list[Part], rest: AsyncIterator[Part]) -> AsyncIterator[Part]:
    for part in first:
        yield part
    async for part in rest:
        yield part


async def split_first(
    parts: AsyncIterator[Part],
) -> tuple[Part | None, AsyncIterator[Part] | None]:
    """Read up to two parts ahead to tell a one-part stream from a longer one.

    Returns ``(the only part or None if empty, None)`` when the stream has at
    most one part, else ``(None, every part)``. Memory stays within two
    parts until the caller starts a multipart upload.
    """
    first = await anext(parts, None)
    second = None if first is None else await anext(parts, None)
    if second is None:
        return first, None
    assert first is not None  # noqa: S101 -- second implies first
    return None, _prepend([first, second], parts)


async def close_iterator(iterator: AsyncIterator[Any]) -> None:
    """Close *iterator* if it is an async generator, releasing its source."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _finish(call: Awaitable[Any]) -> Any:
    """Run *call* to its end even if cancelled; return its result or raise."""
    task = asyncio.ensure_future(call)
    try:
        await wait_out(task)
    except asyncio.CancelledError:
        if not task.cancelled():
            task.exception()  # seen: the cancellation is what propagates
        raise
    return task.result()


@attrs.define
class Uploader:
    """Puts bytes under keys of one bucket, through an open client.

    Attributes:
        bucket: The bucket, through the store's open client.
        part_size: The configured multipart part size.
        max_concurrency: Parts in flight per upload.
        copy_threshold: Objects above this size are copied in parts.
        copy_part_size: The part size of a multipart copy.
        unaborted: Uploads whose abort failed (the server was down, say),
            as ``(key, upload id)``: retried before the next multipart upload.
    """

    bucket: Bucket
    part_size: int
    max_concurrency: int
    copy_threshold: int = COPY_THRESHOLD
    copy_part_size: int = COPY_PART_SIZE
    unaborted: set[tuple[str, str]] = attrs.Factory(set)

    # -- one request -----------------------------------------------------------

    async def put_object(self, key: str, data: Part) -> None:
        """Put *data* under *key* in one PutObject (replacing what is there)."""
        with self.bucket.where.translate("PutObject"):
            await self.bucket.client.put_object(
                Bucket=self.bucket.name, Key=key, Body=body(data)
            )

    async def delete_key(self, key: str) -> None:
        """Delete *key* (S3 answers the same whether it existed or not)."""
        with self.bucket.where.translate("DeleteObject"):
            await self.bucket.client.delete_object(Bucket=self.bucket.name, Key=key)

    # -- parts -----------------------------------------------------------------

    async def write(
        self,
        key: str,
        parts: AsyncIterator[Part],
        *,
        before_complete: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Store *parts* under *key*: one PutObject if there is just one part.

        *before_complete* is awaited once every part has been read, right
        before the object becomes visible; if it raises, nothing is stored.
        """
        only, many = await split_first(parts)
        if many is None:
            if before_complete is not None:
                await before_complete()
            await self.put_object(key, b"" if only is None else only)
        else:
            await self.multipart(key, many, before_complete=before_complete)

    async def multipart(
        self,
        key: str,
        parts: AsyncIterator[Part],
        *,
        before_complete: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Upload *parts* to *key* as a multipart upload, aborted on any error.

        *before_complete* is awaited after the last part went up and before
        CompleteMultipartUpload; if it raises, the upload is aborted.

        The CompleteMultipartUpload runs to its end even if the caller is
        cancelled meanwhile: it can't be unsent, and whoever cleans up
        afterwards (the staging delete) must come after it, or the upload
        could complete behind the cleanup's back.
        """
        await self.retry_aborts()
        async with self._upload(key) as upload_id:
            completed = await self._upload_parts(key, upload_id, parts)
            if before_complete is not None:
                await before_complete()
            await _finish(self._complete(key, upload_id, completed))

    async def retry_aborts(self) -> None:
        """Abort again the uploads whose abort failed; keep those that fail again."""
        for key, upload_id in list(self.unaborted):
            self.unaborted.discard((key, upload_id))
            await self.abort(key, upload_id)

    async def _complete(
        self, key: str, upload_id: str, parts: list[CompletedPartTypeDef]
    ) -> None:
        with self.bucket.where.translate("CompleteMultipartUpload"):
            await self.bucket.client.complete_multipart_upload(
                Bucket=self.bucket.name,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
            )

    async def _create_upload(self, key: str) -> tuple[str, float | None]:
        """Start a multipart upload of *key*.

        Return its id and, when botocore had to retry the call, the loop time
        it returned at: an earlier attempt may have created an upload whose
        answer was lost, so nobody knows its id and it would stay forever.
        Those are swept here, and again when the upload ends, no earlier than
        :data:`LATE_SWEEP_DELAY` after this call returned (see
        :meth:`_sweep_late`), since an abandoned attempt can land late. When
        the call failed for good on a connection or server error, the late
        sweep runs before the error propagates, for the same reason.
        """
        try:
            with self.bucket.where.translate("CreateMultipartUpload"):
                created = await self.bucket.client.create_multipart_upload(
                    Bucket=self.bucket.name, Key=key
                )
        except BaseException as error:
            await wait_out(asyncio.ensure_future(self._sweep_uploads(key, None)))
            if isinstance(error, StoreUnavailable):
                await self._sweep_late(key, since=asyncio.get_running_loop().time())
            raise
        upload_id = created["UploadId"]
        if not created.get("ResponseMetadata", {}).get("RetryAttempts", 0):
            return upload_id, None
        returned = asyncio.get_running_loop().time()
        await self._sweep_uploads(key, upload_id)
        return upload_id, returned

    async def _sweep_late(self, key: str, *, since: float, wait: bool = True) -> None:
        """Sweep *key*'s uploads once :data:`LATE_SWEEP_DELAY` has passed *since*.

        A cancellation (or ``wait=False``) cuts the wait short; the sweep
        itself always runs.
        """
        try:
            delay = since + LATE_SWEEP_DELAY - asyncio.get_running_loop().time()
            if wait and delay > 0:
                await asyncio.sleep(delay)
        finally:
            await wait_out(asyncio.ensure_future(self._sweep_uploads(key, None)))

    async def _sweep_uploads(self, key: str, keep: str | None) -> None:
        """Abort the uploads of *key* but *keep*, logging what can't be aborted.

        Staging keys are unique to one call, so every other upload of one is
        an orphan. A blob's final key may also be in a concurrent writer's
        upload; aborting that one makes its writer fail and retry, which
        loses nothing, while an orphan would be billed forever.
        """
        try:
            listed = await self.bucket.client.list_multipart_uploads(
                Bucket=self.bucket.name, Prefix=key
            )
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == key and upload.get("UploadId") != keep:
                    await self.abort(key, upload["UploadId"])
        except TRANSLATED as error:
            logger.warning(
                "orphaned upload sweep backend=%s bucket=%s key=%s failed: %r",
                self.bucket.backend,
                self.bucket.name,
                key,
                error,
                extra=telemetry.fields(self.bucket.backend, "put"),
            )

    @contextlib.asynccontextmanager
    async def _upload(self, key: str) -> AsyncIterator[str]:
        """Run a multipart upload of *key*: yield its id, abort it on any error.

        The body must complete the upload. When creating it took retries, the
        key's uploads are swept again at the end (see :meth:`_create_upload`).
        """
        upload_id, retried_at = await self._create_upload(key)
        try:
            yield upload_id
        except BaseException as error:
            await self.abort(key, upload_id)
            if retried_at is not None:
                cancelled = isinstance(error, asyncio.CancelledError)
                await self._sweep_late(key, since=retried_at, wait=not cancelled)
            raise
        if retried_at is not None:
            await self._sweep_late(key, since=retried_at)

    async def abort(self, key: str, upload_id: str) -> None:
        """Abort an upload, to the end even if cancelled; log a failure."""
        abort = asyncio.ensure_future(
            self.bucket.client.abort_multipart_upload(
                Bucket=self.bucket.name, Key=key, UploadId=upload_id
            )
        )
        await wait_out(abort)
        if not abort.cancelled() and (error := abort.exception()) is not None:
            if is_no_such_upload(error):
                return  # completed after all, or already gone
            self.unaborted.add((key, upload_id))
            logger.warning(
                "abort backend=%s bucket=%s key=%s upload_id=%s failed: %r",
                self.bucket.backend,
                self.bucket.name,
                key,
                upload_id,
                error,
                extra=telemetry.fields(self.bucket.backend, "put"),
            )

    async def _upload_parts(
        self, key: str, upload_id: str, parts: AsyncIterator[Part]
    ) -> list[CompletedPartTypeDef]:
        """Upload *parts* with at most ``max_concurrency`` in flight."""
        limit = self.max_concurrency
        etags: dict[int, str] = {}
        pending: set[asyncio.Task[None]] = set()

        async def wait_for_one() -> None:
            nonlocal pending
            done, pending = await asyncio.wait(
                pending, return_when=asyncio.FIRST_COMPLETED
            )
            errors = [task.exception() for task in done]
            for error in errors:
                if error is not None:
                    raise error

        try:
            number = 0
            async for part in parts:
                number += 1
                if number > MAX_PARTS:
                    msg = (
                        f"The blob needs more than {MAX_PARTS} parts; raise "
                        "part_size in the S3 configuration."
                    )
                    raise ValueError(msg)
                while len(pending) >= limit:
                    await wait_for_one()
                pending.add(
                    asyncio.create_task(
                        self._upload_part(key, upload_id, number, part, etags)
                    )
                )
            while pending:
                await wait_for_one()
        finally:
            if pending:
                for task in pending:
                    task.cancel()
                await wait_out(asyncio.gather(*pending, return_exceptions=True))
        return [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]

    async def _upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        part: Part,
        etags: dict[int, str],
    ) -> None:
        with self.bucket.where.translate("UploadPart"):
            uploaded = await self.bucket.client.upload_part(
                Bucket=self.bucket.name,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body(part),
            )
        etags[number] = uploaded["ETag"]

    # -- copies ----------------------------------------------------------------

    async def copy(
        self,
        source_key: str,
        key: str,
        size: int,
        read: Callable[[str], AsyncIterator[bytes]],
    ) -> None:
        """Copy *source_key* (of *size* bytes) to *key*, server-side if possible.

        *read* streams an object down, for servers without UploadPartCopy.
        """
        copy_source: CopySourceTypeDef = {"Bucket": self.bucket.name, "Key": source_key}
        if size <= self.copy_threshold:
            with self.bucket.where.translate("CopyObject"):
                await _finish(
                    self.bucket.client.copy_object(
                        Bucket=self.bucket.name, Key=key, CopySource=copy_source
                    )
                )
            return
        try:
            await self._copy_in_parts(copy_source, key, size)
        except StoreError as error:
            if not is_not_implemented(error.__cause__):
                raise
            # Small servers (s3rver) lack UploadPartCopy: read the staged
            # object back and upload it again, part by part. It was verified
            # on its way in, as a server-side copy would trust it too.
            logger.info(
                "copy backend=%s bucket=%s key=%s: UploadPartCopy not "
                "implemented, copying through the client",
                self.bucket.backend,
                self.bucket.name,
                key,
                extra=telemetry.fields(self.bucket.backend, "put"),
            )
            parts = rechunk(
                read(source_key),
                lambda number: streamed_part_size(number, self.part_size),
            )
            try:
                await self.write(key, parts)
            finally:
                await close_iterator(parts)

    async def _copy_in_parts(
        self, copy_source: CopySourceTypeDef, key: str, size: int
    ) -> None:
        """Copy *copy_source* to *key* with UploadPartCopy (above 5 GiB)."""
        part_size = part_size_for(size, self.copy_part_size)
        ranges = [
            f"bytes={start}-{min(start + part_size, size) - 1}"
            for start in range(0, size, part_size)
        ]
        async with self._upload(key) as upload_id:
            etags: dict[int, str] = {}
            semaphore = asyncio.Semaphore(self.max_concurrency)

            async def copy_part(number: int, byte_range: str) -> None:
                async with semaphore:
                    with self.bucket.where.translate("UploadPartCopy"):
                        copied = await self.bucket.client.upload_part_copy(
                            Bucket=self.bucket.name,
                            Key=key,
                            UploadId=upload_id,
                            PartNumber=number,
                            CopySource=copy_source,
                            CopySourceRange=byte_range,
                        )
                etags[number] = copied["CopyPartResult"]["ETag"]

            tasks = [
                asyncio.ensure_future(copy_part(number, byte_range))
                for number, byte_range in enumerate(ranges, start=1)
            ]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await wait_out(asyncio.gather(*tasks, return_exceptions=True))
            await _finish(
                self._complete(
                    key,
                    upload_id,
                    [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)],
                )
            )
