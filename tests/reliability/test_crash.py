"""A filesystem writer killed at random moments, many times, never tears a blob."""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from sriblob import FilesystemBlobStore, verify

from ..helpers import collect

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.reliability

#: How many times the writer is killed; each run lives 50-400 ms.
KILLS = 25

WRITER = """
import asyncio, os, random, sys
from sriblob import FilesystemBlobStore

async def chunks(data):
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]
        await asyncio.sleep(0)

async def main():
    store = FilesystemBlobStore(sys.argv[1])
    rng = random.Random(int(sys.argv[2]))
    print("ready", flush=True)
    while True:
        data = rng.randbytes(rng.choice([0, 10, 4096, 300_000, 3_000_000]))
        if rng.random() < 0.5:
            await store.add(chunks(data))
        else:
            await store.add(data)

asyncio.run(main())
"""


class TestSigkill:
    """Kill the writer at random moments; the store stays whole."""

    def test_random_kills(self, tmp_path: Path) -> None:
        """After 25 random SIGKILLs every listed blob verifies and none is partial."""
        rng = random.Random(20261124)
        for run in range(KILLS):
            child = subprocess.Popen(  # noqa: S603 -- our own interpreter and code
                [
                    sys.executable,
                    "-c",
                    textwrap.dedent(WRITER),
                    str(tmp_path),
                    str(run),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                assert child.stdout is not None
                assert child.stdout.readline() == b"ready\n", child.stderr
                time.sleep(rng.uniform(0.05, 0.4))
            finally:
                child.send_signal(signal.SIGKILL)
                child.communicate()
            assert child.returncode == -signal.SIGKILL

        async def check() -> tuple[set[str], int, bool]:
            async with FilesystemBlobStore(tmp_path) as store:
                listed = await collect(store)
                report = await verify(store)
            return listed, report.checked, report.ok

        listed, checked, ok = asyncio.run(check())
        assert listed
        assert checked == len(listed)
        assert ok
        # Every file outside the temp names is a whole, listed blob.
        finals = [
            path
            for path in tmp_path.rglob("*")
            if path.is_file() and not path.name.startswith(".tmp-")
        ]
        assert len(finals) == len(listed)
