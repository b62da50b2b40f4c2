"""BlobStoreRegistry, reads that fall back, plugins and default_registry."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import TYPE_CHECKING

import pytest

from sriblob import (
    BlobBody,
    BlobNotFound,
    BlobStore,
    BlobStoreRegistry,
    ConfigurationError,
    FilesystemBlobStore,
    Integrity,
    IntegrityMismatch,
    InvalidIntegrity,
    MemoryBlobStore,
    StoreClosed,
    StoreUnavailable,
    UnknownBackend,
    default_registry,
)
from sriblob._memory import MemoryBackend

from .helpers import blob, integrity_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

DATA = b"migrated blob"
MiB = 1024 * 1024
S3 = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
SECRET = "wJalrXUtnFEMI-super-secret"


class BrokenBackend(MemoryBackend):
    """A backend whose every read fails, like an unreachable server."""

    async def read_blob_bytes(self, integrity: Integrity) -> bytes | None:
        """Fail as an unreachable server would."""
        msg = "connection refused"
        raise StoreUnavailable(msg, backend=self.id)

    @contextlib.asynccontextmanager
    async def read_blob(self, integrity: Integrity) -> AsyncIterator[BlobBody]:
        """Fail as an unreachable server would."""
        msg = "connection refused"
        raise StoreUnavailable(msg, backend=self.id)
        yield  # pragma: no cover -- makes this a generator


class BrokenStore(BlobStore):
    """A store whose every read fails, like an unreachable server."""

    def __init__(self, *, id: str = "memory") -> None:
        super().__init__(BrokenBackend(), id=id)


async def filled(id: str, *blobs: bytes) -> MemoryBlobStore:
    """Return a memory store named *id* holding *blobs*."""
    store = MemoryBlobStore(id=id)
    for data in blobs:
        await store.add(data)
    return store


async def read_through(
    registry: BlobStoreRegistry, how: str, integrity: str, *, active: str | None = None
) -> tuple[bytes, str] | None:
    """Read with ``read_with_fallback`` or through ``open_with_fallback``."""
    if how == "read":
        return await registry.read_with_fallback(integrity, active=active)
    try:
        async with registry.open_with_fallback(integrity, active=active) as reader:
            return await reader.read(), reader.store_id
    except BlobNotFound:
        return None


async def rotten(id: str) -> MemoryBlobStore:
    """Return a memory store named *id* whose copy of DATA is corrupted."""
    store = await filled(id, DATA)
    store.blobs[integrity_of(DATA)] = b"bit rot"
    return store


#: Both registry reads: behaviours they share are tested through each.
HOW = pytest.mark.parametrize("how", ["read", "open"])


class TestRegistration:
    """register, ids, has, get and the active store."""

    async def test_register_and_get(self) -> None:
        """A registered store is found by its id; ids() are sorted."""
        registry = BlobStoreRegistry()
        b, a = MemoryBlobStore(id="b"), MemoryBlobStore(id="a")
        registry.register(b)
        registry.register(a)

        assert registry.get("a") is a
        assert registry.has("b")
        assert not registry.has("c")
        assert registry.ids() == ("a", "b")
        assert registry.stores() == (b, a)

    async def test_duplicate_id(self) -> None:
        """Registering a second store under a taken id is a ValueError saying so."""
        registry = BlobStoreRegistry()
        registry.register(MemoryBlobStore(id="x"))

        with pytest.raises(ValueError, match="'x' is already registered"):
            registry.register(MemoryBlobStore(id="x"))

    async def test_unknown_backend_lists_ids(self) -> None:
        """get() of an unknown id raises UnknownBackend naming the known ids."""
        registry = BlobStoreRegistry()
        registry.register(MemoryBlobStore(id="memory"))
        registry.register(MemoryBlobStore(id="backup"))

        with pytest.raises(UnknownBackend, match="'backup', 'memory'") as excinfo:
            registry.get("s3")

        assert excinfo.value.id == "s3"
        assert excinfo.value.known == ("backup", "memory")
        with pytest.raises(UnknownBackend):
            registry.activate("s3")

    async def test_first_registered_is_active(self) -> None:
        """The first store registered is active until another is activated."""
        registry = BlobStoreRegistry()
        with pytest.raises(UnknownBackend, match="No store is registered"):
            _ = registry.active
        first, second = MemoryBlobStore(id="one"), MemoryBlobStore(id="two")
        registry.register(first)
        registry.register(second)
        assert registry.active is first

        registry.activate("two", reason="testing")

        assert registry.active is second
        assert registry.active_reason == "testing"
        assert registry.describe()[0] == "active: two (testing)"


class TestReadWithFallback:
    """Reads ask the active store first, then the others."""

    @HOW
    async def test_active_first(self, how: str) -> None:
        """A blob held by several stores is served by the active one."""
        registry = BlobStoreRegistry()
        registry.register(await filled("old", DATA))
        registry.register(await filled("new", DATA))
        registry.activate("new")

        assert await read_through(registry, how, integrity_of(DATA)) == (DATA, "new")
        assert await read_through(registry, how, integrity_of(DATA), active="old") == (
            DATA,
            "old",
        )

    @HOW
    async def test_falls_back_in_registration_order(
        self, how: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A blob the active store lacks comes from the next store that has it."""
        registry = BlobStoreRegistry()
        registry.register(await filled("active"))
        registry.register(await filled("second", b"other"))
        registry.register(await filled("third", DATA))
        registry.register(await filled("fourth", DATA))

        with caplog.at_level(logging.INFO, logger="sriblob"):
            found = await read_through(registry, how, integrity_of(DATA))

        assert found == (DATA, "third")
        assert any(
            "backend=third" in r.getMessage()
            and "not the active one (active)" in r.getMessage()
            for r in caplog.records
        )

    @HOW
    async def test_absent_everywhere_is_none(self, how: str) -> None:
        """None means every store answered that it doesn't hold the blob."""
        registry = BlobStoreRegistry()
        registry.register(await filled("a", b"x"))
        registry.register(await filled("b", b"y"))

        assert await read_through(registry, how, integrity_of(DATA)) is None

    @HOW
    async def test_broken_backend_skipped_and_logged(
        self, how: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A failing store is logged and skipped, and another store serves the blob."""
        registry = BlobStoreRegistry()
        registry.register(BrokenStore(id="broken"))
        registry.register(await filled("good", DATA))

        with caplog.at_level(logging.WARNING, logger="sriblob"):
            result = await read_through(registry, how, integrity_of(DATA))

        assert result == (DATA, "good")
        [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert record.name == "sriblob"
        assert "backend=broken" in record.getMessage()
        assert "connection refused" in record.getMessage()

    async def test_corrupted_copy_falls_through(self) -> None:
        """An IntegrityMismatch from one store falls through to a good copy."""
        registry = BlobStoreRegistry()
        registry.register(await rotten("corrupted"))
        registry.register(await filled("good", DATA))

        assert await registry.read_with_fallback(integrity_of(DATA)) == (DATA, "good")

    @HOW
    async def test_failure_raised_when_nobody_served(self, how: str) -> None:
        """If no store served the blob and one failed, that failure is raised."""
        registry = BlobStoreRegistry()
        registry.register(BrokenStore(id="broken"))
        registry.register(await filled("empty"))

        with pytest.raises(StoreUnavailable, match="connection refused"):
            await read_through(registry, how, integrity_of(DATA))

    async def test_first_failure_raised(self) -> None:
        """With several failures, the first store's failure is raised."""
        registry = BlobStoreRegistry()
        registry.register(await rotten("corrupted"))
        registry.register(BrokenStore(id="broken"))

        with pytest.raises(IntegrityMismatch):
            await registry.read_with_fallback(integrity_of(DATA))

    @HOW
    async def test_malformed_integrity(self, how: str) -> None:
        """A malformed integrity is refused before any store is asked."""
        registry = BlobStoreRegistry()
        registry.register(BrokenStore(id="broken"))

        with pytest.raises(InvalidIntegrity):
            await read_through(registry, how, "sha512-nope")

    @HOW
    async def test_mixed_backends(self, how: str, tmp_path: Path) -> None:
        """A memory store and a filesystem store fall back to each other."""
        memory = await filled("memory", b"in memory")
        disk = FilesystemBlobStore(tmp_path)
        await disk.add(DATA)
        registry = BlobStoreRegistry()
        registry.register(memory)
        registry.register(disk)

        assert await read_through(registry, how, integrity_of(DATA)) == (
            DATA,
            "filesystem",
        )
        assert await read_through(
            registry, how, integrity_of(b"in memory"), active="filesystem"
        ) == (b"in memory", "memory")


class TestOpenWithFallback:
    """What only the streaming read does (the rest: TestReadWithFallback)."""

    async def test_streams_in_chunks(self, tmp_path: Path) -> None:
        """A large blob arrives in bounded chunks from the store that has it."""
        data = blob(3 * MiB + 5)
        disk = FilesystemBlobStore(tmp_path)
        await disk.add(data)
        registry = BlobStoreRegistry()
        registry.register(await filled("memory"))
        registry.register(disk)

        async with registry.open_with_fallback(integrity_of(data)) as reader:
            assert reader.size == len(data)
            chunks = [chunk async for chunk in reader]
        assert b"".join(chunks) == data
        assert len(chunks) >= 4
        assert max(map(len, chunks)) <= MiB

    async def test_absent_everywhere(self) -> None:
        """BlobNotFound on entry names every store that was asked."""
        registry = BlobStoreRegistry()
        registry.register(await filled("a", b"x"))
        registry.register(await filled("b", b"y"))

        with pytest.raises(BlobNotFound, match=r"in any store \(a, b\)") as excinfo:
            async with registry.open_with_fallback(integrity_of(DATA)):
                pytest.fail("entered without a blob")
        assert excinfo.value.integrity == integrity_of(DATA)
        assert excinfo.value.backend == "a, b"

    async def test_corruption_is_not_hidden(self) -> None:
        """Bytes already streamed can't be taken back: a mismatch is raised."""
        registry = BlobStoreRegistry()
        registry.register(await rotten("corrupted"))
        registry.register(await filled("good", DATA))

        async with registry.open_with_fallback(integrity_of(DATA)) as reader:
            assert reader.store_id == "corrupted"
            with pytest.raises(IntegrityMismatch):
                await reader.read()

    async def test_refused_before_any_io(self) -> None:
        """Bad arguments and a closed registry raise at the call, not on entry."""
        registry = BlobStoreRegistry()
        registry.register(BrokenStore(id="broken"))

        with pytest.raises(InvalidIntegrity):
            registry.open_with_fallback("sha512-nope")
        with pytest.raises(UnknownBackend):
            registry.open_with_fallback(integrity_of(DATA), active="nope")
        await registry.aclose()
        with pytest.raises(StoreClosed):
            registry.open_with_fallback(integrity_of(DATA))

    async def test_store_reader_closed_on_exit(self) -> None:
        """Leaving the block, even by an error, closes the serving store's stream."""
        closed: list[str] = []

        class Recording(MemoryBackend):
            @contextlib.asynccontextmanager
            async def read_blob(self, integrity: Integrity) -> AsyncIterator[BlobBody]:
                """Fail as an unreachable server would."""
                try:
                    async with super().read_blob(integrity) as opened:
                        yield opened
                finally:
                    closed.append(self.id)

        store = BlobStore(Recording(), id="recording")
        await store.add(DATA)
        registry = BlobStoreRegistry()
        registry.register(store)

        async def give_up() -> None:
            async with registry.open_with_fallback(integrity_of(DATA)) as reader:
                assert closed == []
                await anext(reader)
                msg = "reader gave up"
                raise RuntimeError(msg)

        with pytest.raises(RuntimeError, match="reader gave up"):
            await give_up()
        assert closed == ["recording"]


class NeedsEntering(MemoryBlobStore):
    """A store that must be entered before use, as the S3 store must."""

    requires_startup = True


class TestLifecycle:
    """Entering and closing the registry enters and closes the stores."""

    async def test_enter_enters_every_store(self) -> None:
        """Stores that need `async with` are usable inside the registry's block."""
        store = NeedsEntering(id="needs")
        registry = BlobStoreRegistry()
        registry.register(store)
        with pytest.raises(StoreClosed, match="not open"):
            await store.has(integrity_of(DATA))

        async with registry:
            await store.add(DATA)
            assert await registry.read_with_fallback(integrity_of(DATA)) == (
                DATA,
                "needs",
            )

        with pytest.raises(StoreClosed, match="closed"):
            await store.has(integrity_of(DATA))
        with pytest.raises(StoreClosed):
            await registry.read_with_fallback(integrity_of(DATA))
        with pytest.raises(StoreClosed):
            registry.register(MemoryBlobStore(id="late"))

    async def test_register_unentered_store_while_open(self) -> None:
        """An open registry refuses a store it would have had to enter."""
        async with BlobStoreRegistry() as registry:
            registry.register(MemoryBlobStore())
            with pytest.raises(ValueError, match="already open"):
                registry.register(NeedsEntering(id="needs"))

    async def test_aclose_closes_all_even_if_one_fails(self) -> None:
        """A store failing to close doesn't keep the others open."""

        class FailsToClose(MemoryBackend):
            async def shutdown(self) -> None:
                msg = "cannot close"
                raise OSError(msg)

        first, last = MemoryBlobStore(id="first"), MemoryBlobStore(id="last")
        registry = BlobStoreRegistry()
        for store in (first, BlobStore(FailsToClose(), id="failing"), last):
            registry.register(store)

        with pytest.raises(OSError, match="cannot close"):
            await registry.aclose()

        for store in (first, last):
            with pytest.raises(StoreClosed):
                await store.has(integrity_of(DATA))
        await registry.aclose()  # a second call does nothing


def messages(caplog: pytest.LogCaptureFixture) -> str:
    """Return every captured log message and its formatted traceback."""
    return "\n".join(caplog.handler.format(record) for record in caplog.records)


class TestDefaultRegistry:
    """default_registry() builds from the installed plugins."""

    async def test_filesystem_is_the_default(self, tmp_path: Path) -> None:
        """Without S3 settings the filesystem store at the root is active."""
        async with default_registry({}, root=tmp_path) as registry:
            assert registry.ids() == ("filesystem",)
            store = registry.active
            assert isinstance(store, FilesystemBlobStore)
            assert store.root == tmp_path
            assert "neither S3 nor Postgres" in registry.active_reason
            integrity = await store.add(DATA)
            assert await registry.read_with_fallback(integrity) == (DATA, "filesystem")
        assert "not configured" in registry.statuses["s3"]

    async def test_root_from_env(self, tmp_path: Path) -> None:
        """SRIBLOB_ROOT sets the filesystem store's root; root= overrides it."""
        registry = default_registry({"SRIBLOB_ROOT": str(tmp_path / "env")})
        other = default_registry(
            {"SRIBLOB_ROOT": str(tmp_path / "env")}, root=tmp_path / "arg"
        )

        assert isinstance(registry.active, FilesystemBlobStore)
        assert registry.active.root == tmp_path / "env"
        assert isinstance(other.active, FilesystemBlobStore)
        assert other.active.root == tmp_path / "arg"

    async def test_user_data_dir_fallback(self, tmp_path: Path) -> None:
        """Without SRIBLOB_ROOT the root is the platform's user data directory."""
        import platformdirs  # noqa: PLC0415 -- only this test needs it

        registry = default_registry({})

        assert isinstance(registry.active, FilesystemBlobStore)
        assert registry.active.root == platformdirs.user_data_path("sriblob")

    async def test_partial_s3_env(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A partial S3 config logs an error naming the fields, never the secret."""
        env = {f"{S3}SECRET_ACCESS_KEY": SECRET, f"{S3}REGION": "eu-west-1"}

        with caplog.at_level(logging.DEBUG, logger="sriblob"):
            registry = default_registry(env, root=tmp_path)

        assert registry.ids() == ("filesystem",)
        with pytest.raises(ConfigurationError, match="s3 is misconfigured") as excinfo:
            _ = registry.active
        assert set(excinfo.value.fields) == {"bucket", "access_key_id"}
        assert SECRET not in str(excinfo.value)
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert f"{S3}BUCKET" in error.getMessage()
        assert f"{S3}ACCESS_KEY_ID" in error.getMessage()
        assert SECRET not in messages(caplog)
        assert SECRET not in "\n".join(registry.describe())
        assert "misconfigured" in registry.statuses["s3"]

    async def test_s3_configured_without_s3_support(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A complete S3 config registers S3 only if sriblob._s3 imports."""
        env = {
            f"{S3}BUCKET": "blobs",
            f"{S3}ACCESS_KEY_ID": "AKIAEXAMPLE",
            f"{S3}SECRET_ACCESS_KEY": SECRET,
        }
        try:
            import sriblob._s3  # type: ignore[import-not-found, unused-ignore]  # noqa: F401, PLC0415
        except ImportError:
            has_s3 = False
        else:  # pragma: no cover -- once the S3 store is merged
            has_s3 = True

        with caplog.at_level(logging.DEBUG, logger="sriblob"):
            registry = default_registry(env, root=tmp_path)

        assert SECRET not in messages(caplog)
        assert SECRET not in "\n".join(registry.describe())
        if has_s3:  # pragma: no cover -- once the S3 store is merged
            assert registry.active.id == "s3"
            assert registry.active_reason == "S3 is configured"
            assert registry.ids() == ("filesystem", "s3")
        else:
            assert registry.ids() == ("filesystem",)
            assert any(r.levelno == logging.ERROR for r in caplog.records)

    async def test_broken_plugin_logged_and_skipped(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A plugin that raises is logged and the other plugins still register."""
        import importlib.metadata  # noqa: PLC0415

        real = importlib.metadata.entry_points

        def with_broken(*, group: str) -> importlib.metadata.EntryPoints:
            points = list(real(group=group))
            broken = importlib.metadata.EntryPoint(
                name="broken",
                value="sriblob._no_such_module:plugin",
                group=group,
            )
            return importlib.metadata.EntryPoints([broken, *points])

        monkeypatch.setattr(importlib.metadata, "entry_points", with_broken)

        with caplog.at_level(logging.ERROR, logger="sriblob"):
            registry = default_registry({}, root=tmp_path)

        assert registry.ids() == ("filesystem",)
        assert "broken" in caplog.text
        assert registry.statuses["broken"].startswith("plugin failed")

    async def test_postgres_precedes_filesystem(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A registered "postgres" store is active over the filesystem one."""
        import importlib.metadata  # noqa: PLC0415

        real = importlib.metadata.entry_points

        def with_postgres(*, group: str) -> importlib.metadata.EntryPoints:
            fake = importlib.metadata.EntryPoint(
                name="zz-postgres",
                value="tests.test_registry:register_fake_postgres",
                group=group,
            )
            return importlib.metadata.EntryPoints([*real(group=group), fake])

        monkeypatch.setattr(importlib.metadata, "entry_points", with_postgres)

        registry = default_registry({}, root=tmp_path)

        assert registry.active.id == "postgres"
        assert registry.ids() == ("filesystem", "postgres")


def register_fake_postgres(
    registry: BlobStoreRegistry, env: object, logger: logging.Logger
) -> None:
    """Stand in for a Postgres plugin: register a store named "postgres"."""
    store: BlobStore = MemoryBlobStore(id="postgres")
    registry.register(store)


FULL_S3 = {
    f"{S3}BUCKET": "blobs",
    f"{S3}ACCESS_KEY_ID": "AKIAEXAMPLE",
    f"{S3}SECRET_ACCESS_KEY": SECRET,
}


class TestMisconfigured:
    """A backend whose settings are present but unusable never diverts writes."""

    @pytest.mark.parametrize(
        ("env", "backend", "fields"),
        [
            ({f"{S3}BUCKET": "blobs"}, "s3", {"access_key_id", "secret_access_key"}),
            ({**FULL_S3, f"{S3}FORCE_PATH_STYLE": "maybe"}, "s3", {"force_path_style"}),
            ({**FULL_S3, f"{S3}ENDPOINT": "ftp://x"}, "s3", {"endpoint"}),
            ({"SRIBLOB_POSTGRES_DSN": f"mysql://u:{SECRET}@h/db"}, "postgres", {"dsn"}),
            ({"SRIBLOB_POSTGRES_SCHEMA": "blobs"}, "postgres", {"dsn"}),
        ],
        ids=["only-bucket", "bad-path-style", "bad-endpoint", "bad-dsn", "no-dsn"],
    )
    async def test_writes_are_refused(
        self,
        tmp_path: Path,
        caplog: pytest.LogCaptureFixture,
        env: dict[str, str],
        backend: str,
        fields: set[str],
    ) -> None:
        """No store is active: a write raises ConfigurationError naming it."""
        with caplog.at_level(logging.WARNING, logger="sriblob"):
            registry = default_registry(env, root=tmp_path)

        assert registry.writes_refused
        with pytest.raises(
            ConfigurationError, match=f"{backend} is misconfigured"
        ) as e:
            await registry.active.add(DATA)
        assert set(e.value.fields) == fields
        assert SECRET not in str(e.value)
        assert list(tmp_path.rglob("*")) == []  # nothing reached the disk
        assert "reads fall back to: filesystem" in caplog.text
        assert SECRET not in messages(caplog)

    async def test_reads_still_fall_back(self, tmp_path: Path) -> None:
        """Blobs the configured stores hold are still read."""
        async with default_registry({}, root=tmp_path) as registry:
            integrity = await registry.active.add(DATA)

        async with default_registry(
            {f"{S3}BUCKET": "blobs"}, root=tmp_path
        ) as registry:
            assert await registry.read_with_fallback(integrity) == (DATA, "filesystem")
            assert await registry.has_with_fallback(integrity) == "filesystem"
            async with registry.open_with_fallback(integrity) as reader:
                assert await reader.read() == DATA

    async def test_describe_says_what_is_wrong(self, tmp_path: Path) -> None:
        """describe() names the misconfigured backend and where reads go."""
        registry = default_registry({f"{S3}BUCKET": "blobs"}, root=tmp_path)

        lines = registry.describe()

        assert lines[0].startswith("active: none: Writes are refused because s3")
        assert lines[1] == "reads fall back to: filesystem"
        [s3] = [line for line in lines if line.startswith("s3: ")]
        assert s3.startswith("s3: misconfigured, not registered: S3 storage")
        assert f"{S3}ACCESS_KEY_ID and {S3}SECRET_ACCESS_KEY are not set" in s3

    async def test_missing_dependency_is_a_problem_too(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A configured backend whose library is missing refuses writes as well."""
        monkeypatch.setitem(sys.modules, "asyncpg", None)
        env = {"SRIBLOB_POSTGRES_DSN": "postgresql://localhost/db"}

        registry = default_registry(env, root=tmp_path)

        with pytest.raises(ConfigurationError, match=r"sriblob\[postgres\]"):
            _ = registry.active

    async def test_ignore_misconfigured_keeps_the_old_behaviour(
        self, tmp_path: Path
    ) -> None:
        """ignore_misconfigured=True activates the best configured store anyway."""
        registry = default_registry(
            {f"{S3}BUCKET": "blobs"}, root=tmp_path, ignore_misconfigured=True
        )

        assert not registry.writes_refused
        assert registry.active.id == "filesystem"
        assert set(registry.problems) == {"s3"}

    async def test_a_misspelt_setting_refuses_writes(self, tmp_path: Path) -> None:
        """SRIBLOB_CACHE_DRI: writes refused, the variable named, reads go on."""
        async with default_registry({}, root=tmp_path) as registry:
            integrity = await registry.active.add(DATA)
        env = {"SRIBLOB_CACHE_DRI": str(tmp_path / "cache")}

        async with default_registry(env, root=tmp_path) as registry:
            with pytest.raises(ConfigurationError) as e:
                await registry.active.add(b"more")
            assert e.value.fields == ("SRIBLOB_CACHE_DRI",)
            assert "did you mean SRIBLOB_CACHE_DIR?" in str(e.value)
            assert str(tmp_path) not in str(e.value)
            assert set(registry.problems) == {"environment"}
            assert await registry.read_with_fallback(integrity) == (DATA, "filesystem")

        kept = default_registry(env, root=tmp_path, ignore_misconfigured=True)
        assert kept.active.id == "filesystem"

    def test_root_is_credited_to_the_caller(self, tmp_path: Path) -> None:
        """root= is described as given by the caller, not as SRIBLOB_ROOT."""
        registry = default_registry({}, root=tmp_path)

        assert "given by the caller" in registry.statuses["filesystem"]
        assert "SRIBLOB_ROOT" not in registry.statuses["filesystem"]
        from_env = default_registry({"SRIBLOB_ROOT": str(tmp_path)})
        assert "(SRIBLOB_ROOT)" in from_env.statuses["filesystem"]
