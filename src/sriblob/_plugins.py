"""The store plugins sriblob ships, and which backend the default registry prefers.

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
from typing import TYPE_CHECKING, Any, Final, Protocol

from ._config import (
    DEFAULT_ENV_PREFIX,
    POSTGRES_ENV_PREFIX,
    Configured,
    Misconfigured,
    Unconfigured,
    backend_variables,
    closest,
    load_postgres_config_from_env,
    load_s3_config_from_env,
)
from ._quota import check_levels
from ._sizes import parse_size, size_requirement
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Mapping

    from ._registry import BlobStoreRegistry
    from ._store import BlobStore

__all__ = [
    "PRECEDENCE",
    "QUOTA_VARIABLES",
    "ROOT_ORIGIN",
    "StorePlugin",
    "check_spelling",
    "load_cache_settings",
    "load_quota_levels",
    "register_filesystem",
    "register_postgres",
    "register_s3",
]

#: The backend :func:`~sriblob.default_registry` activates, most preferred
#: first, and why.
PRECEDENCE: Final = (
    ("s3", "S3 is configured"),
    ("postgres", "Postgres is configured and S3 is not"),
    ("filesystem", "the default: neither S3 nor Postgres is configured"),
)

#: The quota levels every store of the default registry gets, by keyword.
QUOTA_VARIABLES: Final = (
    ("SRIBLOB_MAX_TOTAL_SIZE", "max_total_size"),
    ("SRIBLOB_WARN_TOTAL_SIZE", "warn_total_size"),
)


def _byte_count(text: str) -> int | None:
    """*text* as a byte count (``300MB``, ``286 MiB``); None if it isn't one."""
    try:
        return parse_size(text)
    except ValueError:
        return None


def _bad_counts(bad: list[str]) -> ConfigurationError:
    msg = f"{' and '.join(bad)} must be {size_requirement()}"
    return ConfigurationError(msg, fields=tuple(bad))


def load_quota_levels(env: Mapping[str, str]) -> dict[str, int]:
    """Read ``SRIBLOB_MAX_TOTAL_SIZE`` and ``SRIBLOB_WARN_TOTAL_SIZE``.

    Each is a byte count, optionally with a unit (``300MB``, ``150 MiB``);
    unset or empty means no level. Returns the keyword options for a store.

    Raises:
        ConfigurationError: A level isn't a byte count, or the warning level
            is above the quota (the message names the variable, not its value).

    .. versionadded:: 0.1.0
    """
    levels: dict[str, int] = {}
    bad: list[str] = []
    for variable, option in QUOTA_VARIABLES:
        text = env.get(variable, "").strip()
        if not text:
            continue
        count = _byte_count(text)
        if count is None:
            bad.append(variable)
        else:
            levels[option] = count
    if bad:
        raise _bad_counts(bad)
    try:
        check_levels(levels.get("max_total_size"), levels.get("warn_total_size"))
    except ValueError:
        msg = "SRIBLOB_WARN_TOTAL_SIZE is above SRIBLOB_MAX_TOTAL_SIZE"
        raise ConfigurationError(
            msg, fields=tuple(variable for variable, _ in QUOTA_VARIABLES)
        ) from None
    return levels


#: The cache's settings: its directory, and the cap of each store's front.
CACHE_DIR: Final = "SRIBLOB_CACHE_DIR"
CACHE_MAX_BYTES: Final = "SRIBLOB_CACHE_MAX_BYTES"
#: The cap when ``SRIBLOB_CACHE_DIR`` is set alone: 1 GB per cached store.
DEFAULT_CACHE_MAX_BYTES: Final = 10**9


def load_cache_settings(env: Mapping[str, str]) -> tuple[str, int] | None:
    """Read ``SRIBLOB_CACHE_DIR`` and ``SRIBLOB_CACHE_MAX_BYTES``.

    Returns None when no cache is asked for, else the directory and the cap
    of each cached store's front (1 GB unless ``SRIBLOB_CACHE_MAX_BYTES``
    says otherwise).

    Raises:
        ConfigurationError: The cap isn't a byte count, or is set without a
            directory (the message names the variable, not its value).

    .. versionadded:: 0.1.0
    """
    directory = env.get(CACHE_DIR, "").strip()
    text = env.get(CACHE_MAX_BYTES, "").strip()
    if not directory:
        if text:
            msg = f"{CACHE_MAX_BYTES} is set but {CACHE_DIR} is not"
            raise ConfigurationError(msg, fields=(CACHE_DIR,))
        return None
    if not text:
        return directory, DEFAULT_CACHE_MAX_BYTES
    count = _byte_count(text)
    if count is None:
        raise _bad_counts([CACHE_MAX_BYTES])
    return directory, count


#: The settings of the default registry that no backend's loader reads.
GLOBAL_VARIABLES: Final = (
    "SRIBLOB_ROOT",
    # sriblob url's base URL (the CLI reads it).
    "SRIBLOB_BASE_URL",
    CACHE_DIR,
    CACHE_MAX_BYTES,
    *(variable for variable, _ in QUOTA_VARIABLES),
)
#: Prefixes whose every name is sriblob's: the backends' loaders refuse
#: unknown names under theirs, and this one is the cache's.
_CACHE_PREFIX: Final = "SRIBLOB_CACHE_"


