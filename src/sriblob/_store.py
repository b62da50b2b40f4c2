"""The BlobStore contract, shared by every backend."""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import contextlib
import datetime as dt  # noqa: TC003 -- BlobInfo's annotations resolve at runtime
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Final, Self, TypeAlias

import attrs

from ._compat import Buffer
from ._integrity import Algorithm, Integrity, IntegrityHasher, coerce_integrity
from .exceptions import BlobNotFound, BlobTooLarge, InvalidIntegrity, StoreClosed

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["BlobInfo", "BlobReader", "BlobSource", "BlobStore", "Data"]

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


@attrs.frozen
class BlobInfo:
    """What a store knows about a blob without reading its bytes.

    Attributes:
        integrity: The blob's canonical integrity.
        size: The blob's size in bytes.
        stored_at: When the blob was stored (timezone-aware), where the
            backend records it; None otherwise.

    .. versionadded:: 0.1.0
    """

    integrity: str
    size: int
    stored_at: dt.datetime | None = None


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
    """Incoming blob data as a backend's ``_put`` and ``_add`` receive it.

    Wraps bytes-like data or an async iterable, hashes what passes through
    it, enforces the store's size limit as soon as it is crossed, and checks
    the expected integrity when the data ends. A backend must only make the
    blob visible after :meth:`chunks` is exhausted without error (or after
    :meth:`buffer` returned).

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
    ) -> None:
        self._view = _as_buffer(data)
        if self._view is None and not isinstance(data, AsyncIterable):
            msg = (
                "Blob data must be bytes-like or an async iterable of bytes, "
                f"not {type(data).__name__}."
            )
            raise TypeError(msg)
        self._iterable = data if self._view is None else None
        self._expected = expected
        self._algorithm = algorithm
        self._verify = verify or expected is None
        self._max_size = max_size
        self._backend = backend
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
    def integrity(self) -> Integrity:
        """The blob's integrity: the expected one, or the computed one.

        Raises:
            RuntimeError: An ``add()`` source was not consumed yet.
        """
        if self._integrity is not None:
            return self._integrity
        if self._expected is not None:
            return self._expected
        msg = "The integrity is known only after the source has been consumed."
        raise RuntimeError(msg)

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
            hasher = IntegrityHasher(self._algorithm)
            if view.nbytes >= THREAD_HASH_THRESHOLD:
                await asyncio.to_thread(hasher.update, view)
            else:
                hasher.update(view)
            self._finish(hasher)
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

    Attributes:
        integrity: The blob's integrity.
        size: The blob's size in bytes when the backend knows it, else None.
        store_id: The id of the store the bytes come from (the one that
            answered, for :meth:`BlobStoreRegistry.open_with_fallback`).

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
    ) -> None:
        self.integrity = integrity
        self.size = size
        self.store_id = store_id
        self._chunks = chunks
        self._hasher = _PipelinedHasher(integrity.algorithm) if verify else None
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
                (await self._hasher.finish()).verify(self.integrity)
            raise
        if self._hasher is not None:
            await self._hasher.update(chunk)
        return chunk

    async def read(self) -> bytes:
        """Read (and verify) the rest of the blob into memory."""
        return b"".join([chunk async for chunk in self])

    def _close(self) -> None:
        if self._hasher is not None:
            self._hasher.close()

    def __repr__(self) -> str:
        return f"<BlobReader {self.integrity} size={self.size} store={self.store_id}>"


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

    Backend authors implement the underscore hooks (``_put``, ``_add``,
    ``_open``, ``_has``, ``_delete``, ``_list`` and optionally ``_get``,
    ``_start``, ``_stop``); argument checking, verification, size limits and
    logging happen here, once, for every backend.

    Args:
        id: The store's id in a registry.
        verify: Check bytes against their integrity on put, add, get and
            open. Turn it off only for buckets that use integrities as
            *names* for derived bytes (the original system stores repacked
            archives under the upstream tarball's integrity).
        max_blob_size: Refuse blobs larger than this many bytes
            (:class:`~sriblob.BlobTooLarge`); None for no limit.

    .. versionadded:: 0.1.0
    """

    #: Whether the store must be entered (``async with``) before use.
    _requires_start: bool = False

    def __init__(
        self, *, id: str, verify: bool = True, max_blob_size: int | None = None
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
        self._id = id
        self._verify = verify
        self._max_blob_size = max_blob_size
        self._started = False
        self._closed = False

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

    def _repr_details(self) -> str:
        return ""

    def __repr__(self) -> str:
        details = self._repr_details()
        limit = (
            f" max_blob_size={self._max_blob_size}"
            if self._max_blob_size is not None
            else ""
        )
        return (
            f"<{type(self).__name__} id={self._id!r}"
            f"{' ' + details if details else ''} verify={self._verify}{limit}>"
        )

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._closed:
            msg = f"{self!r} is closed; create a new store instead of reopening it."
            raise StoreClosed(msg)
        if not self._started:
            await self._start()
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
        if self._started or not self._requires_start:
            await self._stop()

    def _check_usable(self) -> None:
        if self._closed:
            msg = f"{self!r} is closed; it can't be used any more."
            raise StoreClosed(msg)
        if self._requires_start and not self._started:
            name = type(self).__name__
            msg = (
                f"{self!r} is not open. Use `async with {name}(...) as store:` "
                "(or `await store.__aenter__()`) before using it."
            )
            raise StoreClosed(msg)

    def _source(
        self, data: Data, expected: Integrity | None, algorithm: Algorithm
    ) -> BlobSource:
        return BlobSource(
            data,
            expected=expected,
            algorithm=algorithm,
            verify=self._verify,
            max_size=self._max_blob_size,
            backend=self._id,
        )

    # -- the contract -----------------------------------------------------

    async def put(self, integrity: str | Integrity, data: Data, /) -> None:
        """Store *data* under *integrity*.

        Putting an integrity that is already stored is a cheap no-op.

        Args:
            integrity: The blob's integrity; it is stored under the canonical
                form of its strongest hash.
            data: Bytes-like data or an async iterable of bytes-like chunks;
                an iterable is streamed, never held whole in memory. A
                writable chunk (a ``bytearray`` the source refills, say) is
                copied as it arrives, so the source may reuse its buffer.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            IntegrityMismatch: The data doesn't match *integrity*; nothing is
                stored or visible under it.
            BlobTooLarge: The data is larger than ``max_blob_size``.
            TypeError: *data* is neither bytes-like nor an async iterable.
        """
        expected = coerce_integrity(integrity)
        self._check_usable()
        source = self._source(data, expected, expected.algorithm)
        await self._put(expected, source)
        logger.debug(
            "put backend=%s integrity=%s size=%d", self._id, expected, source.bytes_read
        )

    async def add(self, data: Data, /, *, algorithm: Algorithm = "sha512") -> str:
        """Store *data* whose integrity the caller doesn't know yet.

        Args:
            data: Bytes-like data or an async iterable of bytes-like chunks.
            algorithm: The hash to name the blob by.

        Returns:
            The blob's canonical integrity string.

        Raises:
            ValueError: *algorithm* is not sha256, sha384 or sha512.
            BlobTooLarge: The data is larger than ``max_blob_size``.
        """
        IntegrityHasher(algorithm)  # validates the algorithm before any I/O
        self._check_usable()
        source = self._source(data, None, algorithm)
        integrity = await self._add(source)
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
        wanted = coerce_integrity(integrity)
        self._check_usable()
        data = await self._get(wanted)
        if data is not None and self._verify:
            hasher = wanted.hasher()
            if len(data) >= THREAD_HASH_THRESHOLD:
                await asyncio.to_thread(hasher.update, data)
            else:
                hasher.update(data)
            hasher.verify(wanted)
        logger.debug(
            "get backend=%s integrity=%s size=%s",
            self._id,
            wanted,
            None if data is None else len(data),
        )
        return data

    @contextlib.asynccontextmanager
    async def _open_reader(self, wanted: Integrity) -> AsyncIterator[BlobReader]:
        async with self._open(wanted) as (chunks, size):
            logger.debug("open backend=%s integrity=%s size=%s", self._id, wanted, size)
            reader = BlobReader(
                chunks,
                integrity=wanted,
                size=size,
                verify=self._verify,
                store_id=self._id,
            )
            try:
                yield reader
            finally:
                reader._close()  # noqa: SLF001 -- the store owns its readers

    def open(
        self, integrity: str | Integrity, /
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

        Raises:
            InvalidIntegrity: *integrity* is malformed (raised by this call,
                before any I/O).
            BlobNotFound: The store doesn't hold the blob (raised on entry).
            IntegrityMismatch: The stored bytes are corrupted (raised while
                iterating).
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        return self._open_reader(wanted)

    async def has(self, integrity: str | Integrity, /) -> bool:
        """Return whether the store holds a blob under *integrity*.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        found = await self._has(wanted)
        logger.debug("has backend=%s integrity=%s found=%s", self._id, wanted, found)
        return found

    async def stat(self, integrity: str | Integrity, /) -> BlobInfo | None:
        """Return the blob's size (and storage time) without reading it.

        Returns:
            A :class:`BlobInfo`, or None when the store doesn't hold the blob.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        info = await self._stat(wanted)
        logger.debug(
            "stat backend=%s integrity=%s size=%s",
            self._id,
            wanted,
            None if info is None else info.size,
        )
        return info

    async def delete(self, integrity: str | Integrity, /) -> None:
        """Delete the blob; deleting an absent blob does nothing.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        wanted = coerce_integrity(integrity)
        self._check_usable()
        await self._delete(wanted)
        logger.debug("delete backend=%s integrity=%s", self._id, wanted)

    async def list(self) -> AsyncGenerator[str, None]:
        """Yield the canonical integrity of every blob, as the backend pages.

        The listing is never held whole in memory. Objects whose names don't
        decode to a canonical integrity (foreign keys, temp files) are
        skipped. Order is backend-defined. One debug line is logged when the
        listing ends (or is closed early), with the number of blobs yielded.
        """
        self._check_usable()
        names = self._list()
        count = 0
        try:
            async for name in names:
                try:
                    parsed = Integrity.parse(name)
                except InvalidIntegrity:
                    continue
                if str(parsed) == name:
                    count += 1
                    yield name
        finally:
            logger.debug("list backend=%s count=%d", self._id, count)
            # A consumer that stops early closes the backend's listing now,
            # releasing its connection or cursor, not whenever GC gets to it.
            close = getattr(names, "aclose", None)
            if close is not None:
                await close()

    # -- hooks for backends ------------------------------------------------

    async def _start(self) -> None:  # noqa: B027 -- optional hook
        """Acquire resources (called once by ``__aenter__``)."""

    async def _stop(self) -> None:  # noqa: B027 -- optional hook
        """Release resources (called once by :meth:`aclose`)."""

    @abc.abstractmethod
    async def _put(self, integrity: Integrity, source: BlobSource) -> None:
        """Store *source* under *integrity*; visible only once it verified."""

    @abc.abstractmethod
    async def _add(self, source: BlobSource) -> Integrity:
        """Store *source*, return ``source.integrity`` once it is consumed."""

    async def _get(self, integrity: Integrity) -> bytes | None:
        """Return the stored bytes unverified, or None. Defaults to ``_open``."""
        try:
            async with self._open(integrity) as (chunks, _):
                return b"".join([chunk async for chunk in chunks])
        except BlobNotFound:
            return None

    @abc.abstractmethod
    def _open(
        self, integrity: Integrity
    ) -> contextlib.AbstractAsyncContextManager[
        tuple[AsyncIterator[bytes], int | None]
    ]:
        """Yield the stored chunks unverified and the size if known.

        Raises :class:`~sriblob.BlobNotFound` on entry when absent.
        """

    async def _stat(self, integrity: Integrity) -> BlobInfo | None:
        """Return the blob's info, or None. Backends should override this.

        The default opens the blob and, if the backend gives no size, counts
        its bytes.
        """
        try:
            async with self._open(integrity) as (chunks, known_size):
                size = known_size
                if size is None:
                    size = 0
                    async for chunk in chunks:
                        size += len(chunk)
        except BlobNotFound:
            return None
        return BlobInfo(str(integrity), size)

    @abc.abstractmethod
    async def _has(self, integrity: Integrity) -> bool:
        """Return whether the blob is stored."""

    @abc.abstractmethod
    async def _delete(self, integrity: Integrity) -> None:
        """Delete the blob if it is stored."""

    @abc.abstractmethod
    def _list(self) -> AsyncIterator[str]:
        """Yield the decoded name of every stored object (unvalidated)."""

    def _not_found(self, integrity: Integrity) -> BlobNotFound:
        msg = f"No blob {integrity} in the {self._id!r} store."
        return BlobNotFound(msg, integrity=str(integrity), backend=self._id)
