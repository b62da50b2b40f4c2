"""Testing helpers: the contract suite every :class:`~sriblob.BlobStore` passes.

A backend written outside sriblob proves itself with the same tests every
built-in backend runs (needs pytest and pytest-asyncio: ``pip install
'sriblob[testing]'``). Subclass :class:`BlobStoreContract` in a test module
and give it a ``backend`` fixture that says how to build, corrupt and inspect
your store::

    import contextlib

    import pytest
    import sriblob.testing

    from mypackage import MyBlobStore


    class TestMyBlobStore(sriblob.testing.BlobStoreContract):
        @pytest.fixture
        def backend(self, tmp_path):
            @contextlib.asynccontextmanager
            async def make(**options):
                async with MyBlobStore(tmp_path, **options) as store:
                    yield store

            async def corrupt(store, integrity, data):
                ...  # overwrite the stored bytes behind the store's back

            return sriblob.testing.Backend("mine", make, corrupt)

The ``store`` fixture every test uses is built from it. ``make`` must accept
the keyword options ``verify`` and ``max_blob_size``. ``leftovers`` is
optional: what a failed or cancelled write must not leave behind (temp files,
staging objects, unfinished uploads), as a list of descriptions.

The helpers the suite uses (:func:`blob`, :func:`chunked`, :func:`collect`,
:func:`integrity_of`, :class:`CountingSource`) are public too, for tests of
your own.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Final

import attrs
import pytest
import pytest_asyncio

from ._integrity import Algorithm, Integrity
from ._reader import BlobReader
from ._store import BlobStore
from .exceptions import (
    BlobNotFound,
    BlobTooLarge,
    IntegrityMismatch,
    InvalidIntegrity,
    RangeNotSatisfiable,
    StoreClosed,
)

__all__ = [
    "Backend",
    "BlobStoreContract",
    "CountingSource",
    "MakeStore",
    "blob",
    "chunked",
    "collect",
    "integrity_of",
]

#: Build an open store of one backend; keyword options go to the constructor.
MakeStore = Callable[..., AbstractAsyncContextManager[BlobStore]]


async def _no_leftovers(store: BlobStore) -> list[str]:
    return []


@attrs.frozen
class Backend:
    """How the contract suite drives one backend.

    Attributes:
        name: A short name for the backend, for reports.
        make: Builds an entered store (``async with backend.make() as
            store``); the keyword options ``verify`` and ``max_blob_size``
            go to the store.
        corrupt: Overwrites a stored blob's bytes behind the store's back:
            ``await corrupt(store, integrity, data)``.
        leftovers: Lists what a failed or cancelled write must not leave
            behind (temp files, staging objects, unfinished uploads).

    .. versionadded:: 0.1.0
    """

    name: str
    make: MakeStore
    corrupt: Callable[[BlobStore, Integrity, bytes], Awaitable[None]]
    leftovers: Callable[[BlobStore], Awaitable[list[str]]] = _no_leftovers


def blob(size: int, seed: int = 0) -> bytes:
    """Return *size* deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


