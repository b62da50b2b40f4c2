"""The filesystem's errors, mapped by a table to the library's, with a hint.

One translator (:func:`os_error`) and one context manager (:func:`translating`)
turn an ``OSError`` into :class:`~sriblob.StoreUnavailable` (a full, read-only
or failing disk), :class:`~sriblob.AccessDenied` (permissions) or
:class:`~sriblob.StoreError`, naming the path and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import os
from typing import TYPE_CHECKING, Final

from sriblob.exceptions import AccessDenied, StoreError, StoreUnavailable

from ._paths import NotABlob

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

UNAVAILABLE_ERRNOS: Final = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EROFS,
        errno.EIO,
        errno.EMFILE,
        errno.ENFILE,
        errno.ENOMEM,
        errno.ESTALE,
        errno.EAGAIN,
    }
)
DENIED_ERRNOS: Final = frozenset({errno.EACCES, errno.EPERM})
#: What writing under the root fails with where it is read-only to us.
READ_ONLY_ERRNOS: Final = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
HINTS: Final = {
    errno.ENOSPC: "free some space on that file system or move the store's root",
    errno.EDQUOT: "the disk quota is used up; free some space",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "check the permissions of the store's root and what is under it",
    errno.EPERM: "check the permissions of the store's root and what is under it",
    errno.EISDIR: "something that isn't a blob sits at the blob's path; remove it",
    errno.ENOTDIR: "something that isn't a directory sits in the blob's path; "
    "remove it",
}


def os_error(
    exc: OSError, *, root: Path, action: str, path: Path, backend: str
) -> StoreError:
    """Describe *exc*, met while trying to *action* *path*, as a store error.

    The one translator of the filesystem's errors: a full, read-only or
    failing disk is :class:`~sriblob.StoreUnavailable`, permissions are
    :class:`~sriblob.AccessDenied`, anything else a
    :class:`~sriblob.StoreError`; the message names the path and what to do.
    """
    number = exc.errno or 0
    reason = os.strerror(number) if number else (str(exc) or type(exc).__name__)
    code = errno.errorcode.get(number)
    hint = HINTS.get(number)
    msg = (
        f"The filesystem store at {root} could not {action} {path}: "
        f"{reason}{f' ({code})' if code else ''}"
        f"{f'; {hint}' if hint else ''}."
    )
    kind: type[StoreError] = StoreError
    if number in UNAVAILABLE_ERRNOS:
        kind = StoreUnavailable
    elif number in DENIED_ERRNOS:
        kind = AccessDenied
    return kind(msg, backend=backend)


def is_read_only(exc: OSError) -> bool:
    """Whether *exc* says the root can't be written by us (read-only, or denied)."""
    return exc.errno in READ_ONLY_ERRNOS


@contextlib.contextmanager
def translating(root: Path, backend: str, action: str, path: Path) -> Iterator[None]:
    """Turn an ``OSError`` met while trying to *action* *path* into a store error."""
    try:
        yield
    except NotABlob as exc:
        exc.backend = backend
        raise
    except OSError as exc:
        raise os_error(
            exc, root=root, action=action, path=path, backend=backend
        ) from exc
