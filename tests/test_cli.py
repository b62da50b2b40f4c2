"""The sriblob command, run in-process and as ``python -m sriblob``."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from sriblob import FilesystemBlobStore, Integrity
from sriblob._cli import main

from .helpers import blob, integrity_of

if TYPE_CHECKING:
    from pathlib import Path

DATA = b"blob from the command line\n"
S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"


def stored(root: Path, data: bytes) -> str:
    """Store *data* under *root* directly and return its integrity."""
    return asyncio.run(FilesystemBlobStore(root).add(data))


class TestPut:
    """sriblob put."""

    def test_put_file(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The put command stores a file and prints its integrity."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 0

        assert capsys.readouterr().out == integrity_of(DATA) + "\n"
        assert (
            FilesystemBlobStore(root).path_of(integrity_of(DATA)).read_bytes() == DATA
        )

    def test_put_stdin(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The put command with - reads the blob from standard input."""
        data = blob(3 * 1024 * 1024 + 1)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

        assert main(["put", "-"]) == 0

        assert capsys.readouterr().out.strip() == integrity_of(data)
        assert asyncio.run(FilesystemBlobStore(root).get(integrity_of(data))) == data

    def test_put_missing_file(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing input file is a one-line error and exit status 2."""
        assert main(["put", str(tmp_path / "nope")]) == 2

        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("sriblob: error: can't read ")
        assert captured.err.count("\n") == 1

    def test_root_option(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--root overrides SRIBLOB_ROOT."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)
        other = tmp_path / "other"

        assert main(["--root", str(other), "put", str(source)]) == 0

        assert FilesystemBlobStore(other).path_of(integrity_of(DATA)).is_file()
        assert not root.exists()


class TestGet:
    """sriblob get."""

    def test_get_to_stdout(
        self, root: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """The get command writes the blob's bytes to stdout."""
        integrity = stored(root, DATA)

        assert main(["get", integrity]) == 0

        assert capsysbinary.readouterr().out == DATA

    def test_get_to_file(self, root: Path, tmp_path: Path) -> None:
        """The get command with -o writes the blob to a file and leaves no temp file."""
        data = blob(2 * 1024 * 1024 + 3)
        integrity = stored(root, data)
        target = tmp_path / "out" / "blob.bin"
        target.parent.mkdir()

        assert main(["get", integrity, "-o", str(target)]) == 0

        assert target.read_bytes() == data
        assert [p.name for p in target.parent.iterdir()] == ["blob.bin"]

    def test_get_missing_blob(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A missing blob is exit status 1, and -o creates no file."""
        target = tmp_path / "out.bin"

        assert main(["get", integrity_of(b"absent"), "-o", str(target)]) == 1

        assert "no blob sha512-" in capsys.readouterr().err
        assert list(tmp_path.iterdir()) == []  # no output, no temp file

    def test_get_corrupted_blob(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Corrupted bytes are an error, and neither stdout nor -o gets them."""
        integrity = stored(root, DATA)
        FilesystemBlobStore(root).path_of(integrity).write_bytes(b"tampered")
        target = tmp_path / "out.bin"

        assert main(["get", integrity]) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "Integrity mismatch" in captured.err
        assert "Traceback" not in captured.err

        assert main(["get", integrity, "-o", str(target)]) == 1
        assert not target.exists()
        assert [p.name for p in tmp_path.iterdir()] == ["store"]

    def test_malformed_integrity(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A malformed integrity is a one-line error and exit status 2."""
        assert main(["get", "sha512-bad"]) == 2

        err = capsys.readouterr().err
        assert err.startswith("sriblob: error: Invalid integrity 'sha512-bad'")
        assert err.count("\n") == 1


class TestHasRmLs:
    """sriblob has, rm and ls."""

    def test_has(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The has command prints yes and exits 0, or prints no and exits 1."""
        integrity = stored(root, DATA)

        assert main(["has", integrity]) == 0
        assert capsys.readouterr().out == "yes\n"
        assert main(["has", integrity_of(b"absent")]) == 1
        assert capsys.readouterr().out == "no\n"

    def test_rm_and_ls(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """The ls command lists the stored blobs; rm deletes one."""
        first, second = stored(root, b"one"), stored(root, b"two")

        assert main(["ls"]) == 0
        assert sorted(capsys.readouterr().out.split()) == sorted([first, second])

        assert main(["rm", first]) == 0
        assert main(["ls"]) == 0
        assert capsys.readouterr().out.split() == [second]


class TestInfo:
    """sriblob info."""

    def test_info_filesystem(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The info command shows the active backend and why, the store, S3 status."""
        assert main(["info"]) == 0

        out = capsys.readouterr().out
        assert out.startswith("active: filesystem (")
        assert f"root={str(root)!r}" in out
        assert "verify=True" in out
        assert "s3: not configured" in out

    def test_info_partial_s3(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """The info command names the missing S3 fields and never prints the secret."""
        secret = "do-not-print-me-0123456789"
        monkeypatch.setenv(f"{S3}SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv(f"{S3}ENDPOINT", "http://127.0.0.1:9000")

        assert main(["info"]) == 0

        captured = capsys.readouterr()
        assert "s3: misconfigured" in captured.out
        assert f"{S3}BUCKET" in captured.out
        assert f"{S3}ACCESS_KEY_ID" in captured.out
        assert captured.err == ""  # info says it on stdout, once
        assert secret not in captured.out + captured.err


class TestSubprocess:
    """python -m sriblob, as a user runs it."""

    def test_round_trip(self, tmp_path: Path) -> None:
        """put, has, get and ls work through python -m sriblob against a temp root."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(S3)}
        env.pop("SRIBLOB_ROOT", None)
        root = tmp_path / "root"
        data = blob(1_500_000)

        def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
            return subprocess.run(  # noqa: S603 -- our own interpreter
                [sys.executable, "-m", "sriblob", "--root", str(root), *args],
                input=stdin,
                capture_output=True,
                env=env,
                check=False,
                timeout=60,
            )

        put = run("put", "-", stdin=data)
        assert put.returncode == 0, put.stderr
        integrity = put.stdout.decode().strip()
        assert integrity == str(Integrity.from_bytes(data))

        assert run("has", integrity).stdout == b"yes\n"
        got = run("get", integrity)
        assert got.returncode == 0
        assert got.stdout == data
        assert run("ls").stdout.decode().split() == [integrity]

        missing = run("get", integrity_of(b"absent"))
        assert missing.returncode == 1
        assert missing.stderr.decode().startswith("sriblob: error: no blob ")
        bad = run("has", "../../etc/passwd")
        assert bad.returncode == 2
        assert b"Traceback" not in bad.stderr
