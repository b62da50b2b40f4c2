"""The filesystem store users build: the zero-infrastructure default."""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

from sriblob._integrity import coerce_integrity
from sriblob._store import BlobStore

from ._backend import FilesystemBackend

if TYPE_CHECKING:
    import os
    from pathlib import Path

    from sriblob._integrity import Integrity
    from sriblob._options import StoreKeywords

__all__ = ["FilesystemBlobStore"]


class FilesystemBlobStore(BlobStore):
    """A store that keeps each blob in a file under a root directory.

    Needs no server: the default backend. Blobs live at
    ``root/blobs/<aa>/<bb>/<key>``, where ``aa`` and ``bb`` are the first two
    bytes of the digest in hex and ``key`` is the hex key
    :func:`sriblob.keys.integrity_to_key` gives with an empty prefix. Every
    path is made of hex digits only, so no integrity can name a path outside
    the root.

    **The root is the store's boundary.** The root itself may be a symlink;
    nothing below it is ever followed: directories and blob files are opened
    relative to their parent's descriptor with ``O_NOFOLLOW``, so a symlink
    planted under the root is refused (:class:`~sriblob.StoreError`), never
    read or written through. A put of the blob replaces a symlinked blob
    file. Blob files are created read-only (mode ``0o444``) and directories
    with mode ``0o755``; the process umask may take permissions away, never
    add them.

    Writes are atomic: the data goes to a ``.tmp-*`` file next to its final
    name, is synced, and renamed into place only after it verified, so a
    reader (or a crash) never sees a partial blob under its final name.
    Concurrent writers of one blob, in any number of processes, are safe.

    A blob's storage time (:attr:`~sriblob.BlobInfo.stored_at`, from
    :meth:`~sriblob.BlobStore.stat`) is its file's modification time.
    Putting (or adding) a blob that is already stored writes nothing but
    renews that time, so :func:`~sriblob.collect_garbage`'s grace period
    protects a blob a writer has just reused as it protects a new one. (If
    the file's time can't be changed, a read-only store for instance, the
    put still succeeds.) The renewal and a collection's deletion lock the
    blob file (``flock``), so one never undoes the other.

    File I/O runs in worker threads and never blocks the event loop; streams
    are written chunk by chunk, never held whole in memory. A large blob is
    written by a thread of its own a few chunks behind the stream while
    another thread hashes it, and synced to disk every 8 MiB on the way, so
    writing, hashing and the final ``fsync`` overlap.

    Failures of the file system raise the library's errors, naming the path
    and what to do: :class:`~sriblob.StoreUnavailable` for a full, read-only
    or failing disk, :class:`~sriblob.AccessDenied` for permissions, and
    :class:`~sriblob.StoreError` for anything else in the way.

    The root is created on the first write. The store needs no ``async
    with``, though it supports it; :meth:`aclose` releases nothing.

    Args:
        root: The directory to keep blobs in.
        id: The store's id in a registry.
        options: ``verify``, ``max_blob_size``, ``max_total_size`` and
            ``warn_total_size``, as for :class:`~sriblob.BlobStore`. The
            running total is kept in ``root/.usage``, changed under an
            exclusive ``flock`` on it in the same step as the rename or
            unlink it counts, so every process on the machine keeps it exact.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        id: str = "filesystem",
        **options: Unpack[StoreKeywords],
    ) -> None:
        self._files = FilesystemBackend(root)
        super().__init__(self._files, id=id, **options)

    @property
    def backend(self) -> FilesystemBackend:
        """The store's backend."""
        return self._files

    @property
    def root(self) -> Path:
        """The directory the store keeps its blobs under."""
        return self._files.root

    def path_of(self, integrity: str | Integrity, /) -> Path:
        """Return the path a blob is (or would be) stored at.

        Raises:
            InvalidIntegrity: *integrity* is malformed.
        """
        return self._files.tree.locate(coerce_integrity(integrity)).path

    async def link_to(
        self, integrity: str | Integrity, path: str | os.PathLike[str], /
    ) -> str:
        """Place the blob at *path* without copying where the filesystem allows.

        Tries, in order: a **reflink** (``FICLONE``: a copy-on-write clone
        sharing the blob's extents, on Btrfs, XFS and the like), a
        **hardlink** (the same file as the store's: read-only, and must stay
        unmodified, on the same filesystem), else a **copy**. Whichever it
        is, the bytes are verified against the integrity first (a clone or
        link is checked by reading it; a copy as it is written), the file is
        made beside *path* under a temporary name and renamed over it, so
        *path* never holds a partial or unverified file; a file already at
        *path* is replaced (a symlink there is replaced, not followed).

        Returns:
            ``"reflink"``, ``"hardlink"`` or ``"copy"``: how it was placed.

        Raises:
            BlobNotFound: The store doesn't hold the blob.
            IntegrityMismatch: The stored copy is corrupt; nothing is placed.
            StoreError: *path* can't be written (its message names it).

        .. versionadded:: 0.1.0
        """
        return await super().link_to(integrity, path)
