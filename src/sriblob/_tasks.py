"""Small asyncio helpers shared by the backends."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["wait_out"]


async def wait_out(task: asyncio.Future[Any]) -> None:
    """Await *task* to the end even if we are cancelled meanwhile.

    Cleanup (aborting an upload, deleting a staging key) and commits (a
    CompleteMultipartUpload that may land anyway) must finish before the
    caller goes on; a cancellation that arrives meanwhile is re-raised
    afterwards. The task's own error is left for the caller to read.
    """
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
        except Exception:  # noqa: BLE001, S110 -- the caller reads task.exception()
            pass
    if cancelled:
        raise asyncio.CancelledError