async def chunked(data: bytes, size: int = 65536) -> AsyncIterator[bytes]:
    """Yield *data* in chunks of *size*, as a streaming producer would."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


class CountingSource:
    """An async iterable that counts how many bytes were pulled from it."""

    def __init__(self, data: bytes, chunk: int = 65536) -> None:
        self.data = data
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.data), self.chunk):
            piece = self.data[start : start + self.chunk]
            self.pulled += len(piece)
            yield piece


async def collect(store: BlobStore) -> set[str]:
    """Return every integrity the store lists."""
    return {name async for name in store.list()}


def integrity_of(data: bytes, algorithm: Algorithm = "sha512") -> str:
    """Return the canonical integrity string of *data*."""
    return str(Integrity.from_bytes(data, algorithm))


SMALL: Final = b"hello, sriblob"
MALFORMED: Final = [
    "",
    "sha512-",
    "md5-abc",
    "sha512-abc",
    "not an integrity",
    "../etc",
]


class _PutContract:
    async def test_put_then_get_returns_the_bytes(self, store: BlobStore) -> None:
        """A blob put under its integrity is read back byte for byte."""
        integrity = integrity_of(SMALL)

        await store.put(integrity, SMALL)

        assert await store.get(integrity) == SMALL
        assert await store.has(integrity)

    async def test_put_accepts_integrity_objects(self, store: BlobStore) -> None:
        """put/get/has/delete take an Integrity as well as a string."""
        integrity = Integrity.from_bytes(SMALL)

        await store.put(integrity, SMALL)

        assert await store.get(integrity) == SMALL
        assert await store.has(integrity)
        await store.delete(integrity)
        assert not await store.has(integrity)

    @pytest.mark.parametrize("kind", [bytearray, memoryview])
    async def test_put_accepts_bytes_like(self, store: BlobStore, kind: type) -> None:
        """Any bytes-like object can be stored."""
        integrity = integrity_of(SMALL)

        await store.put(integrity, kind(SMALL))

        assert await store.get(integrity) == SMALL

    async def test_put_streams_async_iterables(self, store: BlobStore) -> None:
        """An async iterable of chunks is stored as their concatenation."""
        data = blob(3 * 1024 * 1024 + 17)
        integrity = integrity_of(data)

        await store.put(integrity, chunked(data, 300_000))

        assert await store.get(integrity) == data

    @pytest.mark.parametrize("chunk_size", [64 * 1024, 1024 * 1024])
    async def test_source_may_reuse_its_buffer(
        self, store: BlobStore, chunk_size: int
    ) -> None:
        """A source that refills one bytearray per chunk stores the right bytes."""
        data = blob(3 * 1024 * 1024 + 17)
        integrity = integrity_of(data)

        async def refilled() -> AsyncIterator[bytearray]:
            buffer = bytearray(chunk_size)
            for start in range(0, len(data), chunk_size):
                piece = data[start : start + chunk_size]
                buffer[: len(piece)] = piece
                yield buffer if len(piece) == chunk_size else buffer[: len(piece)]
                buffer[:] = bytes(chunk_size)  # scribble over what was yielded

        await store.put(integrity, refilled())
        assert await store.get(integrity) == data
        assert await store.add(refilled()) == integrity

    async def test_put_empty_blob(self, store: BlobStore) -> None:
        """The empty blob is a blob like any other."""
        integrity = integrity_of(b"")

        await store.put(integrity, b"")

        assert await store.get(integrity) == b""
        assert integrity in await collect(store)

    async def test_put_keys_by_canonical_integrity(self, store: BlobStore) -> None:
        """A multi-hash SRI string is stored under its strongest hash."""
        sha256 = integrity_of(SMALL, "sha256")
        sha512 = integrity_of(SMALL)

        await store.put(f"{sha256} {sha512}?opt", SMALL)

        assert await collect(store) == {sha512}
        assert await store.get(sha512) == SMALL

    async def test_put_other_algorithms(self, store: BlobStore) -> None:
        """sha256 and sha384 integrities are verified and stored too."""
        for algorithm in ("sha256", "sha384"):
            integrity = integrity_of(SMALL, algorithm)
            await store.put(integrity, SMALL)
            assert await store.get(integrity) == SMALL

    async def test_put_mismatch_stores_nothing(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """Bytes that don't match the integrity are refused and leave no trace."""
        integrity = integrity_of(SMALL)

        with pytest.raises(IntegrityMismatch) as excinfo:
            await store.put(integrity, b"something else")

        assert excinfo.value.expected == integrity
        assert excinfo.value.actual == integrity_of(b"something else")
        assert not await store.has(integrity)
        assert await collect(store) == set()
        assert await backend.leftovers(store) == []

    async def test_streamed_mismatch_stores_nothing(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """A streamed blob that turns out wrong at its end leaves no trace."""
        data = blob(2 * 1024 * 1024)
        integrity = integrity_of(data)

        with pytest.raises(IntegrityMismatch):
            await store.put(integrity, chunked(data[:-1] + b"!"))

        assert not await store.has(integrity)
        assert await collect(store) == set()
        assert await backend.leftovers(store) == []

    async def test_put_twice_is_a_no_op(self, store: BlobStore) -> None:
        """Putting a stored blob again changes nothing."""
        integrity = integrity_of(SMALL)
        await store.put(integrity, SMALL)

        await store.put(integrity, SMALL)

        assert await store.get(integrity) == SMALL
        assert await collect(store) == {integrity}

    async def test_concurrent_puts_of_one_blob(self, store: BlobStore) -> None:
        """Many concurrent puts of the same blob store it once, intact."""
        data = blob(600_000)
        integrity = integrity_of(data)

        await asyncio.gather(*(store.put(integrity, data) for _ in range(8)))

        assert await store.get(integrity) == data
        assert await collect(store) == {integrity}

    async def test_failing_source_stores_nothing(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """An error raised by the data source propagates and leaves nothing."""
        data = blob(1024 * 1024)

        async def broken() -> AsyncIterator[bytes]:
            yield data[:500_000]
            raise OSError("source broke")

        with pytest.raises(OSError, match="source broke"):
            await store.put(integrity_of(data), broken())

        assert await collect(store) == set()
        assert await backend.leftovers(store) == []

    async def test_put_rejects_str_data(self, store: BlobStore) -> None:
        """Text must be encoded first; the error says so."""
        with pytest.raises(TypeError, match="encode"):
            await store.put(integrity_of(SMALL), "hello")  # type: ignore[arg-type]

    async def test_put_rejects_non_bytes_chunks(self, store: BlobStore) -> None:
        """A stream yielding something other than bytes is a TypeError."""

        async def numbers() -> AsyncIterator[int]:
            yield 1

        with pytest.raises(TypeError, match="bytes-like"):
            await store.put(integrity_of(SMALL), numbers())  # type: ignore[arg-type]
        assert await collect(store) == set()


class _AddContract:
    async def test_add_returns_the_integrity(self, store: BlobStore) -> None:
        """add() computes, returns and stores under the canonical integrity."""
        integrity = await store.add(SMALL)

        assert integrity == integrity_of(SMALL)
        assert await store.get(integrity) == SMALL

    async def test_add_streams(self, backend: Backend, store: BlobStore) -> None:
        """add() of a stream stores it under its hash and leaves no staging."""
        data = blob(3 * 1024 * 1024 + 5)

        integrity = await store.add(chunked(data))

        assert integrity == integrity_of(data)
        assert await store.get(integrity) == data
        assert await collect(store) == {integrity}
        assert await backend.leftovers(store) == []

    async def test_add_with_algorithm(self, store: BlobStore) -> None:
        """add() names the blob by the algorithm asked for."""
        integrity = await store.add(SMALL, algorithm="sha256")

        assert integrity == integrity_of(SMALL, "sha256")
        assert await store.has(integrity)

    async def test_add_existing_blob(self, store: BlobStore) -> None:
        """Adding bytes that are already stored keeps one copy."""
        first = await store.add(SMALL)
        second = await store.add(chunked(SMALL, 3))

        assert first == second
        assert await collect(store) == {first}

    async def test_add_failing_source(self, backend: Backend, store: BlobStore) -> None:
        """A failing stream given to add() leaves no staging object behind."""

        async def broken() -> AsyncIterator[bytes]:
            yield b"x" * 100_000
            raise OSError("gone")

        with pytest.raises(OSError, match="gone"):
            await store.add(broken())

        assert await collect(store) == set()
        assert await backend.leftovers(store) == []

    async def test_add_unknown_algorithm(self, store: BlobStore) -> None:
        """An unsupported algorithm is refused before anything is read."""
        source = CountingSource(SMALL)

        with pytest.raises(ValueError, match="sha512"):
            await store.add(source, algorithm="md5")  # type: ignore[arg-type]

        assert source.pulled == 0


class _GetContract:
    async def test_get_absent_is_none(self, store: BlobStore) -> None:
        """get() of a blob the store doesn't hold returns None."""
        assert await store.get(integrity_of(b"absent")) is None

    async def test_get_corrupted_raises(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """Corrupted stored bytes are never returned as good data."""
        integrity = integrity_of(SMALL)
        await store.put(integrity, SMALL)
        await backend.corrupt(store, Integrity.parse(integrity), b"HELLO, sriblob")

        with pytest.raises(IntegrityMismatch) as excinfo:
            await store.get(integrity)

        assert excinfo.value.expected == integrity

    async def test_get_large(self, store: BlobStore) -> None:
        """A multi-megabyte blob comes back intact."""
        data = blob(5 * 1024 * 1024 + 3)
        integrity = await store.add(data)

        assert await store.get(integrity) == data


class _OpenContract:
    async def test_open_streams_chunks(self, store: BlobStore) -> None:
        """open() yields a reader whose chunks concatenate to the blob."""
        data = blob(3 * 1024 * 1024 + 1)
        integrity = await store.add(data)

        async with store.open(integrity) as reader:
            assert isinstance(reader, BlobReader)
            assert str(reader.integrity) == integrity
            assert reader.size in (None, len(data))
            chunks = [chunk async for chunk in reader]

        assert len(chunks) > 1
        assert b"".join(chunks) == data

    async def test_open_absent_raises(self, store: BlobStore) -> None:
        """open() of an absent blob raises BlobNotFound naming it."""
        integrity = integrity_of(b"absent")

        with pytest.raises(BlobNotFound) as excinfo:
            async with store.open(integrity):
                pass

        assert excinfo.value.integrity == integrity
        assert excinfo.value.backend == store.id

    async def test_open_corrupted_raises_by_the_end(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """Streaming corrupted bytes raises IntegrityMismatch by the end."""
        data = blob(2 * 1024 * 1024)
        integrity = await store.add(data)
        await backend.corrupt(store, Integrity.parse(integrity), data[:-1] + b"\0")

        async with store.open(integrity) as reader:
            with pytest.raises(IntegrityMismatch):
                await reader.read()

    async def test_read(self, store: BlobStore) -> None:
        """BlobReader.read() returns the whole verified blob."""
        integrity = await store.add(SMALL)

        async with store.open(integrity) as reader:
            assert await reader.read() == SMALL


class _HasDeleteListContract:
    async def test_has_absent(self, store: BlobStore) -> None:
        """has() is False for a blob that was never put."""
        assert not await store.has(integrity_of(b"nope"))

    async def test_delete(self, store: BlobStore) -> None:
        """A deleted blob is gone from has, get and list."""
        integrity = await store.add(SMALL)

        await store.delete(integrity)

        assert not await store.has(integrity)
        assert await store.get(integrity) is None
        assert await collect(store) == set()

    async def test_delete_is_idempotent(self, store: BlobStore) -> None:
        """Deleting an absent blob does nothing."""
        await store.delete(integrity_of(b"never there"))
        await store.delete(integrity_of(b"never there"))

    async def test_list_every_blob(self, store: BlobStore) -> None:
        """list() yields every stored blob's canonical integrity once."""
        expected = {await store.add(blob(100 + n, seed=n)) for n in range(25)}

        listed = [name async for name in store.list()]

        assert sorted(listed) == sorted(expected)

    async def test_list_empty(self, store: BlobStore) -> None:
        """An empty store lists nothing."""
        assert await collect(store) == set()


class _StatContract:
    async def test_stat_reports_size(self, store: BlobStore) -> None:
        """stat() gives the size of a stored blob without reading it."""
        data = blob(123_456)
        integrity = await store.add(data)

        info = await store.stat(integrity)

        assert info is not None
        assert info.integrity == integrity
        assert info.size == len(data)
        assert info.stored_at is None or info.stored_at.tzinfo is not None

    async def test_stat_absent(self, store: BlobStore) -> None:
        """stat() of an absent blob is None."""
        assert await store.stat(integrity_of(b"absent")) is None


class _MalformedIntegrityContract:
    @pytest.mark.parametrize("text", MALFORMED)
    async def test_rejected_before_io(self, store: BlobStore, text: str) -> None:
        """Every method refuses a malformed integrity with InvalidIntegrity."""
        source = CountingSource(SMALL)
        with pytest.raises(InvalidIntegrity):
            await store.put(text, source)
        with pytest.raises(InvalidIntegrity):
            await store.get(text)
        with pytest.raises(InvalidIntegrity):
            store.open(text)
        with pytest.raises(InvalidIntegrity):
            await store.has(text)
        with pytest.raises(InvalidIntegrity):
            await store.delete(text)
        with pytest.raises(InvalidIntegrity):
            await store.stat(text)
        assert source.pulled == 0


class _VerifyOffContract:
    async def test_put_and_read_derived_bytes(self, backend: Backend) -> None:
        """With verify=False, bytes are stored and served under any integrity."""
        name = integrity_of(b"upstream tarball")
        async with backend.make(verify=False) as store:
            assert not store.verify
            assert "verify=False" in repr(store)

            await store.put(name, b"repacked archive")

            assert await store.get(name) == b"repacked archive"
            async with store.open(name) as reader:
                assert await reader.read() == b"repacked archive"
            assert await collect(store) == {name}

    async def test_add_still_hashes(self, backend: Backend) -> None:
        """add() must hash to name the blob, even with verify=False."""
        async with backend.make(verify=False) as store:
            assert await store.add(SMALL) == integrity_of(SMALL)


class _SizeLimitContract:
    async def test_put_over_limit(self, backend: Backend) -> None:
        """A blob over max_blob_size is refused and nothing is stored."""
        async with backend.make(max_blob_size=1000) as store:
            data = blob(1001)
            with pytest.raises(BlobTooLarge) as excinfo:
                await store.put(integrity_of(data), data)
            assert excinfo.value.limit == 1000
            assert await collect(store) == set()

    async def test_stream_stops_early(self, backend: Backend) -> None:
        """A stream is cut off as soon as it crosses the limit, unread beyond."""
        async with backend.make(max_blob_size=100_000) as store:
            source = CountingSource(blob(1_000_000), chunk=10_000)
            with pytest.raises(BlobTooLarge):
                await store.add(source)
            assert source.pulled == 110_000
            assert await collect(store) == set()
            assert await backend.leftovers(store) == []

    async def test_at_limit_is_fine(self, backend: Backend) -> None:
        """A blob exactly max_blob_size long is accepted."""
        async with backend.make(max_blob_size=1000) as store:
            data = blob(1000)
            assert await store.add(data) == integrity_of(data)


class _LifecycleContract:
    async def test_closed_store_refuses_work(self, backend: Backend) -> None:
        """A closed store raises StoreClosed instead of doing I/O."""
        async with backend.make() as store:
            pass

        with pytest.raises(StoreClosed, match="closed"):
            await store.has(integrity_of(SMALL))
        with pytest.raises(StoreClosed):
            await store.put(integrity_of(SMALL), SMALL)

    async def test_aclose_twice(self, backend: Backend) -> None:
        """aclose() is idempotent."""
        async with backend.make() as store:
            await store.aclose()
        await store.aclose()

    async def test_repr_names_the_backend(self, store: BlobStore) -> None:
        """repr() shows the store's class and id."""
        assert type(store).__name__ in repr(store)
        assert repr(store.id) in repr(store)


def two_digests(right: bytes, other: bytes = b"not the data") -> tuple[str, str]:
    """Return the SRI string of *right*, and one with another sha512 digest first."""
    return integrity_of(right), f"{integrity_of(other)} {integrity_of(right)}"


class _SeveralDigestsContract:
    """A string with several sha512 digests matches the data by any of them."""

    @pytest.mark.parametrize("order", ["other-first", "right-first"])
    @pytest.mark.parametrize("how", ["bytes", "stream"])
    async def test_put_stores_under_the_digest_that_matched(
        self, store: BlobStore, order: str, how: str
    ) -> None:
        """Whatever the order, put() verifies and stores under the matching digest."""
        data = blob(300_000, seed=31)
        right, other_first = two_digests(data)
        text = (
            other_first if order == "other-first" else f"{right} {integrity_of(b'x')}"
        )
        source = data if how == "bytes" else chunked(data, 100_000)

        assert await store.put(text, source) == right

        assert await collect(store) == {right}
        assert await store.get(right) == data

    async def test_no_digest_matches(self, store: BlobStore) -> None:
        """Data matching none of the digests is refused and stores nothing."""
        text = f"{integrity_of(b'one')} {integrity_of(b'two')}"

        with pytest.raises(IntegrityMismatch, match="expected one of") as excinfo:
            await store.put(text, b"three")

        assert excinfo.value.expected == text
        assert await collect(store) == set()

    async def test_reads_look_under_every_digest(self, store: BlobStore) -> None:
        """Reads and deletes accept the string, whichever digest is stored."""
        data = b"stored under the second digest"
        right, text = two_digests(data)
        await store.put(right, data)

        assert await store.get(text) == data
        async with store.open(text) as reader:
            assert await reader.read() == data
        assert await store.has(text)
        info = await store.stat(text)
        assert info is not None
        assert info.integrity == right
        await store.delete(text)
        assert not await store.has(right)
        with pytest.raises(BlobNotFound):
            async with store.open(text):
                pass


#: A blob of three 1 MiB chunks and some: ranges cross chunk boundaries.
RANGED_SIZE: Final = 3 * 1024 * 1024 + 4321


class _RangeContract:
    """open(start=..., end=...) reads exactly a slice, on every backend."""

    @pytest.mark.parametrize(
        ("start", "end"),
        [
            (0, 1),
            (0, 1024 * 1024),
            (1024 * 1024 - 1, 1024 * 1024 + 1),
            (12345, 2 * 1024 * 1024 + 17),
            (RANGED_SIZE - 10, None),
            (RANGED_SIZE - 1, RANGED_SIZE),
            (5, 5),
            (RANGED_SIZE, None),
        ],
        ids=["first", "chunk", "boundary", "middle", "tail", "last", "empty", "at-end"],
    )
    async def test_range_is_the_slice(
        self, store: BlobStore, start: int, end: int | None
    ) -> None:
        """A range reader yields blob[start:end], unverified, with the blob's size."""
        data = blob(RANGED_SIZE, seed=71)
        integrity = await store.add(data)

        async with store.open(integrity, start=start, end=end) as reader:
            got = await reader.read()
            assert not reader.verifies
            assert (reader.start, reader.end) == (
                start,
                len(data) if end is None else end,
            )
            assert reader.size == len(data)

        assert got == data[start:end]

    async def test_whole_range_still_verifies(
        self, backend: Backend, store: BlobStore
    ) -> None:
        """open(start=0, end=size) is the whole blob, and verified like open()."""
        data = blob(100_000, seed=72)
        integrity = await store.add(data)
        async with store.open(integrity, start=0, end=len(data)) as reader:
            assert reader.verifies
            assert await reader.read() == data
        await backend.corrupt(store, Integrity.parse(integrity), data[:-1] + b"?")

        async with store.open(integrity, start=0, end=len(data)) as reader:
            with pytest.raises(IntegrityMismatch):
                await reader.read()

    @pytest.mark.parametrize(("start", "end"), [(1001, None), (0, 1001), (1001, 2000)])
    async def test_past_the_end_is_refused(
        self, store: BlobStore, start: int, end: int | None
    ) -> None:
        """A range reaching past the blob raises RangeNotSatisfiable on entry."""
        integrity = await store.add(blob(1000, seed=73))

        with pytest.raises(RangeNotSatisfiable) as excinfo:
            async with store.open(integrity, start=start, end=end):
                pass

        assert excinfo.value.size == 1000
        assert excinfo.value.integrity == integrity
        assert isinstance(excinfo.value, ValueError)

    @pytest.mark.parametrize(
        ("start", "end", "error"),
        [(-1, None, ValueError), (10, 5, ValueError), (1.5, None, TypeError)],
    )
    async def test_impossible_ranges_before_any_io(
        self, store: BlobStore, start: Any, end: Any, error: type[Exception]
    ) -> None:
        """Negative starts, ends before starts and non-ints fail at the call."""
        with pytest.raises(error):
            store.open(integrity_of(SMALL), start=start, end=end)

    async def test_range_of_an_absent_blob(self, store: BlobStore) -> None:
        """A range of a blob the store doesn't hold is BlobNotFound."""
        with pytest.raises(BlobNotFound):
            async with store.open(integrity_of(b"absent"), start=1, end=2):
                pass


class BlobStoreContract(
    _RangeContract,
    _PutContract,
    _AddContract,
    _GetContract,
    _OpenContract,
    _HasDeleteListContract,
    _StatContract,
    _MalformedIntegrityContract,
    _VerifyOffContract,
    _SizeLimitContract,
    _LifecycleContract,
    _SeveralDigestsContract,
):
    """The whole contract: subclass it as ``Test...`` with a ``backend`` fixture.

    Every test takes the ``store`` fixture (an entered store from
    ``backend.make()``) or builds stores with ``backend.make(...)`` itself.

    .. versionadded:: 0.1.0
    """

    pytestmark: ClassVar[list[Any]] = [pytest.mark.asyncio]

    @pytest_asyncio.fixture(name="store")
    async def _store(self, backend: Backend) -> AsyncIterator[BlobStore]:
        """An entered store of the backend under test."""
        async with backend.make() as store:
            yield store
