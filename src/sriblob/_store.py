"""The BlobStore contract, shared by every backend, and its backend interface."""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt  # noqa: TC003 -- BlobInfo's annotations resolve at runtime
import logging
import warnings
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar, Final, Self, TypeAlias

import attrs

from ._compat import Buffer
from ._integrity import Algorithm, Integrity, IntegrityHasher, candidates
from ._lease import Lease
from ._lease import acquire as acquire_lease
from ._quota import Quota, Usage, check_levels
from ._tasks import wait_out
from .exceptions import (
    BlobNotFound,
    BlobTooLarge,
    IntegrityMismatch,
    InvalidIntegrity,
    PresignUnsupported,
    RangeNotSatisfiable,
    StoreClosed,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable
    from types import TracebackType

    from .exceptions import QuotaExceeded

__all__ = ["BlobBody", "BlobInfo", "BlobReader", "BlobSource", "BlobStore", "Data"]

logger = logging.getLogger("sriblob")

#: Bytes-like data, or an async iterable of bytes-like chunks.
Data: TypeAlias = Buffer | AsyncIterable[Buffer]

#: Chunks at least this large are hashed in a worker thread (hashlib releases
#: the GIL), so verification overlaps I/O and never stalls the event loop.
THREAD_HASH_THRESHOLD: Final = 256 * 1024
#: How many large chunks may wait to be hashed while a stream goes on.
HASH_AHEAD: Final = 2
#: Chunk size for slicing bytes-like input and for backends' reads.
CHUNK_SIZE: Final = 1024 * 1024
#: How many integrities a store remembers as seen corrupt (see ``put``).
SUSPECT_MEMORY: Final = 4096


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
    """What a backend's :meth:`BlobStore.read_blob` yields: the raw chunks.

    Attributes:
        chunks: The stored bytes (of the range asked for, from
            :meth:`BlobStore.read_blob_range`), unverified, in order.
        size: The whole blob's size in bytes when the backend knows it up
            front, else None (a range read must know it).

    .. versionadded:: 0.1.0
    """

    chunks: AsyncIterator[bytes]
    size: int | None


class _PipelinedHasher:
    """Hash chunks in order, off the event loop when they are large.

    Large chunks go to one worker thread of the hasher's own, in order, up
    to :data:`HASH_AHEAD` of them queued: ``update()`` returns at once, so
    the caller hands the chunk on (or fetches the next one) while the thread
    hashes, and the thread never waits for the event loop between chunks.
    Small chunks are hashed inline, after the queued ones.
    """

    __slots__ = ("_executor", "_hasher", "_pending")

    def __init__(self, algorithm: Algorithm) -> None:
        self._hasher = IntegrityHasher(algorithm)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    async def update(self, chunk: Buffer) -> None:
        if memoryview(chunk).nbytes < THREAD_HASH_THRESHOLD:
            await self._drain(0)
            self._hasher.update(chunk)
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="sriblob-hash"
            )
        loop = asyncio.get_running_loop()
        self._pending.append(
            loop.run_in_executor(self._executor, self._hasher.update, chunk)
        )
        await self._drain(HASH_AHEAD)

    async def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            await self._pending[0]
            self._pending.popleft()

    async def finish(self) -> IntegrityHasher:
        try:
            await self._drain(0)
        finally:
            self.close()
        return self._hasher

    def close(self) -> None:
        """Drop what is queued and let the thread go (idempotent)."""
        for pending in self._pending:
            pending.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


async def hash_buffer(view: Buffer, algorithm: Algorithm) -> IntegrityHasher:
    """Hash *view* whole, in a worker thread when it is large."""
    hasher = IntegrityHasher(algorithm)
    if memoryview(view).nbytes >= THREAD_HASH_THRESHOLD:
        await asyncio.to_thread(hasher.update, view)
    else:
        hasher.update(view)
    return hasher


