"""Names that moved between the Python versions sriblob supports."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:  # pragma: no cover -- exercised by the 3.11 test session
    from typing_extensions import Buffer

__all__ = ["Buffer"]
