"""Development tasks: ``nox -s tests``, ``lint``, ``typecheck``, ``docs``, ``bench``."""

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
def lint(session: nox.Session) -> None:
    """Check style with ruff."""
    _install(session, "ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """Run mypy --strict on the package, the tests and the benchmarks."""
    _install(session, "-e", ".", "--group", "typing")
    session.run("mypy", "src", "tests", "bench")


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


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmark sriblob against its peers on a local moto server.

    ``nox -s bench -- --quick`` smoke-tests it; ``-- --write-docs`` updates
    docs/benchmarks.md and docs/benchmarks.json. See ``bench/run.py --help``.
    """
    _install(session, "-e", ".", "--group", "bench")
    session.run("python", "bench/run.py", *session.posargs)
