"""A process reading through a cache whose front other processes share.

``python -m tests.cache_worker SPEC_JSON``: the spec gives the ``front`` and
``back`` roots (filesystem stores), ``max_bytes``, a ``go`` file to wait for
(so the workers start at once), ``seeds`` and ``size`` (the blobs to read,
``blob(size, seed=s)``, in the order given), and ``rounds``. It reads each
blob with ``get`` and ``open`` in turn and prints one JSON line:
``{"reads": n, "wrong": [...seeds read back wrong]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sriblob import CachedBlobStore, FilesystemBlobStore
from sriblob.testing import blob, integrity_of

from .lease_worker import emit


async def main(spec: dict[str, Any]) -> None:
    """Open the cache, wait for the go file, read the blobs, report."""
    go = Path(spec["go"])
    wrong: list[int] = []
    reads = 0
    front = FilesystemBlobStore(spec["front"])
    back = FilesystemBlobStore(spec["back"])
    async with CachedBlobStore(front, back, max_bytes=spec["max_bytes"]) as store:
        emit(event="ready")
        while not go.exists():  # noqa: ASYNC110 -- another process creates it
            await asyncio.sleep(0.005)
        for round_ in range(spec["rounds"]):
            for seed in spec["seeds"]:
                data = blob(spec["size"], seed=seed)
                integrity = integrity_of(data)
                if (round_ + seed) % 2:
                    got = await store.get(integrity)
                else:
                    async with store.open(integrity) as reader:
                        got = b"".join([chunk async for chunk in reader])
                reads += 1
                if got != data:
                    wrong.append(seed)
    emit(event="done", reads=reads, wrong=wrong)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
