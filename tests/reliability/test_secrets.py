"""The secret access key never shows in logs, errors or reprs, even on failure."""

from __future__ import annotations

import asyncio
import logging
import socket
import traceback
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from sriblob import (
    BucketNotFound,
    S3BlobStore,
    S3StoreConfig,
    SriblobError,
    load_s3_config_from_env,
)
from sriblob._cli import main

from ..helpers import blob, chunked, collect, integrity_of
from .proxy import Fault, FaultProxy

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from pathlib import Path

pytestmark = [pytest.mark.reliability, pytest.mark.s3]

#: The loggers a deployment might turn up to DEBUG while chasing a problem.
LOGGERS = ["sriblob", "botocore", "aiobotocore", "aiohttp", "urllib3", "asyncio"]
MiB = 1024 * 1024
#: The environment prefix the command reads S3 settings from.
S3_ENV = "CHECKSTACK_SCRIPT_PACKAGES_S3_"


def free_port() -> int:
    """Return a loopback port nothing listens on (for the moment)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(name="secret")
def _secret() -> str:
    return f"sEcReT/{uuid.uuid4().hex}+key"


@pytest.fixture(name="debug_logs")
def _debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def exposed(error: BaseException) -> str:
    """Return everything an error shows: messages, reprs, attributes, traceback."""
    parts: list[str] = []
    seen: BaseException | None = error
    while seen is not None:
        parts += [str(seen), repr(seen), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    parts += traceback.format_exception(error)
    return "\n".join(parts)


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Return every captured record, formatted, with its raw arguments."""
    return "\n".join(
        f"{record.getMessage()} {record.args!r} {record.__dict__!r}"
        for record in caplog.records
    )


async def every_operation(store: S3BlobStore) -> list[BaseException]:
    """Run every store operation; return the errors raised."""
    data = blob(11 * MiB, seed=2)
    small = b"small blob"
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.put(integrity_of(small), small),
        lambda: store.put(integrity_of(data), chunked(data, MiB)),
        lambda: store.add(chunked(data, MiB)),
        lambda: store.add(small),
        lambda: store.get(integrity_of(small)),
        lambda: store.has(integrity_of(data)),
        lambda: store.stat(integrity_of(data)),
        lambda: collect(store),
        lambda: store.open(integrity_of(small)).__aenter__(),
        lambda: store.delete(integrity_of(small)),
    ]
    errors: list[BaseException] = []
    for call in calls:
        try:
            result = await call()
        except SriblobError as error:
            errors.append(error)
        else:
            if hasattr(result, "__aexit__"):
                await result.__aexit__(None, None, None)
    return errors


