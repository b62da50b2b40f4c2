"""The backend interface: what moves a store's bytes.

A :class:`~sriblob.BlobStore` is what users call; it holds a
:class:`Backend` and calls its hooks. Write a backend by subclassing
:class:`Backend` and build a store around it::

    import contextlib

    import sriblob
    from sriblob.backend import Backend, BlobBody


    class DictBackend(Backend):
        default_id = "dict"

        def __init__(self) -> None:
            super().__init__()
            self._blobs: dict[str, bytes] = {}

        async def write_blob(self, source):
            data = bytearray()
            async for chunk in source.chunks():  # verified as it streams
                data += chunk
            self._blobs[str(source.integrity)] = bytes(data)

        @contextlib.asynccontextmanager
        async def read_blob(self, integrity):
            data = self._blobs.get(str(integrity))
            if data is None:
                raise self.not_found(integrity)
            yield BlobBody(sriblob.backend.chunks_of(data), len(data))

        async def delete_blob(self, integrity, *, stored_before):
            self._blobs.pop(str(integrity), None)
            return True

        async def list_names(self):
            for name in list(self._blobs):
                yield name


    store = sriblob.BlobStore(DictBackend(), max_total_size=10**9)

The store verifies, enforces limits and the quota, remembers copies seen
corrupt and logs; the backend only stores and returns bytes. One backend may
wrap another, as :class:`~sriblob.CachedBlobStore`'s does. Run
:class:`sriblob.testing.BlobStoreContract` over the store to prove it.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from ._backend import Backend, BlobBody, BlobInfo, chunks_of
from ._lease import Lease
from ._options import StoreOptions
from ._source import BlobSource

# Documented (and cross-referenced) under this public module.
for _public in (Backend, BlobBody, BlobSource):
    _public.__module__ = __name__

__all__ = [
    "Backend",
    "BlobBody",
    "BlobInfo",
    "BlobSource",
    "Lease",
    "StoreOptions",
    "chunks_of",
]
