"""Fixtures for the reliability suite: a fault-injecting proxy in front of moto."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

import attrs
import pytest

from .proxy import FaultProxy, fault_proxy

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from sriblob import S3StoreConfig

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