class TestSecrets:
    """Every path that can show text is checked for the secret."""

    @pytest.mark.parametrize(
        "failure", ["none", "wrong credentials", "missing bucket", "unreachable", "503"]
    )
    async def test_operations_at_debug(
        self,
        s3_config: S3StoreConfig,
        proxy: FaultProxy,
        debug_logs: pytest.LogCaptureFixture,
        secret: str,
        failure: str,
    ) -> None:
        """Every operation, failing or not, logs and raises without the secret."""
        config = attrs.evolve(
            s3_config,
            secret_access_key=secret,
            endpoint=proxy.endpoint,
            max_attempts=2,
            connect_timeout=1.0,
        )
        if failure == "wrong credentials":
            proxy.inject(Fault("status", status=403, times=10_000))
        elif failure == "missing bucket":
            config = attrs.evolve(config, bucket=f"missing-{uuid.uuid4().hex}")
        elif failure == "unreachable":
            config = attrs.evolve(config, endpoint=f"http://127.0.0.1:{free_port()}")
        elif failure == "503":
            proxy.inject(Fault("status", status=503, times=10_000))

        store = S3BlobStore(config)
        shown = [repr(store), str(store), repr(config), str(config)]
        if failure == "missing bucket":
            # Refused as the store opens: that error must hide the secret too.
            with pytest.raises(BucketNotFound) as excinfo:
                await store.__aenter__()
            errors: list[BaseException] = [excinfo.value]
        else:
            async with store:
                errors = await every_operation(store)

        if failure == "none":
            assert errors == []
        elif failure != "missing bucket":
            assert len(errors) >= 8
        assert debug_logs.records
        for error in errors:
            assert secret not in exposed(error)
        for text in shown:
            assert secret not in text
        assert secret not in logged(debug_logs)
        assert secret not in debug_logs.text

    def test_config_errors(self, secret: str) -> None:
        """A config rejected for any field never echoes the secret."""
        env = {
            "SRIBLOB_S3_BUCKET": "b",
            "SRIBLOB_S3_ACCESS_KEY_ID": "AKIA",
            "SRIBLOB_S3_SECRET_ACCESS_KEY": secret,
            "SRIBLOB_S3_ENDPOINT": "not a url " + secret,
        }
        result = load_s3_config_from_env(env, prefix="SRIBLOB_S3_")
        assert type(result).__name__ == "Misconfigured"
        assert secret not in repr(result)
        changes: list[tuple[str, Any]] = [("part_size", 1), ("endpoint", "ftp://x")]
        for field, value in changes:
            with pytest.raises(SriblobError) as excinfo:
                S3StoreConfig(
                    bucket="b",
                    access_key_id="AKIA",
                    secret_access_key=secret,
                    **{field: value},
                )
            assert secret not in exposed(excinfo.value)

    async def test_cancelled_and_timed_out(
        self,
        s3_config: S3StoreConfig,
        proxy: FaultProxy,
        debug_logs: pytest.LogCaptureFixture,
        secret: str,
    ) -> None:
        """Timeouts and cancellations log nothing secret either."""
        config = attrs.evolve(
            s3_config,
            secret_access_key=secret,
            endpoint=proxy.endpoint,
            read_timeout=0.3,
            max_attempts=1,
        )
        proxy.inject(Fault("stall", seconds=1.0, times=100))
        async with S3BlobStore(config) as store:
            with pytest.raises(SriblobError) as excinfo:
                await store.get(integrity_of(b"x"))
            task = asyncio.ensure_future(store.add(b"y"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert secret not in exposed(excinfo.value)
        assert secret not in logged(debug_logs)


class TestCommandLine:
    """The sriblob command never prints the secret, whatever fails."""

    @pytest.mark.parametrize("failure", ["missing bucket", "unreachable"])
    def test_commands_fail_without_the_secret(
        self,
        s3_config: S3StoreConfig,
        *,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
        debug_logs: pytest.LogCaptureFixture,
        secret: str,
        failure: str,
    ) -> None:
        """put, get, has, ls, info and verify on a broken S3 config hide the secret."""
        endpoint = (
            f"http://127.0.0.1:{free_port()}"
            if failure == "unreachable"
            else str(s3_config.endpoint)
        )
        bucket = f"missing-{uuid.uuid4().hex}"
        for name, value in {
            "ENDPOINT": endpoint,
            "BUCKET": bucket,
            "REGION": str(s3_config.region),
            "ACCESS_KEY_ID": s3_config.access_key_id,
            "SECRET_ACCESS_KEY": secret,
            "FORCE_PATH_STYLE": "true",
        }.items():
            monkeypatch.setenv(f"{S3_ENV}{name}", value)
        monkeypatch.setenv("SRIBLOB_ROOT", str(tmp_path / "store"))
        source = tmp_path / "blob"
        source.write_bytes(b"blob")
        integrity = integrity_of(b"blob")
        codes = [
            main(arguments)
            for arguments in (
                ["put", str(source)],
                ["get", integrity, "-o", str(tmp_path / "out")],
                ["has", integrity],
                ["ls"],
                ["info"],
                ["verify"],
            )
        ]

        captured = capsys.readouterr()
        assert any(code != 0 for code in codes)
        assert bucket in captured.out + captured.err
        assert secret not in captured.out + captured.err
        assert secret not in logged(debug_logs)
