"""A blob going up: the size tiers of ``put()`` and ``add()``, written once.

Small bytes go up in one PutObject; larger ones, and streams, as multipart
uploads (one PutObject after all if a stream fits in one part). A stream
whose name is known only at its end is staged under ``.staging/`` and copied
server-side. A stored object stands only if it is the bytes put.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import uuid
from typing import TYPE_CHECKING, Any

import attrs

from sriblob import _telemetry as telemetry
from sriblob.exceptions import StoreError

from ._etag import holds
from ._upload import (
    BLIND_PUT_MAX,
    Part,
    close_iterator,
    part_size_for,
    rechunk,
    slices,
    split_first,
    streamed_part_size,
    wait_out,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from sriblob._config import S3StoreConfig
    from sriblob._integrity import Integrity
    from sriblob._source import BlobSource

    from ._bucket import Bucket
    from ._download import Downloader
    from ._upload import Uploader

__all__ = ["Writer"]

logger = logging.getLogger("sriblob")


@attrs.frozen
class Writer:
    """Writes blobs into one bucket, for one store.

    Attributes:
        config: The store's configuration (part sizes, thresholds).
        bucket: The bucket (its endpoint and the store's id, for errors).
        uploader: What sends objects and parts.
        downloader: What reads an object back (a copy without UploadPartCopy).
        key: The key a blob lives under.
        head: HeadObject of a key, or None when there is no object.
        verify: Whether the store verifies (else stored bytes stand as they are).
        counted: Whether the store keeps a running total (then it asks first).
        staging_prefix: Where streams of unknown name are staged.
    """

    config: S3StoreConfig
    bucket: Bucket
    uploader: Uploader
    downloader: Downloader
    key: Callable[[Integrity], str]
    head: Callable[[str], Awaitable[Any]]
    verify: bool
    counted: bool
    staging_prefix: str

    async def write(self, source: BlobSource) -> None:
        """Store *source* (see the module)."""
        if source.expected is None:
            await self.write_named_later(source)
        else:
            await self.write_named(source, self.key(source.expected))

    async def stored_size(self, key: str) -> int | None:
        """The size of the object under *key*, or None."""
        head = await self.head(key)
        return None if head is None else int(head["ContentLength"])

    def parts(self, source: BlobSource) -> AsyncIterator[Part]:
        """The source in the parts a multipart upload sends."""
        configured = self.config.part_size
        if source.size is not None:
            return source.chunks(part_size_for(source.size, configured))
        return rechunk(
            source.chunks(), lambda number: streamed_part_size(number, configured)
        )

    async def _holds(self, key: str, head: Any, data: Part) -> bool:
        """Whether the object *head* describes is *data*, by its ETag (no GET).

        *data* is verified; an object whose ETag isn't the one an upload of
        *data* would have (damaged, or written another way) is not.
        """
        part_size = self.config.part_size
        with (
            data.getbuffer() if isinstance(data, io.BytesIO) else memoryview(data)
        ) as view:
            if view.nbytes <= BLIND_PUT_MAX:
                same = holds(head.get("ETag"), view, part_size=part_size)
            else:
                same = await asyncio.to_thread(
                    holds, head.get("ETag"), view, part_size=part_size
                )
        if not same:
            logger.info(
                "put backend=%s bucket=%s key=%s: the stored object isn't the "
                "bytes put (ETag %s: damaged, or written another way); "
                "replacing it",
                self.bucket.backend,
                self.bucket.name,
                key,
                head.get("ETag"),
                extra=telemetry.fields(self.bucket.backend, "put"),
            )
        return same

    async def write_named(self, source: BlobSource, key: str) -> None:
        """Write a blob whose key is known before its bytes are read.

        A stored object stands only if it is the bytes put: up to
        ``BLIND_PUT_MAX`` the bytes are put over it in one request; for
        larger bytes-like data its ETag is compared with theirs (a
        HeadObject, no download); a stream is uploaded over it (comparing
        would need the stream twice, and an upload costs what the first put
        did, with no download). Stores with ``verify=False`` keep what is
        stored.
        """
        view = None
        small = source.size is not None and source.size <= BLIND_PUT_MAX
        if small and self.verify and not self.counted:
            # One PutObject, stored already or not: the bytes go up whether
            # the request is conditional or not, so replacing what is there
            # (a damaged copy too) costs no more than keeping it, and saves
            # the HeadObject a check would take. Stores with verify=False
            # ask first: their bytes aren't proven to be the stored ones,
            # and derived bytes must not be overwritten. Stores with a quota
            # ask first too, to charge only a new blob.
            view = await source.buffer()
            assert view is not None  # noqa: S101 -- the size is known
            await self.uploader.put_object(key, view)
            return
        stored = None
        if not source.replace or self.counted:
            head = await self.head(key)
            stored = None if head is None else int(head["ContentLength"])
            if not source.replace and stored is not None and source.keeps(stored):
                if not self.verify:
                    return
                if source.size is not None:
                    if view is None:
                        view = await source.buffer()
                    assert view is not None  # noqa: S101 -- the size is known
                    if await self._holds(key, head, view):
                        return
        await self._upload(key, source, view, replacing=stored or 0)

    async def _upload(
        self,
        key: str,
        source: BlobSource,
        view: memoryview | None,
        *,
        replacing: int,
    ) -> None:
        """Put the source under *key*: the size tiers, written once.

        Bytes of known size up to ``multipart_threshold`` go up in one
        PutObject; larger ones, and streams, in parts (one PutObject after
        all if a stream turns out to fit in one part). With a quota the blob
        is charged (``source.admit``) before its bytes go up when its size
        is known, else once they all went up and before the object becomes
        visible; a failed write gives the charge back.
        """
        threshold = self.config.multipart_threshold
        try:
            if view is None and source.size is not None and source.size <= threshold:
                view = await source.buffer()
            if view is not None:
                await source.admit(replacing=replacing)
                if view.nbytes <= threshold:
                    await self.uploader.put_object(key, view)
                else:
                    size = part_size_for(view.nbytes, self.config.part_size)
                    await self.uploader.write(key, slices(view, size))
                return
            parts = self.parts(source)
            try:
                await self.uploader.write(
                    key,
                    parts,
                    before_complete=functools.partial(
                        source.admit, replacing=replacing
                    ),
                )
            finally:
                await close_iterator(parts)
        except BaseException:
            await source.unadmit()
            raise

    async def write_named_later(self, source: BlobSource) -> None:
        """Store a stream: directly if it fits in one part, else via staging."""
        parts = self.parts(source)
        try:
            only, many = await split_first(parts)
            if many is None:
                # The whole stream fit in one part, and it is hashed: no staging.
                key = self.key(source.integrity)
                data: Part = b"" if only is None else only
                head = await self.head(key)
                stored = None if head is None else int(head["ContentLength"])
                kept = (
                    stored is not None
                    and source.keeps(stored)
                    and (not self.verify or await self._holds(key, head, data))
                )
                if not kept:
                    await self._charged(
                        source,
                        stored,
                        functools.partial(
                            self.uploader.put_object,
                            key,
                            b"" if only is None else only,
                        ),
                    )
                return
            staging = self.staging_prefix + uuid.uuid4().hex
            try:
                await self.uploader.multipart(staging, many)
                key = self.key(source.integrity)
                stored = await self.stored_size(key)
                # A store that verifies copies the staged, verified object
                # over a stored one: a server-side copy, where checking the
                # stored object would download it.
                if stored is None or not source.keeps(stored) or self.verify:
                    await self._charged(
                        source,
                        stored,
                        functools.partial(
                            self.uploader.copy,
                            staging,
                            key,
                            source.bytes_read,
                            self.read_key,
                        ),
                    )
            finally:
                await self._discard_staging(staging)
        finally:
            await close_iterator(parts)

    async def _charged(
        self,
        source: BlobSource,
        stored: int | None,
        write: Callable[[], Awaitable[None]],
    ) -> None:
        """Charge *source* (replacing *stored* bytes), then *write*; refund on error."""
        try:
            await source.admit(replacing=stored or 0)
            await write()
        except BaseException:
            await source.unadmit()
            raise

    async def _discard_staging(self, staging: str) -> None:
        delete = asyncio.ensure_future(self.uploader.delete_key(staging))
        await wait_out(delete)
        if not delete.cancelled() and (error := delete.exception()) is not None:
            logger.warning(
                "staging cleanup backend=%s bucket=%s key=%s failed: %r",
                self.bucket.backend,
                self.bucket.name,
                staging,
                error,
                extra=telemetry.fields(self.bucket.backend, "put"),
            )

    async def read_key(self, key: str) -> AsyncIterator[bytes]:
        """Stream an object down: the copy for servers without UploadPartCopy."""
        opened = await self.downloader.open(key, 0, None, lambda size: size)
        if opened is None:
            what = f"{key!r} vanished while copied"
            raise self.bucket.where.failed(StoreError, "GetObject", what)
        try:
            async for chunk in opened.chunks:
                yield chunk
        finally:
            await opened.aclose()
