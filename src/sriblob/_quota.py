"""A store's total-size quota: the levels, the running total, the messages.

Every store takes ``max_total_size=`` and ``warn_total_size=``. When either
is set the store keeps a running total of its blobs' sizes where every
process that writes to it sees it (a row in PostgreSQL, ``<root>/.usage``
under a lock on the filesystem, a ``<prefix>.usage`` object updated with
``If-Match`` in S3, a counter of the store object in memory), so a put costs
a small update, never a listing. A new blob is charged right before it
becomes visible; a put that would take the total past ``max_total_size``
raises :class:`~sriblob.QuotaExceeded` and stores nothing.
"""

from __future__ import annotations

import json
import logging
from typing import Final

import attrs

from . import _telemetry as telemetry
from .exceptions import QuotaExceeded

__all__ = ["Quota", "Usage", "check_levels", "dump_total", "load_total"]

logger = logging.getLogger("sriblob")

#: Tries of a compare-and-swap update of a shared total before giving up.
CAS_ATTEMPTS: Final = 50


@attrs.frozen
class Usage:
    """How much a store holds, against its levels.

    Attributes:
        total: Bytes of blobs stored (the running total when the store keeps
            one, else counted now).
        max_total_size: The store's quota, or None.
        warn_total_size: The level above which puts log a warning, or None.

    .. versionadded:: 0.1.0
    """

    total: int
    max_total_size: int | None
    warn_total_size: int | None

    @property
    def over_warning(self) -> bool:
        """Whether the total is at or above the warning level."""
        return self.warn_total_size is not None and self.total >= self.warn_total_size


def check_levels(max_total_size: object, warn_total_size: object) -> None:
    """Refuse levels that aren't None or an int >= 0, or a warning above the max."""
    for name, value in (
        ("max_total_size", max_total_size),
        ("warn_total_size", warn_total_size),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 0
        ):
            msg = f"{name} must be None or an int >= 0, not {value!r}."
            raise ValueError(msg)
    if (
        isinstance(max_total_size, int)
        and isinstance(warn_total_size, int)
        and warn_total_size > max_total_size
    ):
        msg = (
            f"warn_total_size ({warn_total_size}) is above max_total_size "
            f"({max_total_size}); the warning would never come first."
        )
        raise ValueError(msg)


@attrs.define
class Quota:
    """A store's levels, and whether this process has warned since it crossed."""

    backend: str
    max_total_size: int | None
    warn_total_size: int | None
    _warned: bool = False

    def fits(self, total: int, size: int) -> bool:
        """Whether *size* more bytes keep *total* within the quota."""
        return self.max_total_size is None or total + size <= self.max_total_size

    def exceeded(self, total: int, size: int) -> QuotaExceeded:
        """The error for a blob of *size* bytes that doesn't fit."""
        limit = self.max_total_size
        msg = (
            f"The {self.backend!r} store holds {total} bytes; a blob of {size} "
            f"bytes would take it past its quota of {limit} bytes "
            "(max_total_size). Nothing was stored: delete unused blobs "
            "(sriblob gc) or raise the quota."
        )
        return QuotaExceeded(
            msg, backend=self.backend, limit=limit or 0, total=total, size=size
        )

    def note(self, total: int) -> None:
        """Log one WARNING when *total* crosses the warning level upwards."""
        level = self.warn_total_size
        if level is None:
            return
        if total < level:
            self._warned = False  # below again: warn at the next crossing
            return
        if self._warned:
            return
        self._warned = True
        limit = (
            ""
            if self.max_total_size is None
            else f" of a quota of {self.max_total_size} bytes"
        )
        logger.warning(
            "quota backend=%s: the store holds %d bytes, at or above its warning "
            "level of %d bytes%s (warn_total_size)",
            self.backend,
            total,
            level,
            limit,
            extra=telemetry.fields(self.backend, "quota"),
        )


def load_total(data: bytes) -> int | None:
    """The total in a stored ``{"total": n}``; None if it holds none (recount)."""
    try:
        value = json.loads(data)
    except ValueError:
        return None
    total = value.get("total") if isinstance(value, dict) else None
    if isinstance(total, bool) or not isinstance(total, int) or total < 0:
        return None
    return total


def dump_total(total: int) -> bytes:
    """The bytes that store *total* (see :func:`load_total`)."""
    return json.dumps({"total": max(0, total)}).encode()
