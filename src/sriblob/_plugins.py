"""The store plugins sriblob ships.

A plugin is a :class:`StorePlugin`, published in the ``sriblob.stores``
entry-point group: a callable ``(registry, env, logger)`` that registers its
store only when the environment configures it completely, and says what it
found with :meth:`~sriblob.BlobStoreRegistry.set_status` (never a secret).
A plugin that finds its settings present but unusable reports it with
:meth:`~sriblob.BlobStoreRegistry.set_problem`; the default registry then
refuses writes instead of sending them to another backend.

Every backend is configured the same way: an attrs config, and a loader that
answers :class:`~sriblob.Unconfigured`, :class:`~sriblob.Configured` or
:class:`~sriblob.Misconfigured`. The heavy backends (aioboto3, asyncpg) are
imported only when their configuration is complete.
"""

from __future__ import annotations

import importlib
import operator
from typing import TYPE_CHECKING, Any, Protocol

from . import _telemetry as telemetry
from ._config import (
    DEFAULT_ENV_PREFIX,
    POSTGRES_ENV_PREFIX,
    Configured,
    Misconfigured,
    Unconfigured,
    load_postgres_config_from_env,
    load_s3_config_from_env,
)
from ._environment import (
    ROOT_ORIGIN,
    levels_or_problem,
    load_quota_levels,
    not_registered,
)
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from ._registry import BlobStoreRegistry
    from ._store import BlobStore

__all__ = ["StorePlugin", "register_filesystem", "register_postgres", "register_s3"]


class StorePlugin(Protocol):
    """What the ``sriblob.stores`` entry-point group publishes.

    Called once per :func:`~sriblob.default_registry` with the registry, the
    settings (the environment, or the mapping the host passed) and the
    ``sriblob`` logger. It registers a store only when its settings are
    complete and valid, records one line with
    :meth:`~sriblob.BlobStoreRegistry.set_status`, and reports present but
    unusable settings with :meth:`~sriblob.BlobStoreRegistry.set_problem`.
    It must never log or record a secret.

    .. versionadded:: 0.1.0
    """

    def __call__(
        self,
        registry: BlobStoreRegistry,
        env: Mapping[str, str],
        logger: logging.Logger,
        /,
    ) -> None:
        """Register the plugin's store if *env* configures it."""


def register_filesystem(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the filesystem store, always.

    Its root is ``SRIBLOB_ROOT``, or the user data directory
    (``platformdirs.user_data_dir("sriblob")``) when that is unset or empty,
    unless the caller of :func:`~sriblob.default_registry` gave one.
    """
    from ._filesystem import FilesystemBlobStore  # noqa: PLC0415 -- lazy

    levels = levels_or_problem(registry, env, logger, "filesystem")
    if levels is None:
        return
    root = env.get("SRIBLOB_ROOT", "").strip()
    origin = env.get(ROOT_ORIGIN) or "SRIBLOB_ROOT"
    if not root:
        import platformdirs  # noqa: PLC0415 -- lazy

        root = platformdirs.user_data_dir("sriblob")
        origin = "the user data directory; set SRIBLOB_ROOT to change it"
    registry.register(
        FilesystemBlobStore(
            root,
            max_total_size=levels.get("max_total_size"),
            warn_total_size=levels.get("warn_total_size"),
        )
    )
    registry.set_status("filesystem", f"root {root} ({origin})")
    logger.debug(
        "Registered the filesystem store at %s",
        root,
        extra=telemetry.fields("filesystem", "configure"),
    )


def register_s3(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the S3 store when the environment configures it completely.

    Reads the ``CHECKSTACK_SCRIPT_PACKAGES_S3_*`` variables with
    :func:`~sriblob.load_s3_config_from_env`.
    """

    def describe(config: Any) -> str:
        return f"configured: bucket {config.bucket!r} at {config.endpoint or 'AWS'}"

    _register(
        registry,
        env,
        logger,
        name="s3",
        label="S3",
        result=load_s3_config_from_env(env),
        variables=f"{DEFAULT_ENV_PREFIX}*",
        module="._s3",
        factory="S3BlobStore",
        describe=describe,
    )


def register_postgres(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the PostgreSQL store when ``SRIBLOB_POSTGRES_DSN`` configures it.

    Reads the ``SRIBLOB_POSTGRES_*`` variables with
    :func:`~sriblob.load_postgres_config_from_env`; needs the ``postgres``
    extra (asyncpg).
    """
    _register(
        registry,
        env,
        logger,
        name="postgres",
        label="PostgreSQL",
        result=load_postgres_config_from_env(env),
        variables=f"{POSTGRES_ENV_PREFIX}DSN",
        module="._postgres",
        factory="PostgresBlobStore.from_config",
        describe=lambda _: f"configured from {POSTGRES_ENV_PREFIX}DSN",
    )


def _register(
    registry: BlobStoreRegistry,
    env: Mapping[str, str],
    logger: logging.Logger,
    *,
    name: str,
    label: str,
    result: Unconfigured | Configured[Any] | Misconfigured,
    variables: str,
    module: str,
    factory: str,
    describe: Callable[[Any], str],
) -> None:
    """Register a configured backend, or record why it isn't registered.

    *factory*, an attribute of *module* (imported only now: it is heavy),
    builds the store from the config and the quota levels.
    """
    match result:
        case Unconfigured():
            logger.debug(
                "%s store not registered: no %s variable is set",
                label,
                variables,
                extra=telemetry.fields(name, "configure"),
            )
            registry.set_status(
                name, f"not configured (no {variables} variable is set)"
            )
        case Misconfigured(error=error):
            not_registered(registry, logger, error, name=name, label=label)
        case Configured(config=config):
            try:
                build = operator.attrgetter(factory)(
                    importlib.import_module(module, __package__)
                )
                # The quota levels every store shares (SRIBLOB_*_TOTAL_SIZE).
                store: BlobStore = build(config, **load_quota_levels(env))
            except ConfigurationError as exc:
                not_registered(registry, logger, exc, name=name, label=label)
                return
            except ImportError as exc:
                reason = str(exc) or type(exc).__name__
                msg = (
                    f"{label} storage is configured ({variables}) but can't be "
                    f"used: {reason}"
                )
                not_registered(
                    registry,
                    logger,
                    ConfigurationError(msg),
                    name=name,
                    label=label,
                    status=f"configured but unavailable: {reason}",
                )
                return
            registry.register(store)
            registry.set_status(name, describe(config))
