"""The interface a backend implements: raw bytes in and out, by integrity.

A :class:`~sriblob.BlobStore` holds one :class:`Backend` and calls its hooks;
everything users rely on (argument checks, verification, size limits, quota
admission, repair of copies seen corrupt, logging, the lifecycle) happens in
the store, once, for every backend. A backend only moves bytes: the model is
httpx, whose client holds a transport and calls ``handle_async_request``.
One backend may wrap another (a cache's does).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt  # noqa: TC003 -- BlobInfo's annotations resolve at runtime
from typing import TYPE_CHECKING, ClassVar, Final

import attrs

from . import _telemetry as telemetry
from ._integrity import Integrity
from ._quota import Quota
from ._source import CHUNK_SIZE
from .exceptions import (
    BlobNotFound,
    InvalidIntegrity,
    OperationUnsupported,
    PresignUnsupported,
    RangeNotSatisfiable,
)

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator

    from ._lease import Lease
    from ._options import StoreOptions
    from ._source import BlobSource
    from .exceptions import QuotaExceeded

__all__ = ["Backend", "BlobBody", "BlobInfo", "chunks_of"]


@attrs.frozen
class BlobInfo:
    """What a store knows about a blob without reading its bytes.

    Attributes:
        integrity: The blob's canonical integrity.
        size: The blob's size in bytes.
        stored_at: When the blob became visible in the store, or was last
            renewed by a put of the stored blob (timezone-aware), where the
            backend records it; None otherwise. Never earlier than the moment
            the blob became readable, so a garbage collection's grace period
            counts from then (see :func:`~sriblob.collect_garbage`).

    .. versionadded:: 0.1.0
    """

    integrity: str
    size: int
    stored_at: dt.datetime | None = None


@attrs.frozen
class BlobBody:
    """What a backend's :meth:`Backend.read_blob` yields: the raw chunks.

    Attributes:
        chunks: The stored bytes (of the range asked for, from
            :meth:`Backend.read_blob_range`), in order; unverified unless the
            backend :attr:`~Backend.verifies_reads`.
        size: The whole blob's size in bytes when the backend knows it up
            front, else None (a range read must know it).

    .. versionadded:: 0.1.0
    """

    chunks: AsyncIterator[bytes]
    size: int | None


#: What a backend says when it is used before a store was built around it.
_UNBOUND: Final = (
    "This backend isn't part of a store yet: build the store around it, "
    "e.g. sriblob.BlobStore(backend), before using it."
)


class Backend(abc.ABC):
    """What a :class:`~sriblob.BlobStore` calls to move bytes; subclass it.

    Implement :meth:`write_blob`, :meth:`read_blob`, :meth:`delete_blob` and
    :meth:`list_names`, and where the backend can do better than the
    defaults, :meth:`read_blob_range`, :meth:`read_blob_bytes`,
    :meth:`stat_blob`, :meth:`has_blob`, :meth:`startup` and
    :meth:`shutdown`; a backend shared by several processes also keeps the
    maintenance lease (:meth:`try_lease`, :meth:`release_lease`,
    :meth:`check_lease`) and the running total (:meth:`adjust_total`,
    :meth:`stored_total`) where they all see them. :meth:`presign` and
    :meth:`link_to` are optional capabilities (:attr:`can_presign`,
    :attr:`can_link`).

    Hooks take a parsed :class:`~sriblob.Integrity`, always one the store
    validated; they never verify bytes, check sizes against limits, or log
    the call: the store does, once. Build the store around the backend::

        store = sriblob.BlobStore(MyBackend(...), id="mine")

    The store then binds its :class:`~sriblob.StoreOptions` (:meth:`bind`)
    to the backend: :attr:`id`, :attr:`options` and the quota helpers
    (:meth:`fits`, :meth:`quota_exceeded`, :meth:`space_freed`) read them.
    A backend serves one store. Subclasses call ``super().__init__()``.

    .. versionadded:: 0.1.0
    """

    #: The store id a store built around this backend gets by default.
    default_id: ClassVar[str] = "store"
    #: Whether the store must be entered (``async with``) before use: set it
    #: when :meth:`startup` acquires what every call needs (a client, a pool).
    requires_startup: ClassVar[bool] = False
    #: Whether whole-blob reads come verified already (a wrapper that checks,
    #: and repairs, its own copies): the store then doesn't hash them again.
    verifies_reads: ClassVar[bool] = False

    def __init__(self) -> None:
        self._options: StoreOptions | None = None
        self._quota: Quota | None = None
        self._total: int | None = None
        self._total_lock = asyncio.Lock()
        self._lease_holder: Lease | None = None

    # -- what the store gives the backend -----------------------------------

    def bind(self, options: StoreOptions, /) -> None:
        """Take the options of the store built around this backend (once).

        The store calls it; a backend that needs to prepare something for
        its options (a wrapper binding what it wraps) extends it.

        Raises:
            ValueError: The backend already serves a store.
        """
        if self._options is not None:
            msg = (
                f"{type(self).__name__} already serves the store "
                f"{self._options.id!r}; build a backend for each store."
            )
            raise ValueError(msg)
        self._options = options
        if options.keeps_total:
            self._quota = Quota(
                options.id, options.max_total_size, options.warn_total_size
            )

    @property
    def options(self) -> StoreOptions:
        """The options of the store this backend serves."""
        if self._options is None:
            raise RuntimeError(_UNBOUND)
        return self._options

    @property
    def id(self) -> str:
        """The id of the store this backend serves (for messages and logs)."""
        return self.options.id

    def describe(self) -> str:
        """A few ``key=value`` words for the store's ``repr()`` (never a secret)."""
        return ""

    def left_open(self) -> str | None:
        """Say what a store collected while open leaks, or None: nothing."""
        return None

    # -- lifecycle ----------------------------------------------------------

    async def startup(self) -> None:  # noqa: B027 -- optional hook
        """Acquire the backend's resources; called once, by the store's entry."""

    async def shutdown(self) -> None:  # noqa: B027 -- optional hook
        """Release the backend's resources; called once, by the store's ``aclose()``."""

    # -- writing ------------------------------------------------------------

    @abc.abstractmethod
    async def write_blob(self, source: BlobSource, /) -> None:
        """Store *source* under ``source.integrity``.

        The integrity is ``source.expected`` when the caller gave it (or the
        store computed it up front); otherwise it is known only once the
        source is consumed. A blob that is already stored may be kept
        without consuming the source, if :meth:`BlobSource.keeps` says so
        for the stored copy's size; otherwise the stored copy is replaced,
        atomically. The blob must become visible only after the source was
        consumed without error, and the source's own errors (a mismatch, a
        failing producer) must propagate unchanged. With a quota, charge
        the blob with :meth:`BlobSource.admit` right before it becomes
        visible.
        """

    # -- reading ------------------------------------------------------------

    @abc.abstractmethod
    def read_blob(
        self, integrity: Integrity, /
    ) -> contextlib.AbstractAsyncContextManager[BlobBody]:
        """Open the stored blob: an async context manager yielding a :class:`BlobBody`.

        Raises :class:`~sriblob.BlobNotFound` (build it with
        :meth:`not_found`) on entry when the blob is absent. Leaving the
        context releases whatever the read holds (a connection, a file).
        """

    @contextlib.asynccontextmanager
    async def read_blob_range(
        self, integrity: Integrity, start: int, end: int | None, /
    ) -> AsyncIterator[BlobBody]:
        """Open bytes ``start`` to ``end - 1`` of the blob (*end* None: to its end).

        Yields a :class:`BlobBody` whose chunks are the range and whose
        ``size`` is the whole blob's; raises :class:`~sriblob.BlobNotFound`,
        or :class:`~sriblob.RangeNotSatisfiable` through :meth:`check_range`,
        on entry. The default reads the blob from its start and skips what
        comes before *start*; backends that can seek override it.
        """
        async with self.read_blob(integrity) as body:
            size = body.size
            if size is None:
                info = await self.stat_blob(integrity)
                if info is None:  # pragma: no cover -- deleted meanwhile
                    raise self.not_found(integrity)
                size = info.size
            stop = self.check_range(integrity, start, end, size)
            yield BlobBody(sliced(body.chunks, start, stop), size)

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        """Return the stored bytes (unverified), or None when absent.

        The default reads through :meth:`read_blob`; override it when one
        call does better.
        """
        try:
            async with self.read_blob(integrity) as body:
                return b"".join([chunk async for chunk in body.chunks])
        except BlobNotFound:
            return None

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        """Return the blob's :class:`BlobInfo` without reading it, or None.

        ``stored_at`` must not be earlier than the moment the blob's write
        committed (or it was last renewed), or must be None. Override this:
        the default opens the blob and, if the backend gives no size, counts
        its bytes.
        """
        try:
            async with self.read_blob(integrity) as body:
                size = body.size
                if size is None:
                    size = 0
                    async for chunk in body.chunks:
                        size += len(chunk)
        except BlobNotFound:
            return None
        return BlobInfo(str(integrity), size)

    async def has_blob(self, integrity: Integrity, /) -> bool:
        """Return whether the blob is stored; defaults to :meth:`stat_blob`."""
        return await self.stat_blob(integrity) is not None

    # -- deleting and listing -------------------------------------------------

    @abc.abstractmethod
    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        """Delete the blob if it is stored; False only if kept for *stored_before*.

        With *stored_before*, delete only a blob whose storage time is not
        later than it, atomically with respect to a concurrent put that
        renews the storage time. With a running total, report what was
        freed with :meth:`space_freed`.
        """

    @abc.abstractmethod
    def list_names(self) -> AsyncIterator[str]:
        """Yield the decoded name of every stored object, unvalidated.

        Names that aren't canonical integrities are reported by the store's
        ``list()`` to its ``on_skip``; the backend's own temporary and
        internal objects must not be yielded.
        """

    # -- the running total ----------------------------------------------------

    async def stored_total(self) -> int:
        """Count the bytes of every stored blob (where a running total starts).

        The default lists the store and stats each blob; backends that can
        sum cheaper override it.
        """
        total = 0
        async for name in self.list_names():
            try:
                integrity = Integrity.parse(name)
            except InvalidIntegrity:
                continue
            info = await self.stat_blob(integrity)
            if info is not None:
                total += info.size
        return total

    async def adjust_total(self, delta: int, /) -> int:
        """Add *delta* bytes to the running total; return the new total.

        A positive *delta* that doesn't :meth:`fit <fits>` must raise
        :meth:`quota_exceeded` and change nothing; 0 reads the total. The
        check and the update must be one step for every process that writes
        to the store. The default keeps the total in this object (started
        from :meth:`stored_total`), right for a store only this process
        writes to.
        """
        async with self._total_lock:
            if self._total is None:
                self._total = await self.stored_total()
            if delta > 0 and not self.fits(self._total, delta):
                raise self.quota_exceeded(self._total, delta)
            self._total = max(0, self._total + delta)
            return self._total

    @property
    def keeps_total(self) -> bool:
        """Whether the store keeps a running total (a quota or a warning level)."""
        return self._quota is not None

    def fits(self, total: int, size: int) -> bool:
        """Whether *size* more bytes keep a store holding *total* within its quota."""
        return self._quota is None or self._quota.fits(total, size)

    def quota_exceeded(self, total: int, size: int) -> QuotaExceeded:
        """The :class:`~sriblob.QuotaExceeded` for a blob of *size* that doesn't fit."""
        assert self._quota is not None  # noqa: S101 -- only called with a quota
        return self._quota.exceeded(total, size)

    async def charge(self, delta: int, /) -> int:
        """Change the running total by *delta*, warning when it crosses the level.

        What the store's quota admission and :meth:`space_freed` call; a
        backend overrides :meth:`adjust_total` instead.
        """
        total = await self.adjust_total(delta)
        self.noted(total)
        return total

    def noted(self, total: int | None) -> None:
        """Tell the warning level (and the usage gauge) about a new total."""
        if total is not None and self._quota is not None:
            self._quota.note(total)
            telemetry.note_usage(self.id, total)

    async def space_freed(self, size: int, /) -> None:
        """Tell the running total that a blob of *size* bytes was deleted.

        Call it from :meth:`delete_blob` when a blob was removed; without a
        running total it does nothing.
        """
        if self._quota is not None and size:
            await self.charge(-size)

    # -- the maintenance lease ------------------------------------------------

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Take the maintenance lease for *lease* if it is free.

        Return None once the lease is held for *lease*, or the
        :class:`~sriblob.Lease` of its holder (return a placeholder if the
        holder can't be read). The default keeps it in this object, right
        for a store only this process uses; shared backends keep it where
        every process sees it.
        """
        if self._lease_holder is not None:
            return self._lease_holder
        self._lease_holder = lease
        return None

    async def release_lease(self, lease: Lease, /) -> None:
        """Give up the lease *lease* holds."""
        if self._lease_holder is not None and self._lease_holder.token == lease.token:
            self._lease_holder = None

    async def check_lease(self, lease: Lease, /) -> None:
        """Raise :class:`~sriblob.StoreBusy` if *lease* is no longer held.

        Leases that can't be lost while the process lives (a lock) never
        raise; an S3 lease whose renewal failed until it expired does.
        """
        del lease

    # -- optional capabilities ------------------------------------------------

    @property
    def can_presign(self) -> bool:
        """Whether :meth:`presign` hands out URLs (S3: yes; others: no)."""
        return False

    async def presign(
        self,
        integrity: Integrity,  # noqa: ARG002 -- for the backends that can
        /,
        *,
        expires_in: int,  # noqa: ARG002
        method: str,  # noqa: ARG002
    ) -> str:
        """Return a URL that fetches the blob without credentials, for a while.

        Only backends that :attr:`can_presign` override this.
        """
        msg = (
            f"The {self.id!r} store ({type(self).__name__}) can't hand out "
            "presigned URLs; serve the blob yourself (sriblob.asgi.BlobApp), or "
            "check store.can_presign first."
        )
        raise PresignUnsupported(msg, backend=self.id)

    @property
    def can_link(self) -> bool:
        """Whether :meth:`link_to` places blobs on the local disk."""
        return False

    async def link_to(
        self,
        integrity: Integrity,  # noqa: ARG002 -- for the backends that can
        path: str | os.PathLike[str],  # noqa: ARG002
        /,
    ) -> str:
        """Place the blob at *path* (verified), without copying where possible.

        Only backends that :attr:`can_link` override this; it returns how
        the blob was placed (``"reflink"``, ``"hardlink"`` or ``"copy"``).
        """
        msg = (
            f"The {self.id!r} store ({type(self).__name__}) keeps no local "
            "files to link; read the blob (store.open) and write it yourself."
        )
        raise OperationUnsupported(msg, backend=self.id)

    # -- helpers --------------------------------------------------------------

    def not_found(self, integrity: Integrity) -> BlobNotFound:
        """Return the :class:`~sriblob.BlobNotFound` that :meth:`read_blob` raises."""
        msg = f"No blob {integrity} in the {self.id!r} store."
        return BlobNotFound(msg, integrity=str(integrity), backend=self.id)

    def check_range(
        self, integrity: Integrity, start: int, end: int | None, size: int
    ) -> int:
        """Return where a range of a blob of *size* bytes ends, or refuse it.

        Raises:
            RangeNotSatisfiable: The range reaches past the blob.
        """
        stop = size if end is None else end
        if start > size or stop > size:
            msg = (
                f"The range {start}-{stop} of blob {integrity} in the {self.id!r} "
                f"store is not satisfiable: the blob has {size} bytes."
            )
            raise RangeNotSatisfiable(
                msg, integrity=str(integrity), start=start, end=end, size=size
            )
        return stop


async def chunks_of(
    data: bytes, start: int = 0, stop: int | None = None
) -> AsyncIterator[bytes]:
    """Yield bytes *start* to *stop* - 1 of *data* (held whole) in chunks.

    For backends that read a blob in one piece (memory, the original
    PostgreSQL layout, a cache's small front hits).

    .. versionadded:: 0.1.0
    """
    end = len(data) if stop is None else stop
    for offset in range(start, end, CHUNK_SIZE):
        yield data[offset : min(offset + CHUNK_SIZE, end)]


async def sliced(
    chunks: AsyncIterator[bytes], start: int, stop: int
) -> AsyncIterator[bytes]:
    """Yield bytes *start* to *stop* - 1 of a stream, skipping the rest."""
    offset = 0
    async for chunk in chunks:
        if offset >= stop:
            return
        first = max(start - offset, 0)
        last = min(stop - offset, len(chunk))
        offset += len(chunk)
        if first < last:
            yield chunk if (first, last) == (0, len(chunk)) else chunk[first:last]
