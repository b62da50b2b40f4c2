"""`sriblob put` of a blob already stored leaves a good copy behind."""

from __future__ import annotations

import asyncio
import json
import stat
from typing import TYPE_CHECKING

import pytest

from sriblob import FilesystemBlobStore
from sriblob._cli import main

from .helpers import blob, integrity_of

if TYPE_CHECKING:
    from pathlib import Path

DATA = blob(300_000, seed=86)


class TestRePut:
    """Item 3: a put of the good bytes repairs a copy damaged behind its back."""

    @pytest.mark.parametrize("with_integrity", [False, True], ids=["add", "integrity"])
    def test_put_repairs_a_flipped_byte(
        self,
        root: Path,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        with_integrity: bool,
    ) -> None:
        """Flip a byte of the stored file, put the good file: verify finds it intact."""
        good = tmp_path / "good.tgz"
        good.write_bytes(DATA)
        integrity = integrity_of(DATA)
        assert main(["put", str(good)]) == 0
        stored = FilesystemBlobStore(root).path_of(integrity)
        stored.chmod(stat.S_IMODE(stored.stat().st_mode) | stat.S_IWUSR)
        with stored.open("r+b") as file:
            file.seek(len(DATA) // 2)
            file.write(bytes([DATA[len(DATA) // 2] ^ 0x40]))
        assert stored.stat().st_size == len(DATA)
        assert main(["verify", "--json"]) == 1
        capsys.readouterr()

        args = ["put", "--integrity", integrity] if with_integrity else ["put"]
        assert main([*args, str(good)]) == 0
        assert capsys.readouterr().out == integrity + "\n"
        assert main(["verify", "--json"]) == 0

        report = json.loads(capsys.readouterr().out)
        assert report["checked"] == 1
        assert report["corrupt"] == []
        assert asyncio.run(FilesystemBlobStore(root).get(integrity)) == DATA

    def test_an_intact_copy_is_kept(self, root: Path, tmp_path: Path) -> None:
        """A put of a blob stored intact keeps its file: the same inode, read-only."""
        good = tmp_path / "good.tgz"
        good.write_bytes(DATA)
        assert main(["put", str(good)]) == 0
        stored = FilesystemBlobStore(root).path_of(integrity_of(DATA))
        before = stored.stat()

        assert main(["put", str(good)]) == 0
        assert main(["put", "--integrity", integrity_of(DATA), str(good)]) == 0

        after = stored.stat()
        assert after.st_ino == before.st_ino
        assert not after.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        assert [path.name for path in stored.parent.iterdir()] == [stored.name]
