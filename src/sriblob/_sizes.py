"""Sizes in bytes: one parser for flags, environment and config, one printer.

``parse_size`` reads ``300000000``, ``300MB`` (decimal: 10**6 bytes a MB),
``286MiB`` (binary: 2**20 bytes a MiB) and ``1.5GB``, in any case, with or
without a space before the unit; a float such as ``5.5 * 1024 * 1024`` only
when it is a whole number of bytes. ``format_size`` prints a count in those
units. Pure: no I/O, no state.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Final

__all__ = ["SIZE_UNITS", "format_size", "parse_size", "size_requirement"]

#: Each unit's bytes, by its lower-case name.
SIZE_UNITS: Final = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
#: How units are printed, largest first.
_BINARY: Final = (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))
_DECIMAL: Final = (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3))
_UNITS_BY_SIZE: Final = (
    *sorted((*_BINARY, *_DECIMAL), key=lambda unit: -unit[1]),
    ("B", 1),
)
#: A count is printed exactly in its unit when fewer than this many.
_EXACT_BELOW: Final = 1000


def size_requirement(minimum: int = 0, maximum: int | None = None) -> str:
    """What a size must be, for messages: ``a byte count from 5 MiB to ...``.

    Every refused size is told the same sentence, whatever was wrong with it,
    with the limits in :func:`format_size`'s units.
    """
    if maximum is not None:
        bounds = f" from {format_size(minimum)} to {format_size(maximum)}"
    elif minimum > 0:
        bounds = f" of at least {format_size(minimum)}"
    else:
        bounds = ""
    return (
        f"a byte count{bounds}: a whole number, optionally with a unit such as "
        "MB (10^6 bytes) or MiB (2^20 bytes)"
    )


def parse_size(
    value: object, /, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """Return *value* as a whole number of bytes.

    Args:
        value: An int; a float that is a whole number; or a string: a number
            (``1.5`` is fine when the result is whole) and an optional unit,
            ``B``, decimal ``kB`` ``MB`` ``GB`` ``TB`` or binary ``KiB``
            ``MiB`` ``GiB`` ``TiB``, in any case.
        minimum: The smallest size accepted.
        maximum: The largest size accepted; None for no limit.

    Raises:
        ValueError: *value* is not such a size, or is out of bounds; the
            message is ``must be`` and :func:`size_requirement`, without
            the value.
    """
    count = _count(value)
    if count is None or count < minimum or (maximum is not None and count > maximum):
        raise ValueError("must be " + size_requirement(minimum, maximum))
    return count


def _count(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if not isinstance(value, str):
        return None
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None or match.group(2) not in SIZE_UNITS:
        return None
    exact = Fraction(match.group(1)) * SIZE_UNITS[match.group(2)]
    return int(exact) if exact.denominator == 1 else None


def format_size(count: int, /) -> str:
    """Return *count* bytes in human units: ``5 MiB``, ``1 GB``, ``3.457 MB``.

    Exact where the largest unit that divides the count leaves fewer than
    1,000 of it (``5 MiB``, ``300 MB``, ``999 B``); otherwise to four
    significant digits in the largest decimal unit the count reaches
    (``1.5 GB``, ``3.457 MB``).
    """
    if count < 0:
        return "-" + format_size(-count)
    for name, unit in _UNITS_BY_SIZE:
        if count >= unit and count % unit == 0:
            if count // unit < _EXACT_BELOW:
                return f"{count // unit} {name}"
            break
    name, unit = next(((n, u) for n, u in _DECIMAL if count >= u), ("B", 1))
    if unit == 1:
        return f"{count} B"
    if count < 1000 * unit:
        return f"{count / unit:.4g} {name}"
    return f"{count / unit:.0f} {name}"  # a thousand TB or more
