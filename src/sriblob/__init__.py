"""Async blob storage named by Subresource Integrity.

Blobs are immutable and stored under their integrity (``sha512-<base64>``);
every backend implements :class:`BlobStore` and verifies bytes on the way in
and out.
"""

from __future__ import annotations

from ._config import (
    Configured,
    Misconfigured,
    S3StoreConfig,
    Unconfigured,
    load_s3_config_from_env,
)
from ._filesystem import FilesystemBlobStore
from ._integrity import Integrity, IntegrityHasher
from ._memory import MemoryBlobStore
from ._operations import (
    Failure,
    GarbageReport,
    MigrationReport,
    Progress,
    VerifyReport,
    collect_garbage,
    migrate,
    verify,
)
from ._postgres import PostgresBlobStore
from ._registry import BlobStoreRegistry, default_registry
from ._s3 import S3BlobStore
from ._store import BlobBody, BlobInfo, BlobReader, BlobSource, BlobStore, Data
from .exceptions import (
    AccessDenied,
    BlobNotFound,
    BlobTooLarge,
    BucketNotFound,
    ConfigurationError,
    IntegrityMismatch,
    InvalidIntegrity,
    SriblobError,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    UnknownBackend,
)

__all__ = [
    "AccessDenied",
    "BlobBody",
    "BlobInfo",
    "BlobNotFound",
    "BlobReader",
    "BlobSource",
    "BlobStore",
    "BlobStoreRegistry",
    "BlobTooLarge",
    "BucketNotFound",
    "ConfigurationError",
    "Configured",
    "Data",
    "Failure",
    "FilesystemBlobStore",
    "GarbageReport",
    "Integrity",
    "IntegrityHasher",
    "IntegrityMismatch",
    "InvalidIntegrity",
    "MemoryBlobStore",
    "MigrationReport",
    "Misconfigured",
    "PostgresBlobStore",
    "Progress",
    "S3BlobStore",
    "S3StoreConfig",
    "SriblobError",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "Unconfigured",
    "UnknownBackend",
    "VerifyReport",
    "collect_garbage",
    "default_registry",
    "load_s3_config_from_env",
    "migrate",
    "verify",
]


def __getattr__(name: str) -> str:
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 -- only when asked

        return version("sriblob")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
