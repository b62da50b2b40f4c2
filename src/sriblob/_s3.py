"""The S3 backend, on aioboto3: AWS S3 and S3-compatible servers."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import io
import logging
import math
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Final, NoReturn, TypeAlias

import aioboto3
import aiohttp
from aiobotocore.config import AioConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ._config import MAX_PART_SIZE, MAX_PARTS, MiB, S3StoreConfig
from ._store import CHUNK_SIZE, BlobInfo, BlobSource, BlobStore
from .exceptions import AccessDenied, BucketNotFound, StoreError, StoreUnavailable
from .keys import integrity_to_key, key_to_integrity

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator

    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import (
        CompletedPartTypeDef,
        CopySourceTypeDef,
        GetObjectOutputTypeDef,
    )

    from ._compat import Buffer
    from ._integrity import Integrity

__all__ = ["S3BlobStore"]

#: One part of an upload: a slice of bytes-like input, or a filled buffer.
Part: TypeAlias = "Buffer | io.BytesIO"

logger = logging.getLogger("sriblob")

#: Where ``add()`` streams blobs whose hash isn't known yet, under the key
#: prefix. Not lowercase hex, so the key codec (and ``list()``) skips it.
STAGING_DIR: Final = ".staging/"
#: Objects up to this size are moved with one CopyObject (S3's limit).
COPY_THRESHOLD: Final = MAX_PART_SIZE
#: Part size for server-side multipart copies (no client memory involved).
COPY_PART_SIZE: Final = 512 * MiB
#: Streamed parts keep the configured size for this many parts, then double,
#: so a stream of unknown size can grow past ``part_size * 10,000``.
PARTS_PER_SIZE_STEP: Final = 1000
#: Blobs of known size up to this many bytes are put without asking first
#: whether the bucket has them: the HeadObject would cost as much as the
#: PutObject it might save (a round trip and ~2 ms of botocore CPU each).
#: Instead the PutObject is conditional (``If-None-Match: *``), so the server
#: keeps a stored object untouched. Larger blobs are checked first, so a
#: stored one isn't re-sent.
BLIND_PUT_MAX: Final = 256 * 1024
#: Answers to a conditional create that mean "already there".
_ALREADY_STORED: Final = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
#: Connections beyond ``max_concurrency``, for small calls made while an
#: upload keeps its parts in flight.
EXTRA_CONNECTIONS: Final = 4
#: Seconds after a retried CreateMultipartUpload returned (or failed for
#: good) before the key's uploads are swept a last time: an attempt the
#: client gave up on (a reset, a timeout) can still reach the server later
#: and create an upload nobody knows the id of.
LATE_SWEEP_DELAY: Final = 2.0

_DENIED_CODES: Final = frozenset(
    {
        "AccessDenied",
        "AccountProblem",
        "AllAccessDisabled",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
    }
)
_UNAVAILABLE_CODES: Final = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
    }
)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _not_implemented(error: BaseException | None) -> bool:
    """Whether *error* says the server lacks the operation (501 NotImplemented)."""
    return isinstance(error, ClientError) and (
        _code(error) == "NotImplemented" or _status(error) == 501  # noqa: PLR2004
    )


def _signs_payloads(config: S3StoreConfig) -> bool:
    """Whether request bodies are SHA-256 signed: by default over http only."""
    if config.sign_payloads is not None:
        return config.sign_payloads
    endpoint = config.endpoint or "https://"
    return not endpoint.lower().startswith("https://")


def _body(data: Part) -> io.BytesIO:
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


async def _rechunk(
    chunks: AsyncIterator[Buffer], size_of: Callable[[int], int]
) -> AsyncIterator[io.BytesIO]:
    """Regroup *chunks* into parts; part *n* has ``size_of(n)`` bytes.

    The last part may be shorter; it is yielded only after *chunks* ended
    (which is when a :class:`BlobSource` has verified the data).
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


