"""Shared helpers for the test suite.

The contract suite's helpers (``Backend``, ``blob``, ``chunked``, ...) are
public in :mod:`sriblob.testing`; they are re-exported here for the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import TYPE_CHECKING, Any, Final

import attrs
from botocore.exceptions import ClientError

from sriblob import S3StoreConfig
from sriblob.testing import (
    Backend,
    CountingSource,
    MakeStore,
    blob,
    chunked,
    collect,
    integrity_of,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mypy_boto3_s3 import S3Client

__all__ = [
    "MOTO_REGION",
    "S3_TARGETS",
    "Backend",
    "CountingSource",
    "MakeStore",
    "S3Target",
    "blackhole",
    "blob",
    "chunked",
    "collect",
    "drain_closing_transports",
    "integrity_of",
    "open_uploads",
    "s3_leftovers",
]

#: The region the tests' moto buckets live in.
MOTO_REGION: Final = "us-east-1"

#: The S3 servers the tests know how to drive (``SRIBLOB_TEST_S3_TARGET``).
S3_TARGETS: Final = ("moto", "s3rver", "ceph", "seaweedfs")


@attrs.frozen
class S3Target:
    """The S3 server the tests run against, and what it can do.

    ``nox -s compat`` starts each server and names it by environment
    variables (``SRIBLOB_TEST_S3_TARGET``, ``_ENDPOINT``, ``_ACCESS_KEY_ID``,
    ``_SECRET_ACCESS_KEY``, ``_VERSION``); without them the tests start
    moto. The flags say where a server differs, so a test asserts what that
    server does instead of being skipped.

    Attributes:
        name: ``moto``, ``s3rver``, ``ceph`` or ``seaweedfs``.
        endpoint: ``http://127.0.0.1:<port>``.
        access_key_id: A key pair the server accepts.
        secret_access_key: Its secret.
        version: The server's version, for reports.
        virtual_host: The host name under which ``<bucket>.<virtual_host>``
            reaches a bucket in virtual-hosted style.
        checks_signatures: Whether a wrong secret is refused (s3rver only
            checks the key id of SigV4 requests).
        lists_uploads: Whether ListMultipartUploads works (s3rver: no).
        aborts_uploads: Whether AbortMultipartUpload works (s3rver: no).
        copies_parts: Whether UploadPartCopy works (s3rver: no).
        multipart_etags: Whether a multipart object's ETag ends in
            ``-<parts>`` as on AWS (s3rver: a plain MD5).
        complete_etag: Whether CompleteMultipartUpload answers with the
            object's ETag (Ceph RGW 16: empty).
        conditional_create: Whether ``If-None-Match: *`` refuses to
            overwrite (s3rver ignores it).
        checks_presigned_expiry: Whether an expired presigned URL is refused
            (moto serves it unless its authentication is on, which fails on
            query-signed requests; s3rver checks the expiry, not the
            signature).
        conditional_puts: Whether ``If-Match`` on a PutObject refuses a
            changed object (s3rver ignores it).
        checks_payload_hash: Whether a signed body whose
            ``X-Amz-Content-SHA256`` doesn't match it is refused (Ceph RGW).
        creates_missing_buckets: Whether a PutObject to a missing bucket
            creates it (SeaweedFS, for an admin identity) instead of
            answering NoSuchBucket.
    """

    name: str
    endpoint: str
    access_key_id: str
    secret_access_key: str = attrs.field(repr=False)
    version: str = ""
    virtual_host: str = "localhost"
    checks_signatures: bool = True
    lists_uploads: bool = True
    aborts_uploads: bool = True
    copies_parts: bool = True
    multipart_etags: bool = True
    complete_etag: bool = True
    conditional_create: bool = True
    creates_missing_buckets: bool = False
    checks_presigned_expiry: bool = True
    checks_payload_hash: bool = False
    conditional_puts: bool = True

    @classmethod
    def from_env(cls) -> S3Target | None:
        """Return the server named by ``SRIBLOB_TEST_S3_*``, or None for moto."""
        endpoint = os.environ.get("SRIBLOB_TEST_S3_ENDPOINT")
        if not endpoint:
            return None
        name = os.environ.get("SRIBLOB_TEST_S3_TARGET", "")
        if name not in S3_TARGETS:
            msg = f"SRIBLOB_TEST_S3_TARGET must be one of {S3_TARGETS}, not {name!r}."
            raise ValueError(msg)
        return cls.known(
            name,
            endpoint=endpoint,
            access_key_id=os.environ["SRIBLOB_TEST_S3_ACCESS_KEY_ID"],
            secret_access_key=os.environ["SRIBLOB_TEST_S3_SECRET_ACCESS_KEY"],
            version=os.environ.get("SRIBLOB_TEST_S3_VERSION", ""),
        )

    @classmethod
    def known(cls, name: str, **fields: Any) -> S3Target:
        """Return target *name* with the capabilities measured for it."""
        if name == "moto":
            fields.update(checks_presigned_expiry=False)
        elif name == "s3rver":
            fields.update(
                virtual_host="s3.localhost",
                checks_signatures=False,
                lists_uploads=False,
                aborts_uploads=False,
                copies_parts=False,
                multipart_etags=False,
                conditional_create=False,
                conditional_puts=False,
            )
        elif name == "ceph":
            fields.update(complete_etag=False, checks_payload_hash=True)
        elif name == "seaweedfs":
            fields.update(creates_missing_buckets=True)
        return cls(name=name, **fields)


def s3_leftovers(client: S3Client, config: S3StoreConfig) -> list[str]:
    """List what a failed S3 write must not leave: staging keys, open uploads."""
    staging = config.key_prefix + ".staging/"
    listed = client.list_objects_v2(Bucket=config.bucket, Prefix=staging)
    keys = [entry["Key"] for entry in listed.get("Contents", [])]
    return keys + [f"upload:{key}" for key in open_uploads(client, config.bucket)]


def open_uploads(client: S3Client, bucket: str) -> list[str]:
    """Return the keys of *bucket*'s unfinished multipart uploads.

    Empty on a server without ListMultipartUploads (s3rver answers
    NotImplemented): there, nothing can see or list them, the store included.
    """
    try:
        listed = client.list_multipart_uploads(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "NotImplemented":
            return []
        raise
    return [upload["Key"] for upload in listed.get("Uploads", [])]


#: How long :func:`drain_closing_transports` waits before aborting stragglers.
DRAIN_TIMEOUT: Final = 10.0


async def drain_closing_transports() -> None:
    """Wait until sockets this loop is closing have flushed and closed.

    When a request is cancelled mid-body (an upload aborted on a mismatch or
    a cancellation), aiohttp closes its connection gracefully: asyncio keeps
    the socket open until the bytes already queued reach the server. A test's
    event loop closes when the test ends, so a slow server (s3rver) can leave
    such a socket behind to be garbage-collected with a ResourceWarning in a
    later test. Call this after closing a store, in the test's loop. Sockets
    still open (not closing) are left alone, so a real leak still warns;
    after :data:`DRAIN_TIMEOUT` seconds the stragglers are aborted.
    """
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(DRAIN_TIMEOUT):
            # Polling: asyncio has no event for "this transport closed".
            while _closing_transports(loop):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    for transport in _closing_transports(loop):
        transport.abort()
    await asyncio.sleep(0)  # let connection_lost run


def _closing_transports(
    loop: asyncio.AbstractEventLoop,
) -> list[asyncio.WriteTransport]:
    """The transports *loop* is closing but still writes to (selector loops)."""
    selector = getattr(loop, "_selector", None)
    if selector is None:  # pragma: no cover -- a proactor or uvloop loop
        return []
    found = []
    for key in list(selector.get_map().values()):
        _, writer = key.data
        transport = getattr(getattr(writer, "_callback", None), "__self__", None)
        if isinstance(transport, asyncio.WriteTransport) and transport.is_closing():
            found.append(transport)
    return found


@contextlib.contextmanager
def interruptible_children() -> Iterator[None]:
    """Let children started meanwhile take SIGINT, as a foreground command does.

    A suite started from a background job of a shell without job control
    inherits SIGINT ignored, and every child inherits that: a Ctrl-C test
    would send a signal no user's terminal could. This process catches it
    meanwhile instead (Python's own handler), which a child's exec resets
    to the default. Not ``preexec_fn``, which is unsafe beside the test
    servers' threads.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """Listen on a loopback port that never accepts nor answers; yield the port.

    The kernel completes each TCP handshake (up to the backlog), so a client
    connects and then waits for an answer that never comes: a server that
    hangs, or a firewall that drops the replies.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        port: int = sock.getsockname()[1]
        yield port
