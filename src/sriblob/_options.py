"""What every store is built with, whatever its backend: one frozen value."""

from __future__ import annotations

from typing import Any, TypedDict

import attrs

from ._quota import check_levels

__all__ = ["StoreKeywords", "StoreOptions"]


def _check_id(_: object, __: object, value: Any) -> None:
    if not isinstance(value, str) or not value:
        msg = f"A store id must be a non-empty str, not {value!r}."
        raise ValueError(msg)


def _check_verify(_: object, __: object, value: Any) -> None:
    if not isinstance(value, bool):
        msg = f"verify must be a bool, not {value!r}."
        raise TypeError(msg)


def _check_max_blob_size(_: object, __: object, value: Any) -> None:
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int) or value < 0
    ):
        msg = f"max_blob_size must be None or an int >= 0, not {value!r}."
        raise ValueError(msg)


@attrs.frozen
class StoreOptions:
    """The options of a :class:`~sriblob.BlobStore`, passed whole to its backend.

    A store builds one from its keyword arguments and hands it to its
    backend (:meth:`sriblob.backend.Backend.bind`), so a backend reads its
    store's id, verification and levels from one value instead of each
    constructor forwarding five keywords.

    Attributes:
        id: The store's id in a registry.
        verify: Check bytes against their integrity on put, add, get and
            open. Turn it off only for buckets that use integrities as
            *names* for derived bytes.
        max_blob_size: Refuse blobs larger than this many bytes; None for no
            limit.
        max_total_size: The store's quota in bytes; None for no quota.
        warn_total_size: Log one WARNING when the bytes stored reach this
            level; None for no warning.

    Raises:
        ValueError: *id* is empty, a size is negative, or the warning level
            is above the quota.
        TypeError: *verify* is not a bool.

    .. versionadded:: 0.1.0
    """

    id: str = attrs.field(validator=_check_id)
    verify: bool = attrs.field(default=True, validator=_check_verify)
    max_blob_size: int | None = attrs.field(
        default=None, validator=_check_max_blob_size
    )
    max_total_size: int | None = None
    warn_total_size: int | None = None

    def __attrs_post_init__(self) -> None:
        check_levels(self.max_total_size, self.warn_total_size)

    @property
    def keeps_total(self) -> bool:
        """Whether the store keeps a running total (a quota or a warning level)."""
        return self.max_total_size is not None or self.warn_total_size is not None


class StoreKeywords(TypedDict, total=False):
    """The keyword options every store class takes besides its own (typing only)."""

    verify: bool
    max_blob_size: int | None
    max_total_size: int | None
    warn_total_size: int | None
