"""The key codec: integrity strings to object keys and back (pure, no I/O).

A blob is stored under ``prefix + hex(utf8(integrity))``, byte for byte the
layout that buckets written by the original script-package store use, so
sriblob and that system can share a bucket::

    >>> integrity_to_key("sha512-AbC+/def==")
    'script-packages/blobs/7368613531322d4162432b2f6465663d3d'
    >>> key_to_integrity("script-packages/blobs/7368613531322d4162432b2f6465663d3d")
    'sha512-AbC+/def=='

Hex keeps every key in the characters object stores and file systems agree
on (no ``/``, ``+`` or ``=`` from base64), so no integrity can name a path
outside the prefix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Final

from .exceptions import InvalidIntegrity

if TYPE_CHECKING:
    from ._integrity import Integrity

__all__ = ["KEY_PREFIX", "integrity_to_key", "key_to_integrity"]

#: The prefix under which the original system keeps blobs.
KEY_PREFIX: Final = "script-packages/blobs/"

_LOWER_HEX_RE: Final = re.compile(r"(?:[0-9a-f]{2})+")


def integrity_to_key(integrity: str | Integrity, *, prefix: str = KEY_PREFIX) -> str:
    """Return the object key for *integrity*.

    The string is encoded as given (stores pass the canonical form); an
    :class:`~sriblob.Integrity` is encoded as its canonical string.

    Args:
        integrity: The integrity string.
        prefix: The key prefix.

    Returns:
        *prefix* followed by the lowercase hex of the string's UTF-8 bytes.

    Raises:
        InvalidIntegrity: The string can't be encoded as UTF-8 (it holds a
            lone surrogate), so it names no key.
    """
    text = str(integrity)
    try:
        encoded = text.encode("utf-8")
    except UnicodeEncodeError:
        msg = f"Invalid integrity {text[:60]!r}: it is not encodable as UTF-8."
        raise InvalidIntegrity(msg, text=text[:60]) from None
    return prefix + encoded.hex()


def key_to_integrity(key: str, *, prefix: str = KEY_PREFIX) -> str | None:
    """Return the integrity string an object key names, or None.

    Args:
        key: An object key, as a listing returns it.
        prefix: The key prefix.

    Returns:
        The decoded string, or None if *key* is outside *prefix*, its payload
        is empty, not lowercase hex (``integrity_to_key`` never writes
        uppercase, whitespace or an odd number of digits), or not UTF-8.
        The result is not checked to be a valid integrity; stores do that.
    """
    if not key.startswith(prefix):
        return None
    payload = key[len(prefix) :]
    if not _LOWER_HEX_RE.fullmatch(payload):
        return None
    try:
        return bytes.fromhex(payload).decode("utf-8")
    except UnicodeDecodeError:
        return None
