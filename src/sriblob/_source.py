"""Incoming blob data, as the store hands it to its backend."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import TYPE_CHECKING, Final, TypeAlias

from ._compat import Buffer
from ._integrity import (
    Algorithm,
    Integrity,
    IntegrityHasher,
    PipelinedHasher,
    hash_buffer,
)
from .exceptions import BlobTooLarge, IntegrityMismatch

if TYPE_CHECKING:
    from collections.abc import Awaitable

__all__ = ["CHUNK_SIZE", "BlobSource", "Data", "as_buffer", "read_all"]

#: Bytes-like data, or an async iterable of bytes-like chunks.
Data: TypeAlias = Buffer | AsyncIterable[Buffer]

#: Chunk size for slicing bytes-like input and for backends' reads.
CHUNK_SIZE: Final = 1024 * 1024


def as_buffer(data: object) -> memoryview | None:
    if isinstance(data, str):
        msg = "Blob data must be bytes, not str; encode it first (data.encode())."
        raise TypeError(msg)
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        return None
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class BlobSource:
    """Incoming blob data, as a backend's ``write_blob`` gets it.

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
        check_stored: Callable[[Integrity], Awaitable[bool]] | None = None,
    ) -> None:
        view = as_buffer(data)
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
        self._check_stored = check_stored
        self._admitted: int | None = None
        self._taps: list[Callable[[Buffer], Awaitable[None]]] = []
        self._finished = False
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
    def finished(self) -> bool:
        """Whether the data was taken to its end and verified (when verifying)."""
        return self._finished

    @property
    def view(self) -> memoryview | None:
        """The data, read-only, when it was given bytes-like; None for a stream.

        For a backend that wraps another (a cache keeping a copy): the bytes
        are unverified unless :attr:`finished`.
        """
        return self._view

    def tap(self, observer: Callable[[Buffer], Awaitable[None]], /) -> None:
        """Call *observer* with each chunk of a stream as it passes to the backend.

        For a backend that wraps another and keeps a copy of what it writes
        (a cache's front): it taps the source, hands it on, and checks
        :attr:`finished` afterwards (a backend that already holds the blob
        may stop reading early). Bytes-like data isn't tapped: see
        :attr:`view`.

        .. versionadded:: 0.1.0
        """
        self._taps.append(observer)

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

    async def stored_copy_intact(self) -> bool:
        """Read the blob's stored copy through, verifying it: whether it may stand.

        A backend that finds the blob stored with a size :meth:`keeps`
        accepts calls this before keeping it, unless it can tell more
        cheaply (comparing bytes it holds, an S3 ETag): a copy damaged in
        place must be replaced by a put of the good bytes. A damaged copy is
        remembered as seen corrupt (so :attr:`replace` is then true); a copy
        deleted meanwhile is False; a store that doesn't verify can't tell
        (its names don't fix its bytes): True.

        .. versionadded:: 0.1.0
        """
        known = self._integrity or self._expected
        if self._check_stored is None or known is None:
            return True
        return await self._check_stored(known)

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
        self._finished = True
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
        hasher = PipelinedHasher(self._algorithm) if self._verify else None
        try:
            async for chunk in self._raw_chunks(chunk_size):
                size = memoryview(chunk).nbytes
                if not size:
                    continue
                self._check_size(self._size + size)
                self._size += size
                if hasher is not None:
                    await hasher.update(chunk)
                for observer in self._taps:
                    await observer(chunk)
                yield chunk
            self._finish(None if hasher is None else await hasher.finish())
            self._finished = True
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
            view = None if isinstance(chunk, str) else as_buffer(chunk)
            if view is None:
                msg = (
                    f"Blob data chunks must be bytes-like, not {type(chunk).__name__}."
                )
                raise TypeError(msg)
            # A writable chunk (a bytearray the source refills, say) is
            # copied: hashing and writing run behind the stream and must see
            # the bytes as they were yielded.
            yield chunk if view.readonly else bytes(view)


async def read_all(source: BlobSource) -> bytes:
    """Return *source*'s whole data, verified, for a backend that keeps blobs whole.

    Raises:
        IntegrityMismatch: The data doesn't match the expected integrity.
        BlobTooLarge: The data grew past the store's size limit.
    """
    view = await source.buffer()
    if view is not None:
        return bytes(view)
    return b"".join([bytes(chunk) async for chunk in source.chunks()])
