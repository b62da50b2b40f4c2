"""The filesystem store: blobs as files under a root, by job.

- :mod:`._paths`: where blobs live, opening without following a link;
- :mod:`._temp`: temp files renamed over a blob's name, or removed;
- :mod:`._errors`: the ``OSError`` table and its one translator;
- :mod:`._locks`: the running total and the lease, under ``flock``;
- :mod:`._link`: placing a verified blob at a path;
- :mod:`._tree`: the blocking operations on the tree;
- :mod:`._backend`: the backend (worker threads, errors translated);
- :mod:`._store`: :class:`FilesystemBlobStore`, what users build.
"""

from ._backend import FilesystemBackend
from ._link import LinkMethod
from ._store import FilesystemBlobStore

__all__ = ["FilesystemBackend", "FilesystemBlobStore", "LinkMethod"]