def _as_buffer(data: object) -> memoryview | None:
    if isinstance(data, str):
        msg = "Blob data must be bytes, not str; encode it first (data.encode())."
        raise TypeError(msg)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        return None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class BlobSource:
    """Incoming blob data, as a backend's :meth:`BlobStore.write_blob` gets it.

    Wraps bytes-like data or an async iterable, hashes what passes through
    it, enforces the store's size limit as soon as it is crossed, and checks
    the expected integrity when the data ends. A backend must only make the
    blob visible after :meth:`chunks` is exhausted without error (or after
    :meth:`buffer` returned).

    Writable bytes-like data (a ``bytearray``) is copied once when the
    source is made, so the bytes hashed are the bytes written even if the
    caller changes its buffer meanwhile; read-only data (``bytes``) is used
    in place.

    Stores build sources; backends only consume them.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        data: Data,
        *,
        expected: Integrity | None,
        algorithm: Algorithm,
        verify: bool,
        max_size: int | None,
        backend: str,
        replace: bool = False,
        suspect: Callable[[Integrity], bool] | None = None,
        allowed: tuple[Integrity, ...] = (),
        adjust: Callable[[int], Awaitable[int]] | None = None,
    ) -> None:
        view = _as_buffer(data)
        if view is None and not isinstance(data, AsyncIterable):
            msg = (
                "Blob data must be bytes-like or an async iterable of bytes, "
                f"not {type(data).__name__}."
            )
            raise TypeError(msg)
        if view is not None and not view.readonly:
            # Hashing and writing happen at different times (often in
            # different threads): they must see the same bytes.
            view = memoryview(bytes(view))
        self._view = view
        self._iterable = data if view is None else None
        self._expected = expected
        #: With no expected integrity, the ones the data may have (several
        #: digests of one algorithm, any of which matches); () for any.
        self._allowed = allowed
        self._algorithm = algorithm
        self._verify = verify or expected is None
        #: Only a store that verifies knows a stored copy of another size is
        #: wrong; with verify=False, names don't fix the bytes.
        self._compare_sizes = verify
        self._max_size = max_size
        self._backend = backend
        self._replace = replace
        self._suspect = suspect
        self._adjust = adjust
        self._admitted: int | None = None
        self._consumed = False
        self._size = 0
        self._integrity: Integrity | None = None
        if self._view is not None:
            self._check_size(self._view.nbytes)

    @property
    def size(self) -> int | None:
        """The total size when the data is bytes-like, else None."""
        return None if self._view is None else self._view.nbytes

    @property
    def bytes_read(self) -> int:
        """How many bytes have passed through so far."""
        return self._size

    @property
    def consumed(self) -> bool:
        """Whether the data has been taken (by :meth:`chunks` or :meth:`buffer`)."""
        return self._consumed

    @property
    def expected(self) -> Integrity | None:
        """The integrity the data must have, when the caller gave one."""
        return self._expected

    @property
    def integrity(self) -> Integrity:
        """The blob's integrity: the expected one, or the computed one.

        Raises:
            RuntimeError: The integrity isn't known until the source has been
                consumed (``add()`` of a stream).
        """
        if self._integrity is not None:
            return self._integrity
        if self._expected is not None:
            return self._expected
        msg = "The integrity is known only after the source has been consumed."
        raise RuntimeError(msg)

    @property
    def replace(self) -> bool:
        """Whether a stored copy must be replaced whatever it looks like.

        True when the caller asked for it (``put(..., replace=True)``) or
        the store has seen the stored copy fail verification.
        """
        if self._replace:
            return True
        known = self._integrity or self._expected
        return known is not None and self._suspect is not None and self._suspect(known)

    async def admit(self, *, replacing: int = 0) -> None:
        """Charge this blob to the store's quota, right before it becomes visible.

        A backend calls it once it knows the bytes will be written as a new
        blob (or replace a copy of *replacing* bytes), before making them
        visible: past ``max_total_size`` it raises
        :class:`~sriblob.QuotaExceeded` and the backend stores nothing. If
        the write then fails, or finds the blob stored after all, it calls
        :meth:`unadmit`. Without a quota both do nothing.

        .. versionadded:: 0.1.0
        """
        if self._adjust is None or self._admitted is not None:
            return
        size = self.size
        if size is None:
            size = self._size
        delta = size - replacing
        await self._adjust(delta)
        self._admitted = delta

    async def unadmit(self) -> None:
        """Give back what :meth:`admit` charged (the write didn't happen).

        .. versionadded:: 0.1.0
        """
        admitted, self._admitted = self._admitted, None
        if admitted and self._adjust is not None:
            await self._adjust(-admitted)

    @property
    def admitted(self) -> bool:
        """Whether :meth:`admit` charged this blob (not undone by :meth:`unadmit`)."""
        return self._admitted is not None

    def keeps(self, stored_size: int | None) -> bool:
        """Return whether a stored copy of *stored_size* bytes may stand.

        A backend that finds the blob already stored calls this before
        skipping the write: a copy is kept unless it must be replaced
        (:attr:`replace`) or, in a store that verifies, its size differs
        from this data's, where both are known (the data's size is known for
        bytes-like data, and for a stream once it has been consumed).
        """
        if self.replace:
            return False
        if not self._compare_sizes:
            return True
        size = self.size
        if size is None and self._consumed:
            size = self._size
        return size is None or stored_size is None or size == stored_size

    def _check_size(self, size: int) -> None:
        if self._max_size is not None and size > self._max_size:
            msg = (
                f"Blob is larger than the {self._backend!r} store's limit of "
                f"{self._max_size} bytes (max_blob_size)."
            )
            raise BlobTooLarge(msg, limit=self._max_size, backend=self._backend)

    def _take(self) -> None:
        if self._consumed:
            msg = "A BlobSource can be consumed only once."
            raise RuntimeError(msg)
        self._consumed = True

    def _finish(self, hasher: IntegrityHasher | None) -> None:
        if hasher is None:
            return
        if self._expected is not None:
            hasher.verify(self._expected)
        self._integrity = hasher.integrity()
        self._check_allowed(self._integrity, hasher.size)

    def _check_allowed(self, integrity: Integrity, size: int) -> None:
        if self._allowed and integrity not in self._allowed:
            expected = " ".join(str(candidate) for candidate in self._allowed)
            msg = (
                f"Integrity mismatch: expected one of {expected}, got "
                f"{integrity} ({size} bytes)."
            )
            raise IntegrityMismatch(msg, expected=expected, actual=str(integrity))

    async def resolve(self) -> None:
        """Hash bytes-like data of unknown integrity now, so it becomes known.

        Does nothing for a stream or for data whose integrity was given.
        Afterwards the source behaves as if its integrity had been given,
        and the bytes aren't hashed again.
        """
        if self._view is None or self._expected is not None:
            return
        hasher = await hash_buffer(self._view, self._algorithm)
        integrity = hasher.integrity()
        self._check_allowed(integrity, hasher.size)
        self._expected = integrity
        self._verify = False

    async def buffer(self) -> memoryview | None:
        """Return the whole data, verified, if it was given as bytes-like.

        Returns None for an async iterable (use :meth:`chunks`).

        Raises:
            IntegrityMismatch: The bytes don't match the expected integrity.
        """
        if self._view is None:
            return None
        self._take()
        view = self._view
        self._size = view.nbytes
        if self._verify:
            self._finish(await hash_buffer(view, self._algorithm))
        return view

    async def chunks(self, chunk_size: int = CHUNK_SIZE) -> AsyncIterator[Buffer]:
        """Yield the data chunk by chunk, verifying when it ends.

        Bytes-like data is sliced into *chunk_size* views; an iterable's
        chunks pass through as they come. After the last chunk the expected
        integrity is checked: the iterator raises instead of ending if the
        data doesn't match.

        Raises:
            IntegrityMismatch: The data doesn't match the expected integrity.
            BlobTooLarge: The data grew past the store's size limit; raised
                before the chunk that crossed it is yielded, and without
                reading further.
            TypeError: The iterable yielded something that isn't bytes-like.
        """
        self._take()
        hasher = _PipelinedHasher(self._algorithm) if self._verify else None
        try:
            async for chunk in self._raw_chunks(chunk_size):
                size = memoryview(chunk).nbytes
                if not size:
                    continue
                self._check_size(self._size + size)
                self._size += size
                if hasher is not None:
                    await hasher.update(chunk)
                yield chunk
            self._finish(None if hasher is None else await hasher.finish())
        finally:
            if hasher is not None:
                hasher.close()

    async def _raw_chunks(self, chunk_size: int) -> AsyncIterator[Buffer]:
        if self._view is not None:
            for start in range(0, self._view.nbytes, chunk_size):
                yield self._view[start : start + chunk_size]
            return
        assert self._iterable is not None  # noqa: S101 -- set in __init__
        async for chunk in self._iterable:  # type: ignore[union-attr]
            view = None if isinstance(chunk, str) else _as_buffer(chunk)
            if view is None:
                msg = (
                    f"Blob data chunks must be bytes-like, not {type(chunk).__name__}."
                )
                raise TypeError(msg)
            # A writable chunk (a bytearray the source refills, say) is
            # copied: hashing and writing run behind the stream and must see
            # the bytes as they were yielded.
            yield chunk if view.readonly else bytes(view)


class BlobReader:
    """The chunks of a stored blob, as :meth:`BlobStore.open` yields them.

    An async iterator of ``bytes``. With verification on (the default) the
    blob is checked as it streams and :class:`~sriblob.IntegrityMismatch` is
    raised instead of the end of iteration, so **don't trust or publish the
    data before the iterator is exhausted**.

    A reader of a byte range (``open(..., start=..., end=...)``) that isn't
    the whole blob can't be verified: a range has no integrity of its own.
    :attr:`verifies` says which kind a reader is.

    Attributes:
        integrity: The blob's integrity.
        size: The whole blob's size in bytes when the backend knows it, else
            None (always known for a range).
        store_id: The id of the store the bytes come from (the one that
            answered, for :meth:`BlobStoreRegistry.open_with_fallback`).
        start: The first byte this reader yields (0 for the whole blob).
        end: The byte after the last one it yields, or None for the blob's
            end when the size isn't known.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        *,
        integrity: Integrity,
        size: int | None,
        verify: bool,
        store_id: str,
        on_mismatch: Callable[[Integrity], None] | None = None,
        start: int = 0,
        end: int | None = None,
    ) -> None:
        self.integrity = integrity
        self.size = size
        self.store_id = store_id
        self.start = start
        self.end = size if end is None else end
        self._chunks = chunks
        self._hasher = _PipelinedHasher(integrity.algorithm) if verify else None
        self._on_mismatch = on_mismatch
        self._done = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await anext(self._chunks)
        except StopAsyncIteration:
            self._done = True
            if self._hasher is not None:
                hasher = await self._hasher.finish()
                try:
                    hasher.verify(self.integrity)
                except IntegrityMismatch:
                    if self._on_mismatch is not None:
                        self._on_mismatch(self.integrity)
                    raise
            raise
        if self._hasher is not None:
            await self._hasher.update(chunk)
        return chunk

    @property
    def verifies(self) -> bool:
        """Whether the bytes are checked against the integrity as they stream."""
        return self._hasher is not None

    async def read(self) -> bytes:
        """Read (and verify) the rest of the blob into memory."""
        return b"".join([chunk async for chunk in self])

    def _close(self) -> None:
        if self._hasher is not None:
            self._hasher.close()

    def __repr__(self) -> str:
        span = (
            ""
            if self.start == 0 and self.end == self.size
            else (f" range={self.start}-{self.end}")
        )
        return (
            f"<BlobReader {self.integrity} size={self.size}{span} "
            f"store={self.store_id}>"
        )


