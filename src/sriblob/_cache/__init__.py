"""A read-through cache: verified local copies in front of a store of record."""

from ._store import CachedBlobStore, CacheStats

__all__ = ["CacheStats", "CachedBlobStore"]