async def _prepend(first: list[Part], rest: AsyncIterator[Part]) -> AsyncIterator[Part]:
    for part in first:
        yield part
    async for part in rest:
        yield part


async def _close(iterator: AsyncIterator[Any]) -> None:
    """Close *iterator* if it is an async generator, releasing its source."""
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _wait_out(task: asyncio.Future[Any]) -> None:
    """Await *task* to the end even if we are cancelled meanwhile.

    Cleanup (aborting an upload, deleting a staging key) must finish before
    the error that caused it propagates; a cancellation that arrives during
    it is re-raised afterwards.
    """
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # noqa: BLE001, S110 -- the caller reads task.exception()
            pass
    if cancelled:
        raise asyncio.CancelledError


class S3BlobStore(BlobStore):
    """A store in an S3 bucket (AWS, MinIO, Ceph RGW, other S3-compatibles).

    Blobs live under ``config.key_prefix`` + hex of the integrity (see
    :mod:`sriblob.keys`), the layout of the original script-package store.
    Open it with ``async with``: that creates one aioboto3 session and one
    S3 client, shared by every call, whose connection pool fits
    ``config.max_concurrency``; :meth:`aclose` closes it.

    ::

        async with S3BlobStore(config) as store:
            integrity = await store.add(data)

    Small blobs go up in one PutObject; large and streamed ones as multipart
    uploads with a bounded number of parts in flight, so memory stays around
    ``part_size * (max_concurrency + 1)`` whatever the size. A failed,
    mismatched or cancelled upload is aborted and leaves nothing behind.

    Args:
        config: Where the bucket is and how to talk to it.
        id: The store's id in a registry.
        verify: See :class:`~sriblob.BlobStore`.
        max_blob_size: See :class:`~sriblob.BlobStore`.

    Raises:
        TypeError: *config* is not an :class:`~sriblob.S3StoreConfig`.

    Operations raise :class:`~sriblob.AccessDenied`,
    :class:`~sriblob.BucketNotFound` or :class:`~sriblob.StoreUnavailable`
    (after the configured retries), naming the bucket and endpoint, never
    the secret.

    .. versionadded:: 0.1.0
    """

    _requires_start = True
    #: Objects above this size are moved into place by a multipart copy.
    _copy_threshold: int = COPY_THRESHOLD
    #: The part size of a multipart copy (grown to fit 10,000 parts).
    _copy_part_size: int = COPY_PART_SIZE

    def __init__(
        self,
        config: S3StoreConfig,
        *,
        id: str = "s3",
        verify: bool = True,
        max_blob_size: int | None = None,
    ) -> None:
        if not isinstance(config, S3StoreConfig):
            msg = (
                "S3BlobStore needs an S3StoreConfig, not "
                f"{type(config).__name__}; build one with S3StoreConfig(...) "
                "or load_s3_config_from_env()."
            )
            raise TypeError(msg)
        super().__init__(id=id, verify=verify, max_blob_size=max_blob_size)
        self._config = config
        self._prefix = config.key_prefix
        self._staging_prefix = config.key_prefix + STAGING_DIR
        self._endpoint = config.endpoint
        self._client_context: contextlib.AsyncExitStack | None = None
        self._client_or_none: S3Client | None = None
        self._bucket_seen = False
        #: Whether the server honours If-None-Match: * (False after a 501).
        self._conditional_writes = True

    def __del__(self) -> None:
        # getattr: __init__ may have raised before setting everything.
        if getattr(self, "_client_context", None) is not None and not self._closed:
            msg = (
                f"{self!r} was never closed; use `async with S3BlobStore(...)` "
                "or `await store.aclose()` to close its S3 client and connections."
            )
            warnings.warn(msg, ResourceWarning, source=self, stacklevel=1)

    @property
    def config(self) -> S3StoreConfig:
        """The store's configuration."""
        return self._config

    def _repr_details(self) -> str:
        endpoint = self._endpoint or "AWS"
        return f"bucket={self._config.bucket!r} endpoint={endpoint!r}"

    # -- lifecycle -----------------------------------------------------------

    def _client_config(self) -> AioConfig:
        config = self._config
        return AioConfig(
            max_pool_connections=config.max_concurrency + EXTRA_CONNECTIONS,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
            s3={
                "addressing_style": "path" if config.force_path_style else "virtual",
                "payload_signing_enabled": _signs_payloads(config),
            },
            request_checksum_calculation=config.checksum_mode,
            response_checksum_validation=config.checksum_mode,
        )

    async def _start(self) -> None:
        config = self._config
        session = aioboto3.Session(
            aws_access_key_id=config.access_key_id,
            aws_secret_access_key=config.secret_access_key,
            region_name=config.region,
        )
        async with contextlib.AsyncExitStack() as stack:
            client = await stack.enter_async_context(
                session.client(
                    "s3", endpoint_url=config.endpoint, config=self._client_config()
                )
            )
            self._client_or_none = client
            self._endpoint = client.meta.endpoint_url
            self._client_context = stack.pop_all()

    async def _stop(self) -> None:
        context, self._client_context = self._client_context, None
        self._client_or_none = None
        if context is not None:
            await context.aclose()

    @property
    def _client(self) -> S3Client:
        client = self._client_or_none
        if client is None:  # pragma: no cover -- BlobStore._check_usable guards
            msg = f"{self!r} is not open; use `async with S3BlobStore(...)`."
            raise RuntimeError(msg)
        return client

    # -- errors ------------------------------------------------------------

    def _fail(self, error: Exception, action: str) -> NoReturn:
        """Raise the sriblob exception for a botocore/aiohttp *error*."""
        bucket = self._config.bucket
        endpoint = self._endpoint or "AWS"
        where = f"bucket {bucket!r} at {endpoint}"
        kind: type[StoreError]
        if isinstance(error, ClientError):
            code, status = _code(error), _status(error)
            # HEAD answers carry no error code: a 404 to HeadBucket is the bucket.
            if code == "NoSuchBucket" or (action == "HeadBucket" and status == 404):  # noqa: PLR2004
                kind, what = BucketNotFound, "the bucket does not exist"
            elif code in _DENIED_CODES or status == 403:  # noqa: PLR2004
                kind = AccessDenied
                what = (
                    f"access denied ({code or status}); check the access key id, "
                    "the secret access key and the bucket policy"
                )
            elif _not_implemented(error):
                # Not transient: small S3-compatible servers lack whole
                # operations (s3rver: UploadPartCopy, AbortMultipartUpload).
                kind = StoreError
                what = f"the server does not implement {action} ({code or status})"
            elif code in _UNAVAILABLE_CODES or status >= 500:  # noqa: PLR2004
                kind = StoreUnavailable
                what = f"the server kept failing ({code or status}) after retries"
            else:
                kind, what = StoreError, f"the server answered {code or status}"
        elif isinstance(
            error,
            BotoConnectionError
            | HTTPClientError
            | ResponseStreamingError
            | IncompleteReadError
            | aiohttp.ClientError
            | TimeoutError,
        ):
            kind = StoreUnavailable
            what = f"the endpoint is unreachable or timed out ({type(error).__name__})"
        else:
            kind, what = StoreError, f"the request failed ({type(error).__name__})"
        msg = f"S3 {action} on {where} failed: {what}."
        raise kind(msg, backend=self.id, bucket=bucket, endpoint=endpoint) from error

    @contextlib.contextmanager
    def _translate(self, action: str) -> Iterator[None]:
        try:
            yield
        except (
            BotoCoreError,
            ClientError,
            aiohttp.ClientError,
            TimeoutError,
        ) as error:
            self._fail(error, action)

    async def _check_bucket(self) -> None:
        """Raise BucketNotFound if the bucket is missing (HEAD has no body)."""
        if self._bucket_seen:
            return
        with self._translate("HeadBucket"):
            await self._client.head_bucket(Bucket=self._config.bucket)
        self._bucket_seen = True

    # -- helpers -------------------------------------------------------------

    def _key(self, integrity: Integrity) -> str:
        return integrity_to_key(integrity, prefix=self._prefix)

    async def _exists(self, key: str) -> bool:
        with self._translate("HeadObject"):
            try:
                await self._client.head_object(Bucket=self._config.bucket, Key=key)
            except ClientError as error:
                if _status(error) != 404:  # noqa: PLR2004
                    raise
            else:
                return True
        # A 404 to HEAD has no body: it may mean the bucket is missing.
        await self._check_bucket()
        return False

    async def _put_object(self, key: str, data: Part) -> None:
        with self._translate("PutObject"):
            await self._client.put_object(
                Bucket=self._config.bucket, Key=key, Body=_body(data)
            )

    async def _create_small(self, key: str, data: Part) -> None:
        """Put a small blob unless the key exists, in one request if possible.

        A conditional create (``If-None-Match: *``) leaves an existing object
        untouched (412). Servers that don't implement it either ignore the
        header, overwriting the object with the same verified bytes (harmless
        under content addressing), or answer 501, after which this store asks
        with HeadObject first. Stores with ``verify=False`` always ask first:
        their bytes aren't proven to be the stored ones, and a server that
        ignores the header must not overwrite derived bytes.
        """
        if not self.verify or not self._conditional_writes:
            if not await self._exists(key):
                await self._put_object(key, data)
            return
        with self._translate("PutObject"):
            try:
                await self._client.put_object(
                    Bucket=self._config.bucket,
                    Key=key,
                    Body=_body(data),
                    IfNoneMatch="*",
                )
            except ClientError as error:
                code = _code(error)
                if code in _ALREADY_STORED or _status(error) == 412:  # noqa: PLR2004
                    return
                if not _not_implemented(error):
                    raise
                self._conditional_writes = False
            else:
                return
        await self._create_small(key, data)

    async def _write(self, key: str, parts: AsyncIterator[Part]) -> None:
        """Store *parts* under *key*: one PutObject if there is just one part.

        Reads one part ahead to tell; memory stays within two parts until
        the multipart upload starts.
        """
        first = await anext(parts, None)
        if first is None:
            await self._put_object(key, b"")
            return
        second = await anext(parts, None)
        if second is None:
            await self._put_object(key, first)
            return
        await self._multipart(key, _prepend([first, second], parts))

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
            with self._translate("CreateMultipartUpload"):
                created = await self._client.create_multipart_upload(
                    Bucket=self._config.bucket, Key=key
                )
        except BaseException as error:
            await _wait_out(asyncio.ensure_future(self._sweep_uploads(key, None)))
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
            await _wait_out(asyncio.ensure_future(self._sweep_uploads(key, None)))

    async def _sweep_uploads(self, key: str, keep: str | None) -> None:
        """Abort the uploads of *key* but *keep*, logging what can't be aborted.

        Staging keys are unique to one call, so every other upload of one is
        an orphan. A blob's final key may also be in a concurrent writer's
        upload; aborting that one makes its writer fail and retry, which
        loses nothing, while an orphan would be billed forever.
        """
        try:
            listed = await self._client.list_multipart_uploads(
                Bucket=self._config.bucket, Prefix=key
            )
            for upload in listed.get("Uploads", []):
                if upload.get("Key") == key and upload.get("UploadId") != keep:
                    await self._abort(key, upload["UploadId"])
        except (BotoCoreError, ClientError, aiohttp.ClientError, TimeoutError) as error:
            logger.warning(
                "orphaned upload sweep backend=%s bucket=%s key=%s failed: %r",
                self.id,
                self._config.bucket,
                key,
                error,
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
            await self._abort(key, upload_id)
            if retried_at is not None:
                cancelled = isinstance(error, asyncio.CancelledError)
                await self._sweep_late(key, since=retried_at, wait=not cancelled)
            raise
        if retried_at is not None:
            await self._sweep_late(key, since=retried_at)

    async def _multipart(self, key: str, parts: AsyncIterator[Part]) -> None:
        async with self._upload(key) as upload_id:
            completed = await self._upload_parts(key, upload_id, parts)
            with self._translate("CompleteMultipartUpload"):
                await self._client.complete_multipart_upload(
                    Bucket=self._config.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": completed},
                )

    async def _abort(self, key: str, upload_id: str) -> None:
        abort = asyncio.ensure_future(
            self._client.abort_multipart_upload(
                Bucket=self._config.bucket, Key=key, UploadId=upload_id
            )
        )
        await _wait_out(abort)
        if not abort.cancelled() and (error := abort.exception()) is not None:
            logger.warning(
                "abort backend=%s bucket=%s key=%s upload_id=%s failed: %r",
                self.id,
                self._config.bucket,
                key,
                upload_id,
                error,
            )

    async def _upload_parts(
        self, key: str, upload_id: str, parts: AsyncIterator[Part]
    ) -> list[CompletedPartTypeDef]:
        """Upload *parts* with at most ``max_concurrency`` in flight."""
        limit = self._config.max_concurrency
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
                await _wait_out(asyncio.gather(*pending, return_exceptions=True))
        return [{"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)]

    async def _upload_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        part: Part,
        etags: dict[int, str],
    ) -> None:
        with self._translate("UploadPart"):
            uploaded = await self._client.upload_part(
                Bucket=self._config.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_body(part),
            )
        etags[number] = uploaded["ETag"]

    def _parts(self, source: BlobSource) -> AsyncIterator[Part]:
        configured = self._config.part_size
        if source.size is not None:
            return source.chunks(part_size_for(source.size, configured))
        return _rechunk(
            source.chunks(), lambda number: streamed_part_size(number, configured)
        )

    async def _copy(self, source_key: str, key: str, size: int) -> None:
        bucket = self._config.bucket
        copy_source: CopySourceTypeDef = {"Bucket": bucket, "Key": source_key}
        if size <= self._copy_threshold:
            with self._translate("CopyObject"):
                await self._client.copy_object(
                    Bucket=bucket, Key=key, CopySource=copy_source
                )
            return
        try:
            await self._copy_in_parts(copy_source, key, size)
        except StoreError as error:
            if not _not_implemented(error.__cause__):
                raise
            # Small servers (s3rver) lack UploadPartCopy: read the staged
            # object back and upload it again, part by part. It was verified
            # on its way in, as a server-side copy would trust it too.
            logger.info(
                "copy backend=%s bucket=%s key=%s: UploadPartCopy not "
                "implemented, copying through the client",
                self.id,
                bucket,
                key,
            )
            await self._copy_through(source_key, key)

    async def _copy_through(self, source_key: str, key: str) -> None:
        """Copy *source_key* to *key* by streaming it down and up again."""
        with self._translate("GetObject"):
            response = await self._client.get_object(
                Bucket=self._config.bucket, Key=source_key
            )
        body = response["Body"]
        configured = self._config.part_size
        parts = _rechunk(
            self._read(body, response.get("ContentLength")),
            lambda number: streamed_part_size(number, configured),
        )
        try:
            await self._write(key, parts)
        finally:
            await _close(parts)
            body.close()

    async def _copy_in_parts(
        self, copy_source: CopySourceTypeDef, key: str, size: int
    ) -> None:
        """Copy *copy_source* to *key* with UploadPartCopy (above 5 GiB)."""
        bucket = self._config.bucket
        part_size = part_size_for(size, self._copy_part_size)
        ranges = [
            f"bytes={start}-{min(start + part_size, size) - 1}"
            for start in range(0, size, part_size)
        ]
        async with self._upload(key) as upload_id:
            etags: dict[int, str] = {}
            semaphore = asyncio.Semaphore(self._config.max_concurrency)

            async def copy_part(number: int, byte_range: str) -> None:
                async with semaphore:
                    with self._translate("UploadPartCopy"):
                        copied = await self._client.upload_part_copy(
                            Bucket=bucket,
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
                await _wait_out(asyncio.gather(*tasks, return_exceptions=True))
            with self._translate("CompleteMultipartUpload"):
                await self._client.complete_multipart_upload(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": n, "ETag": etags[n]} for n in sorted(etags)
                        ]
                    },
                )

    async def _delete_key(self, key: str) -> None:
        with self._translate("DeleteObject"):
            await self._client.delete_object(Bucket=self._config.bucket, Key=key)

    # -- the contract --------------------------------------------------------

    async def _put(self, integrity: Integrity, source: BlobSource) -> None:
        key = self._key(integrity)
        if source.size is not None and source.size <= BLIND_PUT_MAX:
            view = await source.buffer()
            assert view is not None  # noqa: S101 -- size is known
            await self._create_small(key, view)
            return
        if await self._exists(key):
            return
        if source.size is not None and source.size <= self._config.multipart_threshold:
            view = await source.buffer()
            assert view is not None  # noqa: S101 -- size is known
            await self._put_object(key, view)
            return
        parts = self._parts(source)
        try:
            await self._write(key, parts)
        finally:
            await _close(parts)

    async def _add(self, source: BlobSource) -> Integrity:
        if source.size is not None:
            # Bytes in hand: hash first, then write straight to the final key.
            view = await source.buffer()
            assert view is not None  # noqa: S101 -- size is known
            key = self._key(source.integrity)
            if view.nbytes <= BLIND_PUT_MAX:
                await self._create_small(key, view)
            elif not await self._exists(key):
                if view.nbytes <= self._config.multipart_threshold:
                    await self._put_object(key, view)
                else:
                    size = part_size_for(view.nbytes, self._config.part_size)
                    await self._write(key, _slices(view, size))
            return source.integrity
        parts = self._parts(source)
        try:
            return await self._stage(source, parts)
        finally:
            await _close(parts)

    async def _stage(self, source: BlobSource, parts: AsyncIterator[Part]) -> Integrity:
        """Store a stream: directly if it fits in one part, else via staging."""
        first = await anext(parts, None)
        second = None if first is None else await anext(parts, None)
        if second is None:
            # The whole stream fit in one part, and it is hashed: no staging.
            key = self._key(source.integrity)
            if not await self._exists(key):
                await self._put_object(key, b"" if first is None else first)
            return source.integrity
        assert first is not None  # noqa: S101 -- second implies first
        staging = self._staging_prefix + uuid.uuid4().hex
        try:
            await self._multipart(staging, _prepend([first, second], parts))
            del first, second
            key = self._key(source.integrity)
            if not await self._exists(key):
                await self._copy(staging, key, source.bytes_read)
        finally:
            delete = asyncio.ensure_future(self._delete_key(staging))
            await _wait_out(delete)
            if not delete.cancelled() and (error := delete.exception()) is not None:
                logger.warning(
                    "staging cleanup backend=%s bucket=%s key=%s failed: %r",
                    self.id,
                    self._config.bucket,
                    staging,
                    error,
                )
        return source.integrity

    async def _get_object(self, integrity: Integrity) -> GetObjectOutputTypeDef | None:
        """Send GetObject for *integrity*'s key; None if there is no such key."""
        with self._translate("GetObject"):
            try:
                return await self._client.get_object(
                    Bucket=self._config.bucket, Key=self._key(integrity)
                )
            except ClientError as error:
                if _code(error) == "NoSuchKey":
                    return None
                raise

    async def _get(self, integrity: Integrity) -> bytes | None:
        response = await self._get_object(integrity)
        if response is None:
            return None
        with self._translate("GetObject"):
            async with response["Body"] as body:
                data = await body.read()
        self._check_length(len(data), response.get("ContentLength"))
        return data

    def _check_length(self, received: int, expected: int | None) -> None:
        """Refuse a body shorter (or longer) than its Content-Length.

        aiohttp and botocore already raise when a connection closes early;
        this holds even if a layer below lets a short body through, so a
        truncated blob can't pass as whole when verification is off.
        """
        if expected is None or received == expected:
            return
        bucket = self._config.bucket
        endpoint = self._endpoint or "AWS"
        msg = (
            f"S3 GetObject on bucket {bucket!r} at {endpoint} failed: the body "
            f"ended after {received} of {expected} bytes."
        )
        raise StoreUnavailable(msg, backend=self.id, bucket=bucket, endpoint=endpoint)

    @contextlib.asynccontextmanager
    async def _open(
        self, integrity: Integrity
    ) -> AsyncIterator[tuple[AsyncIterator[bytes], int | None]]:
        response = await self._get_object(integrity)
        if response is None:
            raise self._not_found(integrity)
        body = response["Body"]
        try:
            size = response.get("ContentLength")
            yield self._read(body, size), size
        finally:
            # Closes the connection if the body wasn't read to the end, so an
            # early exit never leaks it or leaves it half-read in the pool.
            body.close()

    async def _read(self, body: Any, size: int | None) -> AsyncIterator[bytes]:
        """Yield *body* in chunks of about 1 MiB (large enough to hash off-loop).

        The last chunk is held back until the body's length is checked.
        """
        pieces: list[bytes] = []
        buffered = 0
        received = 0
        while True:
            with self._translate("GetObject"):
                piece: bytes = await body.read(CHUNK_SIZE - buffered)
            if not piece:
                break
            pieces.append(piece)
            buffered += len(piece)
            received += len(piece)
            if buffered >= CHUNK_SIZE:
                yield pieces[0] if len(pieces) == 1 else b"".join(pieces)
                pieces, buffered = [], 0
        self._check_length(received, size)
        if pieces:
            yield b"".join(pieces)

    async def _has(self, integrity: Integrity) -> bool:
        return await self._exists(self._key(integrity))

    async def _stat(self, integrity: Integrity) -> BlobInfo | None:
        """Answer with one HeadObject: ContentLength and LastModified."""
        with self._translate("HeadObject"):
            try:
                response = await self._client.head_object(
                    Bucket=self._config.bucket, Key=self._key(integrity)
                )
            except ClientError as error:
                if _status(error) != 404:  # noqa: PLR2004
                    raise
                response = None
        if response is None:
            # A 404 to HEAD has no body: it may mean the bucket is missing.
            await self._check_bucket()
            return None
        stored_at = response.get("LastModified")
        if stored_at is not None:
            if stored_at.tzinfo is None:  # pragma: no cover -- botocore adds UTC
                stored_at = stored_at.replace(tzinfo=dt.UTC)
            stored_at = stored_at.astimezone(dt.UTC)
        return BlobInfo(str(integrity), int(response["ContentLength"]), stored_at)

    async def _delete(self, integrity: Integrity) -> None:
        await self._delete_key(self._key(integrity))

    async def _list(self) -> AsyncIterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._config.bucket,
            Prefix=self._prefix,
            PaginationConfig={"PageSize": self._config.list_page_size},
        )
        with self._translate("ListObjectsV2"):
            async for page in pages:
                for entry in page.get("Contents", ()):
                    name = key_to_integrity(entry["Key"], prefix=self._prefix)
                    if name is not None:
                        yield name


async def _slices(view: memoryview, size: int) -> AsyncIterator[memoryview]:
    for start in range(0, view.nbytes, size):
        yield view[start : start + size]
