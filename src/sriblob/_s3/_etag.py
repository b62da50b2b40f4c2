"""Whether a stored object holds given bytes, from its ETag: no download.

S3 gives an object written by one PutObject (without SSE-KMS or SSE-C) the
MD5 of its bytes as ETag, and one written by a multipart upload the MD5 of
its parts' MD5s, a dash and the part count. Hashing bytes the client holds
in the layout sriblob uploads them with tells whether the stored object is
those bytes, for the cost of a HeadObject. An object written another way
(other part sizes, server-side encryption with KMS) has an ETag this can't
reproduce: it counts as different, and the caller replaces it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ._upload import part_size_for

if TYPE_CHECKING:
    from sriblob._compat import Buffer

__all__ = ["holds"]


def holds(etag: object, data: Buffer, *, part_size: int) -> bool:
    """Whether an object whose ETag is *etag* holds exactly *data*.

    Args:
        etag: The object's ETag as S3 answers it (quoted), or None.
        data: The bytes, verified against their integrity by the caller.
        part_size: The configured part size (the store's uploads cut a
            multipart upload of *data* with :func:`part_size_for`).
    """
    if not isinstance(etag, str):
        return False
    tag = etag.strip().removeprefix("W/").strip('"').lower()
    view = memoryview(data).cast("B")
    digest, dash, count = tag.partition("-")
    if not dash:
        return hashlib.md5(view, usedforsecurity=False).hexdigest() == digest
    size = part_size_for(view.nbytes, part_size)
    starts = range(0, view.nbytes, size)
    if not count.isdigit() or int(count) != len(starts):
        return False
    combined = hashlib.md5(usedforsecurity=False)
    for start in starts:
        part = view[start : start + size]
        combined.update(hashlib.md5(part, usedforsecurity=False).digest())
    return combined.hexdigest() == digest
