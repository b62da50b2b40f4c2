"""A process whose cache fill hangs half-way, to be killed.

``python -m tests.cache_fill_worker SPEC_JSON``: the spec gives the ``front``
and ``back`` roots (filesystem stores), ``max_bytes`` and the ``integrity``
to read. It opens the blob through a cache, reads one chunk (so the fill
has started and its temp file exists), prints ``{"event": "filling"}`` and
waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sriblob import CachedBlobStore, FilesystemBlobStore

from .lease_worker import emit


async def main(spec: dict[str, Any]) -> None:
    """Start a fill, report once its temp file is on disk, then hang."""
    front = Path(spec["front"])
    async with (
        CachedBlobStore(
            FilesystemBlobStore(front),
            FilesystemBlobStore(spec["back"]),
            max_bytes=spec["max_bytes"],
        ) as store,
        store.open(spec["integrity"]) as reader,
    ):
        await anext(reader)
        while not any(front.rglob(".tmp-*")):  # noqa: ASYNC110 -- a file to appear
            await asyncio.sleep(0.01)
        emit(event="filling")
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
