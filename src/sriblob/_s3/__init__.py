"""The S3 backend, on aioboto3: AWS S3 and S3-compatible servers.

- ``_errors``: botocore's and the network's errors as sriblob's, by table;
- ``_http``: the bounded HTTP session (no request waits forever);
- ``_upload``: single puts, multipart uploads, copies and orphan sweeps;
- ``_etag``: whether a stored object holds given bytes, from its ETag;
- ``_store``: :class:`S3BlobStore`, its client's lifecycle and the contract.
"""

from __future__ import annotations

from ._store import S3BlobStore

__all__ = ["S3BlobStore"]
