"""A process that adds blobs to a shared store with a quota, for the race tests.

``python -m tests.quota_worker SPEC_JSON`` where the spec names the store
(as for ``tests.lease_worker``), ``"max_total_size"``, a ``"go"`` file to
wait for (so the workers start at once), and ``"seeds"`` and ``"size"``: the
blobs it adds (``blob(size, seed=s)`` for each seed, one after another). It
prints one JSON line: ``{"stored": [...seeds], "refused": [...seeds]}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from sriblob import QuotaExceeded
from sriblob.testing import blob

from .lease_worker import build, emit


async def main(spec: dict[str, Any]) -> None:
    """Open the store, wait for the go file, add the blobs, report."""
    go = Path(spec["go"])
    stored: list[int] = []
    refused: list[int] = []
    async with build(spec["store"], max_total_size=spec["max_total_size"]) as store:
        emit(event="ready")
        while not go.exists():  # noqa: ASYNC110 -- another process creates it
            await asyncio.sleep(0.005)
        for seed in spec["seeds"]:
            try:
                await store.add(blob(spec["size"], seed=seed))
            except QuotaExceeded:
                refused.append(seed)
            else:
                stored.append(seed)
    emit(event="done", stored=stored, refused=refused)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
