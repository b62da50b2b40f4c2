"""Every store operation logs one debug line under ``sriblob``, never a secret."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs
import pytest

from sriblob import BlobStore, FilesystemBlobStore, S3BlobStore, S3StoreConfig

from .helpers import integrity_of

if TYPE_CHECKING:
    from pathlib import Path

DATA = b"logged blob"
#: A secret moto accepts (it doesn't check signatures) and nobody could miss.
FAKE_SECRET = "FAKE-SECRET-sriblob-never-log-me-0123456789"
OPERATIONS = ["put", "stat", "get", "has", "list", "delete"]


async def exercise(store: BlobStore) -> None:
    """Run each operation once on *store*."""
    integrity = integrity_of(DATA)
    await store.put(integrity, DATA)
    await store.stat(integrity)
    await store.get(integrity)
    await store.has(integrity)
    assert [name async for name in store.list()] == [integrity]
    await store.delete(integrity)


def store_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return the debug messages the ``sriblob`` logger recorded."""
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "sriblob" and record.levelno == logging.DEBUG
    ]


def check_lines(lines: list[str], backend: str) -> None:
    """Assert one line per operation, naming the backend, integrity and size."""
    integrity = integrity_of(DATA)
    assert [line.split(" ", 1)[0] for line in lines] == OPERATIONS
    assert all(f"backend={backend} " in line for line in lines)
    by_operation = dict(zip(OPERATIONS, lines, strict=True))
    for operation in ["put", "stat", "get"]:
        assert f"integrity={integrity} size={len(DATA)}" in by_operation[operation]
    assert f"integrity={integrity} found=True" in by_operation["has"]
    assert f"integrity={integrity}" in by_operation["delete"]
    assert "count=1" in by_operation["list"]


async def test_filesystem_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A filesystem store logs put/stat/get/has/list/delete once each."""
    caplog.set_level(logging.DEBUG, logger="sriblob")
    store = FilesystemBlobStore(tmp_path)

    await exercise(store)

    check_lines(store_lines(caplog), "filesystem")


@pytest.mark.s3
async def test_s3_store_never_logs_the_secret(
    s3_config: S3StoreConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """An S3 store logs one line per operation and never its secret key."""
    config = attrs.evolve(s3_config, secret_access_key=FAKE_SECRET)
    caplog.set_level(logging.DEBUG, logger="sriblob")

    async with S3BlobStore(config) as store:
        await exercise(store)
        shown = repr(store)

    check_lines(store_lines(caplog), "s3")
    assert FAKE_SECRET not in caplog.text
    assert all(FAKE_SECRET not in record.getMessage() for record in caplog.records)
    assert FAKE_SECRET not in shown
