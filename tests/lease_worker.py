"""A process that runs one maintenance operation on a shared store, for the lease tests.

``python -m tests.lease_worker SPEC_JSON`` where the spec names the store
(``{"kind": "filesystem", "root": ...}``, ``{"kind": "s3", "config":
{...}}``, ``{"kind": "postgres", "dsn": ..., "schema": ...}``), the
operation (``"gc"`` or ``"migrate"``, from ``"source_root"``), a ``"go"``
file to wait for (so several workers start at once), ``"wait"`` (the
``lease_timeout``) and ``"hold"`` (seconds to spend in the operation, spread
over its blobs). It prints JSON lines: ``{"event": "holding", "at": ...}``
when the operation first reports progress (the lease is held then), and
one result line, ``{"event": "ran", ...}`` or ``{"event": "busy", ...}``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

from sriblob import (
    BlobStore,
    FilesystemBlobStore,
    PostgresBlobStore,
    Progress,
    S3BlobStore,
    S3StoreConfig,
    StoreBusy,
    collect_garbage,
    migrate,
)


def emit(**fields: Any) -> None:
    """Print one JSON line of the worker's protocol."""
    print(json.dumps(fields), flush=True)  # noqa: T201 -- the worker's protocol


def build(spec: dict[str, Any], **options: Any) -> BlobStore:
    """The store *spec* describes, built with *options*."""
    kind = spec["kind"]
    if kind == "filesystem":
        return FilesystemBlobStore(spec["root"], **options)
    if kind == "s3":
        return S3BlobStore(S3StoreConfig(**spec["config"]), **options)
    if kind == "postgres":
        return PostgresBlobStore(spec["dsn"], schema=spec["schema"], **options)
    msg = f"unknown store kind {kind!r}"
    raise ValueError(msg)


async def main(spec: dict[str, Any]) -> None:
    """Open the store, wait for the go file, run the operation, report."""
    go = Path(spec["go"])
    held: list[float] = []
    step = spec["hold"] / max(1, spec["blobs"])

    def progress(_: Progress) -> None:
        if not held:
            held.append(time.time())
            emit(event="holding", at=held[0])
        time.sleep(step)  # widen the window: the lease stays held meanwhile

    async with build(spec["store"]) as store:
        emit(event="ready")
        while not go.exists():  # noqa: ASYNC110 -- another process creates it
            await asyncio.sleep(0.005)
        try:
            if spec["operation"] == "gc":
                await collect_garbage(
                    store,
                    [],
                    dry_run=False,
                    grace=dt.timedelta(0),
                    on_progress=progress,
                    lease_timeout=spec["wait"],
                )
            else:
                async with FilesystemBlobStore(spec["source_root"]) as source:
                    await migrate(
                        source,
                        store,
                        concurrency=1,
                        on_progress=progress,
                        lease_timeout=spec["wait"],
                    )
        except StoreBusy as exc:
            holder = getattr(exc, "holder", None)
            emit(
                event="busy",
                at=time.time(),
                message=str(exc),
                holder_pid=getattr(holder, "pid", None),
            )
            return
    emit(event="ran", started=held[0] if held else None, ended=time.time())


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
