"""Async blob storage named by Subresource Integrity.

Blobs are immutable and stored under their integrity (``sha512-<base64>``);
:class:`BlobStore` is what users call; it verifies bytes on the way in and
out, over a backend (:mod:`sriblob.backend`) that moves them.

Importing :mod:`sriblob` costs almost nothing: each name is imported from
its module the first time it is used, so a host that only uses the
filesystem store never loads aioboto3, botocore, asyncpg or tqdm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from .exceptions import (
    AccessDenied,
    BlobNotFound,
    BlobTooLarge,
    BucketNotFound,
    ConfigurationError,
    IntegrityMismatch,
    InvalidIntegrity,
    OperationUnsupported,
    PresignUnsupported,
    QuotaExceeded,
    RangeNotSatisfiable,
    SriblobError,
    StoreBusy,
    StoreClosed,
    StoreError,
    StoreUnavailable,
    UnknownBackend,
)

if TYPE_CHECKING:
    from ._backend import BlobBody, BlobInfo
    from ._cache import CachedBlobStore, CacheStats
    from ._config import (
        Configured,
        Misconfigured,
        PostgresStoreConfig,
        S3StoreConfig,
        Unconfigured,
        load_postgres_config_from_env,
        load_s3_config_from_env,
    )
    from ._environment import default_registry
    from ._filesystem import FilesystemBlobStore
    from ._integrity import Integrity, IntegrityHasher
    from ._lease import Lease
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
    from ._options import StoreOptions
    from ._plugins import StorePlugin
    from ._postgres import PostgresBlobStore
    from ._quota import Usage
    from ._reader import BlobReader
    from ._registry import BlobStoreRegistry
    from ._s3 import S3BlobStore
    from ._source import BlobSource, Data
    from ._store import BlobStore

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
    "CacheStats",
    "CachedBlobStore",
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
    "Lease",
    "MemoryBlobStore",
    "MigrationReport",
    "Misconfigured",
    "OperationUnsupported",
    "PostgresBlobStore",
    "PostgresStoreConfig",
    "PresignUnsupported",
    "Progress",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "S3BlobStore",
    "S3StoreConfig",
    "SriblobError",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "StoreOptions",
    "StorePlugin",
    "StoreUnavailable",
    "Unconfigured",
    "UnknownBackend",
    "Usage",
    "VerifyReport",
    "collect_garbage",
    "default_registry",
    "load_postgres_config_from_env",
    "load_s3_config_from_env",
    "migrate",
    "verify",
]

#: Where each lazily imported name lives.
_LAZY: Final = {
    **dict.fromkeys(
        (
            "Configured",
            "Misconfigured",
            "PostgresStoreConfig",
            "S3StoreConfig",
            "Unconfigured",
            "load_postgres_config_from_env",
            "load_s3_config_from_env",
        ),
        "._config",
    ),
    "CacheStats": "._cache",
    "CachedBlobStore": "._cache",
    "FilesystemBlobStore": "._filesystem",
    "Integrity": "._integrity",
    "IntegrityHasher": "._integrity",
    "Lease": "._lease",
    "Usage": "._quota",
    "MemoryBlobStore": "._memory",
    **dict.fromkeys(
        (
            "Failure",
            "GarbageReport",
            "MigrationReport",
            "Progress",
            "VerifyReport",
            "collect_garbage",
            "migrate",
            "verify",
        ),
        "._operations",
    ),
    "StorePlugin": "._plugins",
    "PostgresBlobStore": "._postgres",
    "BlobStoreRegistry": "._registry",
    "default_registry": "._environment",
    "S3BlobStore": "._s3",
    "BlobBody": "._backend",
    "BlobInfo": "._backend",
    "BlobReader": "._reader",
    "BlobSource": "._source",
    "Data": "._source",
    "BlobStore": "._store",
    "StoreOptions": "._options",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module, __name__), name)
        globals()[name] = value  # once imported, a plain attribute
        return value
    if name == "__version__":
        from importlib.metadata import version  # noqa: PLC0415 -- only when asked

        return version("sriblob")
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
