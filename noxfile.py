"""Development tasks: tests, reliability, lint, typecheck, docs (``nox -l``)."""

from __future__ import annotations

import shutil

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = False
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PYTHONS = ["3.11", "3.12", "3.13"]


def _available(versions: list[str]) -> list[str]:
    """Keep the interpreters this machine has; run on the first one at least."""
    found = [v for v in versions if shutil.which(f"python{v}")]
    return found or versions[:1]


def _install(session: nox.Session, *args: str) -> None:
    # Dependency groups (PEP 735) need pip >= 25.1; new venvs have an older one.
    session.install("--quiet", "--upgrade", "pip>=25.1")
    session.install("--quiet", *args)


@nox.session(python=_available(PYTHONS))
def tests(session: nox.Session) -> None:
    """Run the test suite against real servers on loopback."""
    _install(session, "-e", ".", "--group", "tests")
    session.run("coverage", "erase")
    session.run("coverage", "run", "-m", "pytest", *session.posargs)
    session.run("coverage", "combine", "--quiet")
    session.run("coverage", "report", "--fail-under=90")


@nox.session(python="3.11")
def reliability(session: nox.Session) -> None:
    """Run the slow reliability tests (load), which ``tests`` leaves out.

    pyproject's addopts deselect them with ``-m "not reliability"``; the
    ``-m`` given here comes later on the command line and wins.
    """
    _install(session, "-e", ".", "--group", "tests")
    session.run("pytest", "-m", "reliability", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """Check style with ruff."""
    _install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict on the package and the tests."""
    _install(session, "-e", ".", "--group", "typing")
    session.run("mypy", "src", "tests")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the docs with warnings as errors, and run their examples."""
    _install(session, "-e", ".", "--group", "docs")
    build = "docs/_build"
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "docs",
        f"{build}/html",
    )
    session.run(
        "sphinx-build",
        "-W",
        "--keep-going",
        "-q",
        "-b",
        "doctest",
        "docs",
        f"{build}/doctest",
    )
