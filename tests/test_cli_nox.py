"""nox -s tests runs on every supported Python this machine has, pyenv's too."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def nox_interpreter() -> str | None:
    """A Python on PATH that has nox installed (the one that runs nox), or None."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(directory) / "python3"
        if not candidate.is_file():
            continue
        done = subprocess.run(  # noqa: S603 -- a Python from PATH
            [str(candidate), "-c", "import nox, sys; print(sys.executable)"],
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if done.returncode == 0:
            return done.stdout.strip()
    return None


class TestNoxFindsPyenvPythons:
    """nox -s tests runs on every Python pyenv has, selected or not."""

    @pytest.fixture(name="fake_pyenv")
    def _fake_pyenv(self, tmp_path: Path) -> Path:
        """A pyenv root with 3.11, 3.12 (two patches) and 3.13 built, none selected."""
        root = tmp_path / "pyenv"
        for build in ["3.11.4", "3.12.4", "3.12.10", "3.13.1", "3.9.18"]:
            minor = build.rsplit(".", 1)[0]
            binary = root / "versions" / build / "bin" / f"python{minor}"
            binary.parent.mkdir(parents=True)
            binary.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
            binary.chmod(0o755)
        (root / "shims").mkdir()
        return root

    def run(self, python: str, args: list[str], pyenv: Path) -> str:
        """Run *python* with *args* where only *pyenv* has 3.12 and 3.13."""
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYENV", "NOX", "CI", "VIRTUAL_ENV"))
        }
        env |= {"PATH": "/usr/bin:/bin", "PYENV_ROOT": str(pyenv)}
        done = subprocess.run(  # noqa: S603 -- the interpreter that has nox
            [python, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=False,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def test_nox_lists_a_session_per_pyenv_python(self, fake_pyenv: Path) -> None:
        """Nox -l lists tests-3.11, -3.12 and -3.13, though pyenv selects none."""
        python = nox_interpreter()
        if python is None:
            pytest.skip("no python3 with nox on PATH")

        listed = self.run(python, ["-m", "nox", "-l"], fake_pyenv)

        sessions = re.findall(r"^\* (tests-\S+)", listed, flags=re.MULTILINE)
        assert sessions == ["tests-3.11", "tests-3.12", "tests-3.13"]

    def test_noxfile_selects_the_newest_builds(self, fake_pyenv: Path) -> None:
        """The noxfile adds the newest build of each to PYENV_VERSION for nox."""
        python = nox_interpreter()
        if python is None:
            pytest.skip("no python3 with nox on PATH")
        script = (
            "import os, runpy; ns = runpy.run_path('noxfile.py'); "
            "print(ns['_available'](ns['PYTHONS'])); "
            "print(os.environ['PYENV_VERSION'])"
        )

        available, selected = self.run(python, ["-c", script], fake_pyenv).split("\n")[
            :2
        ]

        assert available == "['3.11', '3.12', '3.13']"
        assert selected.split(":")[-2:] == ["3.12.10", "3.13.1"]