def check_spelling(env: Mapping[str, str]) -> ConfigurationError | None:
    """An error naming every set variable that looks like a typo of a setting.

    sriblob would ignore such a variable, and with it what it was meant to
    set (a root, a cap, a backend). A name is taken for a typo when it is
    under ``SRIBLOB_CACHE_`` (every name there is sriblob's), or is a known
    setting in another case, or is one edit (two under ``SRIBLOB_``) away
    from one. The S3 and PostgreSQL prefixes are checked by their loaders.
    Other variables (other programs', other plugins') are left alone.
    """
    known = (*GLOBAL_VARIABLES, *backend_variables())
    found: dict[str, str | None] = {}
    for name, value in env.items():
        if not value.strip() or name in known:
            continue
        if name.startswith((DEFAULT_ENV_PREFIX, POSTGRES_ENV_PREFIX)):
            continue
        meant = _meant(name.upper(), known)
        if meant is not None or name.startswith(_CACHE_PREFIX):
            found[name] = meant
    if not found:
        return None
    names = ", ".join(
        name if meant is None else f"{name} (did you mean {meant}?)"
        for name, meant in sorted(found.items())
    )
    msg = (
        f"unknown setting {names}: sriblob reads no such variable, so what it "
        "was meant to set would be ignored. Rename or unset it."
    )
    return ConfigurationError(msg, fields=tuple(sorted(found)))


def _meant(name: str, known: tuple[str, ...]) -> str | None:
    """The setting *name* (upper-cased) is likely a typo of, or None."""
    if name in known:
        return name
    if name.startswith(_CACHE_PREFIX):
        return closest(name, (CACHE_DIR, CACHE_MAX_BYTES), limit=len(name) // 3)
    limit = 2 if name.startswith("SRIBLOB_") else 1
    near = [
        k
        for k in known
        if abs(len(k) - len(name)) <= limit
        and (k[:4] == name[:4] or k[-4:] == name[-4:])
    ]
    return closest(name, near, limit=limit)


def _levels(
    registry: BlobStoreRegistry,
    env: Mapping[str, str],
    logger: logging.Logger,
    name: str,
) -> dict[str, int] | None:
    """The quota levels for plugin *name*'s store; None (recorded) if invalid."""
    try:
        return load_quota_levels(env)
    except ConfigurationError as error:
        logger.error("%s store not registered: %s", name, error)  # noqa: TRY400 -- one line
        registry.set_problem(name, error)
        registry.set_status(name, f"misconfigured, not registered: {error}")
        return None


#: The settings key :func:`~sriblob.default_registry` uses to say where an
#: explicit root came from (not an environment variable anyone sets).
ROOT_ORIGIN: Final = "sriblob:root-origin"


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

    levels = _levels(registry, env, logger, "filesystem")
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
    logger.debug("Registered the filesystem store at %s", root)


def register_s3(
    registry: BlobStoreRegistry, env: Mapping[str, str], logger: logging.Logger
) -> None:
    """Register the S3 store when the environment configures it completely.

    Reads the ``CHECKSTACK_SCRIPT_PACKAGES_S3_*`` variables with
    :func:`~sriblob.load_s3_config_from_env`.
    """

    def build(config: Any) -> BlobStore:
        module = importlib.import_module("._s3", __package__)
        store: BlobStore = module.S3BlobStore(config, **load_quota_levels(env))
        return store

    def describe(config: Any) -> str:
        return f"configured: bucket {config.bucket!r} at {config.endpoint or 'AWS'}"

    _register(
        registry,
        logger,
        name="s3",
        label="S3",
        result=load_s3_config_from_env(env),
        variables=f"{DEFAULT_ENV_PREFIX}*",
        build=build,
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

    def build(config: Any) -> BlobStore:
        module = importlib.import_module("._postgres", __package__)
        levels = load_quota_levels(env)
        store: BlobStore = module.PostgresBlobStore.from_config(config, **levels)
        return store

    _register(
        registry,
        logger,
        name="postgres",
        label="PostgreSQL",
        result=load_postgres_config_from_env(env),
        variables=f"{POSTGRES_ENV_PREFIX}DSN",
        build=build,
        describe=lambda _: f"configured from {POSTGRES_ENV_PREFIX}DSN",
    )


def _register(
    registry: BlobStoreRegistry,
    logger: logging.Logger,
    *,
    name: str,
    label: str,
    result: Unconfigured | Configured[Any] | Misconfigured,
    variables: str,
    build: Callable[[Any], BlobStore],
    describe: Callable[[Any], str],
) -> None:
    """Register a configured backend, or record why it isn't registered."""
    match result:
        case Unconfigured():
            logger.debug(
                "%s store not registered: no %s variable is set", label, variables
            )
            registry.set_status(
                name, f"not configured (no {variables} variable is set)"
            )
        case Misconfigured(error=error):
            logger.error("%s store not registered: %s", label, error)
            registry.set_problem(name, error)
            registry.set_status(name, f"misconfigured, not registered: {error}")
        case Configured(config=config):
            try:
                store = build(config)
            except ConfigurationError as exc:
                # The quota levels every store shares (SRIBLOB_*_TOTAL_SIZE).
                logger.error("%s store not registered: %s", label, exc)  # noqa: TRY400 -- one line
                registry.set_problem(name, exc)
                registry.set_status(name, f"misconfigured, not registered: {exc}")
                return
            except ImportError as exc:
                reason = str(exc) or type(exc).__name__
                msg = (
                    f"{label} storage is configured ({variables}) but can't be "
                    f"used: {reason}"
                )
                logger.error(  # noqa: TRY400 -- one line; the cause is in the message
                    "%s store not registered: %s", label, msg
                )
                registry.set_problem(name, ConfigurationError(msg))
                registry.set_status(name, f"configured but unavailable: {reason}")
                return
            registry.register(store)
            registry.set_status(name, describe(config))
