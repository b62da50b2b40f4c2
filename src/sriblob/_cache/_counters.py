"""What a cache has seen, counted, and said: hits, misses, fills, failures."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import attrs

from sriblob import _telemetry as telemetry

if TYPE_CHECKING:
    from sriblob._integrity import Integrity

__all__ = ["Counters"]

logger = logging.getLogger("sriblob")


@attrs.define
class Counters:
    """What one cache object has seen (see :class:`~sriblob.CacheStats`).

    Each event is counted here, in the telemetry (``sriblob.cache.requests``)
    and, for a failing front, in a WARNING.
    """

    hits: int = 0
    misses: int = 0
    fills: int = 0
    repairs: int = 0
    front_errors: int = 0

    def hit(self, store: str) -> None:
        """A read was served by the front."""
        self.hits += 1
        telemetry.note_cache(store, "hit")

    def miss(self, store: str) -> None:
        """A read went to the back."""
        self.misses += 1
        telemetry.note_cache(store, "miss")

    def front_failed(
        self, store: str, action: str, integrity: Integrity, error: Exception
    ) -> None:
        """The front failed to *action* a blob; the back serves instead."""
        self.front_errors += 1
        logger.warning(
            "cache backend=%s: the front failed to %s integrity=%s (%s); "
            "using the back",
            store,
            action,
            integrity,
            error,
            extra=telemetry.fields(store, action, integrity),
        )
