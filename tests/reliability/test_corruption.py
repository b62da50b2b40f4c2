"""A flipped byte anywhere in a stored blob is never returned as good data."""

from __future__ import annotations

import pytest

from sriblob import BlobStore, Integrity, IntegrityMismatch, verify

from ..helpers import Backend, blob

pytestmark = pytest.mark.reliability

SIZE = 3 * 1024 * 1024 + 5


@pytest.mark.parametrize("position", [0, 1, 1024 * 1024 - 1, 1024 * 1024, SIZE - 1])
async def test_flipped_byte(backend: Backend, store: BlobStore, position: int) -> None:
    """get, open and verify all report one flipped byte as IntegrityMismatch."""
    data = blob(SIZE, seed=position)
    integrity = Integrity.from_bytes(data)
    await store.put(integrity, data)
    flipped = bytearray(data)
    flipped[position] ^= 0x01
    await backend.corrupt(store, integrity, bytes(flipped))

    with pytest.raises(IntegrityMismatch) as excinfo:
        await store.get(integrity)
    assert excinfo.value.expected == str(integrity)

    chunks: list[bytes] = []
    with pytest.raises(IntegrityMismatch):
        async with store.open(integrity) as reader:
            chunks.extend([chunk async for chunk in reader])
    # The reader may have handed out chunks, but never ended as if whole.
    assert b"".join(chunks) != data

    report = await verify(store)
    assert report.corrupt == (str(integrity),)
    assert not report.ok
