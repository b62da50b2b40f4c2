"""The S3 backend, on aioboto3: AWS S3 and S3-compatible servers.

- ``_errors``: botocore's and the network's errors as sriblob's, by table,
  and the predicates (``is_missing``, ``is_condition_failed``, ...) the
  other modules branch on instead of reading error codes;
- ``_bucket``: :class:`Bucket`, the open client and the bucket it talks to,
  the one value every helper below is handed;
- ``_http``: the bounded HTTP session (no request waits forever);
- ``_signing``: SigV4 payload hashes, computed off the event loop;
- ``_upload``: single puts, multipart uploads, copies and orphan sweeps;
- ``_download``: one GetObject, or byte ranges on several connections;
- ``_etag``: whether a stored object holds given bytes, from its ETag;
- ``_writer``: the size tiers of ``put()`` and ``add()``, and staging;
- ``_conditional``: one small object changed with conditional writes,
  under ``_lease`` (the maintenance lease) and ``_usage`` (the running total);
- ``_store``: :class:`S3Backend` (its client's lifecycle, everything an
  open backend holds as one value, and the contract) and the thin
  :class:`S3BlobStore` users call.
"""

from __future__ import annotations

from ._store import S3BlobStore

__all__ = ["S3BlobStore"]