class BlobStore(abc.ABC):
    """An async store of immutable blobs named by their integrity.

    Every backend implements this contract; a blob put under an integrity is
    read back by it, and content addressing is enforced: bytes are checked
    against the integrity on the way in and on the way out, unless the store
    was built with ``verify=False``.

    Every method that takes an integrity accepts a ``str`` or an
    :class:`~sriblob.Integrity`; a malformed string raises
    :class:`~sriblob.InvalidIntegrity` before any I/O. Stores are async
    context managers; :meth:`aclose` releases their resources.

    **Writing a backend.** A backend subclasses this class and implements the
    backend interface: :meth:`write_blob`, :meth:`read_blob`,
    :meth:`delete_blob` and :meth:`list_names`, and where it can do better
    than the defaults :meth:`stat_blob`, :meth:`has_blob`,
    :meth:`read_blob_bytes`, :meth:`startup` and :meth:`shutdown`. Argument
    checking, verification, size limits, repair of copies seen corrupt and
    logging happen here, once, for every backend. See the "Writing a backend" guide, and
    :mod:`sriblob.testing` for the contract suite a backend must pass.

    Args:
        id: The store's id in a registry.
        verify: Check bytes against their integrity on put, add, get and
            open. Turn it off only for buckets that use integrities as
            *names* for derived bytes (the original system stores repacked
            archives under the upstream tarball's integrity).
        max_blob_size: Refuse blobs larger than this many bytes
            (:class:`~sriblob.BlobTooLarge`); None for no limit.
        max_total_size: The store's quota: a put of a new blob that would
            take the bytes stored past this raises
            :class:`~sriblob.QuotaExceeded` and stores nothing. None for
            no quota.
        warn_total_size: Log one WARNING when the bytes stored reach this
            level (again each time they fall below and reach it again).
            None for no warning.

    With either level set, the store keeps a running total of its blobs'
    sizes (see :meth:`adjust_total` and the "Quotas" section of the
    operations guide for where each backend keeps it).

    .. versionadded:: 0.1.0
    """

    #: Whether the store must be entered (``async with``) before use; set it
    #: in a backend whose :meth:`startup` acquires what every call needs.
    requires_startup: ClassVar[bool] = False

    def __init__(
        self,
        *,
        id: str,
        verify: bool = True,
        max_blob_size: int | None = None,
        max_total_size: int | None = None,
        warn_total_size: int | None = None,
    ) -> None:
        if not isinstance(id, str) or not id:
            msg = f"A store id must be a non-empty str, not {id!r}."
            raise ValueError(msg)
        if max_blob_size is not None and (
            isinstance(max_blob_size, bool)
            or not isinstance(max_blob_size, int)
            or max_blob_size < 0
        ):
            msg = f"max_blob_size must be None or an int >= 0, not {max_blob_size!r}."
            raise ValueError(msg)
        if not isinstance(verify, bool):
            msg = f"verify must be a bool, not {verify!r}."
            raise TypeError(msg)
        self._id = id
        self._verify = verify
        self._max_blob_size = max_blob_size
        self._started = False
        self._closed = False
        self._suspects: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lease_holder: Lease | None = None
        check_levels(max_total_size, warn_total_size)
        self._quota = (
            None
            if max_total_size is None and warn_total_size is None
            else Quota(id, max_total_size, warn_total_size)
        )
        self._total: int | None = None
        self._total_lock = asyncio.Lock()

    @property
    def id(self) -> str:
        """The store's id ("memory", "filesystem", "s3", ...)."""
        return self._id

    @property
    def verify(self) -> bool:
        """Whether bytes are checked against their integrity."""
        return self._verify

    @property
    def max_blob_size(self) -> int | None:
        """The largest blob this store accepts, in bytes, or None."""
        return self._max_blob_size

    @property
    def max_total_size(self) -> int | None:
        """The store's quota in bytes (see :class:`~sriblob.QuotaExceeded`), or None.

        .. versionadded:: 0.1.0
        """
        return None if self._quota is None else self._quota.max_total_size

    @property
    def warn_total_size(self) -> int | None:
        """The total above which puts log a WARNING, or None.

        .. versionadded:: 0.1.0
        """
        return None if self._quota is None else self._quota.warn_total_size

    @property
    def is_open(self) -> bool:
        """Whether the store can be used now.

        False before ``async with`` for stores that need it
        (:attr:`requires_startup`), and after :meth:`aclose` for every store.

        .. versionadded:: 0.1.0
        """
        return not self._closed and (self._started or not self.requires_startup)

    def _repr_details(self) -> str:
        return ""

    def _store_of_record(self) -> BlobStore:
        """The store whose answers decide what exists (a cache's back)."""
        return self

    def _left_open(self) -> str | None:
        """Say what a store collected while open leaks, or None: nothing."""
        return None

    def __del__(self) -> None:
        # getattr: __init__ may have raised before setting everything.
        if not getattr(self, "_started", False) or self._closed:
            return
        leaked = self._left_open()
        if leaked is not None:
            name = type(self).__name__
            msg = (
                f"{self!r} was never closed; use `async with {name}(...)` or "
                f"`await store.aclose()` to close {leaked}."
            )
            warnings.warn(msg, ResourceWarning, source=self, stacklevel=1)

    def __repr__(self) -> str:
        details = self._repr_details()
        limit = (
            f" max_blob_size={self._max_blob_size}"
            if self._max_blob_size is not None
            else ""
        )
        return (
            f"<{type(self).__name__} id={self._id!r}"
            f"{' ' + details if details else ''} verify={self.verify}{limit}>"
        )

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            msg = f"{self!r} is closed; create a new store instead of reopening it."
            raise StoreClosed(msg)
        if not self._started:
            await self.startup()
            self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the store's resources. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._started or not self.requires_startup:
            await self.shutdown()

    def _check_usable(self) -> None:
        if self._closed:
            msg = f"{self!r} is closed; it can't be used any more."
            raise StoreClosed(msg)
        if self.requires_startup and not self._started:
            name = type(self).__name__
            msg = (
                f"{self!r} is not open. Use `async with {name}(...) as store:` "
                "(or `await store.__aenter__()`) before using it."
            )
            raise StoreClosed(msg)

    # -- the total-size quota -------------------------------------------------

    async def usage(self) -> Usage:
        """Return the bytes the store holds, against its quota levels.

        With a quota (``max_total_size`` or ``warn_total_size``) this is the
        running total the store keeps for every process that writes to it;
        without one the blobs are counted now (a listing).

        .. versionadded:: 0.1.0
        """
        self._check_usable()
        if self._quota is None:
            total = await self.stored_total()
        else:
            total = await self.adjust_total(0)
        return Usage(total, self.max_total_size, self.warn_total_size)

    async def stored_total(self) -> int:
        """Count the bytes of every stored blob (the hook behind the running total).

        The default lists the store and stats each blob; backends that can
        sum cheaper override it. A running total starts from this.

        .. versionadded:: 0.1.0
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

        The hook behind the quota. A positive *delta* that doesn't fit under
        ``max_total_size`` must raise :meth:`quota_exceeded` and change
        nothing; 0 reads the total. The check and the update must be one
        step for every process that writes to the store. The default keeps
        the total in this store object (started from :meth:`stored_total`),
        which is right for a store only this process writes to.

        .. versionadded:: 0.1.0
        """
        async with self._total_lock:
            if self._total is None:
                self._total = await self.stored_total()
            if delta > 0 and not self.fits(self._total, delta):
                raise self.quota_exceeded(self._total, delta)
            self._total = max(0, self._total + delta)
            return self._total

    def fits(self, total: int, size: int) -> bool:
        """Whether *size* more bytes keep a store holding *total* within its quota.

        .. versionadded:: 0.1.0
        """
        return self._quota is None or self._quota.fits(total, size)

    def quota_exceeded(self, total: int, size: int) -> QuotaExceeded:
        """The :class:`~sriblob.QuotaExceeded` for a blob of *size* that doesn't fit.

        .. versionadded:: 0.1.0
        """
        assert self._quota is not None  # noqa: S101 -- only called with a quota
        return self._quota.exceeded(total, size)

    async def _adjust_total(self, delta: int) -> int:
        total = await self.adjust_total(delta)
        if self._quota is not None:
            self._quota.note(total)
        return total

    async def space_freed(self, size: int, /) -> None:
        """Tell the running total that a blob of *size* bytes was deleted.

        Backends call it from :meth:`delete_blob` when they removed a blob;
        without a quota it does nothing.

        .. versionadded:: 0.1.0
        """
        if self._quota is not None and size:
            await self._adjust_total(-size)

    # -- the maintenance lease -------------------------------------------------

    @contextlib.asynccontextmanager
    async def lease(
        self, purpose: str, *, wait: float | None = None
    ) -> AsyncIterator[Lease]:
        """Hold the store's maintenance lease for the ``async with`` block.

        One holder at a time across every process (and host) that shares the
        store: an advisory lock in PostgreSQL, a lock file in a filesystem
        store's root, a lease object with an expiry in an S3 bucket, a lock
        of this process for a memory store. :func:`~sriblob.collect_garbage`,
        :func:`~sriblob.migrate` and :func:`~sriblob.verify` with deletion
        take it; puts, gets and deletes never do. A holder that dies frees
        it: at once on PostgreSQL and the filesystem (the server or the
        kernel drops the lock), after the expiry on S3.

        ::

            async with store.lease("reindex", wait=30):
                ...

        Args:
            purpose: What it is taken for, shown to whoever finds it busy.
            wait: Seconds to wait for a busy lease; None (default) fails at
                once.

        Raises:
            StoreBusy: Someone else holds it (naming who and since when).

        .. versionadded:: 0.1.0
        """
        self._check_usable()
        if wait is not None and (
            isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0
        ):
            msg = f"wait must be None or a number of seconds >= 0, not {wait!r}."
            raise ValueError(msg)
        mine = Lease.mine(purpose)
        await acquire_lease(self, mine, wait)
        logger.debug(
            "lease taken backend=%s purpose=%s token=%s", self._id, purpose, mine.token
        )
        try:
            yield mine
        finally:
            releasing = asyncio.ensure_future(self.release_lease(mine))
            await wait_out(releasing)
            releasing.result()
            logger.debug("lease released backend=%s token=%s", self._id, mine.token)

    async def try_lease(self, lease: Lease, /) -> Lease | None:
        """Take the maintenance lease for *lease* if it is free.

        The backend hook behind :meth:`lease`: return None once the lease is
        held for *lease*, or the :class:`~sriblob.Lease` of its holder (None
        is not an answer for "taken": return a placeholder if the holder
        can't be read). The default keeps it in this store object, which is
        right for a store only this process uses (memory); shared backends
        keep it where every process sees it.

        .. versionadded:: 0.1.0
        """
        if self._lease_holder is not None:
            return self._lease_holder
        self._lease_holder = lease
        return None

    async def release_lease(self, lease: Lease, /) -> None:
        """Give up the lease *lease* holds (the hook behind :meth:`lease`).

        .. versionadded:: 0.1.0
        """
        if self._lease_holder is not None and self._lease_holder.token == lease.token:
            self._lease_holder = None

    async def check_lease(self, lease: Lease, /) -> None:
        """Raise :class:`~sriblob.StoreBusy` if *lease* is no longer held.

        Operations call it before each deletion. Leases that can't be lost
        while the process lives (a lock) never raise; an S3 lease whose
        renewal failed until it expired does.

        .. versionadded:: 0.1.0
        """
        del lease

    # -- copies seen corrupt ---------------------------------------------------

    def _suspect(self, integrity: Integrity) -> bool:
        return str(integrity) in self._suspects

    def _saw_corrupt(self, integrity: Integrity) -> None:
        """Remember that the stored copy failed verification: a put replaces it."""
        name = str(integrity)
        self._suspects[name] = None
        self._suspects.move_to_end(name)
        while len(self._suspects) > SUSPECT_MEMORY:
            self._suspects.popitem(last=False)

    async def _stored_copy_intact(self, integrity: Integrity) -> bool:
        """Read the stored copy through, verifying it: False if it is damaged.

        For a backend's :meth:`write_blob` when a put finds the blob stored:
        a damaged copy is remembered as one (so ``source.replace`` is then
        true) and the write goes on to replace it. A store that doesn't
        verify can't tell (its names don't fix its bytes): True. A copy
        deleted meanwhile is False, so the write stores the blob again.

        .. versionadded:: 0.1.0
        """
        if not self._verify:
            return True
        try:
            async with self.open(integrity) as reader:
                async for _ in reader:
                    pass
        except IntegrityMismatch:
            logger.warning(
                "put backend=%s integrity=%s: the stored copy is corrupt; "
                "replacing it with the bytes put",
                self._id,
                integrity,
            )
            return False
        except BlobNotFound:
            return False
        return True

    def _source(
        self,
        data: Data,
        expected: Integrity | None,
        algorithm: Algorithm,
        *,
        replace: bool,
        allowed: tuple[Integrity, ...] = (),
    ) -> BlobSource:
        return BlobSource(
            data,
            expected=expected,
            algorithm=algorithm,
            verify=self._verify,
            max_size=self._max_blob_size,
            backend=self._id,
            replace=replace,
            suspect=self._suspect,
            allowed=allowed,
            adjust=None if self._quota is None else self._adjust_total,
        )

    async def _write(self, source: BlobSource) -> Integrity:
        await self.write_blob(source)
        integrity = source.integrity
        if source.consumed:
            self._suspects.pop(str(integrity), None)
        return integrity

    # -- the contract -----------------------------------------------------

    async def put(
        self, integrity: str | Integrity, data: Data, /, *, replace: bool = False
    ) -> str:
        """Store *data* under *integrity*; return the integrity it is stored under.

        Putting an integrity that is already stored is cheap: nothing is
        written, except in three cases where the stored copy is replaced by
        the new, verified bytes:

        - *replace* is true;
        - this store object has seen the stored copy fail verification (a
          ``get()``, ``open()`` or ``verify()`` raised or reported
          :class:`~sriblob.IntegrityMismatch`; the last 4,096 such blobs are
          remembered, per store object);
        - the stored copy's size differs from *data*'s, where both are known
          without reading the stored bytes (always for bytes-like *data*;
          for a stream, only where the backend stages it before naming it:
          ``add()`` on S3 and the filesystem).

        Args:
            integrity: The blob's integrity; it is stored under the canonical
                form of its strongest hash. When the string holds several
                digests of that algorithm, the data may match any of them
                (as SRI says), and is stored under the one it matches.
            data: Bytes-like data or an async iterable of bytes-like chunks;
                an iterable is streamed, never held whole in memory. A
                writable buffer (a ``bytearray``) is copied once, and a
                writable chunk as it arrives, so the caller may change or
                reuse its buffer meanwhile.
            replace: Write the bytes even if a copy is stored, replacing it
                atomically (readers see the old copy or the new one).

        Returns:
            The canonical integrity string the blob is stored under.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            IntegrityMismatch: The data doesn't match *integrity*; nothing is
                stored or visible under it.
            BlobTooLarge: The data is larger than ``max_blob_size``.
            TypeError: *data* is neither bytes-like nor an async iterable.
        """
        wanted = candidates(integrity)
        self._check_usable()
        algorithm = wanted[0].algorithm
        if len(wanted) == 1:
            source = self._source(data, wanted[0], algorithm, replace=replace)
        else:
            # The name is known once the bytes are hashed: as for add().
            source = self._source(
                data, None, algorithm, replace=replace, allowed=wanted
            )
            await source.resolve()
        stored = await self._write(source)
        logger.debug(
            "put backend=%s integrity=%s size=%d", self._id, stored, source.bytes_read
        )
        return str(stored)

    async def add(
        self,
        data: Data,
        /,
        *,
        algorithm: Algorithm = "sha512",
        replace: bool = False,
    ) -> str:
        """Store *data* whose integrity the caller doesn't know yet.

        Args:
            data: Bytes-like data or an async iterable of bytes-like chunks.
            algorithm: The hash to name the blob by.
            replace: See :meth:`put`.

        Returns:
            The blob's canonical integrity string.

        Raises:
            ValueError: *algorithm* is not sha256, sha384 or sha512.
            BlobTooLarge: The data is larger than ``max_blob_size``.
        """
        IntegrityHasher(algorithm)  # validates the algorithm before any I/O
        self._check_usable()
        source = self._source(data, None, algorithm, replace=replace)
        await source.resolve()
        integrity = await self._write(source)
        logger.debug(
            "add backend=%s integrity=%s size=%d",
            self._id,
            integrity,
            source.bytes_read,
        )
        return str(integrity)

    async def get(self, integrity: str | Integrity, /) -> bytes | None:
        """Return the blob's bytes, or None when the store doesn't hold it.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            IntegrityMismatch: The stored bytes are corrupted.
        """
        options = candidates(integrity)
        self._check_usable()
        for wanted in options:
            data = await self._get_one(wanted)
            if data is not None:
                return data
        return None

    async def _get_one(self, wanted: Integrity) -> bytes | None:
        data = await self.read_blob_bytes(wanted)
        if data is not None and self._verify:
            hasher = await hash_buffer(data, wanted.algorithm)
            try:
                hasher.verify(wanted)
            except IntegrityMismatch:
                self._saw_corrupt(wanted)
                raise
        logger.debug(
            "get backend=%s integrity=%s size=%s",
            self._id,
            wanted,
            None if data is None else len(data),
        )
        return data

    @contextlib.asynccontextmanager
    async def _open_reader(
        self, options: tuple[Integrity, ...], start: int, end: int | None
    ) -> AsyncIterator[BlobReader]:
        whole = start == 0 and end is None
        async with contextlib.AsyncExitStack() as stack:
            for wanted in options:
                opening = (
                    self.read_blob(wanted)
                    if whole
                    else self.read_blob_range(wanted, start, end)
                )
                try:
                    body = await stack.enter_async_context(opening)
                except BlobNotFound:
                    if wanted is options[-1]:
                        raise
                    continue
                break
            reader = self._reader(wanted, body, start, end)
            try:
                yield reader
            finally:
                reader._close()  # noqa: SLF001 -- the store owns its readers

    def _reader(
        self, wanted: Integrity, body: BlobBody, start: int, end: int | None
    ) -> BlobReader:
        stop = body.size if end is None else end
        # Only the whole blob has an integrity to check against.
        whole = start == 0 and (end is None or end == body.size)
        logger.debug(
            "open backend=%s integrity=%s size=%s range=%s-%s",
            self._id,
            wanted,
            body.size,
            start,
            stop,
        )
        return BlobReader(
            body.chunks,
            integrity=wanted,
            size=body.size,
            verify=self._verify and whole,
            store_id=self._id,
            on_mismatch=self._saw_corrupt,
            start=start,
            end=stop,
        )

    def open(
        self,
        integrity: str | Integrity,
        /,
        *,
        start: int = 0,
        end: int | None = None,
    ) -> contextlib.AbstractAsyncContextManager[BlobReader]:
        """Stream the blob: an async context manager yielding a :class:`BlobReader`.

        ::

            async with store.open(integrity) as reader:
                async for chunk in reader:
                    ...  # don't publish anything before the loop ends

        Memory stays bounded whatever the blob's size. The bytes are verified
        as they stream and :class:`~sriblob.IntegrityMismatch` is raised at
        the end at the latest, so the data can't be trusted before the
        iterator is exhausted.

        **Byte ranges.** With *start* and *end*, the reader yields bytes
        ``start`` to ``end - 1`` (half-open, like a slice; *end* None for the
        blob's end). A range that isn't the whole blob is **not verified**
        (it has no integrity of its own; :attr:`BlobReader.verifies` is
        False): trust it only as far as you trust the store, or verify the
        whole blob once. Backends read just the range where they can (S3
        ``Range``, a file seek, the right PostgreSQL chunk rows).

        Args:
            integrity: The blob's integrity.
            start: The first byte to yield, from 0.
            end: The byte after the last one to yield, at most the blob's
                size; None for the blob's end.

        Raises:
            InvalidIntegrity: *integrity* is malformed (raised by this call,
                before any I/O).
            ValueError: *start* is negative, or *end* is before *start*
                (raised by this call).
            BlobNotFound: The store doesn't hold the blob (raised on entry).
            RangeNotSatisfiable: *start* or *end* is past the blob's size
                (raised on entry).
            IntegrityMismatch: The stored bytes are corrupted (raised while
                iterating a whole-blob reader).
        """
        options = candidates(integrity)
        _check_bounds(start, end)
        self._check_usable()
        return self._open_reader(options, start, end)

    async def has(self, integrity: str | Integrity, /) -> bool:
        """Return whether the store holds a blob under *integrity*.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        options = candidates(integrity)
        self._check_usable()
        for wanted in options:
            found = await self.has_blob(wanted)
            logger.debug(
                "has backend=%s integrity=%s found=%s", self._id, wanted, found
            )
            if found:
                return True
        return False

    async def stat(self, integrity: str | Integrity, /) -> BlobInfo | None:
        """Return the blob's size (and storage time) without reading it.

        Returns:
            A :class:`BlobInfo`, or None when the store doesn't hold the blob.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        options = candidates(integrity)
        self._check_usable()
        for wanted in options:
            info = await self.stat_blob(wanted)
            logger.debug(
                "stat backend=%s integrity=%s size=%s",
                self._id,
                wanted,
                None if info is None else info.size,
            )
            if info is not None:
                return info
        return None

    async def delete(
        self,
        integrity: str | Integrity,
        /,
        *,
        stored_before: dt.datetime | None = None,
    ) -> bool:
        """Delete the blob; deleting an absent blob does nothing.

        Args:
            integrity: The blob's integrity.
            stored_before: Delete only if the blob's storage time
                (:attr:`BlobInfo.stored_at`) is not later than this
                (timezone-aware). The check and the deletion are atomic with
                respect to a put that renews the storage time, on every
                backend that renews it (see :func:`~sriblob.collect_garbage`).

        Returns:
            False if the blob was kept because it was stored after
            *stored_before*; True otherwise (the blob is gone).

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            ValueError: *stored_before* is naive.
        """
        options = candidates(integrity)
        if stored_before is not None and stored_before.utcoffset() is None:
            msg = "stored_before must be timezone-aware, e.g. datetime.now(UTC)."
            raise ValueError(msg)
        self._check_usable()
        gone = True
        for wanted in options:
            deleted = await self.delete_blob(wanted, stored_before=stored_before)
            logger.debug(
                "delete backend=%s integrity=%s deleted=%s", self._id, wanted, deleted
            )
            gone = gone and deleted
        return gone

    async def list(
        self, *, on_skip: Callable[[str], object] | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield the canonical integrity of every blob, as the backend pages.

        The listing is never held whole in memory. Order is backend-defined.
        One debug line is logged when the listing ends (or is closed early),
        with the number of blobs yielded and skipped.

        Args:
            on_skip: Called with each stored name that isn't listed because
                it doesn't decode to a canonical integrity (objects another
                tool wrote under the prefix, say). The store's own temporary
                and internal objects are never reported.
        """
        async with contextlib.aclosing(self.list_parsed(on_skip=on_skip)) as blobs:
            async for name, _ in blobs:
                yield name

    async def list_parsed(
        self, *, on_skip: Callable[[str], object] | None = None
    ) -> AsyncGenerator[tuple[str, Integrity], None]:
        """Like :meth:`list`, but yield each name with its parsed :class:`Integrity`.

        For callers that go on to use each blob (the whole-store operations),
        so no name is parsed twice.

        .. versionadded:: 0.1.0
        """
        self._check_usable()
        names = self.list_names()
        count = skipped = 0
        try:
            async for name in names:
                try:
                    parsed = Integrity.parse(name)
                except InvalidIntegrity:
                    parsed = None
                if parsed is not None and str(parsed) == name:
                    count += 1
                    yield name, parsed
                    continue
                skipped += 1
                if on_skip is not None:
                    on_skip(name)
        finally:
            logger.debug(
                "list backend=%s count=%d skipped=%d", self._id, count, skipped
            )
            # A consumer that stops early closes the backend's listing now,
            # releasing its connection or cursor, not whenever GC gets to it.
            close = getattr(names, "aclose", None)
            if close is not None:
                await close()

    # -- the backend interface ---------------------------------------------

    async def startup(self) -> None:  # noqa: B027 -- optional hook
        """Acquire the backend's resources; called once by ``async with``.

        Backends whose every call needs them (a client, a pool) also set
        :attr:`requires_startup`.

        .. versionadded:: 0.1.0
        """

    async def shutdown(self) -> None:  # noqa: B027 -- optional hook
        """Release the backend's resources; called once by :meth:`aclose`.

        .. versionadded:: 0.1.0
        """

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
        failing producer) must propagate unchanged.

        .. versionadded:: 0.1.0
        """

    @abc.abstractmethod
    def read_blob(
        self, integrity: Integrity, /
    ) -> contextlib.AbstractAsyncContextManager[BlobBody]:
        """Open the stored blob: an async context manager yielding a :class:`BlobBody`.

        Raises :class:`~sriblob.BlobNotFound` (build it with
        :meth:`not_found`) on entry when the blob is absent. Leaving the
        context releases whatever the read holds (a connection, a file).
        The chunks are unverified; :meth:`open` verifies them.

        .. versionadded:: 0.1.0
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

        .. versionadded:: 0.1.0
        """
        async with self.read_blob(integrity) as body:
            size = body.size
            if size is None:
                info = await self.stat_blob(integrity)
                if info is None:  # pragma: no cover -- deleted meanwhile
                    raise self.not_found(integrity)
                size = info.size
            stop = self.check_range(integrity, start, end, size)
            yield BlobBody(_sliced(body.chunks, start, stop), size)

    def check_range(
        self, integrity: Integrity, start: int, end: int | None, size: int
    ) -> int:
        """Return where a range of a blob of *size* bytes ends, or refuse it.

        For backends' :meth:`read_blob_range`: *start* must be at most
        *size*, *end* (None: *size*) from *start* to *size*.

        Raises:
            RangeNotSatisfiable: The range reaches past the blob.

        .. versionadded:: 0.1.0
        """
        stop = size if end is None else end
        if start > size or stop > size:
            msg = (
                f"The range {start}-{stop} of blob {integrity} in the {self._id!r} "
                f"store is not satisfiable: the blob has {size} bytes."
            )
            raise RangeNotSatisfiable(
                msg, integrity=str(integrity), start=start, end=end, size=size
            )
        return stop

    @property
    def can_presign(self) -> bool:
        """Whether :meth:`presign` hands out URLs (S3: yes; others: no).

        .. versionadded:: 0.1.0
        """
        return False

    async def presign(
        self,
        integrity: str | Integrity,
        /,
        *,
        expires_in: int = 3600,  # noqa: ARG002 -- for the stores that can
        method: str = "GET",  # noqa: ARG002 -- for the stores that can
    ) -> str:
        """Return a URL that fetches the blob without credentials, for a while.

        Only stores that can (:attr:`can_presign`) override this; the
        default raises.

        Raises:
            PresignUnsupported: The store can't presign (a ``NotImplementedError``).

        .. versionadded:: 0.1.0
        """
        candidates(integrity)
        msg = (
            f"The {self._id!r} store ({type(self).__name__}) can't hand out "
            "presigned URLs; serve the blob yourself (sriblob.asgi.BlobApp), or "
            "check store.can_presign first."
        )
        raise PresignUnsupported(msg, backend=self._id)

    async def read_blob_bytes(self, integrity: Integrity, /) -> bytes | None:
        """Return the stored bytes unverified, or None when absent.

        The default reads through :meth:`read_blob`; backends override it
        when one call does better.

        .. versionadded:: 0.1.0
        """
        try:
            async with self.read_blob(integrity) as body:
                return b"".join([chunk async for chunk in body.chunks])
        except BlobNotFound:
            return None

    async def stat_blob(self, integrity: Integrity, /) -> BlobInfo | None:
        """Return the blob's :class:`BlobInfo` without reading it, or None.

        ``stored_at`` must not be earlier than the moment the blob's write
        committed (or it was last renewed), or must be None. Backends should
        override this: the default opens the blob and, if the backend gives
        no size, counts its bytes.

        .. versionadded:: 0.1.0
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
        """Return whether the blob is stored; defaults to :meth:`stat_blob`.

        .. versionadded:: 0.1.0
        """
        return await self.stat_blob(integrity) is not None

    @abc.abstractmethod
    async def delete_blob(
        self, integrity: Integrity, /, *, stored_before: dt.datetime | None
    ) -> bool:
        """Delete the blob if it is stored; see :meth:`delete` for the result.

        With *stored_before*, delete only a blob whose storage time is not
        later than it, atomically with respect to a concurrent put that
        renews the storage time.

        .. versionadded:: 0.1.0
        """

    @abc.abstractmethod
    def list_names(self) -> AsyncIterator[str]:
        """Yield the decoded name of every stored object, unvalidated.

        Names that aren't canonical integrities are reported by :meth:`list`
        to its ``on_skip``; the backend's own temporary and internal objects
        must not be yielded.

        .. versionadded:: 0.1.0
        """

    def not_found(self, integrity: Integrity) -> BlobNotFound:
        """Return the :class:`~sriblob.BlobNotFound` that :meth:`read_blob` raises.

        .. versionadded:: 0.1.0
        """
        msg = f"No blob {integrity} in the {self._id!r} store."
        return BlobNotFound(msg, integrity=str(integrity), backend=self._id)


def _check_bounds(start: object, end: object) -> None:
    """Refuse a range that can't be one, whatever the blob (before any I/O)."""
    for name, value in (("start", start), ("end", end)):
        if value is None and name == "end":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{name} must be an int, not {type(value).__name__}."
            raise TypeError(msg)
    assert isinstance(start, int)  # noqa: S101 -- checked above
    if start < 0:
        msg = f"start must be >= 0, not {start}."
        raise ValueError(msg)
    if end is not None and end < start:  # type: ignore[operator]
        msg = f"end must be None or >= start ({start}), not {end}."
        raise ValueError(msg)


async def chunks_of(
    data: bytes, start: int = 0, stop: int | None = None
) -> AsyncIterator[bytes]:
    """Yield bytes *start* to *stop* - 1 of *data* (held whole) in chunks.

    For backends that read a blob in one piece (memory, the original
    PostgreSQL layout, a cache's small front hits).
    """
    end = len(data) if stop is None else stop
    for offset in range(start, end, CHUNK_SIZE):
        yield data[offset : min(offset + CHUNK_SIZE, end)]


async def _sliced(
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
