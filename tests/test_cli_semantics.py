"""What a new user of the sriblob command expects: exit codes, output, safety."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import threading
from typing import TYPE_CHECKING

import pytest

from sriblob import FilesystemBlobStore
from sriblob._cli import main

from .helpers import blob, integrity_of

if TYPE_CHECKING:
    from pathlib import Path

DATA = b"a package tarball, say\n"
S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
SECRET = "never-print-this-secret-0123"


def stored(root: Path, data: bytes) -> str:
    """Store *data* under *root* directly and return its integrity."""
    return asyncio.run(FilesystemBlobStore(root).add(data))


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True


class TestMisconfiguredEnvironment:
    """A typo in the S3 settings never sends writes to the local disk."""

    @pytest.fixture(name="partial_s3")
    def _partial_s3(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Only the bucket and the secret are set: S3 is misconfigured."""
        monkeypatch.setenv(f"{S3}BUCKET", "production-blobs")
        monkeypatch.setenv(f"{S3}SECRET_ACCESS_KEY", SECRET)
        return root

    @pytest.mark.parametrize(
        "command",
        [
            ["put", "FILE"],
            ["rm", "BLOB"],
            ["gc", "--keep", "-", "--yes"],
            ["migrate", "--from", "filesystem", "--to", "filesystem"],
            ["verify", "--delete-corrupt"],
            ["put", "--store", "filesystem", "FILE"],
        ],
        ids=["put", "rm", "gc", "migrate", "verify-delete", "put-named-store"],
    )
    def test_writing_commands_exit_78(
        self,
        partial_s3: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        command: list[str],
    ) -> None:
        """put, rm, gc --yes, migrate and verify --delete-corrupt refuse (EX_CONFIG)."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)
        filled = [
            str(source) if a == "FILE" else integrity_of(DATA) if a == "BLOB" else a
            for a in command
        ]

        assert main(filled) == 78

        err = capsys.readouterr().err
        [line] = err.splitlines()  # one problem, one line
        assert line.startswith("sriblob: error: writes are refused: S3 storage")
        assert f"{S3}ACCESS_KEY_ID is not set: set it" in line
        assert SECRET not in err
        assert not partial_s3.exists()  # nothing went to the disk

    def test_reads_fall_back_and_say_so(
        self, partial_s3: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """The get command still serves what the filesystem holds, with a warning."""
        integrity = stored(partial_s3, DATA)

        assert main(["get", integrity]) == 0

        captured = capsysbinary.readouterr()
        assert captured.out == DATA
        [line] = captured.err.decode().splitlines()
        assert line.startswith(
            "sriblob: warning: reads fall back to filesystem, because S3 storage "
            f"is misconfigured: {S3}ACCESS_KEY_ID is not set"
        )

    def test_info_names_the_problem(
        self, partial_s3: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Info says no store is active, and which backend is misconfigured and why."""
        assert main(["info"]) == 0

        out = capsys.readouterr().out
        assert out.startswith("active: none: Writes are refused because s3")
        assert "s3: misconfigured, not registered" in out
        assert "neither S3 nor Postgres" not in out
        assert SECRET not in out


