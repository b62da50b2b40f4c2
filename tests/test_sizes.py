"""The one size parser and printer every flag, variable and config field uses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sriblob._sizes import SIZE_UNITS, format_size, parse_size, size_requirement


class TestParseSize:
    """parse_size reads decimal and binary units, and whole numbers only."""

    @pytest.mark.parametrize(
        ("text", "count"),
        [
            ("0", 0),
            ("300000000", 300_000_000),
            ("1GB", 10**9),
            ("1GiB", 2**30),
            ("1 gib", 2**30),
            ("286 MiB", 286 * 2**20),
            ("1.5GB", 1_500_000_000),
            ("1.5KiB", 1536),
            (".5kB", 500),
            ("  7B ", 7),
            (5.5 * 2**20, 5_767_168),
            (4096, 4096),
        ],
    )
    def test_accepted(self, text: object, count: int) -> None:
        """Units in any case, a space or none, fractions that come out whole."""
        assert parse_size(text) == count

    @pytest.mark.parametrize(
        "value",
        ["", "1.5B", "0.5", "1e9", "-1", "1 KB/s", "1K", "GB", True, 1.5, None, -1],
    )
    def test_refused(self, value: object) -> None:
        """Fractions of a byte, exponents, signs, unknown units and non-sizes."""
        with pytest.raises(ValueError, match=r"^must be a byte count: a whole number"):
            parse_size(value)

    def test_bounds_are_in_human_units(self) -> None:
        """Out of bounds says the bounds as format_size prints them."""
        with pytest.raises(ValueError, match="from 5 MiB to 5 GiB") as refused:
            parse_size("4MiB", minimum=5 * 2**20, maximum=5 * 2**30)

        assert str(refused.value) == "must be " + size_requirement(5 * 2**20, 5 * 2**30)
        assert "from 5 MiB to 5 GiB:" in str(refused.value)

    @given(
        st.integers(min_value=0, max_value=2**62), st.sampled_from(sorted(SIZE_UNITS))
    )
    def test_every_whole_count_of_every_unit(self, count: int, unit: str) -> None:
        """N followed by any unit is N times that unit."""
        assert parse_size(f"{count}{unit.upper()}") == count * SIZE_UNITS[unit]


class TestFormatSize:
    """format_size prints exact sizes exactly, others to four digits."""

    @pytest.mark.parametrize(
        ("count", "text"),
        [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1 kB"),
            (1024, "1 KiB"),
            (5 * 2**20, "5 MiB"),
            (300 * 10**6, "300 MB"),
            (10**9, "1 GB"),
            (3_456_789, "3.457 MB"),
            (1500 * 10**12, "1500 TB"),
            (1536, "1.536 kB"),
            (999_600_000, "999.6 MB"),
            (12_345 * 10**12 + 1, "12345 TB"),
        ],
    )
    def test_printed(self, count: int, text: str) -> None:
        """Binary units when they divide, else decimal, else rounded decimal."""
        assert format_size(count) == text

    @given(
        st.integers(min_value=0, max_value=999),
        st.sampled_from(sorted(set(SIZE_UNITS.values()))),
    )
    def test_a_whole_count_of_a_unit_parses_back(self, count: int, unit: int) -> None:
        """A multiple of a unit is printed exactly: it parses back to itself."""
        text = format_size(count * unit)

        assert "." not in text
        assert parse_size(text.replace(" ", "")) == count * unit
