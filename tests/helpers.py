"""Shared helpers for the test suite."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Final

import attrs

from sriblob import BlobStore, Integrity, S3StoreConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: The region the tests' moto buckets live in.
MOTO_REGION: Final = "us-east-1"

#: Build an open store of one backend; keyword options go to the constructor.
MakeStore = Callable[..., AbstractAsyncContextManager[BlobStore]]


@attrs.frozen
class Backend:
    """How the contract suite drives one backend.

    Attributes:
        name: The backend's parameter id.
        make: Builds an entered store (``async with backend.make() as store``);
            keyword options (``verify``, ``max_blob_size``) go to the store.
        corrupt: Overwrites a stored blob's bytes behind the store's back.
        leftovers: Lists what a failed or cancelled write must not leave
            behind (temp files, staging objects, multipart uploads).
    """

    name: str
    make: MakeStore
    corrupt: Callable[[BlobStore, Integrity, bytes], Awaitable[None]]
    leftovers: Callable[[BlobStore], Awaitable[list[str]]]


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


def integrity_of(data: bytes, algorithm: Any = "sha512") -> str:
    """Return the canonical integrity string of *data*."""
    return str(Integrity.from_bytes(data, algorithm))


def s3_leftovers(client: S3Client, config: S3StoreConfig) -> list[str]:
    """List what a failed S3 write must not leave: staging keys, open uploads."""
    staging = config.key_prefix + ".staging/"
    listed = client.list_objects_v2(Bucket=config.bucket, Prefix=staging)
    keys = [entry["Key"] for entry in listed.get("Contents", [])]
    uploads = client.list_multipart_uploads(Bucket=config.bucket).get("Uploads", [])
    return keys + [f"upload:{upload['Key']}" for upload in uploads]
