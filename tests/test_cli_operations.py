"""The sriblob migrate, verify, gc and info INTEGRITY commands."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest

from sriblob import FilesystemBlobStore, S3BlobStore, S3StoreConfig, verify
from sriblob._cli import main
from sriblob._filesystem import FilesystemBackend
from sriblob.keys import key_to_integrity

from .helpers import blob, integrity_of, s3_leftovers

if TYPE_CHECKING:
    from pathlib import Path

    from mypy_boto3_s3 import S3Client

S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"


def s3_variables(config: S3StoreConfig) -> dict[str, str]:
    """Return the CHECKSTACK_SCRIPT_PACKAGES_S3_* variables for *config*."""
    return {
        f"{S3}ENDPOINT": str(config.endpoint),
        f"{S3}BUCKET": config.bucket,
        f"{S3}REGION": str(config.region),
        f"{S3}ACCESS_KEY_ID": config.access_key_id,
        f"{S3}SECRET_ACCESS_KEY": config.secret_access_key,
        f"{S3}FORCE_PATH_STYLE": "true",
    }


@pytest.fixture(name="s3_env")
def _s3_env(
    root: Path, s3_config: S3StoreConfig, monkeypatch: pytest.MonkeyPatch
) -> S3StoreConfig:
    """Configure the moto bucket through the environment, as a user would."""
    for name, value in s3_variables(s3_config).items():
        monkeypatch.setenv(name, value)
    return s3_config


def fill(root: Path, count: int, size: int = 100) -> dict[str, bytes]:
    """Store *count* distinct blobs under *root*; return them by integrity."""
    store = FilesystemBlobStore(root)
    blobs = {}
    for seed in range(count):
        data = blob(size, seed=seed)
        blobs[asyncio.run(store.add(data))] = data
    return blobs


def listed(root: Path) -> set[str]:
    """Return what the filesystem store at *root* lists."""

    async def collect() -> set[str]:
        return {name async for name in FilesystemBlobStore(root).list()}

    return asyncio.run(collect())


def s3_contents(config: S3StoreConfig) -> dict[str, bytes]:
    """Return every blob in the S3 store, read and verified."""

    async def read() -> dict[str, bytes]:
        async with S3BlobStore(config) as store:
            names = [name async for name in store.list()]
            return {name: await store.get(name) or b"" for name in names}

    return asyncio.run(read())


def summary(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Parse the JSON summary the command printed."""
    parsed = json.loads(capsys.readouterr().out)
    assert isinstance(parsed, dict)
    return parsed


class FakeTerminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        """Claim to be a terminal."""
        return True


