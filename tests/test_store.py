"""The BlobStore base class: what it does for every backend, once."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest

from sriblob import (
    BlobBody,
    BlobInfo,
    BlobNotFound,
    BlobSource,
    BlobStore,
    Integrity,
    MemoryBlobStore,
    StoreClosed,
)
from sriblob.backend import Backend

from .helpers import integrity_of


class MinimalBackend(Backend):
    """A backend implementing only the required hooks, sizes unknown."""

    default_id = "minimal"

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        self.extra_names: list[str] = []

    async def write_blob(self, source: BlobSource) -> None:
        """Store the chunks, four bytes at a time."""
        data = b"".join([bytes(chunk) async for chunk in source.chunks(4)])
        self.blobs[str(source.integrity)] = data

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity) -> AsyncIterator[BlobBody]:
        """Yield the blob three bytes at a time, size unknown."""
        if str(integrity) not in self.blobs:
            raise self.not_found(integrity)
        data = self.blobs[str(integrity)]

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 3):
                yield data[start : start + 3]

        yield BlobBody(chunks(), None)

    async def delete_blob(
        self, integrity: Integrity, *, stored_before: dt.datetime | None
    ) -> bool:
        """Forget the blob."""
        self.blobs.pop(str(integrity), None)
        return True

    async def list_names(self) -> AsyncIterator[str]:
        """Yield the blobs and the extra names."""
        for name in [*self.blobs, *self.extra_names]:
            yield name


class MinimalStore(BlobStore):
    """A store around :class:`MinimalBackend` (or a subclass of it)."""

    def __init__(self, backend: MinimalBackend | None = None, **options: Any) -> None:
        self.minimal = MinimalBackend() if backend is None else backend
        super().__init__(self.minimal, **options)

    @property
    def blobs(self) -> dict[str, bytes]:
        """The backend's blobs."""
        return self.minimal.blobs

    @property
    def extra_names(self) -> list[str]:
        """Names the backend lists besides its blobs."""
        return self.minimal.extra_names

    @extra_names.setter
    def extra_names(self, names: list[str]) -> None:
        self.minimal.extra_names = names


class TestDefaults:
    async def test_get_and_stat_fall_back_to_read_blob(self) -> None:
        """A backend with only read_blob gets working get(), stat() and has()."""
        store = MinimalStore()
        integrity = await store.add(b"hello world")

        assert await store.get(integrity) == b"hello world"
        assert await store.stat(integrity) == BlobInfo(integrity, 11)
        assert await store.get(integrity_of(b"x")) is None
        assert await store.stat(integrity_of(b"x")) is None

    async def test_list_skips_foreign_and_non_canonical_names(self) -> None:
        """Names that aren't canonical integrities are never listed."""
        store = MinimalStore()
        integrity = await store.add(b"a")
        store.extra_names = ["garbage", integrity + "?opt", f"sha1-x {integrity}"]

        assert [name async for name in store.list()] == [integrity]

    async def test_list_closes_the_backend_listing_early(self) -> None:
        """Breaking out of list() closes the backend's listing at once."""
        closed = []

        class Listing(MinimalBackend):
            async def list_names(self) -> AsyncIterator[str]:
                """Yield the blobs and the extra names."""
                try:
                    for name in self.blobs:
                        yield name
                finally:
                    closed.append(True)

        store = MinimalStore(Listing())
        for n in range(3):
            await store.add(bytes([n]))
        listing = store.list()
        await anext(listing)
        await listing.aclose()

        assert closed == [True]

    async def test_empty_chunks_are_skipped(self) -> None:
        """Empty chunks in a stream don't reach the backend."""
        store = MinimalStore()

        async def with_gaps() -> AsyncIterator[bytes]:
            yield b""
            yield b"ab"
            yield b""

        await store.put(integrity_of(b"ab"), with_gaps())

        assert store.blobs == {integrity_of(b"ab"): b"ab"}


class TestMisuse:
    async def test_data_of_the_wrong_type(self) -> None:
        """Data that is neither bytes-like nor async-iterable is a TypeError."""
        with pytest.raises(TypeError, match="bytes-like or an async iterable"):
            await MemoryBlobStore().put(integrity_of(b""), 42)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", ["", 3])
    def test_bad_id(self, bad: object) -> None:
        """A store id must be a non-empty string."""
        with pytest.raises(ValueError, match="store id"):
            MemoryBlobStore(id=bad)  # type: ignore[arg-type]

    @pytest.mark.parametrize("bad", [-1, 1.5, True, "10"])
    def test_bad_max_blob_size(self, bad: object) -> None:
        """max_blob_size must be None or a non-negative int."""
        with pytest.raises(ValueError, match="max_blob_size"):
            MemoryBlobStore(max_blob_size=bad)  # type: ignore[arg-type]

    async def test_reopening_a_closed_store(self) -> None:
        """A closed store can't be entered again."""
        store = MemoryBlobStore()
        await store.aclose()

        with pytest.raises(StoreClosed, match="create a new store"):
            await store.__aenter__()

    async def test_source_is_single_use(self) -> None:
        """A BlobSource refuses a second consumption and an early integrity."""
        source = BlobSource(
            b"abc",
            expected=None,
            algorithm="sha512",
            verify=True,
            max_size=None,
            backend="t",
        )
        with pytest.raises(RuntimeError, match="after the source"):
            _ = source.integrity

        assert [bytes(c) async for c in source.chunks()] == [b"abc"]
        assert str(source.integrity) == integrity_of(b"abc")
        with pytest.raises(RuntimeError, match="only once"):
            await source.buffer()


class TestReader:
    async def test_exhausted_reader_stays_exhausted(self) -> None:
        """A finished reader keeps raising StopAsyncIteration."""
        store = MemoryBlobStore()
        integrity = await store.add(b"data")

        async with store.open(integrity) as reader:
            assert repr(reader) == f"<BlobReader {integrity} size=4 store=memory>"
            assert reader.store_id == "memory"
            assert await reader.read() == b"data"
            with pytest.raises(StopAsyncIteration):
                await anext(reader)

    async def test_not_found_names_the_backend(self) -> None:
        """BlobNotFound says which store was asked."""
        with pytest.raises(BlobNotFound, match="'minimal' store"):
            async with MinimalStore().open(integrity_of(b"nope")):
                pass
