"""PostgreSQL's and the network's errors as sriblob's, by table.

One translator (:class:`Errors`) maps asyncpg's exceptions: refused
credentials or privileges are :class:`~sriblob.AccessDenied`, a connection
that can't be made or went away is :class:`~sriblob.StoreUnavailable`,
anything else a :class:`~sriblob.StoreError`; no message holds a password.
Predicates (:func:`connection_lost`, :func:`closed`) answer where code must
branch.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any, Final

import attrs

from sriblob.exceptions import AccessDenied, StoreError, StoreUnavailable

if TYPE_CHECKING:
    from collections.abc import Iterator

    from sriblob._integrity import Integrity

__all__ = [
    "INSTALL_HINT",
    "Errors",
    "LostRace",
    "Passthrough",
    "closed",
    "connection_lost",
    "import_asyncpg",
]

INSTALL_HINT: Final = (
    "PostgresBlobStore needs asyncpg; install it with "
    "`pip install 'sriblob[postgres]'`."
)


def import_asyncpg() -> None:
    """Raise an ImportError naming the install command when asyncpg is missing."""
    try:
        import asyncpg  # noqa: F401, PLC0415 -- an optional dependency
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


class LostRace(Exception):
    """Another writer committed the same blob first."""


class Passthrough(Exception):
    """Carries an exception that isn't the database's past the translator."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error


@attrs.frozen
class Errors:
    """Builds one store's errors: its id, and where its server is (no password).

    Attributes:
        backend: The store's id.
        endpoint: The server as ``describe_dsn`` shows it, or None (a pool).
    """

    backend: str
    endpoint: str | None

    @contextlib.contextmanager
    def translate(self, action: str) -> Iterator[None]:
        """Turn asyncpg's and the network's errors into sriblob's."""
        import asyncpg  # noqa: PLC0415 -- optional; present once constructed

        try:
            yield
        except (
            asyncpg.InsufficientPrivilegeError,
            asyncpg.InvalidAuthorizationSpecificationError,
        ) as exc:
            msg = f"PostgreSQL refused to {action}: {exc}"
            raise AccessDenied(
                msg, backend=self.backend, endpoint=self.endpoint
            ) from exc
        except (
            OSError,
            TimeoutError,
            asyncpg.PostgresConnectionError,
            asyncpg.CannotConnectNowError,
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.TooManyConnectionsError,
            asyncpg.AdminShutdownError,
        ) as exc:
            raise self.unavailable(action, exc) from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if connection_lost(exc):
                raise self.unavailable(action, exc) from exc
            msg = f"PostgreSQL failed to {action}: {type(exc).__name__}: {exc}"
            raise StoreError(msg, backend=self.backend, endpoint=self.endpoint) from exc

    def unavailable(self, action: str, exc: BaseException) -> StoreUnavailable:
        """The error for a server that can't be reached to *action*."""
        msg = f"PostgreSQL is unavailable to {action}: {type(exc).__name__}: {exc}"
        return StoreUnavailable(msg, backend=self.backend, endpoint=self.endpoint)

    def error(self, kind: type[StoreError], message: str) -> StoreError:
        """*kind* with *message*, naming the store and its server."""
        return kind(message, backend=self.backend, endpoint=self.endpoint)

    def damaged(self, integrity: Integrity, what: str) -> StoreError:
        """The error for a stored blob whose rows don't hold it whole."""
        msg = (
            f"PostgreSQL holds a damaged blob {integrity}: {what}. Put the blob "
            "again to repair it."
        )
        return StoreError(msg, backend=self.backend, endpoint=self.endpoint)


def closed(conn: Any) -> bool:
    """Whether a pooled connection is gone (closed, or taken back by the pool)."""
    import asyncpg  # noqa: PLC0415 -- optional; present once a store is open

    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


def connection_lost(exc: BaseException) -> bool:
    """Whether *exc* (an asyncpg error) comes from a connection that went away.

    When the server ends a connection mid-transaction (``pg_terminate_backend``,
    a restart), asyncpg raises ``ConnectionDoesNotExistError`` and then, from
    the transaction's exit, an ``InterfaceError`` whose context is that error.
    """
    import asyncpg  # noqa: PLC0415 -- optional; present once constructed

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(
            current,
            OSError
            | asyncpg.ConnectionDoesNotExistError
            | asyncpg.PostgresConnectionError
            | asyncpg.AdminShutdownError,
        ):
            return True
        if isinstance(current, asyncpg.InterfaceError) and "closed" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False
