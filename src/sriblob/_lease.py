"""The store-wide maintenance lease: one gc, migration or repair at a time.

Replicas of a host share one bucket or database. The operations that delete
(:func:`~sriblob.collect_garbage`, :func:`~sriblob.migrate` with
``delete_source=True``, :func:`~sriblob.verify` with ``delete_corrupt=True``)
and migrations into a store take the store's lease first, so two of them
never run against one store at once. Each backend keeps the lease where
every process that shares the store can see it: an advisory lock in
PostgreSQL, a lock file in the filesystem store's root, a lease object in
the bucket; a memory store is its own process's. Ordinary reads and writes
never touch it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs

from sriblob.exceptions import StoreBusy

if TYPE_CHECKING:
    from sriblob._backend import Backend

__all__ = ["HOLDER_PAUSE", "HOLDER_READS", "UNKNOWN_HOLDER", "Lease", "acquire"]

#: The longest wait between two tries of a busy lease.
_MAX_DELAY: Final = 1.0


@attrs.frozen
class Lease:
    """Who holds a store's maintenance lease, or asks for it.

    Attributes:
        purpose: What it is for (``"collect_garbage"``, ``"migrate"``, ...).
        host: The holder's host name.
        pid: The holder's process id.
        since: When it was taken (UTC).
        token: A random id of this holding.

    .. versionadded:: 0.1.0
    """

    purpose: str
    host: str
    pid: int
    since: dt.datetime
    token: str

    @classmethod
    def mine(cls, purpose: str) -> Lease:
        """A new lease of this process, for *purpose*."""
        return cls(
            purpose=purpose,
            host=socket.gethostname(),
            pid=os.getpid(),
            since=dt.datetime.now(dt.UTC),
            token=uuid.uuid4().hex,
        )

    def describe(self) -> str:
        """``collect_garbage on web-2 (pid 4711) since 2026-12-01 10:00:00 UTC``."""
        since = self.since.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.purpose} on {self.host} (pid {self.pid}) since {since}"

    def to_json(self) -> bytes:
        """The lease as JSON, for backends that store it."""
        fields = attrs.asdict(self)
        fields["since"] = self.since.isoformat()
        return json.dumps(fields, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Lease | None:
        """The lease in *data*, or None if it isn't one (a torn or foreign file)."""
        try:
            fields: Any = json.loads(data)
            return cls(
                purpose=str(fields["purpose"]),
                host=str(fields["host"]),
                pid=int(fields["pid"]),
                since=dt.datetime.fromisoformat(str(fields["since"])),
                token=str(fields["token"]),
            )
        except (ValueError, KeyError, TypeError):
            return None


#: Reads of a holder's record that isn't there yet (the lock just taken, its
#: name on the way), and the pause between them, before the holder counts
#: as unknown: the filesystem and PostgreSQL leases wait this long.
HOLDER_READS: Final = 20
HOLDER_PAUSE: Final = 0.05

#: The holder of a lease whose record can't be read (torn, or being written).
UNKNOWN_HOLDER: Final = Lease(
    purpose="unknown",
    host="unknown",
    pid=0,
    since=dt.datetime.fromtimestamp(0, dt.UTC),
    token="",
)


def busy(store: Backend, holder: Lease | None, *, waited: float | None) -> StoreBusy:
    """The error for a lease *holder* holds."""
    who = (
        "another process"
        if holder is None or holder.token == UNKNOWN_HOLDER.token
        else holder.describe()
    )
    waiting = (
        "; pass lease_timeout= (sriblob: --lease-timeout) to wait for it"
        if waited is None
        else f"; waited {waited:g} s"
    )
    msg = (
        f"The {store.id!r} store is busy: {who} holds its maintenance lease"
        f"{waiting}, or try again when it is done."
    )
    return StoreBusy(msg, backend=store.id, holder=holder)


async def acquire(store: Backend, mine: Lease, wait: float | None) -> None:
    """Take *store*'s lease for *mine*, waiting up to *wait* seconds.

    Raises:
        StoreBusy: Someone else holds it (after *wait*, when given).
    """
    loop = asyncio.get_running_loop()
    deadline = None if wait is None else loop.time() + wait
    delay = 0.05
    while True:
        holder = await store.try_lease(mine)
        if holder is None:
            return
        left = None if deadline is None else deadline - loop.time()
        if left is None or left <= 0:
            raise busy(store, holder, waited=wait)
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, _MAX_DELAY)
