"""The environment, turned into a registry: one module from settings to stores.

:func:`default_registry` reads the settings (the environment, or a mapping
the host passes): it calls every store plugin (:mod:`._plugins`, and any
installed in the ``sriblob.stores`` entry-point group), reads the quota
levels every store shares and the cache's settings, checks the spelling of
every name that looks like a setting, and picks the active store by
precedence. The settings classes themselves stay pure, in :mod:`._config`.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import TYPE_CHECKING, Final

from . import _telemetry as telemetry
from ._config import (
    DEFAULT_ENV_PREFIX,
    POSTGRES_ENV_PREFIX,
    backend_variables,
    closest,
)
from ._quota import check_levels
from ._registry import ENTRY_POINT_GROUP, BlobStoreRegistry
from ._sizes import format_size, parse_size, size_requirement
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ._plugins import StorePlugin

__all__ = [
    "CACHE_DIR",
    "PRECEDENCE",
    "QUOTA_VARIABLES",
    "ROOT_ORIGIN",
    "check_spelling",
    "default_registry",
    "levels_or_problem",
    "load_cache_settings",
    "load_quota_levels",
    "not_registered",
]

logger = logging.getLogger("sriblob")

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


def levels_or_problem(
    registry: BlobStoreRegistry,
    env: Mapping[str, str],
    logger: logging.Logger,
    name: str,
) -> dict[str, int] | None:
    """The quota levels for plugin *name*'s store; None (recorded) if invalid."""
    try:
        return load_quota_levels(env)
    except ConfigurationError as error:
        not_registered(registry, logger, error, name=name, label=name)
        return None


def not_registered(
    registry: BlobStoreRegistry,
    logger: logging.Logger,
    error: ConfigurationError,
    *,
    name: str,
    label: str,
    status: str | None = None,
) -> None:
    """Log and record why plugin *name*'s store (*label* in the log) isn't there.

    The problem refuses writes (see :func:`default_registry`); the status
    says *status*, by default that the settings are wrong.
    """
    logger.error(
        "%s store not registered: %s",
        label,
        error,
        extra=telemetry.fields(name, "configure"),
    )
    registry.set_problem(name, error)
    registry.set_status(name, status or f"misconfigured, not registered: {error}")


#: The settings key :func:`~sriblob.default_registry` uses to say where an
#: explicit root came from (not an environment variable anyone sets).
ROOT_ORIGIN: Final = "sriblob:root-origin"


