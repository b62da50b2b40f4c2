"""Bounded HTTP for the S3 client: no request waits forever.

aiobotocore's aiohttp session bounds connecting and each socket read, but
not waiting for a pooled connection, not an unanswered ``Expect:
100-continue``, not a server that stops reading an upload, and not a body
that trickles in a byte at a time. This session bounds each attempt as a
whole, so botocore sees a timeout it retries, and then gives up.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

import aiohttp
import attrs
from aiobotocore.httpsession import AIOHTTPSession
from botocore.exceptions import ReadTimeoutError

if TYPE_CHECKING:
    from sriblob._config import S3StoreConfig

__all__ = ["Limits", "bounded_session"]

#: Added to every request's time budget: a server's own processing time
#: (CompleteMultipartUpload of many parts, a server-side copy) before its
#: first byte is bounded by ``read_timeout``; this is slack on top.
_SLACK: Final = 1.0


@attrs.frozen
class Limits:
    """How long one request may take, from an :class:`~sriblob.S3StoreConfig`.

    Attributes:
        connect: Seconds to open a connection.
        read: Seconds to wait for any byte of an answer.
        pool: Seconds to wait for a free connection of the pool.
        min_rate: Bytes a second a body must at least move at.
    """

    connect: float
    read: float
    pool: float
    min_rate: int

    @classmethod
    def of(cls, config: S3StoreConfig) -> Limits:
        return cls(
            connect=config.connect_timeout,
            read=config.read_timeout,
            pool=config.pool_timeout,
            min_rate=config.min_transfer_rate,
        )

    def request(self, body_size: int) -> float:
        """Seconds one attempt sending *body_size* bytes may take in all."""
        return self.pool + self.connect + self.read + body_size / self.min_rate + _SLACK

    def body(self, size: int) -> float:
        """Seconds reading a response body of *size* bytes may take."""
        return self.read + size / self.min_rate + _SLACK


def _body_size(request: Any) -> int:
    length = request.headers.get("Content-Length")
    try:
        return int(length) if length is not None else 0
    except ValueError:
        return 0


def bounded_session(limits: Limits) -> type[AIOHTTPSession]:
    """Return an aiobotocore HTTP session class that applies *limits*."""

    class BoundedSession(AIOHTTPSession):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            # `connect` covers waiting for a pooled connection as well as
            # opening one; aiobotocore leaves it unbounded.
            self._timeout = aiohttp.ClientTimeout(
                connect=limits.pool + limits.connect,
                sock_connect=limits.connect,
                sock_read=limits.read,
            )

        async def send(self, request: Any) -> Any:
            budget = limits.request(_body_size(request))
            try:
                async with asyncio.timeout(budget):
                    return await super().send(request)
            except TimeoutError as error:
                # A timeout botocore retries, like a socket read's.
                raise ReadTimeoutError(endpoint_url=request.url, error=error) from error

    return BoundedSession
