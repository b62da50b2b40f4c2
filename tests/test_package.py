"""The package's public surface."""

from __future__ import annotations

import importlib.metadata

import pytest

import sriblob
import sriblob.exceptions
import sriblob.keys


class TestExports:
    @pytest.mark.parametrize("module", [sriblob, sriblob.exceptions, sriblob.keys])
    def test_all_is_sorted_and_complete(self, module: object) -> None:
        """__all__ is sorted and names only what the module defines."""
        names = module.__all__  # type: ignore[attr-defined]

        assert names == sorted(names)
        for name in names:
            assert hasattr(module, name), name

    def test_every_exception_is_exported_at_the_top(self) -> None:
        """Every exception in sriblob.exceptions is reachable as sriblob.X."""
        for name in sriblob.exceptions.__all__:
            assert getattr(sriblob, name) is getattr(sriblob.exceptions, name)
            assert issubclass(getattr(sriblob, name), sriblob.SriblobError)

    def test_public_names_have_docstrings(self) -> None:
        """Every exported class and function is documented."""
        for name in sriblob.__all__:
            obj = getattr(sriblob, name)
            if callable(obj):
                assert obj.__doc__, name


class TestVersion:
    def test_version_comes_from_the_metadata(self) -> None:
        """sriblob.__version__ is the installed distribution's version."""
        assert sriblob.__version__ == importlib.metadata.version("sriblob")

    def test_unknown_attribute(self) -> None:
        """Other missing attributes raise AttributeError."""
        with pytest.raises(AttributeError, match="nope"):
            sriblob.nope  # noqa: B018
