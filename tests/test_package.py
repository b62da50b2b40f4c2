"""The package's public surface."""

from __future__ import annotations

import ast
import importlib.metadata
from pathlib import Path

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


def _import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports when it is itself imported.

    Imports under ``if TYPE_CHECKING:`` and inside functions are left out:
    they don't run at import time, so they can't make a cycle.
    """
    modules: dict[str, Path] = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return {module: _imports(module, modules) for module in modules}


def _imports(module: str, modules: dict[str, Path]) -> set[str]:
    """The modules of *modules* that *module* imports at import time."""
    names: set[str] = set()
    for top in ast.parse(modules[module].read_text()).body:
        if isinstance(top, ast.If) and "TYPE_CHECKING" in ast.unparse(top.test):
            continue
        for node in ast.walk(top) if isinstance(top, (ast.If, ast.Try)) else [top]:
            if isinstance(node, ast.ImportFrom):
                name = _absolute(module, modules[module], node)
                names.update([name, *(f"{name}.{alias.name}" for alias in node.names)])
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
    return {name for name in names if name in modules and name != module}


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute name a (maybe relative) ``from X import`` names."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every module *start* imports, directly or through others."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo.extend(graph[module])
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The groups of modules that import each other, directly or not."""
    reach = {module: _reachable(graph, module) for module in graph}
    found: list[set[str]] = []
    for module in sorted(graph):
        group = {other for other in reach[module] if module in reach[other]}
        if group and group not in found:
            found.append(group)
    return found


class TestStructure:
    def test_no_import_cycles(self) -> None:
        """No sriblob module imports, at import time, one that imports it back."""
        package = Path(sriblob.__file__).parent

        graph = _import_graph(package)

        assert len(graph) > 50
        assert _cycles(graph) == []

    def test_the_cycle_check_finds_a_cycle(self, tmp_path: Path) -> None:
        """The check above can fail: two modules importing each other are found."""
        package = tmp_path / "pkg"
        package.mkdir()
        (package / "__init__.py").write_text("")
        (package / "_a.py").write_text("from ._b import B\nA = 1\n")
        (package / "_b.py").write_text(
            "from typing import TYPE_CHECKING\n"
            "from . import _a\n"
            "if TYPE_CHECKING:\n    from ._c import C\n"
            "B = 2\n"
        )
        (package / "_c.py").write_text("from ._b import B\n")

        assert _cycles(_import_graph(package)) == [{"pkg._a", "pkg._b"}]
