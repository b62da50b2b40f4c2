"""Every error sriblob raises.

All of them derive from :class:`SriblobError`, so ``except SriblobError``
catches anything the library raises on purpose::

    SriblobError
    ├── InvalidIntegrity          (also ValueError)  malformed SRI string
    ├── IntegrityMismatch                            bytes don't hash to the name
    ├── BlobNotFound              (also LookupError) open() of an absent blob
    ├── BlobTooLarge                                 over a store's max_blob_size
    ├── QuotaExceeded                                over a store's max_total_size
    ├── RangeNotSatisfiable       (also ValueError)  a range outside the blob
    ├── OperationUnsupported      (also NotImplementedError) the backend can't
    │   └── PresignUnsupported                       no presigned URLs
    ├── UnknownBackend            (also LookupError) registry has no such id
    ├── ConfigurationError        (also ValueError)  missing or invalid settings
    ├── StoreClosed               (also RuntimeError) store used outside its lifetime
    └── StoreError                                   a backend failed
        ├── AccessDenied                             credentials refused
        ├── BucketNotFound                           the bucket doesn't exist
        ├── StoreBusy                                another process holds the lease
        └── StoreUnavailable                         unreachable, timed out, 5xx

Context travels as attributes (``integrity``, ``backend``, ``bucket``,
``endpoint``, ...), never as secrets: no message or attribute ever carries a
secret access key.
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BlobNotFound",
    "BlobTooLarge",
    "BucketNotFound",
    "ConfigurationError",
    "IntegrityMismatch",
    "InvalidIntegrity",
    "OperationUnsupported",
    "PresignUnsupported",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "SriblobError",
    "StoreBusy",
    "StoreClosed",
    "StoreError",
    "StoreUnavailable",
    "UnknownBackend",
]


class SriblobError(Exception):
    """Base class of every error sriblob raises."""


class InvalidIntegrity(SriblobError, ValueError):
    """A string is not a usable Subresource Integrity value.

    Attributes:
        text: The offending input, truncated to a readable length.
    """

    def __init__(self, message: str, *, text: str) -> None:
        super().__init__(message)
        self.text = text


class IntegrityMismatch(SriblobError):
    """Bytes do not hash to the integrity they are stored or requested under.

    Attributes:
        expected: The integrity the bytes should have had (canonical string).
        actual: The integrity the bytes really have (canonical string).
    """

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual


class BlobNotFound(SriblobError, LookupError):
    """The store holds no blob under this integrity.

    Attributes:
        integrity: The canonical integrity that was looked up.
        backend: The id of the store that was asked (the ids asked,
            comma-separated, for ``BlobStoreRegistry.open_with_fallback``).
    """

    def __init__(self, message: str, *, integrity: str, backend: str) -> None:
        super().__init__(message)
        self.integrity = integrity
        self.backend = backend


class BlobTooLarge(SriblobError):
    """A blob is larger than the store's ``max_blob_size``.

    Attributes:
        limit: The configured limit in bytes.
        backend: The id of the store that refused the blob.
    """

    def __init__(self, message: str, *, limit: int, backend: str) -> None:
        super().__init__(message)
        self.limit = limit
        self.backend = backend


class QuotaExceeded(SriblobError):
    """A blob would take a store past its quota (``max_total_size``).

    Raised before the blob becomes visible: nothing is stored.

    Attributes:
        backend: The store's id.
        limit: The quota, in bytes.
        total: The bytes the store held.
        size: The blob's size.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, backend: str, limit: int, total: int, size: int
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.limit = limit
        self.total = total
        self.size = size


class RangeNotSatisfiable(SriblobError, ValueError):
    """A byte range asked of :meth:`~sriblob.BlobStore.open` lies outside the blob.

    Attributes:
        integrity: The blob's canonical integrity.
        start: The range's first byte.
        end: The range's end (exclusive), or None for the blob's end.
        size: The blob's size in bytes.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self, message: str, *, integrity: str, start: int, end: int | None, size: int
    ) -> None:
        super().__init__(message)
        self.integrity = integrity
        self.start = start
        self.end = end
        self.size = size


class OperationUnsupported(SriblobError, NotImplementedError):
    """The store's backend can't do this (``link_to`` on S3, say).

    Attributes:
        backend: The id of the store.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, backend: str) -> None:
        super().__init__(message)
        self.backend = backend


class PresignUnsupported(OperationUnsupported):
    """The store can't hand out presigned URLs (see ``BlobStore.can_presign``).

    Attributes:
        backend: The id of the store.

    .. versionadded:: 0.1.0
    """


class UnknownBackend(SriblobError, LookupError):
    """A registry was asked for a store id it doesn't hold.

    Attributes:
        id: The id that was asked for.
        known: The ids the registry does hold, sorted.
    """

    def __init__(self, message: str, *, id: str, known: tuple[str, ...]) -> None:
        super().__init__(message)
        self.id = id
        self.known = known


class ConfigurationError(SriblobError, ValueError):
    """Settings are missing or invalid.

    Attributes:
        fields: The config field names that are missing or invalid, in the
            order the config class declares them (then the fields of
            misspelt variables); for a misspelt variable that no loader
            reads, the variable's name. Never their values.
    """

    def __init__(self, message: str, *, fields: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.fields = fields


class StoreClosed(SriblobError, RuntimeError):
    """A store was used before it was opened or after it was closed."""


class StoreError(SriblobError):
    """A storage backend failed to carry out an operation.

    Attributes:
        backend: The id of the store.
        bucket: The bucket involved, if the backend has buckets.
        endpoint: The endpoint URL involved, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        bucket: str | None = None,
        endpoint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.backend = backend
        self.bucket = bucket
        self.endpoint = endpoint


class AccessDenied(StoreError):
    """The backend refused the credentials or the operation."""


class BucketNotFound(StoreError):
    """The configured bucket does not exist."""


class StoreBusy(StoreError):
    """Another process holds the store's maintenance lease.

    Raised by :meth:`~sriblob.BlobStore.lease` (and the operations that take
    it: :func:`~sriblob.collect_garbage`, :func:`~sriblob.migrate`,
    :func:`~sriblob.verify` with deletion) when the lease stays taken, and
    by a holder that lost its lease (it expired before it was renewed).

    Attributes:
        holder: The :class:`~sriblob.Lease` of whoever holds it (purpose,
            host, pid, since), or None when the backend can't tell.

    .. versionadded:: 0.1.0
    """

    def __init__(self, message: str, *, backend: str, holder: object = None) -> None:
        super().__init__(message, backend=backend)
        self.holder = holder


class StoreUnavailable(StoreError):
    """The backend could not be reached, timed out, or kept failing."""
