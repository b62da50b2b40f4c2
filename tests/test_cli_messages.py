"""What the sriblob command says when something is wrong, as a new user meets it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sriblob import FilesystemBlobStore, S3StoreConfig
from sriblob._cli import main

from .helpers import integrity_of

DOCS = Path(__file__).parent.parent / "docs"
DATA = b"a package tarball, say\n"
S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
SECRET = "never-print-this-secret-0123"
PASSWORD = "hunter2/x"  # an unencoded '/': a URL parser would cut the DSN there
MiB = 1024 * 1024


def stored(root: Path, data: bytes) -> str:
    """Store *data* under *root* directly and return its integrity."""
    return asyncio.run(FilesystemBlobStore(root).add(data))


def s3_variables(config: S3StoreConfig) -> dict[str, str]:
    """The CHECKSTACK_SCRIPT_PACKAGES_S3_* variables that configure *config*."""
    return {
        f"{S3}ENDPOINT": str(config.endpoint),
        f"{S3}BUCKET": config.bucket,
        f"{S3}REGION": str(config.region),
        f"{S3}ACCESS_KEY_ID": config.access_key_id,
        f"{S3}SECRET_ACCESS_KEY": config.secret_access_key,
        f"{S3}FORCE_PATH_STYLE": "true",
    }


@pytest.fixture(name="cached_s3")
def _cached_s3(
    root: Path,
    tmp_path: Path,
    s3_config: S3StoreConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    """S3 on moto configured from the environment, behind a local cache."""
    for name, value in s3_variables(s3_config).items():
        monkeypatch.setenv(name, value)
    cache = tmp_path / "cache"
    monkeypatch.setenv("SRIBLOB_CACHE_DIR", str(cache))
    return cache


class TestOneLinePerProblem:
    """One misconfiguration is one line on stderr, naming what to fix and how."""

    def test_partial_s3_is_one_line(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Put under a partial S3 set prints one error line naming the variables."""
        monkeypatch.setenv(f"{S3}BUCKET", "production-blobs")
        monkeypatch.setenv(f"{S3}SECRET_ACCESS_KEY", SECRET)
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 78

        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.splitlines() == [
            (
                "sriblob: error: writes are refused: S3 storage is misconfigured: "
                f"{S3}ACCESS_KEY_ID is not set: set it. Or unset every {S3}* "
                "variable to use another store."
            )
        ]

    def test_a_misspelt_variable_is_to_be_renamed(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """_BUCKT is named once, with the name it meant: no "set or fix _BUCKT"."""
        monkeypatch.setenv(f"{S3}BUCKT", "production-blobs")
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 78

        [line] = capsys.readouterr().err.splitlines()
        assert (
            f"unknown variable {S3}BUCKT (did you mean {S3}BUCKET?): rename or unset it"
        ) in line
        assert line.count(f"{S3}BUCKT") == 1
        assert f"{S3}BUCKET is not set" not in line  # the rename sets it
        assert f"{S3}ACCESS_KEY_ID and {S3}SECRET_ACCESS_KEY are not set" in line
        assert "fix" not in line.lower()
        assert "production-blobs" not in line

    def test_verbose_adds_the_stores_own_lines(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """-v adds the plugins' log lines; the one error line stays last."""
        monkeypatch.setenv(f"{S3}BUCKET", "production-blobs")
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["-v", "put", str(source)]) == 78

        lines = capsys.readouterr().err.splitlines()
        assert len(lines) > 1
        assert any(
            x.startswith("sriblob: ERROR: S3 store not registered") for x in lines
        )
        assert lines[-1].startswith("sriblob: error: writes are refused: S3 storage")

    def test_python_m_sriblob_prints_one_line(self, tmp_path: Path) -> None:
        """The command as a user runs it: one stderr line, exit status 78."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(S3)}
        env |= {"SRIBLOB_ROOT": str(tmp_path / "root"), f"{S3}BUCKET": "blobs"}
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        done = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-m", "sriblob", "put", str(source)],
            capture_output=True,
            env=env,
            check=False,
            timeout=60,
        )

        assert done.returncode == 78
        [line] = done.stderr.decode().splitlines()
        assert line.startswith("sriblob: error: writes are refused: S3 storage")
        assert not (tmp_path / "root").exists()


class TestActiveStoreUnderMisconfiguration:
    """ls, verify and gc without --store refuse; with --store they read."""

    @pytest.fixture(name="partial_s3")
    def _partial_s3(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
        """Only the bucket is set: S3 is misconfigured; the filesystem holds a blob."""
        stored(root, DATA)
        monkeypatch.setenv(f"{S3}BUCKET", "production-blobs")
        return root

    @pytest.mark.parametrize(
        ("command", "verb"),
        [(["ls"], "list"), (["verify"], "check"), (["gc", "--keep", "-"], "collect")],
        ids=["ls", "verify", "gc"],
    )
    def test_without_store_exit_78_saying_what_to_do(
        self,
        partial_s3: Path,
        capsys: pytest.CaptureFixture[str],
        command: list[str],
        verb: str,
    ) -> None:
        """No store is active: one line says why and how to name one instead."""
        assert main(command) == 78

        captured = capsys.readouterr()
        assert captured.out == ""
        [line] = captured.err.splitlines()
        assert line.startswith(
            "sriblob: error: no store is active: S3 storage is misconfigured: "
        )
        assert line.endswith(
            f"Until then, --store ID picks a store to {verb} from those "
            "configured: filesystem."
        )

    def test_ls_with_store_lists_it(
        self, partial_s3: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Ls --store filesystem lists the blobs, with one warning line."""
        assert main(["ls", "--store", "filesystem"]) == 0

        captured = capsys.readouterr()
        assert captured.out.split() == [integrity_of(DATA)]
        [line] = captured.err.splitlines()
        assert line.startswith(
            "sriblob: warning: reads fall back to filesystem, because S3 storage "
            "is misconfigured"
        )

    def test_the_quickstart_says_so(self) -> None:
        """The quickstart says ls needs --store while a backend is misconfigured."""
        quickstart = (DOCS / "quickstart.md").read_text(encoding="utf-8")

        assert "`ls`, `verify` and `gc` (a dry run) exit 78 unless" in quickstart
        assert "`get`, `has`, `info` and `ls` still work" not in quickstart


class TestDsnProblems:
    """An unusable SRIBLOB_POSTGRES_DSN says what is wrong with it, unseen."""

    @pytest.mark.parametrize(
        ("dsn", "problem"),
        [
            (
                f"postgresql://app:{PASSWORD}@db.internal:5432/blobs",
                (
                    "SRIBLOB_POSTGRES_DSN is not a usable DSN: the user name or "
                    "password holds an unencoded '/', '?' or '#'; percent-encode "
                    "it (for example '/' as %2F)"
                ),
            ),
            (
                f"mysql://app:{PASSWORD.replace('/', '')}@db.internal/blobs",
                "it must start with postgresql:// or postgres:// (not mysql://)",
            ),
            (
                "postgresql://app:secret@db.internal:54321x/blobs",
                "its port must be a number from 0 to 65535",
            ),
            (
                "postgresql://app:secret@db.internal:99999/blobs",
                "its port must be a number from 0 to 65535",
            ),
            (
                "db.internal/blobs",
                "it must be a URL such as postgresql://user:password@host:5432/database",
            ),
        ],
        ids=["unencoded-slash", "scheme", "port", "port-range", "not-a-url"],
    )
    def test_put_names_the_problem(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        dsn: str,
        problem: str,
    ) -> None:
        """Put exits 78 with one line saying what is wrong, never the password."""
        monkeypatch.setenv("SRIBLOB_POSTGRES_DSN", dsn)
        source = root.parent / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 78

        [line] = capsys.readouterr().err.splitlines()
        assert line.startswith(
            "sriblob: error: writes are refused: PostgreSQL storage is "
            "misconfigured: SRIBLOB_POSTGRES_DSN is not a usable DSN: "
        )
        assert problem in line
        assert "partly configured" not in line
        assert "hunter2" not in line
        assert "secret" not in line

    def test_info_shows_it_once(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Info shows the problem on the postgres line only, and nothing on stderr."""
        monkeypatch.setenv(
            "SRIBLOB_POSTGRES_DSN", f"postgresql://app:{PASSWORD}@db/blobs"
        )

        assert main(["info"]) == 0

        captured = capsys.readouterr()
        assert captured.err == ""
        assert captured.out.count("unencoded '/'") == 1
        assert captured.out.startswith(
            "active: none: Writes are refused because postgres is misconfigured "
            "(see the postgres line below)\n"
        )
        assert "hunter2" not in captured.out


@pytest.mark.s3
class TestCachedStores:
    """sriblob info and cache, with S3 behind a local cache."""

    def test_info_shows_the_cache_verifies(
        self, cached_s3: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Info shows verify=True for the cached store, as its .verify says."""
        assert main(["info"]) == 0

        [line] = [x for x in capsys.readouterr().out.splitlines() if "store s3" in x]
        assert line.startswith("store s3: <CachedBlobStore id='s3' ")
        assert line.endswith(" max_bytes=1000000000 verify=True>")
        assert "verify=False" not in line

    def test_prune_takes_a_size_with_a_unit(
        self, cached_s3: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Cache prune --max-bytes 1GB is accepted; the stats print human units."""
        source = tmp_path / "in.bin"
        source.write_bytes(b"x" * 5000)
        assert main(["put", str(source)]) == 0
        capsys.readouterr()

        assert main(["cache", "prune", "--max-bytes", "1GB"]) == 0
        out = capsys.readouterr().out
        assert "cache s3: evicted 0\n" in out
        assert f"cache s3: 1 blobs, 5 kB of 1 GB in {cached_s3 / 's3'}\n" in out

        assert main(["cache", "prune", "--max-bytes", "0.5kB"]) == 0
        assert "cache s3: 0 blobs, 0 B of 1 GB" in capsys.readouterr().out

    def test_the_cap_takes_a_binary_unit(
        self,
        cached_s3: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """SRIBLOB_CACHE_MAX_BYTES=2GiB caps each front at 2 GiB, printed so."""
        monkeypatch.setenv("SRIBLOB_CACHE_MAX_BYTES", "2GiB")

        assert main(["cache", "stats"]) == 0

        assert "cache s3: 0 blobs, 0 B of 2 GiB" in capsys.readouterr().out


class TestNothingToCache:
    """cache stats says what is the case when no store is cached."""

    def test_cache_dir_set_but_every_store_local(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """SRIBLOB_CACHE_DIR is set: the message says no remote store is there."""
        monkeypatch.setenv("SRIBLOB_CACHE_DIR", str(tmp_path / "cache"))

        assert main(["cache", "stats"]) == 2

        [line] = capsys.readouterr().err.splitlines()
        assert line == (
            "sriblob: error: no store is cached: SRIBLOB_CACHE_DIR is set, but "
            "there is no remote store to cache: only S3 and PostgreSQL stores "
            "are cached, and the stores here are local (filesystem)"
        )

    def test_cache_dir_unset(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """Without SRIBLOB_CACHE_DIR the message says to set it."""
        monkeypatch.delenv("SRIBLOB_CACHE_DIR", raising=False)

        assert main(["cache", "stats"]) == 2

        assert capsys.readouterr().err == (
            "sriblob: error: no store is cached: SRIBLOB_CACHE_DIR is not set; "
            "set it to cache the remote stores\n"
        )


REQUIREMENT = (
    "must be a byte count: a whole number, optionally with a unit such as MB "
    "(10^6 bytes) or MiB (2^20 bytes)"
)


class TestSizes:
    """One size syntax, and one message, for flags, environment and config."""

    @pytest.mark.parametrize("size", ["1.5B", "1e9", "-1", "1 GB GB", "10 KB/s"])
    def test_the_flag_refuses_what_the_environment_refuses(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        size: str,
    ) -> None:
        """--max-bytes and SRIBLOB_MAX_TOTAL_SIZE refuse a size in the same words."""
        with pytest.raises(SystemExit) as exited:
            main(["cache", "prune", "--max-bytes", size])
        assert exited.value.code == 2
        assert f"argument --max-bytes: {REQUIREMENT}\n" in capsys.readouterr().err

        monkeypatch.setenv("SRIBLOB_MAX_TOTAL_SIZE", size)
        source = root.parent / "in.bin"
        source.write_bytes(DATA)
        assert main(["put", str(source)]) == 78
        [line] = capsys.readouterr().err.splitlines()
        assert line == (
            f"sriblob: error: writes are refused: SRIBLOB_MAX_TOTAL_SIZE {REQUIREMENT}."
        )

    @pytest.mark.parametrize(
        ("size", "shown"),
        [
            ("1GB", "1 GB"),
            ("1GiB", "1 GiB"),
            ("1.5 gb", "1.5 GB"),
            ("300000", "300 kB"),
        ],
    )
    def test_the_environment_takes_units(
        self,
        root: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        size: str,
        shown: str,
    ) -> None:
        """SRIBLOB_MAX_TOTAL_SIZE takes decimal and binary units; info prints them."""
        monkeypatch.setenv("SRIBLOB_MAX_TOTAL_SIZE", size)

        assert main(["info"]) == 0

        assert f"of max_total_size {shown}\n" in capsys.readouterr().out

    def test_a_postgres_chunk_size_out_of_range(
        self,
        root: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """SRIBLOB_POSTGRES_CHUNK_SIZE above 64 MiB: the limits in human units."""
        monkeypatch.setenv("SRIBLOB_POSTGRES_DSN", "postgresql://db.internal/blobs")
        monkeypatch.setenv("SRIBLOB_POSTGRES_CHUNK_SIZE", "64.5MiB")
        source = tmp_path / "in.bin"
        source.write_bytes(DATA)

        assert main(["put", str(source)]) == 78

        [line] = capsys.readouterr().err.splitlines()
        assert (
            "SRIBLOB_POSTGRES_CHUNK_SIZE must be a byte count from 1 B to 64 MiB: "
            "a whole number"
        ) in line

    def test_config_takes_a_whole_float(self) -> None:
        """S3StoreConfig(part_size=5.5 * MiB) is 5.5 MiB; 5.5 bytes says why not."""

        def config(part_size: float | str) -> S3StoreConfig:
            return S3StoreConfig(
                bucket="b",
                access_key_id="a",
                secret_access_key="s",
                part_size=part_size,
            )

        assert config(5.5 * MiB).part_size == 5767168
        assert config("8MiB").part_size == 8 * MiB
        with pytest.raises(ValueError, match="part_size") as refused:
            config(5.5 * 1024)
        assert str(refused.value) == (
            "Invalid S3 configuration: part_size must be a byte count from 5 MiB "
            "to 5 GiB: a whole number, optionally with a unit such as MB (10^6 "
            "bytes) or MiB (2^20 bytes)."
        )


class TestMigrateFailures:
    """A blob that fails during migrate or verify is reported once."""

    def test_a_failed_blob_is_printed_once(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Migrate prints the failure on stdout and doesn't log it again."""
        source = tmp_path / "old"
        bad = stored(source, b"rots on disk")
        stored(source, b"stays intact")
        FilesystemBlobStore(source).path_of(bad).write_bytes(b"rotten")

        assert main(["migrate", "--from-root", str(source), "--to", "filesystem"]) == 1

        captured = capsys.readouterr()
        [line] = [x for x in (captured.out + captured.err).splitlines() if bad in x]
        assert line.startswith(f"failed {bad}: IntegrityMismatch")
        assert captured.err == ""

    def test_verify_prints_a_corrupt_blob_once(
        self, root: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Verify prints the corrupt blob on stdout and doesn't log it again."""
        bad = stored(root, b"rots on disk")
        FilesystemBlobStore(root).path_of(bad).write_bytes(b"rotten")

        assert main(["verify"]) == 1

        captured = capsys.readouterr()
        [line] = [x for x in (captured.out + captured.err).splitlines() if bad in x]
        assert line == f"corrupt {bad}"

    def test_verbose_logs_it_too(
        self, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """-v adds the operation's own log line about the blob."""
        source = tmp_path / "old"
        bad = stored(source, b"rots on disk")
        FilesystemBlobStore(source).path_of(bad).write_bytes(b"rotten")

        assert (
            main(["-v", "migrate", "--from-root", str(source), "--to", "filesystem"])
            == 1
        )

        assert f"migrate failed integrity={bad}" in capsys.readouterr().err
