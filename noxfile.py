"""Development tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``."""

from __future__ import annotations

import os
import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYTHONS = ["3.11", "3.12", "3.13"]


def _available(versions: list[str]) -> list[str]:
    """Keep the interpreters this machine has; CI must have at least one."""
    found = [v for v in versions if shutil.which(f"python{v}")]
    return found or versions[:1]


@nox.session(python=_available(PYTHONS))
def tests(session: nox.Session) -> None:
    """Run the test suite against real servers on loopback."""
    session.install("-e", ".", "--group", "tests")
    session.run(
        "coverage",
        "run",
        "-m",
        "pytest",
        *session.posargs,
        env={"COVERAGE_PROCESS_START": ""},
    )
    session.run("coverage", "combine", success_codes=[0, 1])
    session.run("coverage", "report")


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Check style with ruff."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict on the package and the tests."""
    session.install("-e", ".", "--group", "typing")
    session.run("mypy", "src", "tests")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors, and run their examples."""
    session.install("-e", ".", "--group", "docs")
    out = os.path.join("docs", "_build")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", f"{out}/html"
    )
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "doctest", "docs", f"{out}/doctest"
    )
