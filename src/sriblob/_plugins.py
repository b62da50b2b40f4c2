"""The store plugins sriblob ships, published in the ``sriblob.stores`` group.

A plugin is a callable ``(registry, env, logger) -> None`` that registers its
store only when it is usable, and records what it found with
:meth:`~sriblob.BlobStoreRegistry.set_status` (never a secret).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import platformdirs

from ._config import (
    DEFAULT_ENV_PREFIX,
    Configured,
    Misconfigured,
    Unconfigured,
    load_s3_config_from_env,
)
from ._filesystem import FilesystemBlobStore
from ._store import BlobStore

if TYPE_CHECKING:
    import logging
    from collections.abc import Mapping

    from ._registry import BlobStoreRegistry

__all__ = ["register_filesystem", "register_s3"]


def register_filesystem(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the filesystem store, always.

    Its root is ``SRIBLOB_ROOT``, or the user data directory
    (``platformdirs.user_data_dir("sriblob")``) when that is unset or empty.
    """
    root = env.get("SRIBLOB_ROOT", "").strip()
    origin = "SRIBLOB_ROOT"
    if not root:
        root = platformdirs.user_data_dir("sriblob")
        origin = "the user data directory; set SRIBLOB_ROOT to change it"
    registry.register(FilesystemBlobStore(root))
    registry.set_status("filesystem", f"root {root} ({origin})")
    logger.debug("Registered the filesystem store at %s", root)


def register_s3(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the S3 store when the environment configures it completely.

    Reads the ``CHECKSTACK_SCRIPT_PACKAGES_S3_*`` variables with
    :func:`~sriblob.load_s3_config_from_env`. Nothing is registered when none
    is set (logged at debug level), when some are missing or invalid (logged
    as an error naming the fields, never a value), or when the S3 support
    can't be imported.
    """
    match load_s3_config_from_env(env):
        case Unconfigured():
            logger.debug(
                "S3 store not registered: no %s* variable is set", DEFAULT_ENV_PREFIX
            )
            registry.set_status(
                "s3", f"not configured (no {DEFAULT_ENV_PREFIX}* variable is set)"
            )
        case Misconfigured(error=error):
            logger.error("S3 store not registered: %s", error)
            registry.set_status("s3", f"misconfigured, not registered: {error}")
        case Configured(config=config):
            try:
                module = importlib.import_module("._s3", __package__)
                store_class = module.S3BlobStore
            except (ImportError, AttributeError) as exc:
                logger.error(  # noqa: TRY400 -- one line; the cause is in the message
                    "S3 store not registered: S3 support can't be imported (%s)", exc
                )
                registry.set_status("s3", f"configured but unavailable: {exc}")
                return
            store = store_class(config)
            if not isinstance(store, BlobStore):  # pragma: no cover -- our own class
                msg = f"sriblob._s3.S3BlobStore built {store!r}, not a BlobStore."
                raise TypeError(msg)
            registry.register(store)
            endpoint = config.endpoint or "AWS"
            registry.set_status(
                "s3", f"configured: bucket {config.bucket!r} at {endpoint}"
            )