class TestMisspeltSettings:
    """A typo of a setting's name refuses writes instead of being ignored."""

    @pytest.mark.parametrize(
        "typo",
        [
            ("SRIBLOB_ROT", "SRIBLOB_ROOT"),
            ("sriblob_root", "SRIBLOB_ROOT"),
            ("SRIBLOB_CAHCE_DIR", "SRIBLOB_CACHE_DIR"),
            ("SRIBLOB_MAX_TOTAL_SIZ", "SRIBLOB_MAX_TOTAL_SIZE"),
            ("CHECKSTACK_SCRIPT_PACKAGE_S3_BUCKET", f"{S3}BUCKET"),
            (f"{S3}BUKCET", f"{S3}BUCKET"),
            ("SRIBLOB_POSTGRES_DNS", "SRIBLOB_POSTGRES_DSN"),
        ],
    )
    def test_put_refuses_and_names_the_setting(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        typo: tuple[str, str],
    ) -> None:
        """Put exits 78 naming the variable and what it likely meant; writes nothing."""
        variable, meant = typo
        intended = tmp_path / "intended-root"
        monkeypatch.setenv(variable, str(intended))
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 78

        err = capsys.readouterr().err
        [line] = [x for x in err.splitlines() if x.startswith("sriblob: error:")]
        assert f"{variable} (did you mean {meant}?)" in line
        assert str(intended) not in err  # a value, never shown
        assert not root.exists()
        assert not intended.exists()

    def test_info_says_which_variable(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Info shows the problem on its own line; reads still fall back."""
        monkeypatch.setenv("SRIBLOB_CACHE_MAX_BYTE", "1GB")
        assert main(["info"]) == 0

        out = capsys.readouterr().out
        assert out.startswith("active: none: Writes are refused because environment")
        assert (
            "environment: misconfigured: unknown setting SRIBLOB_CACHE_MAX_BYTE "
            "(did you mean SRIBLOB_CACHE_MAX_BYTES?)"
        ) in out

    @pytest.mark.parametrize(
        "variable",
        [
            "SRIBLOB_SQLITE_PATH",
            "SRIBLOB_TEST_S3_ENDPOINT",
            "CHECKSTACK_DB_URL",
            "ROOT",
        ],
    )
    def test_other_variables_are_left_alone(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        variable: str,
    ) -> None:
        """A plugin's or another program's variable is not taken for a typo."""
        monkeypatch.setenv(variable, "whatever")
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 0
        assert root.exists()


class TestCommands:
    """The options and messages the first trials missed."""

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--version prints the installed version."""
        with pytest.raises(SystemExit) as exited:
            main(["--version"])

        assert exited.value.code == 0
        from importlib.metadata import version  # noqa: PLC0415

        assert capsys.readouterr().out == f"sriblob {version('sriblob')}\n"

    def test_get_output_dash_is_stdout(
        self, root: Path, tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """-o - writes to standard output, and creates no file named '-'."""
        integrity = stored(root, DATA)
        os.chdir(tmp_path)

        assert main(["get", integrity, "-o", "-"]) == 0

        assert capsysbinary.readouterr().out == DATA
        assert not (tmp_path / "-").exists()

    def test_put_with_the_expected_integrity(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The put command with --integrity stores bytes that match, printing them."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)
        text = f"{integrity_of(b'an older tarball')} {integrity_of(DATA)}"

        assert main(["put", "--integrity", text, str(source)]) == 0

        assert capsys.readouterr().out == integrity_of(DATA) + "\n"

    def test_put_with_another_integrity(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A mismatch exits 1 with one line, no traceback, and stores nothing."""
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", "--integrity", integrity_of(b"other"), str(source)]) == 1

        captured = capsys.readouterr()
        assert captured.out == ""
        assert "don't match --integrity" in captured.err
        assert captured.err.count("\n") == 1
        assert not root.exists() or list(root.rglob("*.*")) == []
        assert asyncio.run(FilesystemBlobStore(root).get(integrity_of(DATA))) is None

    def test_rm_of_a_missing_blob_says_so(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The rm command of an absent blob exits 0 and says nothing was deleted."""
        assert main(["rm", integrity_of(b"absent")]) == 0

        assert "nothing to delete" in capsys.readouterr().err

    @pytest.mark.parametrize("command", ["get", "has", "rm", "put", "info"])
    def test_every_positional_has_help(
        self, command: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Each command's --help describes its positional arguments."""
        with pytest.raises(SystemExit):
            main([command, "--help"])

        out = capsys.readouterr().out
        positional = out.split("positional arguments:")[1].split("options:")[0]
        for line in positional.strip().splitlines():
            if line.startswith("  ") and not line.startswith("   "):
                assert len(line.split()) > 1, f"no help for {line.strip()!r}"

    def test_ls_counts_what_it_skipped(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Foreign files under the root are counted on stderr, not listed."""
        integrity = stored(root, DATA)
        fan_out = FilesystemBlobStore(root).path_of(integrity).parent
        (fan_out / "README.txt").write_text("another tool's file")
        (fan_out / "6869").write_bytes(b"hex of 'hi', not an integrity")

        assert main(["ls"]) == 0

        captured = capsys.readouterr()
        assert captured.out == integrity + "\n"
        assert "skipped 2 object(s)" in captured.err

    def test_names_in_messages_are_escaped(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A file name with control characters is printed escaped, not obeyed."""
        assert main(["put", "missing\x1b[2J\x07"]) == 2

        err = capsys.readouterr().err
        assert "\x1b" not in err
        assert "\x07" not in err
        assert "missing\\x1b[2J\\x07" in err

    def test_missing_blob_never_touches_the_output(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A blob no store holds is reported first, whatever the output path is."""
        target = tmp_path / "no" / "such" / "dir" / "out.bin"

        assert main(["get", integrity_of(b"absent"), "-o", str(target)]) == 1

        err = capsys.readouterr().err
        assert "no blob sha512-" in err
        assert ".tmp-" not in err
        assert not (tmp_path / "no").exists()


class TestProgress:
    """Single large transfers show bytes, rate and ETA on a terminal."""

    def test_put_and_get_show_bytes(
        self, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A put and a get of 3,000,000 bytes show 3.00M bytes (SI), with rates."""
        data = blob(3_000_000, seed=41)
        source = tmp_path / "in.bin"
        source.write_bytes(data)
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)

        assert main(["put", str(source)]) == 0
        assert main(["get", integrity_of(data), "-o", str(tmp_path / "out")]) == 0

        shown = terminal.getvalue()
        # 3,000,000 bytes are 3.00M (SI, with a B/s rate), not 2.86 "M" of MiB.
        put, get = shown.split("\rget ", 1)
        assert "in.bin: 100%" in put
        assert "3.00M/3.00M" in put
        assert "3.00M/3.00M" in get
        assert "MB/s" in shown


class TestGetOutput:
    """get -o writes regular files atomically and other files in place."""

    def test_keeps_an_existing_files_mode_and_owner(
        self, root: Path, tmp_path: Path
    ) -> None:
        """A replaced file keeps its 0600 mode and its owner."""
        integrity = stored(root, DATA)
        target = tmp_path / "out.bin"
        target.write_bytes(b"old")
        target.chmod(0o600)
        if os.geteuid() == 0:
            os.chown(target, 12345, 23456)

        assert main(["get", integrity, "-o", str(target)]) == 0

        info = target.stat()
        assert target.read_bytes() == DATA
        assert stat.S_IMODE(info.st_mode) == 0o600
        if os.geteuid() == 0:
            assert (info.st_uid, info.st_gid) == (12345, 23456)
        assert [p.name for p in tmp_path.iterdir() if p.name != "store"] == ["out.bin"]

    def test_new_file_gets_the_usual_mode(self, root: Path, tmp_path: Path) -> None:
        """A new file is 0o666 less the umask, like any file a command creates."""
        integrity = stored(root, DATA)
        previous = os.umask(0o022)
        try:
            assert main(["get", integrity, "-o", str(tmp_path / "new.bin")]) == 0
        finally:
            os.umask(previous)

        assert stat.S_IMODE((tmp_path / "new.bin").stat().st_mode) == 0o644

    def test_symlink_is_kept_and_its_target_replaced(
        self, root: Path, tmp_path: Path
    ) -> None:
        """-o through a symlink replaces what it points to; the link stays."""
        integrity = stored(root, DATA)
        (tmp_path / "real").mkdir()
        real = tmp_path / "real" / "file.bin"
        real.write_bytes(b"old")
        link = tmp_path / "link.bin"
        link.symlink_to(real)

        assert main(["get", integrity, "-o", str(link)]) == 0

        assert link.is_symlink()
        assert real.read_bytes() == DATA

    def test_fifo_is_written_into(self, root: Path, tmp_path: Path) -> None:
        """A FIFO stays a FIFO and its reader gets the verified blob."""
        integrity = stored(root, DATA)
        fifo = tmp_path / "pipe"
        os.mkfifo(fifo)
        received: list[bytes] = []
        reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
        reader.start()

        assert main(["get", integrity, "-o", str(fifo)]) == 0

        reader.join(10)
        assert received == [DATA]
        assert stat.S_ISFIFO(fifo.stat().st_mode)

    @pytest.mark.skipif(os.geteuid() != 0, reason="mknod needs root")
    def test_character_device_is_written_into(self, root: Path, tmp_path: Path) -> None:
        """A device (a /dev/null of our own) is written into, never replaced."""
        integrity = stored(root, DATA)
        device = tmp_path / "null"
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))

        assert main(["get", integrity, "-o", str(device)]) == 0

        assert stat.S_ISCHR(device.stat().st_mode)

    def test_directory_is_refused(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """-o DIR is a usage error, and nothing is written into DIR."""
        integrity = stored(root, DATA)
        target = tmp_path / "outdir"
        target.mkdir()

        assert main(["get", integrity, "-o", str(target)]) == 2

        assert "is a directory" in capsys.readouterr().err
        assert list(target.iterdir()) == []
