"""Fixtures for the reliability suite: a fault proxy in front of moto, shared stores."""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from sriblob import FilesystemBlobStore, PostgresBlobStore, S3BlobStore

from ..postgres_server import drop_schema, fresh_schema
from .proxy import FaultProxy, fault_proxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

    from sriblob import BlobStore, S3StoreConfig

    from ..helpers import S3Target


@pytest.fixture(name="proxy")
async def _proxy(s3_target: S3Target) -> AsyncIterator[FaultProxy]:
    """A :class:`FaultProxy` in front of the session's S3 server."""
    port = urllib.parse.urlsplit(s3_target.endpoint).port
    assert port is not None
    async with fault_proxy(port) as proxy:
        yield proxy


@pytest.fixture(name="proxied_config")
def _proxied_config(s3_config: S3StoreConfig, proxy: FaultProxy) -> S3StoreConfig:
    """The test bucket's config, through the proxy, with short timeouts."""
    return attrs.evolve(
        s3_config,
        endpoint=proxy.endpoint,
        max_attempts=4,
        connect_timeout=2.0,
        read_timeout=2.0,
    )


@attrs.define
class Shared:
    """A store several processes open: its spec for workers, and a local twin."""

    kind: str
    spec: dict[str, Any]
    config: Any = None

    def open(self, **options: Any) -> BlobStore:
        """A store of this test process on the shared location."""
        if self.kind == "filesystem":
            return FilesystemBlobStore(self.spec["root"], **options)
        if self.kind == "s3":
            return S3BlobStore(self.config, **options)
        return PostgresBlobStore(
            self.spec["dsn"], schema=self.spec["schema"], **options
        )


@pytest.fixture(
    name="shared",
    params=[
        "filesystem",
        pytest.param("s3", marks=pytest.mark.s3),
        pytest.param("postgres", marks=pytest.mark.postgres),
    ],
)
def _shared(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Shared]:
    kind = request.param
    if kind == "filesystem":
        yield Shared(kind, {"kind": kind, "root": str(tmp_path / "shared")})
    elif kind == "s3":
        config: S3StoreConfig = request.getfixturevalue("s3_config")
        config = attrs.evolve(config, lease_ttl=4)
        fields = attrs.asdict(config)
        yield Shared(kind, {"kind": kind, "config": fields}, config)
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        schema = fresh_schema()
        yield Shared(kind, {"kind": kind, "dsn": dsn, "schema": schema})
        asyncio.run(drop_schema(dsn, schema))