class TestMigrate:
    """sriblob migrate."""

    def test_from_root_to_filesystem(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--from-root fills the filesystem store; a second run skips them all."""
        source = tmp_path / "old"
        blobs = fill(source, 3)

        assert (
            main(
                ["migrate", "--from-root", str(source), "--to", "filesystem", "--json"]
            )
            == 0
        )

        report = summary(capsys)
        assert report == {
            "command": "migrate",
            "source": "filesystem-source",
            "target": "filesystem",
            "copied": 3,
            "skipped": 0,
            "failed": [],
            "bytes_copied": 300,
            "deleted": 0,
            "repaired": 0,
            "foreign": 0,
            "ok": True,
        }
        assert listed(root) == set(blobs)
        assert capsys.readouterr().err == ""

        assert (
            main(
                ["migrate", "--from-root", str(source), "--to", "filesystem", "--json"]
            )
            == 0
        )
        again = summary(capsys)
        assert (again["copied"], again["skipped"]) == (0, 3)

    def test_delete_source(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--delete-source empties the source once the target holds each blob."""
        source = tmp_path / "old"
        blobs = fill(source, 2)

        assert (
            main(
                [
                    "migrate",
                    "--from-root",
                    str(source),
                    "--to",
                    "filesystem",
                    "--delete-source",
                ]
            )
            == 0
        )

        out = capsys.readouterr().out
        assert "copied 2 (200 B)" in out
        assert "deleted from source 2" in out
        assert listed(source) == set()
        assert listed(root) == set(blobs)

    def test_filesystem_to_s3(
        self, s3_env: S3StoreConfig, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--from filesystem --to s3 fills the bucket configured in the environment."""
        blobs = fill(root, 4, size=70_000)

        assert main(["migrate", "--from", "filesystem", "--to", "s3", "--json"]) == 0

        report = summary(capsys)
        assert (report["source"], report["target"]) == ("filesystem", "s3")
        assert (report["copied"], report["bytes_copied"], report["ok"]) == (
            4,
            280_000,
            True,
        )
        assert s3_contents(s3_env) == blobs

    def test_failed_blob_exits_1(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A corrupt source blob is reported as failed and the exit status is 1."""
        source = tmp_path / "old"
        blobs = fill(source, 2)
        bad = min(blobs)
        FilesystemBlobStore(source).path_of(bad).write_bytes(b"rotten")

        assert main(["migrate", "--from-root", str(source), "--to", "filesystem"]) == 1

        out = capsys.readouterr().out
        assert f"failed {bad}: IntegrityMismatch" in out
        assert "copied 1 " in out
        assert listed(root) == set(blobs) - {bad}

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["--from", "nope", "--to", "filesystem"], "No store 'nope'"),
            (["--from", "filesystem", "--to", "filesystem"], "same store"),
        ],
    )
    def test_usage_errors(
        self,
        root: Path,
        capsys: pytest.CaptureFixture[str],
        args: list[str],
        message: str,
    ) -> None:
        """An unknown store id, or one store at both ends, is a usage error."""
        assert main(["migrate", *args]) == 2

        err = capsys.readouterr().err
        assert err.startswith("sriblob: error: ")
        assert message in err
        assert err.count("\n") == 1

    def test_needs_a_source(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Migrate without --from or --from-root is an argparse usage error."""
        with pytest.raises(SystemExit) as exited:
            main(["migrate", "--to", "filesystem"])

        assert exited.value.code == 2
        assert "--from" in capsys.readouterr().err

    def test_progress_bar_on_a_terminal(
        self, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """On a terminal, stderr shows a bar counting blobs and bytes."""
        source = tmp_path / "old"
        fill(source, 3)
        terminal = FakeTerminal()
        monkeypatch.setattr(sys, "stderr", terminal)

        assert main(["migrate", "--from-root", str(source), "--to", "filesystem"]) == 0

        shown = terminal.getvalue()
        assert "migrate filesystem-source -> filesystem" in shown
        assert "3 blobs" in shown
        assert "copied" in shown


class TestStoreOption:
    """put, rm and ls act on the store --store names, the active one by default."""

    def test_put_ls_rm_on_a_named_store(
        self,
        s3_env: S3StoreConfig,
        root: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """With S3 active, --store filesystem reaches the filesystem store."""
        source = tmp_path / "in.bin"
        source.write_bytes(b"on disk")
        integrity = integrity_of(b"on disk")

        assert main(["put", "--store", "filesystem", str(source)]) == 0
        assert capsys.readouterr().out == integrity + "\n"
        assert listed(root) == {integrity}
        assert s3_contents(s3_env) == {}

        assert main(["ls"]) == 0
        assert capsys.readouterr().out == ""
        assert main(["ls", "--store", "filesystem"]) == 0
        assert capsys.readouterr().out == integrity + "\n"

        assert main(["rm", integrity]) == 0
        assert listed(root) == {integrity}
        assert main(["rm", "--store", "filesystem", integrity]) == 0
        assert listed(root) == set()

    @pytest.mark.parametrize("command", [["ls"], ["rm", integrity_of(b"x")]])
    def test_unknown_store(
        self, root: Path, capsys: pytest.CaptureFixture[str], command: list[str]
    ) -> None:
        """An unknown id is a one-line usage error naming the registered ids."""
        assert main([*command, "--store", "nope"]) == 2

        err = capsys.readouterr().err
        assert err.startswith("sriblob: error: No store 'nope'")
        assert "filesystem" in err
        assert err.count("\n") == 1


class TestVerify:
    """sriblob verify."""

    def test_intact(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """An intact store verifies with exit status 0 and a one-line summary."""
        fill(root, 3)

        assert main(["verify"]) == 0

        assert capsys.readouterr().out == (
            "verify filesystem: 3 intact (300 B), 0 corrupt, 0 failed, 0 deleted\n"
        )

    def test_corrupt_file(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """A corrupted file is reported in the JSON summary and the exit status is 1."""
        blobs = fill(root, 3)
        bad = sorted(blobs)[1]
        FilesystemBlobStore(root).path_of(bad).write_bytes(b"flipped")

        assert main(["verify", "--json", "--concurrency", "2"]) == 1

        report = summary(capsys)
        assert report["store"] == "filesystem"
        assert report["corrupt"] == [bad]
        assert (report["checked"], report["ok"], report["deleted"]) == (2, False, 0)
        assert listed(root) == set(blobs)

    def test_delete_corrupt(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--delete-corrupt removes the corrupt blob (and still exits 1)."""
        blobs = fill(root, 2)
        bad = min(blobs)
        FilesystemBlobStore(root).path_of(bad).write_bytes(b"flipped")

        assert main(["verify", "--store", "filesystem", "--delete-corrupt"]) == 1

        out = capsys.readouterr().out
        assert f"corrupt {bad}\n" in out
        assert "1 deleted" in out
        assert listed(root) == set(blobs) - {bad}

    def test_bad_concurrency(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--concurrency 0 is refused by the argument parser."""
        with pytest.raises(SystemExit) as exited:
            main(["verify", "--concurrency", "0"])

        assert exited.value.code == 2
        assert "integer >= 1" in capsys.readouterr().err


class TestGc:
    """sriblob gc."""

    @staticmethod
    def keep_file(tmp_path: Path, *lines: str) -> Path:
        """Write a keep file of *lines*."""
        path = tmp_path / "keep.txt"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def test_dry_run_then_yes(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without --yes gc only reports; with --yes it deletes what isn't kept."""
        blobs = fill(root, 4)
        live = sorted(blobs)[:2]
        keep = self.keep_file(
            tmp_path, "# live blobs", live[0], "", f"  {live[1]}  # ok"
        )

        assert main(["gc", "--keep", str(keep), "--grace", "0"]) == 0

        out = capsys.readouterr().out
        garbage = sorted(blobs)[2:]
        assert [f"would delete {i}" for i in garbage] == out.splitlines()[:2]
        assert "would free 200 B from 2 blobs; kept 2 listed" in out
        assert "pass --yes to delete" in out
        assert listed(root) == set(blobs)

        assert main(["gc", "--keep", str(keep), "--grace", "0", "--yes", "--json"]) == 0

        report = summary(capsys)
        assert report == {
            "command": "gc",
            "store": "filesystem",
            "deleted": garbage,
            "bytes_freed": 200,
            "kept": 2,
            "spared_fresh": 0,
            "dry_run": False,
        }
        assert listed(root) == set(live)

    def test_grace_spares_new_blobs(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """With the default grace period, just-stored blobs are spared."""
        blobs = fill(root, 2)
        keep = self.keep_file(tmp_path, "# nothing is live")

        assert main(["gc", "--keep", str(keep), "--yes", "--json"]) == 0

        report = summary(capsys)
        assert (report["deleted"], report["spared_fresh"]) == ([], 2)
        assert listed(root) == set(blobs)

    def test_malformed_keep_line(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A malformed integrity in the keep file names its line; nothing is deleted."""
        blobs = fill(root, 1)
        keep = self.keep_file(tmp_path, "# header", "sha512-not-base64!")

        assert main(["gc", "--keep", str(keep), "--grace", "0", "--yes"]) == 2

        err = capsys.readouterr().err
        assert err.startswith(f"sriblob: error: {keep}:2: ")
        assert listed(root) == set(blobs)

    def test_missing_keep_file(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A keep file that can't be read is a one-line error, exit 2."""
        assert main(["gc", "--keep", str(tmp_path / "absent")]) == 2

        assert capsys.readouterr().err.startswith("sriblob: error: can't read ")


class TestInfoBlob:
    """sriblob info INTEGRITY."""

    def test_size_and_stored_at(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Info INTEGRITY prints the store, size and storage time without reading."""
        integrity = next(iter(fill(root, 1, size=1234)))
        stamp = 1_700_000_000
        os.utime(FilesystemBlobStore(root).path_of(integrity), (stamp, stamp))

        def no_open(*args: object, **kwargs: object) -> None:
            raise AssertionError("info read the blob")

        monkeypatch.setattr(FilesystemBackend, "read_blob", no_open)
        assert main(["info", integrity]) == 0

        assert capsys.readouterr().out.splitlines() == [
            f"integrity: {integrity}",
            "store: filesystem",
            "size: 1234",
            "stored_at: 2023-11-14T22:13:20+00:00",
        ]

    def test_falls_back_to_other_stores(
        self, s3_env: S3StoreConfig, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A blob the active (S3) store lacks is found in the filesystem store."""
        integrity = next(iter(fill(root, 1)))

        assert main(["info", integrity]) == 0

        out = capsys.readouterr().out
        assert "store: filesystem\n" in out
        assert "size: 100\n" in out

    def test_missing(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Info of a blob no store holds is a one-line error, exit 1."""
        assert main(["info", integrity_of(b"absent")]) == 1

        assert capsys.readouterr().err.startswith("sriblob: error: no blob ")

    def test_malformed(self, root: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """Info of a malformed integrity is a usage error, exit 2."""
        assert main(["info", "md5-nope"]) == 2

        assert capsys.readouterr().err.startswith("sriblob: error: ")


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test process's environment without S3 settings, plus *extra*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(S3)}
    env.pop("SRIBLOB_ROOT", None)
    env.update(extra)
    return env


def blob_keys(s3_admin: S3Client, config: S3StoreConfig) -> list[str]:
    """The bucket's blob keys (not the maintenance lease the migration holds)."""
    listed = s3_admin.list_objects_v2(Bucket=config.bucket)
    return [
        entry["Key"]
        for entry in listed.get("Contents", ())
        if key_to_integrity(entry["Key"], prefix=config.key_prefix) is not None
    ]


class TestSubprocess:
    """python -m sriblob, as a user runs it."""

    def test_migrate_json(self, tmp_path: Path) -> None:
        """Python -m sriblob migrate --json prints the report and exits 0."""
        source, target = tmp_path / "old", tmp_path / "new"
        blobs = fill(source, 3)

        done = subprocess.run(  # noqa: S603 -- our own interpreter
            [
                sys.executable,
                "-m",
                "sriblob",
                "--root",
                str(target),
                "migrate",
                "--from-root",
                str(source),
                "--to",
                "filesystem",
                "--json",
            ],
            capture_output=True,
            env=subprocess_env(),
            check=False,
            timeout=60,
        )

        assert done.returncode == 0, done.stderr
        assert done.stderr == b""
        assert json.loads(done.stdout)["copied"] == 3
        assert listed(target) == set(blobs)

    @pytest.mark.s3
    @pytest.mark.usefixtures("sigint_reaches_children")
    def test_ctrl_c_during_migrate(
        self, tmp_path: Path, s3_config: S3StoreConfig, s3_admin: S3Client
    ) -> None:
        """SIGINT mid-migration exits 130 with one line, leaving only whole blobs."""
        root = tmp_path / "store"
        count = 400
        blobs = fill(root, count, size=20_000)
        env = subprocess_env(SRIBLOB_ROOT=str(root), **s3_variables(s3_config))
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sriblob",
                "migrate",
                "--from",
                "filesystem",
                "--to",
                "s3",
                "--concurrency",
                "2",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        try:
            deadline = time.monotonic() + 60
            while len(blob_keys(s3_admin, s3_config)) < 3:
                assert child.poll() is None, child.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.02)
            child.send_signal(signal.SIGINT)
            out, err = child.communicate(timeout=60)
        finally:
            if child.poll() is None:  # pragma: no cover -- only if the test failed
                child.kill()
                child.communicate()

        assert child.returncode == 130, err
        assert err == b"sriblob: error: interrupted\n"
        assert out == b""
        copied = s3_contents(s3_config)  # reads and verifies every blob
        assert 3 <= len(copied) < count
        assert all(blobs[name] == data for name, data in copied.items())
        assert s3_leftovers(s3_admin, s3_config) == []

        async def check() -> bool:
            async with S3BlobStore(s3_config) as store:
                return (await verify(store)).ok

        assert asyncio.run(check())
