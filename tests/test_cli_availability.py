"""The sriblob command with a configured PostgreSQL server that is down."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import pytest

from sriblob import FilesystemBlobStore, default_registry
from sriblob._cli import main

from .helpers import blackhole, blob, integrity_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

DATA = blob(20_000, seed=84)
SECRET = "pw-never-shown-5150"


@pytest.fixture(name="down", params=["refused", "blackholed"])
def _down(
    request: pytest.FixtureRequest, root: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """SRIBLOB_POSTGRES_DSN names a server that is down; a blob is on disk."""
    with contextlib.ExitStack() as stack:
        port = 1 if request.param == "refused" else stack.enter_context(blackhole())
        monkeypatch.setenv(
            "SRIBLOB_POSTGRES_DSN", f"postgresql://app:{SECRET}@127.0.0.1:{port}/app"
        )
        monkeypatch.setenv("SRIBLOB_POSTGRES_CONNECT_TIMEOUT", "0.5")
        asyncio.run(FilesystemBlobStore(root).put(integrity_of(DATA), DATA))
        yield request.param


class TestPostgresDown:
    """Item 2: a down PostgreSQL hides no blob on disk, and takes no write."""

    def test_get_has_info_find_the_blob_on_disk(
        self, down: str, capsysbinary: pytest.CaptureFixture[bytes]
    ) -> None:
        """get, has and info of a blob on disk exit 0 with what the disk holds."""
        integrity = integrity_of(DATA)

        assert main(["get", integrity]) == 0
        got = capsysbinary.readouterr()
        assert main(["has", integrity]) == 0
        has = capsysbinary.readouterr()
        assert main(["info", integrity]) == 0
        info = capsysbinary.readouterr()

        assert got.out == DATA
        assert has.out == b"yes\n"
        assert b"store: filesystem\n" in info.out
        assert f"size: {len(DATA)}\n".encode() in info.out
        # Each says, as a warning, which store failed and why; never the secret.
        for captured in (got, has, info):
            assert b"PostgreSQL is unavailable to connect" in captured.err
            assert SECRET.encode() not in captured.err

    def test_put_fails_on_one_line_and_writes_nothing(
        self, down: str, root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A put to the down active store exits 1 on one line; nothing reaches disk."""
        other = blob(1000, seed=85)
        source = tmp_path / "new.tgz"
        source.write_bytes(other)

        assert main(["put", str(source)]) == 1

        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1, err
        assert err.startswith("sriblob: error: PostgreSQL is unavailable to connect: ")
        assert SECRET not in err
        if down == "blackholed":
            assert "no answer within 0.5 s (connect_timeout)" in err
        on_disk = asyncio.run(FilesystemBlobStore(root).has(integrity_of(other)))
        assert on_disk is False

    def test_default_registry_opens(self, down: str, root: Path) -> None:
        """default_registry() opens with the server down; reads fall back past it."""

        async def read() -> tuple[str, tuple[bytes, str] | None]:
            async with default_registry() as registry:
                return registry.active.id, await registry.read_with_fallback(
                    integrity_of(DATA)
                )

        active, found = asyncio.run(read())

        assert active == "postgres"
        assert found == (DATA, "filesystem")
