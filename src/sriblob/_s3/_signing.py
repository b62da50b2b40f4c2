"""SigV4 payload hashes of uploads, computed off the event loop.

When request bodies are signed (over plain http, by default), botocore's
signer hashes each body with SHA-256 where it signs: on the event loop, in
the middle of every other part's I/O. For PutObject and UploadPart bodies of
at least :data:`OFFLOAD_MIN` bytes, a ``before-sign`` handler hashes the
exact bytes botocore would, in a worker thread, and a signer of sriblob's
(botocore's S3 SigV4 signer, but taking that hash) signs with it. The
request, its signature and what the server checks are the same as
botocore's own: only where the hash is computed changes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
from typing import TYPE_CHECKING, Any, Final

from botocore import auth

from sriblob._tasks import wait_out

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

__all__ = ["OFFLOAD_MIN", "hash_payloads_off_loop"]

#: Bodies smaller than this are hashed by botocore as usual: a thread hop
#: costs more than hashing them where they are.
OFFLOAD_MIN: Final = 1024 * 1024
#: The signature version of :class:`_PrehashedS3SigV4Auth` in botocore's map.
_SIGNATURE_VERSION: Final = "sriblob-s3v4"
#: Where the handler leaves the hash for the signer.
_CONTEXT_KEY: Final = "sriblob_payload_sha256"
_OPERATIONS: Final = ("PutObject", "UploadPart")


class _PrehashedS3SigV4Auth(auth.S3SigV4Auth):
    """botocore's S3 SigV4 signer, signing with a payload hash computed earlier."""

    def payload(self, request: Any) -> str:
        digest = request.context.get(_CONTEXT_KEY)
        if (
            digest is None
            or self._is_streaming_checksum_payload(request)  # type: ignore[attr-defined]
            or not self._should_sha256_sign_payload(request)  # type: ignore[attr-defined]
        ):
            return str(super().payload(request))
        return str(digest)


auth.AUTH_TYPE_MAPS.setdefault(_SIGNATURE_VERSION, _PrehashedS3SigV4Auth)


def _body_view(body: object) -> memoryview | None:
    """The bytes botocore would hash for *body*, or None to leave it to botocore."""
    if isinstance(body, io.BytesIO):
        return body.getbuffer()[body.tell() :]
    if isinstance(body, bytes | bytearray | memoryview):
        return memoryview(body)
    return None


def _sha256_hex(view: memoryview) -> str:
    try:
        return hashlib.sha256(view).hexdigest()
    finally:
        view.release()


async def _hash_body(request: Any, **_: Any) -> None:
    request.context.pop(_CONTEXT_KEY, None)
    view = _body_view(request.body)
    if view is None:
        return
    if view.nbytes < OFFLOAD_MIN:
        view.release()
        return
    hashing = asyncio.ensure_future(asyncio.to_thread(_sha256_hex, view))
    # The thread holds a view of the body until it is done: let it finish
    # even if the upload is cancelled meanwhile, so the body can be freed.
    await wait_out(hashing)
    request.context[_CONTEXT_KEY] = hashing.result()


def _choose_signer(signature_version: object, **_: Any) -> str | None:
    return _SIGNATURE_VERSION if signature_version == "s3v4" else None


def hash_payloads_off_loop(client: S3Client) -> None:
    """Make *client* hash large PutObject and UploadPart bodies in a thread."""
    events: Any = client.meta.events  # the stubs take only sync handlers
    for operation in _OPERATIONS:
        events.register(f"choose-signer.s3.{operation}", _choose_signer)
        events.register(f"before-sign.s3.{operation}", _hash_body)
