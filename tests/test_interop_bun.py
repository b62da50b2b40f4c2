"""Interop with the original TypeScript store's client, Bun's native S3Client.

``compat/bun/interop.ts`` runs with the project-local Bun
(``compat/node_modules/.bin/bun``, installed by ``compat/install.sh``). The
``compat`` session sets ``SRIBLOB_TEST_REQUIRE_BUN=1``, so there a missing
Bun fails the run; elsewhere these tests skip when Bun isn't installed.
"""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import S3BlobStore, S3StoreConfig
from sriblob.keys import integrity_to_key

from .helpers import MOTO_REGION, S3Target, blob, chunked, collect, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

pytestmark = pytest.mark.s3

MiB = 1024 * 1024
COMPAT = pathlib.Path(__file__).parent.parent / "compat"
BUN = COMPAT / "node_modules" / ".bin" / "bun"
SCRIPT = COMPAT / "bun" / "interop.ts"
#: Above sriblob's default multipart threshold (16 MiB), so both sides go
#: multipart; odd, so the last part is short.
LARGE = 17 * MiB + 3


@pytest.fixture(name="bun", scope="session")
def _bun() -> pathlib.Path:
    """The project-local Bun binary; required in the compat session."""
    if not BUN.exists():
        if os.environ.get("SRIBLOB_TEST_REQUIRE_BUN"):
            pytest.fail(f"{BUN} is missing: run `bash compat/install.sh`.")
        pytest.skip("Bun is not installed here: run `bash compat/install.sh`.")
    return BUN


@pytest.fixture(name="run_bun")
def _run_bun(bun: pathlib.Path, s3_config: S3StoreConfig, s3_target: S3Target) -> Any:
    """Return a coroutine function running one interop.ts command on the bucket."""
    env = {
        **os.environ,
        "SRIBLOB_BUN_S3_ENDPOINT": s3_target.endpoint,
        "SRIBLOB_BUN_S3_BUCKET": s3_config.bucket,
        "SRIBLOB_BUN_S3_ACCESS_KEY_ID": s3_target.access_key_id,
        "SRIBLOB_BUN_S3_SECRET_ACCESS_KEY": s3_target.secret_access_key,
        "SRIBLOB_BUN_S3_REGION": MOTO_REGION,
    }

    async def run(command: dict[str, Any]) -> Any:
        process = await asyncio.create_subprocess_exec(
            str(bun),
            str(SCRIPT),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            async with asyncio.timeout(120):
                out, err = await process.communicate(json.dumps(command).encode())
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, err.decode()
        return json.loads(out)

    return run


@pytest.fixture(name="store")
async def _store(s3_config: S3StoreConfig) -> AsyncIterator[S3BlobStore]:
    # The default thresholds, as a user's store has them.
    config = S3StoreConfig(
        bucket=s3_config.bucket,
        access_key_id=s3_config.access_key_id,
        secret_access_key=s3_config.secret_access_key,
        endpoint=s3_config.endpoint,
        region=s3_config.region,
        force_path_style=True,
    )
    async with S3BlobStore(config) as store:
        yield store


BLOBS = {
    "empty": b"",
    "small": b"a script package",
    "mebibytes": blob(3 * MiB + 1, seed=1),
    "large": blob(LARGE, seed=2),
}


class TestBunWritesSriblobReads:
    async def test_reads_and_lists_what_bun_wrote(
        self, store: S3BlobStore, run_bun: Any, tmp_path: pathlib.Path
    ) -> None:
        """Blobs Bun's S3Client wrote under the original layout are read and listed."""
        paths = []
        for name, data in BLOBS.items():
            path = tmp_path / name
            path.write_bytes(data)
            paths.append(str(path))

        written = await run_bun({"op": "write", "files": paths})

        expected = {integrity_of(data) for data in BLOBS.values()}
        assert {entry["integrity"] for entry in written} == expected
        for entry, data in zip(written, BLOBS.values(), strict=True):
            assert entry["key"] == integrity_to_key(entry["integrity"])
            assert entry["size"] == len(data)
            assert await store.has(entry["integrity"])
            assert await store.get(entry["integrity"]) == data
        assert await collect(store) == expected

    async def test_streams_what_bun_wrote_in_parts(
        self, store: S3BlobStore, run_bun: Any, tmp_path: pathlib.Path
    ) -> None:
        """A multipart blob from Bun streams through open() and verifies."""
        path = tmp_path / "large"
        path.write_bytes(BLOBS["large"])
        [entry] = await run_bun({"op": "write", "files": [str(path)]})

        async with store.open(entry["integrity"]) as reader:
            got = b"".join([chunk async for chunk in reader])

        assert got == BLOBS["large"]


class TestSriblobWritesBunReads:
    async def test_bun_reads_what_sriblob_wrote(
        self, store: S3BlobStore, run_bun: Any, tmp_path: pathlib.Path
    ) -> None:
        """Bun reads byte for byte what put() and add() stored, multipart included."""
        stored = [await store.add(data) for data in BLOBS.values()]
        streamed_data = blob(LARGE, seed=3)
        streamed = await store.add(chunked(streamed_data, MiB))
        keys = [integrity_to_key(i) for i in [*stored, streamed]]

        read = await run_bun({"op": "read", "keys": keys, "out": str(tmp_path)})

        for entry, data in zip(read, [*BLOBS.values(), streamed_data], strict=True):
            assert entry["integrity"] == integrity_of(data)
            saved = pathlib.Path(entry["path"])
            assert await asyncio.to_thread(saved.read_bytes) == data

    async def test_bun_lists_what_sriblob_wrote(
        self, store: S3BlobStore, run_bun: Any
    ) -> None:
        """Bun's listing of the original prefix holds exactly sriblob's keys."""
        stored = [await store.add(data) for data in BLOBS.values()]

        keys = await run_bun({"op": "list", "prefix": store.config.key_prefix})

        assert sorted(keys) == sorted(integrity_to_key(i) for i in stored)
