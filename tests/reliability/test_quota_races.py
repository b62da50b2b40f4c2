"""The quota across OS processes: four writers racing at the limit.

Each worker is ``python -m tests.quota_worker``: it opens the shared store
with the same ``max_total_size``, waits for a go file (so the workers start
at once) and adds its own blobs one after another; together they offer
twice what fits. Whatever the interleaving, the store must end at or under
the quota, the running total must equal what is stored, and every blob a
worker was told is stored must be there (and every refused one absent).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from sriblob.testing import integrity_of

from ..helpers import blob

if TYPE_CHECKING:
    from .conftest import Shared

pytestmark = pytest.mark.reliability

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
#: Blobs each worker offers, and their size: together twice the quota.
PER_WORKER = 10
SIZE = 3000
QUOTA = WORKERS * PER_WORKER * SIZE // 2
GUARD = 180


def start(shared: Shared, go: Path, seeds: list[int]) -> subprocess.Popen[str]:
    """Start one worker adding the blobs of *seeds*; it waits for *go*."""
    spec = {
        "store": shared.spec,
        "go": str(go),
        "max_total_size": QUOTA,
        "seeds": seeds,
        "size": SIZE,
    }
    return subprocess.Popen(  # noqa: S603 -- our own interpreter
        [sys.executable, "-m", "tests.quota_worker", json.dumps(spec)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def line(process: subprocess.Popen[str]) -> dict[str, Any]:
    """The worker's next JSON line (fails the test if it ended)."""
    assert process.stdout is not None
    text = process.stdout.readline()
    if not text:
        _, err = process.communicate(timeout=GUARD)
        pytest.fail(f"worker {process.pid} ended: {err}")
    event: dict[str, Any] = json.loads(text)
    return event


def test_racing_writers_never_pass_the_quota(shared: Shared, tmp_path: Path) -> None:
    """Four processes, 2x the quota offered: stored <= quota, total exact."""
    go = tmp_path / "go"
    seeds = [
        [1000 * worker + n for n in range(PER_WORKER)] for worker in range(WORKERS)
    ]
    workers = [start(shared, go, mine) for mine in seeds]
    try:
        for worker in workers:
            assert line(worker)["event"] == "ready"
        go.touch()
        results = [line(worker) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None and not go.exists():
                worker.kill()
            worker.communicate(timeout=GUARD)  # reaps it, closes its pipes
    stored = [seed for result in results for seed in result["stored"]]
    refused = [seed for result in results for seed in result["refused"]]
    assert sorted(stored + refused) == sorted(seed for mine in seeds for seed in mine)
    assert len(stored) * SIZE <= QUOTA
    # The quota was reached, not stopped short of by a miscount.
    assert len(stored) * SIZE > QUOTA - SIZE * WORKERS

    async def check() -> None:
        async with shared.open(max_total_size=QUOTA) as store:
            usage = await store.usage()
            counted = await store.backend.stored_total()
            assert usage.total == counted == len(stored) * SIZE
            for seed in stored:
                assert await store.has(integrity_of(blob(SIZE, seed=seed)))
            for seed in refused:
                assert not await store.has(integrity_of(blob(SIZE, seed=seed)))

    asyncio.run(check())
