"""The S3 store: its client's lifecycle, and the blob contract on S3."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from typing import TYPE_CHECKING, Any, ClassVar, Final, Unpack

import aioboto3
import attrs
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError

from sriblob import _telemetry as telemetry
from sriblob._backend import Backend, BlobBody, BlobInfo
from sriblob._config import S3StoreConfig
from sriblob._store import BlobStore
from sriblob.exceptions import BucketNotFound, StoreError, StoreUnavailable
from sriblob.keys import integrity_to_key, key_to_integrity

from ._bucket import Bucket
from ._download import PARALLEL_READS, Downloader
from ._errors import Where, is_missing
from ._http import Limits, bounded_session
from ._lease import LEASE_NAME, BucketLease
from ._signing import hash_payloads_off_loop
from ._upload import Uploader
from ._usage import USAGE_NAME, BucketTotal
from ._writer import Writer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from sriblob._integrity import Integrity
    from sriblob._lease import Lease
    from sriblob._options import StoreKeywords, StoreOptions
    from sriblob._source import BlobSource

__all__ = ["S3Backend", "S3BlobStore"]

logger = logging.getLogger("sriblob")

#: Where ``add()`` streams blobs whose hash isn't known yet, under the key
#: prefix. Not lowercase hex, so the key codec (and ``list()``) skips it.
STAGING_DIR: Final = ".staging/"
#: Connections beyond ``max_concurrency``, for small calls made while an
#: upload keeps its parts in flight.
EXTRA_CONNECTIONS: Final = 4
_NO_DEADLINE: Final = contextlib.nullcontext()


def _signs_payloads(config: S3StoreConfig) -> bool:
    """Whether request bodies are SHA-256 signed: by default over http only."""
    if config.sign_payloads is not None:
        return config.sign_payloads
    endpoint = config.endpoint or "https://"
    return not endpoint.lower().startswith("https://")


def read_concurrency(config: S3StoreConfig) -> int:
    """The most connections one read uses: ``read_concurrency``, else 8."""
    if config.read_concurrency is not None:
        return config.read_concurrency
    return PARALLEL_READS


@attrs.frozen
class _Connected:
    """What an open :class:`S3Backend` uses, built and dropped as one.

    ``startup()`` builds it whole and ``shutdown()`` drops it whole, so the
    backend is either open with all of it or closed with none of it.
    """

    bucket: Bucket
    uploader: Uploader
    downloader: Downloader
    writer: Writer
    lease: BucketLease
    total: BucketTotal
    #: Closes the S3 client and its connections.
    client_context: contextlib.AsyncExitStack


class S3Backend(Backend):
    """Blobs as objects in an S3 bucket (see :class:`~sriblob.S3BlobStore`)."""

    default_id: ClassVar[str] = "s3"
    requires_startup: ClassVar[bool] = True

    def __init__(self, config: S3StoreConfig) -> None:
        super().__init__()
        self._config = config
        self._prefix = config.key_prefix
        self._staging_prefix = config.key_prefix + STAGING_DIR
        self._lease_key = config.key_prefix + LEASE_NAME
        self._usage_key = config.key_prefix + USAGE_NAME
        self._limits = Limits.of(config)
        self._where = Where(self.default_id, config.bucket, config.endpoint or "AWS")
        self._connected_or_none: _Connected | None = None
        self._bucket_seen = False

    def bind(self, options: StoreOptions, /) -> None:
        super().bind(options)
        self._where = Where(options.id, self._config.bucket, self._where.endpoint)

    def left_open(self) -> str | None:
        if getattr(self, "_connected_or_none", None) is None:
            return None
        return "its S3 client and connections"

    @property
    def config(self) -> S3StoreConfig:
        """The store's configuration."""
        return self._config

    def describe(self) -> str:
        return f"bucket={self._config.bucket!r} endpoint={self._where.endpoint!r}"

    # -- lifecycle -----------------------------------------------------------

    def _client_config(self) -> AioConfig:
        config = self._config
        return AioConfig(
            max_pool_connections=max(config.max_concurrency, read_concurrency(config))
            + EXTRA_CONNECTIONS,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            retries={"total_max_attempts": config.max_attempts, "mode": "standard"},
            # SigV4 everywhere, presigned URLs included (botocore would
            # presign with the legacy SigV2 query otherwise).
            signature_version="s3v4",
            s3={
                "addressing_style": "path" if config.force_path_style else "virtual",
                "payload_signing_enabled": _signs_payloads(config),
            },
            request_checksum_calculation=config.checksum_mode,
            response_checksum_validation=config.checksum_mode,
            http_session_cls=bounded_session(self._limits),
        )

    async def startup(self) -> None:
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
            self._where = Where(self.id, config.bucket, client.meta.endpoint_url)
            if _signs_payloads(config):
                hash_payloads_off_loop(client)
            self._connected_or_none = self._connect(Bucket(client, self._where), stack)
        try:
            await self._check_bucket()
        except BucketNotFound:
            # A typo in the bucket name must not become a new, empty bucket
            # (SeaweedFS creates a missing bucket on the first PutObject).
            await self.shutdown()
            raise
        except StoreError as error:
            # Unreachable or throttled: the first call will say so, and a
            # registry can still serve reads from its other stores.
            logger.debug(
                "open backend=%s bucket=%s: HeadBucket failed (%s); checking "
                "again on the first call",
                self.id,
                config.bucket,
                type(error).__name__,
                extra=telemetry.fields(self.id, "open"),
            )

    def _connect(self, bucket: Bucket, stack: contextlib.AsyncExitStack) -> _Connected:
        """Build what the open backend uses on *bucket*; take the client's *stack*."""
        config = self._config
        uploader = Uploader(
            bucket=bucket,
            part_size=config.part_size,
            max_concurrency=config.max_concurrency,
        )
        downloader = Downloader(
            bucket=bucket,
            limits=self._limits,
            operation_timeout=config.operation_timeout,
            part_size=config.read_part_size,
            concurrency=config.read_concurrency,  # None: measured
            max_attempts=config.max_attempts,
        )
        writer = Writer(
            config=config,
            bucket=bucket,
            uploader=uploader,
            downloader=downloader,
            key=self._key,
            head=self._head,
            verify=self.options.verify,
            counted=self.keeps_total,
            staging_prefix=self._staging_prefix,
        )
        lease = BucketLease(bucket=bucket, key=self._lease_key, ttl=config.lease_ttl)
        total = BucketTotal(
            bucket=bucket,
            key=self._usage_key,
            count=self.stored_total,
            fits=self.fits,
            exceeded=self.quota_exceeded,
        )
        # The client's context is taken last: should building the rest fail,
        # the stack still closes the client as it unwinds.
        return _Connected(
            bucket, uploader, downloader, writer, lease, total, stack.pop_all()
        )

    async def shutdown(self) -> None:
        connected = self._connected_or_none
        if connected is None:
            return
        await connected.lease.close()
        self._connected_or_none = None
        await connected.client_context.aclose()

    @property
    def _connected(self) -> _Connected:
        """What the open backend uses; only its store's ``async with`` opens it."""
        connected = self._connected_or_none
        if connected is None:
            # Reached only by calling the backend directly (store.backend):
            # the store itself refuses calls before it was opened.
            msg = f"{self!r} is not open; use `async with S3BlobStore(...)`."
            raise RuntimeError(msg)
        return connected

    def _deadline(self, action: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Bound a whole call by ``operation_timeout``, if one is configured."""
        timeout = self._config.operation_timeout
        if timeout is None:
            return _NO_DEADLINE  # nothing to set up, on every call
        return self._bounded(action, timeout)

    @contextlib.asynccontextmanager
    async def _bounded(self, action: str, seconds: float) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(seconds):
                yield
        except TimeoutError:
            what = f"it did not finish within {seconds:g} s (operation_timeout)"
            raise self._where.failed(StoreUnavailable, action, what) from None

    # -- the maintenance lease -------------------------------------------------

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Create the lease object ``<key_prefix>.lease`` (``If-None-Match: *``).

        Its holder rewrites it every ``lease_ttl / 3`` seconds; one not
        rewritten for ``lease_ttl`` seconds (on the server's clock) may be
        replaced by the next taker. See :mod:`sriblob` docs, "Operations".
        """
        return await self._connected.lease.take(lease)

    async def release_lease(self, lease: Lease, /) -> None:
        await self._connected.lease.release(lease)

    async def check_lease(self, lease: Lease, /) -> None:
        self._connected.lease.check(lease)

    # -- the running total -----------------------------------------------------

    async def adjust_total(self, delta: int, /) -> int:
        """Change ``<key_prefix>.usage`` compare-and-swap (``If-Match``), retrying."""
        total = self._connected.total
        async with self._deadline("usage"):
            return await total.adjust(delta)

    # -- presigned URLs -------------------------------------------------------

    @property
    def can_presign(self) -> bool:
        """True: S3 hands out presigned GET and HEAD URLs."""
        return True

    async def presign(
        self, integrity: Integrity, /, *, expires_in: int, method: str
    ) -> str:
        """A SigV4 query-string URL of the blob's key (see :class:`S3BlobStore`)."""
        if (
            isinstance(expires_in, bool)
            or not isinstance(expires_in, int)
            or not 1 <= expires_in <= 7 * 24 * 3600
        ):
            msg = f"expires_in must be an int from 1 to 604800, not {expires_in!r}."
            raise ValueError(msg)
        operations = {"GET": "get_object", "HEAD": "head_object"}
        if method not in operations:
            msg = f"method must be 'GET' or 'HEAD', not {method!r}."
            raise ValueError(msg)
        with self._where.translate("presign"):
            url: str = await self._connected.bucket.client.generate_presigned_url(
                operations[method],
                Params={"Bucket": self._config.bucket, "Key": self._key(integrity)},
                ExpiresIn=expires_in,
            )
        return url

    # -- helpers -------------------------------------------------------------

    def _key(self, integrity: Integrity) -> str:
        return integrity_to_key(integrity, prefix=self._prefix)

    async def _check_bucket(self) -> None:
        """Raise BucketNotFound if the bucket is missing (HEAD has no body).

        Called when the store opens, and after a 404 to HeadObject until the
        bucket was seen once.
        """
        if self._bucket_seen:
            return
        with self._where.translate("HeadBucket"):
            await self._connected.bucket.client.head_bucket(Bucket=self._config.bucket)
        self._bucket_seen = True

    async def _head(self, key: str) -> Any:
        """Return the HeadObject answer for *key*, or None when there is none."""
        with self._where.translate("HeadObject"):
            try:
                return await self._connected.bucket.client.head_object(
                    Bucket=self._config.bucket, Key=key
                )
            except ClientError as error:
                if not is_missing(error):
                    raise
        # A 404 to HEAD has no body: it may mean the bucket is missing.
        await self._check_bucket()
        return None

    async def _stored_size(self, key: str) -> int | None:
        head = await self._head(key)
        return None if head is None else int(head["ContentLength"])

    # -- writing -------------------------------------------------------------

    async def write_blob(self, source: BlobSource, /) -> None:
        async with self._deadline("PutObject"):
            await self._connected.writer.write(source)

    # -- reading -------------------------------------------------------------

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        async with self._deadline("GetObject"):
            return await self._connected.downloader.read_bytes(
                self._key(integrity), lambda size: size
            )

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity, /) -> AsyncIterator[BlobBody]:
        """One GetObject, or ranges on several connections (see _download)."""
        async with self._opened(integrity, 0, None, lambda size: size) as body:
            yield body

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        """A GetObject with ``Range`` (several, for a long range).

        The first answer's ``Content-Range`` gives the size; further ranges
        carry ``If-Match`` with its ETag, so an object replaced in between is
        an error (412), never mixed bytes.
        """
        key = self._key(integrity)
        if end is not None and end <= start:
            # Nothing to read: one HEAD says whether the blob and the range exist.
            async with self._deadline("HeadObject"):
                size = await self._stored_size(key)
            if size is None:
                raise self.not_found(integrity)
            self.check_range(integrity, start, end, size)
            yield BlobBody(_nothing(), size)
            return
        check = functools.partial(self.check_range, integrity, start, end)
        async with self._opened(integrity, start, end, check) as body:
            yield body

    @contextlib.asynccontextmanager
    async def _opened(
        self,
        integrity: Integrity,
        start: int,
        end: int | None,
        check: Callable[[int], int],
    ) -> AsyncIterator[BlobBody]:
        async with self._deadline("GetObject"):
            opened = await self._connected.downloader.open(
                self._key(integrity), start, end, check
            )
        if opened is None:
            raise self.not_found(integrity)
        try:
            yield BlobBody(opened.chunks, opened.size)
        finally:
            # Cancels the ranges in flight and closes their connections (and
            # the first answer's, if it wasn't read to the end), so an early
            # exit never leaks one or leaves it half-read in the pool.
            await opened.aclose()

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        """Answer with one HeadObject: ContentLength and LastModified."""
        async with self._deadline("HeadObject"):
            response = await self._head(self._key(integrity))
        if response is None:
            return None
        stored_at = response.get("LastModified")
        if stored_at is not None:
            if stored_at.tzinfo is None:  # pragma: no cover -- botocore adds UTC
                stored_at = stored_at.replace(tzinfo=dt.UTC)
            stored_at = stored_at.astimezone(dt.UTC)
        return BlobInfo(str(integrity), int(response["ContentLength"]), stored_at)

    async def has_blob(self, integrity: Integrity, /) -> bool:
        async with self._deadline("HeadObject"):
            return await self._head(self._key(integrity)) is not None

    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        key = self._key(integrity)
        async with self._deadline("DeleteObject"):
            size = None
            if stored_before is not None or self.keeps_total:
                # The stored time for the grace rule; the size for the total.
                info = await self.stat_blob(integrity)
                if info is None:
                    return True
                if (
                    stored_before is not None
                    and info.stored_at is not None
                    and info.stored_at > stored_before
                ):
                    return False
                size = info.size
            await self._connected.uploader.delete_key(key)
        if size is not None:
            await self.space_freed(size)
        return True

    async def list_names(self) -> AsyncIterator[str]:
        paginator = self._connected.bucket.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self._config.bucket,
            Prefix=self._prefix,
            PaginationConfig={"PageSize": self._config.list_page_size},
        )
        with self._where.translate("ListObjectsV2"):
            async for page in pages:
                for entry in page.get("Contents", ()):
                    key = entry["Key"]
                    if key.startswith(self._staging_prefix) or key in (
                        self._lease_key,
                        self._usage_key,
                    ):
                        continue  # ours: in flight, the lease, the total
                    name = key_to_integrity(key, prefix=self._prefix)
                    yield key if name is None else name


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""  # pragma: no cover -- makes this an async generator


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

    No request waits forever: waiting for a pooled connection, connecting,
    each read, and each body sent or received (at ``min_transfer_rate`` at
    least) are bounded by the configuration, and ``operation_timeout``
    bounds a whole call.

    Args:
        config: Where the bucket is and how to talk to it.
        id: The store's id in a registry.
        options: ``verify``, ``max_blob_size``, ``max_total_size`` and
            ``warn_total_size``, as for :class:`~sriblob.BlobStore`. The
            running total is the object ``<key_prefix>.usage``, changed
            compare-and-swap (``If-Match``) by every replica; see "Quotas" in
            the operations guide for where it is approximate.

    Raises:
        TypeError: *config* is not an :class:`~sriblob.S3StoreConfig`.

    Opening the store sends HeadBucket: a bucket that doesn't exist raises
    :class:`~sriblob.BucketNotFound` there, whatever the server would do on a
    put (SeaweedFS creates a missing bucket), so a typo never starts a new,
    empty bucket; other failures are left for the first call to report.

    Operations raise :class:`~sriblob.AccessDenied`,
    :class:`~sriblob.BucketNotFound` or :class:`~sriblob.StoreUnavailable`
    (after the configured retries), naming the bucket and endpoint, never
    the secret.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, config: S3StoreConfig, *, id: str = "s3", **options: Unpack[StoreKeywords]
    ) -> None:
        if not isinstance(config, S3StoreConfig):
            msg = (
                "S3BlobStore needs an S3StoreConfig, not "
                f"{type(config).__name__}; build one with S3StoreConfig(...) "
                "or load_s3_config_from_env()."
            )
            raise TypeError(msg)
        self._s3 = S3Backend(config)
        super().__init__(self._s3, id=id, **options)

    @property
    def backend(self) -> S3Backend:
        """The store's backend."""
        return self._s3

    @property
    def config(self) -> S3StoreConfig:
        """The store's configuration."""
        return self._s3.config

    async def presign(
        self,
        integrity: str | Integrity,
        /,
        *,
        expires_in: int = 3600,
        method: str = "GET",
    ) -> str:
        """Return a URL that GETs (or HEADs) the blob without credentials.

        Signed with the store's key (SigV4, query string), valid for
        *expires_in* seconds; the server refuses it afterwards. No request is
        sent: the URL of a blob the bucket doesn't hold answers 404. A string
        with several digests presigns the first of its strongest algorithm.

        Args:
            integrity: The blob's integrity.
            expires_in: Seconds the URL stays valid (1 to 604,800: SigV4's
                limit of seven days), counted from the signing time, which
                SigV4 truncates to the second: the URL may expire up to a
                second sooner.
            method: ``"GET"`` or ``"HEAD"``.

        Raises:
            InvalidIntegrity: *integrity* is malformed.
            ValueError: *expires_in* or *method* is out of range.

        .. versionadded:: 0.1.0
        """
        return await super().presign(integrity, expires_in=expires_in, method=method)
