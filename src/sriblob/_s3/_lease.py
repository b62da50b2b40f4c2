"""The maintenance lease in a bucket: one object, created conditionally, renewed.

The lease is the object ``<key_prefix>.lease`` (not lowercase hex, so the
key codec and ``list()`` skip it), holding the holder's :class:`Lease` as
JSON. It is taken with a conditional create (``If-None-Match: *``), renewed
by its holder every ``ttl / 3`` seconds with a conditional overwrite
(``If-Match`` of the ETag it wrote last), and released with a conditional
delete. A lease not renewed for ``ttl`` seconds has expired: the next taker
replaces it, again only if it is still the object it read (``If-Match``).

Expiry is judged on the server's clock alone: the lease object's
``LastModified`` against the ``Date`` of the answer that read it, both
stamped by the server, so clients' clocks may disagree freely. Where a
server ignores conditional writes (s3rver), two takers racing for a free or
an expired lease can both believe they won; sriblob then relies on the read
before the write, which narrows the window but cannot close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
from typing import TYPE_CHECKING, Any, Final

import attrs

from sriblob import _telemetry as telemetry
from sriblob._lease import UNKNOWN_HOLDER, Lease
from sriblob.exceptions import StoreBusy, StoreError

from ._conditional import ConditionalObject

if TYPE_CHECKING:
    from ._bucket import Bucket

__all__ = ["LEASE_NAME", "BucketLease"]

logger = logging.getLogger("sriblob")

#: The lease object's name under the key prefix.
LEASE_NAME: Final = ".lease"
#: The share of the ttl after which a holder that couldn't renew gives up.
_GIVE_UP: Final = 5 / 6


@attrs.frozen
class _Read:
    """The lease object as read: its holder, ETag and age on the server's clock."""

    holder: Lease
    etag: str
    age: float


@attrs.define(eq=False)
class _Holding:
    """One lease this process holds, and the task renewing it."""

    lease: Lease
    etag: str
    renewed: float
    task: asyncio.Task[None] | None = None
    lost: str | None = None


class BucketLease:
    """Take, renew and release the maintenance lease of one bucket prefix.

    Args:
        bucket: The bucket, through the store's open client (and the
            store's id, for messages).
        key: The lease object's key.
        ttl: Seconds a lease lives without renewal.
    """

    def __init__(self, *, bucket: Bucket, key: str, ttl: float) -> None:
        self._object = ConditionalObject(bucket=bucket, key=key, purpose="lease")
        self._ttl = ttl
        self._backend = bucket.backend
        self._held: dict[str, _Holding] = {}

    async def take(self, lease: Lease) -> Lease | None:
        """Take the lease for *lease*; return None, or who holds it."""
        current = await self._read()
        if current is None:
            etag = await self._object.create(lease.to_json())
        elif current.age < self._ttl:
            return current.holder
        else:
            # Expired: replace exactly the object that was read, no other.
            logger.warning(
                "lease backend=%s: breaking an expired lease (%s, %.0f s since "
                "its last renewal; ttl %g s)",
                self._backend,
                current.holder.describe(),
                current.age,
                self._ttl,
                extra=telemetry.fields(self._backend, "lease"),
            )
            etag = await self._object.replace(lease.to_json(), current.etag)
        if etag is None:
            again = await self._read()
            return UNKNOWN_HOLDER if again is None else again.holder
        loop = asyncio.get_running_loop()
        holding = _Holding(lease, etag, loop.time())
        holding.task = asyncio.ensure_future(self._renew(holding))
        self._held[lease.token] = holding
        return None

    def check(self, lease: Lease) -> None:
        """Raise StoreBusy if *lease* was lost (not renewed in time, or taken).

        A holder gives up at five sixths of the ttl since its last renewal
        came back, so it stops before any taker could judge the lease expired
        (the server stamped that renewal earlier still).
        """
        holding = self._held.get(lease.token)
        loop = asyncio.get_running_loop()
        if holding is not None and holding.lost is None:
            if loop.time() - holding.renewed < self._ttl * _GIVE_UP:
                return
            holding.lost = f"it was not renewed within its {self._ttl:g} s ttl"
        why = "it was released" if holding is None else holding.lost
        msg = (
            f"The {self._backend!r} store's maintenance lease was lost: {why}; "
            "another process may hold it now, so this one stops. Run the "
            "operation again."
        )
        raise StoreBusy(msg, backend=self._backend)

    async def release(self, lease: Lease) -> None:
        """Stop renewing *lease* and delete the lease object if it is still ours."""
        holding = self._held.pop(lease.token, None)
        if holding is None:
            return
        if holding.task is not None:
            holding.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await holding.task
        if holding.lost is not None:
            return
        await self._object.delete(holding.etag)

    async def close(self) -> None:
        """Stop every renewal (the store is closing)."""
        for holding in list(self._held.values()):
            await self.release(holding.lease)

    # -- internals ---------------------------------------------------------

    async def _read(self) -> _Read | None:
        version = await self._object.read()
        if version is None:
            return None
        holder = Lease.from_json(version.data) or UNKNOWN_HOLDER
        response = version.response
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        now = _server_time(headers.get("date"))
        modified = response.get("LastModified")
        age = (
            0.0 if now is None or modified is None else (now - modified).total_seconds()
        )
        return _Read(holder, version.etag, age)

    async def _renew(self, holding: _Holding) -> None:
        """Rewrite the lease every ttl / 3 seconds while it is held."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._ttl / 3)
            try:
                etag = await self._object.replace(holding.lease.to_json(), holding.etag)
            except StoreError as error:
                logger.warning(
                    "lease backend=%s: renewal failed (%s); trying again in %g s",
                    self._backend,
                    error,
                    self._ttl / 3,
                    extra=telemetry.fields(self._backend, "lease"),
                )
                continue
            if etag is None:
                holding.lost = "another process replaced it"
                logger.error(
                    "lease backend=%s: the lease was taken over",
                    self._backend,
                    extra=telemetry.fields(self._backend, "lease"),
                )
                return
            holding.etag = etag
            holding.renewed = loop.time()


def _server_time(value: object) -> Any:
    """The server's ``Date`` header as an aware datetime, or None."""
    if not isinstance(value, str):
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