def default_registry(
    env: Mapping[str, str] | None = None,
    *,
    root: str | os.PathLike[str] | None = None,
    ignore_misconfigured: bool = False,
) -> BlobStoreRegistry:
    """Build a registry from every installed store plugin.

    Each :class:`~sriblob.StorePlugin` in the ``sriblob.stores`` entry-point
    group is called with the registry, *env* and the ``sriblob`` logger, and
    registers its store only if it is usable. A plugin that fails is logged
    and skipped. Then the active store is chosen: ``"s3"`` if registered,
    else ``"postgres"``, else ``"filesystem"`` (else the first registered).

    **A local cache.** With ``SRIBLOB_CACHE_DIR`` set, every registered
    store that isn't local (S3, PostgreSQL) is wrapped in a
    :class:`~sriblob.CachedBlobStore` under the same id, its front in
    ``SRIBLOB_CACHE_DIR/<id>`` holding at most ``SRIBLOB_CACHE_MAX_BYTES``
    (1 GB by default).

    **A misconfigured backend refuses writes.** When a plugin finds its
    settings present but unusable (a partial or invalid S3 configuration, a
    bad DSN, a missing optional dependency), no store is active: every write
    through :attr:`~BlobStoreRegistry.active` raises
    :class:`~sriblob.ConfigurationError` naming the backend and its fields,
    so a typo in a deployment's environment never sends blobs to another
    store. So does a variable whose name looks like a typo of a setting's
    (``SRIBLOB_ROT``, ``CHECKSTACK_SCRIPT_PACKAGE_S3_BUCKET``; see the
    configuration guide), recorded under ``"environment"``. Reads with
    fallback go on over the stores that are registered, and a warning says
    so.

    Args:
        env: The environment to read settings from; :data:`os.environ` by
            default.
        root: The filesystem store's root directory, overriding
            ``SRIBLOB_ROOT``.
        ignore_misconfigured: Activate by precedence anyway when a backend
            is misconfigured (the problem is still logged as an error and
            kept in :attr:`~BlobStoreRegistry.problems`): writes then go to
            the best store that is configured.

    Returns:
        The registry, not entered yet: use ``async with`` on it.

    .. versionadded:: 0.1.0
    """
    settings = dict(os.environ if env is None else env)
    if root is not None:
        settings["SRIBLOB_ROOT"] = os.fspath(root)
        settings[ROOT_ORIGIN] = "given by the caller: sriblob --root, or root="
    registry = BlobStoreRegistry()
    points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    for point in sorted(points, key=lambda p: (p.name, p.value)):
        try:
            plugin: StorePlugin = point.load()
            plugin(registry, settings, logger)
        except Exception as exc:
            logger.exception(
                "Store plugin %r (%s) failed",
                point.name,
                point.value,
                extra=telemetry.fields(point.name, "configure"),
            )
            registry.set_status(point.name, f"plugin failed: {type(exc).__name__}")
    _add_caches(registry, settings)
    _check_spelling(registry, settings)
    if registry.problems and not ignore_misconfigured:
        registry.refuse_writes()
        try:
            _ = registry.active
        except ConfigurationError as refused:
            logger.warning(
                "%s; reads fall back to: %s",
                refused,
                ", ".join(registry.ids()) or "none",
                extra=telemetry.fields(None, "configure"),
            )
        return registry
    for id, reason in PRECEDENCE:
        if registry.has(id):
            registry.activate(id, reason=reason)
            break
    return registry


def _check_spelling(registry: BlobStoreRegistry, settings: Mapping[str, str]) -> None:
    """Record a variable that looks like a typo of a setting as a problem."""
    error = check_spelling(settings)
    if error is None:
        return
    logger.error("environment: %s", error, extra=telemetry.fields(None, "configure"))
    registry.set_problem("environment", error)
    registry.set_status("environment", f"misconfigured: {error}")


def _add_caches(registry: BlobStoreRegistry, settings: Mapping[str, str]) -> None:
    """Wrap the remote stores in caches when ``SRIBLOB_CACHE_DIR`` asks for it."""
    try:
        cache = load_cache_settings(settings)
    except ConfigurationError as error:
        logger.error(  # noqa: TRY400 -- one line
            "cache not set up: %s", error, extra=telemetry.fields("cache", "configure")
        )
        registry.set_problem("cache", error)
        registry.set_status("cache", f"misconfigured: {error}")
        return
    if cache is None:
        registry.set_status("cache", "not configured (SRIBLOB_CACHE_DIR is not set)")
        return
    from ._cache import CachedBlobStore  # noqa: PLC0415 -- import cost
    from ._filesystem import FilesystemBlobStore  # noqa: PLC0415 -- import cost
    from ._memory import MemoryBlobStore  # noqa: PLC0415 -- import cost

    directory, max_bytes = cache
    wrapped = []
    for store in registry.stores():
        id = store.id
        if isinstance(store, FilesystemBlobStore | MemoryBlobStore):
            continue  # local already
        front = FilesystemBlobStore(os.path.join(directory, id), id=f"{id}-cache")  # noqa: PTH118
        registry.replace(CachedBlobStore(front, store, max_bytes=max_bytes))
        wrapped.append(id)
    where = ", ".join(wrapped) or "nothing (every store is local)"
    registry.set_status(
        "cache",
        f"{directory}, at most {format_size(max_bytes)} per store, in front of {where}",
    )
