"""A registry of named stores, one of them active, with reads that fall back."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Final, Self, TypeVar

from . import _telemetry as telemetry
from ._integrity import candidates
from .exceptions import BlobNotFound, ConfigurationError, StoreClosed, UnknownBackend

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
    from types import TracebackType

    from ._backend import BlobInfo
    from ._integrity import Integrity
    from ._reader import BlobReader
    from ._store import BlobStore

_T = TypeVar("_T")

__all__ = ["ENTRY_POINT_GROUP", "BlobStoreRegistry"]

logger = logging.getLogger("sriblob")

#: The entry-point group store plugins are published under.
ENTRY_POINT_GROUP: Final = "sriblob.stores"


class BlobStoreRegistry:
    """Stores by id, one of them active, with reads that fall back.

    Register stores, pick the active one (the first registered, unless
    :meth:`activate` says otherwise), and read blobs from whichever store
    holds them with :meth:`read_with_fallback`, the way a migration from one
    backend to another needs.

    The registry is an async context manager: entering it enters every
    registered store (S3 needs that), and leaving it, like :meth:`aclose`,
    closes every store. Register stores before entering the registry; a store
    registered while the registry is open must already be usable (entered
    yourself, or one that needs no entering, like the filesystem store), and
    is closed with the others.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self._stores: dict[str, BlobStore] = {}
        self._active: str | None = None
        self._reason = ""
        self._statuses: dict[str, str] = {}
        self._problems: dict[str, ConfigurationError] = {}
        self._refused: str | None = None
        self._open = False
        self._closed = False

    def __repr__(self) -> str:
        return f"<BlobStoreRegistry active={self._active!r} ids={self.ids()!r}>"

    # -- registration -----------------------------------------------------

    def register(self, store: BlobStore, /) -> None:
        """Add *store* under its id.

        The first store registered becomes the active one.

        Raises:
            ValueError: A store with the same id is already registered, or
                the registry is open and *store* still needs entering.
            StoreClosed: The registry was closed.
        """
        self._check_not_closed()
        if store.id in self._stores:
            msg = (
                f"A store with id {store.id!r} is already registered "
                f"({self._stores[store.id]!r}); give each store its own id."
            )
            raise ValueError(msg)
        self._check_enterable(store)
        self._stores[store.id] = store
        if self._active is None:
            self._active = store.id
            self._reason = "the first store registered"

    def replace(self, store: BlobStore, /) -> BlobStore:
        """Put *store* in place of the store registered under its id; return that one.

        For a host (or :func:`default_registry`) that wraps a registered
        store (in a :class:`~sriblob.CachedBlobStore`, say): the new store
        takes the old one's place in the fallback order, and stays active
        if it was. The old store is not closed (a wrapper usually owns it).

        Raises:
            UnknownBackend: No store is registered under ``store.id``.
            ValueError: The registry is open and *store* still needs entering.

        .. versionadded:: 0.1.0
        """
        self._check_not_closed()
        old = self.get(store.id)
        self._check_enterable(store)
        self._stores[store.id] = store
        return old

    def _check_enterable(self, store: BlobStore) -> None:
        if self._open and not store.is_open:
            msg = (
                f"The registry is already open, so it won't enter {store!r}: "
                "use `async with` on the store before registering it, or "
                "register it before entering the registry."
            )
            raise ValueError(msg)

    def ids(self) -> tuple[str, ...]:
        """Return the registered ids, sorted."""
        return tuple(sorted(self._stores))

    def has(self, id: str, /) -> bool:
        """Return whether a store is registered under *id*."""
        return id in self._stores

    def get(self, id: str, /) -> BlobStore:
        """Return the store registered under *id*.

        Raises:
            UnknownBackend: No store has that id; the message lists the ids
                there are.
        """
        try:
            return self._stores[id]
        except KeyError:
            known = self.ids()
            listed = ", ".join(repr(i) for i in known) or "none"
            msg = f"No store {id!r} is registered (registered: {listed})."
            raise UnknownBackend(msg, id=id, known=known) from None

    def stores(self) -> tuple[BlobStore, ...]:
        """Return the stores in registration order."""
        return tuple(self._stores.values())

    # -- the active store ---------------------------------------------------

    @property
    def active(self) -> BlobStore:
        """The active store: where new blobs go.

        Raises:
            ConfigurationError: Writes are refused because a backend is
                misconfigured (see :meth:`refuse_writes`); the message names
                the backend and its fields, never a value.
            UnknownBackend: No store is registered.
        """
        if self._refused is not None:
            fields = tuple(f for error in self._problems.values() for f in error.fields)
            raise ConfigurationError(self._refused, fields=fields)
        if self._active is None:
            msg = "No store is registered, so none is active."
            raise UnknownBackend(msg, id="", known=())
        return self._stores[self._active]

    @property
    def writes_refused(self) -> bool:
        """Whether :attr:`active` raises because a backend is misconfigured."""
        return self._refused is not None

    def refuse_writes(self) -> None:
        """Have no active store, because a backend is misconfigured.

        :attr:`active` then raises :class:`~sriblob.ConfigurationError`
        naming the misconfigured backends; reads with fallback go on over
        the stores that are registered, in registration order.
        :func:`default_registry` calls this when a plugin reported a problem.
        """
        names = ", ".join(sorted(self._problems)) or "a backend"
        reasons = "; ".join(
            f"{name}: {error}" for name, error in sorted(self._problems.items())
        )
        self._refused = (
            f"Writes are refused because {names} is misconfigured, so they "
            f"don't silently go to another store ({reasons})"
        )
        self._active = None
        self._reason = "writes are refused: a backend is misconfigured"

    @property
    def active_reason(self) -> str:
        """Why the active store is the active one, in a few words."""
        return self._reason

    def activate(self, id: str, /, *, reason: str = "chosen explicitly") -> None:
        """Make the store registered under *id* the active one.

        Args:
            id: The store's id.
            reason: Why, as :meth:`describe` shows it.

        Raises:
            UnknownBackend: No store has that id.
        """
        self.get(id)
        self._active = id
        self._reason = reason
        self._refused = None

    # -- status ----------------------------------------------------------------

    def set_status(self, name: str, status: str, /) -> None:
        """Record what a plugin found, for :meth:`describe`; never a secret.

        Args:
            name: The plugin's name (``"s3"``).
            status: One line, such as ``"not configured"``.
        """
        self._statuses[name] = status

    @property
    def statuses(self) -> Mapping[str, str]:
        """What each plugin recorded with :meth:`set_status`, by name."""
        return dict(self._statuses)

    def set_problem(self, name: str, error: ConfigurationError, /) -> None:
        """Record that plugin *name* found its settings present but unusable.

        Args:
            name: The plugin's name (``"s3"``).
            error: What is wrong; its message and fields never hold a value.
        """
        self._problems[name] = error

    @property
    def problems(self) -> Mapping[str, ConfigurationError]:
        """What each plugin reported with :meth:`set_problem`, by name."""
        return dict(self._problems)

    def describe(self) -> list[str]:
        """Return lines saying which store is active and why, and what is there.

        This is what ``sriblob info`` prints.
        """
        return _describe(
            self._stores,
            active=self._active,
            reason=self._reason,
            refused=self._refused,
            problems=self._problems,
            statuses=self._statuses,
        )

    # -- reading -----------------------------------------------------------

    def fallback_order(self, *, active: str | None = None) -> tuple[BlobStore, ...]:
        """Return the stores in the order :meth:`read_with_fallback` asks them.

        Args:
            active: The id to ask first; the active store's by default.

        Raises:
            UnknownBackend: *active* is not a registered id.
        """
        first = self.get(active) if active is not None else None
        if first is None and self._active is not None:
            first = self._stores[self._active]
        rest = [store for store in self._stores.values() if store is not first]
        return tuple(rest if first is None else [first, *rest])

    async def first_answer(
        self,
        integrity: str | Integrity,
        ask: Callable[[BlobStore], Awaitable[_T | None]],
        /,
        *,
        active: str | None = None,
        operation: str = "first_answer",
    ) -> tuple[_T, BlobStore] | None:
        """Ask the stores in fallback order; return the first answer and its store.

        The primitive every read with fallback is made of: *ask* is called
        with each store of :meth:`fallback_order` in turn, and the first
        answer that isn't None wins. A store whose *ask* raises is logged on
        the ``sriblob`` logger and skipped, so one broken backend never hides
        a blob another one holds.

        Args:
            integrity: The blob's integrity, for the log lines.
            ask: What to ask each store; None means "not here".
            active: The id to ask first instead of the active store's.
            operation: The name the log lines give the call.

        Returns:
            The first answer and the store that gave it, or None when every
            store answered None.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            UnknownBackend: *active* is not a registered id.
            StoreClosed: The registry was closed.
            Exception: No store answered and at least one failed: the first
                failure is raised again.
        """
        wanted = candidates(integrity)[0]  # validates; names the blob in logs
        self._check_not_closed()
        stores = self.fallback_order(active=active)
        with telemetry.span(operation, integrity=str(wanted)) as span:
            found = await _ask_in_turn(stores, ask, operation, wanted, self._active)
            if found is not None and span is not None:
                span.set_attribute("sriblob.served_by", found[1].id)
            return found

    async def read_with_fallback(
        self, integrity: str | Integrity, /, *, active: str | None = None
    ) -> tuple[bytes, str] | None:
        """Read a blob from the first store that has it.

        The active store is asked first, then the others in registration
        order. A store that fails (unreachable, corrupted bytes, ...) is
        logged on the ``sriblob`` logger and skipped, so one broken backend
        never hides a blob another one holds.

        Args:
            integrity: The blob's integrity.
            active: The id to ask first instead of the active store's.

        Returns:
            The verified bytes and the id of the store that served them, or
            None when every store answered that it doesn't hold the blob.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            UnknownBackend: *active* is not a registered id.
            StoreClosed: The registry was closed.
            Exception: No store served the blob and at least one failed: the
                first failure is raised again.
        """
        return await self._answer_and_id(
            integrity,
            lambda store: store.get(integrity),
            active=active,
            operation="read_with_fallback",
        )

    async def has_with_fallback(
        self, integrity: str | Integrity, /, *, active: str | None = None
    ) -> str | None:
        """Return the id of the first store that holds the blob, or None.

        Asks as :meth:`read_with_fallback` does, without reading the blob.

        Raises:
            Exception: As :meth:`first_answer`.
        """

        async def holds(store: BlobStore) -> bool | None:
            return await store.has(integrity) or None

        found = await self._answer_and_id(
            integrity, holds, active=active, operation="has_with_fallback"
        )
        return None if found is None else found[1]

    async def stat_with_fallback(
        self, integrity: str | Integrity, /, *, active: str | None = None
    ) -> tuple[BlobInfo, str] | None:
        """Return the blob's :class:`BlobInfo` from the first store that has it.

        Returns:
            The info and the id of the store that gave it, or None.

        Raises:
            Exception: As :meth:`first_answer`.
        """
        return await self._answer_and_id(
            integrity,
            lambda store: store.stat(integrity),
            active=active,
            operation="stat_with_fallback",
        )

    async def _answer_and_id(
        self,
        integrity: str | Integrity,
        ask: Callable[[BlobStore], Awaitable[_T | None]],
        /,
        *,
        active: str | None,
        operation: str,
    ) -> tuple[_T, str] | None:
        """:meth:`first_answer`, naming the store that answered by its id."""
        found = await self.first_answer(
            integrity, ask, active=active, operation=operation
        )
        return None if found is None else (found[0], found[1].id)

    def open_with_fallback(
        self, integrity: str | Integrity, /, *, active: str | None = None
    ) -> contextlib.AbstractAsyncContextManager[BlobReader]:
        """Stream a blob from the first store that has it.

        The streaming form of :meth:`read_with_fallback`: an async context
        manager yielding the :class:`BlobReader` of the first store, in the
        same order, whose :meth:`BlobStore.open` succeeds; its ``store_id``
        names that store. Memory stays bounded whatever the blob's size::

            async with registry.open_with_fallback(integrity) as reader:
                async for chunk in reader:
                    ...  # don't publish anything before the loop ends
                served_by = reader.store_id

        A store that fails to open the blob is logged and skipped, as in
        :meth:`read_with_fallback`. Once bytes have streamed there is no going
        back: corrupted bytes raise :class:`~sriblob.IntegrityMismatch` while
        iterating, as :meth:`BlobStore.open` does, instead of falling through
        to another store. To fall through on corruption too, stage the blob
        (``sriblob get`` does) or use :meth:`read_with_fallback`.

        Args:
            integrity: The blob's integrity.
            active: The id to ask first instead of the active store's.

        Raises:
            InvalidIntegrity: *integrity* is malformed (raised by this call).
            UnknownBackend: *active* is not a registered id (raised by this
                call).
            StoreClosed: The registry was closed (raised by this call).
            BlobNotFound: Every store answered that it doesn't hold the blob
                (raised on entry; its ``backend`` lists the ids asked).
            Exception: No store opened the blob and at least one failed: the
                first failure is raised again (on entry).
            IntegrityMismatch: The serving store's bytes are corrupted
                (raised while iterating).
        """
        wanted = candidates(integrity)[0]
        self._check_not_closed()
        stores = self.fallback_order(active=active)
        return _open_first(
            self, integrity, wanted, active, tuple(store.id for store in stores)
        )

    # -- lifecycle ---------------------------------------------------------

    def _check_not_closed(self) -> None:
        if self._closed:
            msg = "The registry is closed; build a new one."
            raise StoreClosed(msg)

    async def __aenter__(self) -> Self:
        self._check_not_closed()
        entered: list[BlobStore] = []
        try:
            for store in self._stores.values():
                await store.__aenter__()
                entered.append(store)
        except BaseException:
            for store in reversed(entered):
                await store.aclose()
            raise
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every store, even if one fails; calling it again does nothing.

        Raises:
            Exception: The first error a store's ``aclose()`` raised, after
                every store was closed.
        """
        if self._closed:
            return
        self._closed = True
        self._open = False
        await _close_all(reversed(self._stores.values()))


def _describe(
    stores: Mapping[str, BlobStore],
    *,
    active: str | None,
    reason: str,
    refused: str | None,
    problems: Mapping[str, ConfigurationError],
    statuses: Mapping[str, str],
) -> list[str]:
    """The lines of :meth:`BlobStoreRegistry.describe`."""
    if refused is not None:
        readers = ", ".join(stores) or "none"
        names = ", ".join(sorted(problems)) or "a backend"
        lines = [
            # What is wrong is on the misconfigured backend's own line.
            (
                f"active: none: Writes are refused because {names} is "
                f"misconfigured (see the {names} line below)"
            ),
            f"reads fall back to: {readers}",
        ]
    elif active is None:
        lines = ["active: none (no store is registered)"]
    else:
        lines = [f"active: {active} ({reason})"]
    lines += [f"store {store.id}: {store!r}" for store in stores.values()]
    lines += [f"{name}: {text}" for name, text in sorted(statuses.items())]
    return lines


@contextlib.asynccontextmanager
async def _open_first(
    registry: BlobStoreRegistry,
    integrity: str | Integrity,
    wanted: Integrity,
    active: str | None,
    ids: tuple[str, ...],
) -> AsyncIterator[BlobReader]:
    """The reader of the first store that opens the blob (open_with_fallback)."""
    async with contextlib.AsyncExitStack() as stack:

        async def enter(store: BlobStore) -> BlobReader | None:
            try:
                return await stack.enter_async_context(store.open(integrity))
            except BlobNotFound:
                return None

        found = await registry.first_answer(
            wanted, enter, active=active, operation="open_with_fallback"
        )
        if found is None:
            listed = ", ".join(ids)
            msg = f"No blob {wanted} in any store ({listed or 'none registered'})."
            raise BlobNotFound(msg, integrity=str(wanted), backend=listed)
        yield found[0]


async def _ask_in_turn(
    stores: tuple[BlobStore, ...],
    ask: Callable[[BlobStore], Awaitable[_T | None]],
    operation: str,
    wanted: Integrity,
    active: str | None,
) -> tuple[_T, BlobStore] | None:
    """The first answer of the stores, in turn; a failing store falls through."""
    failures: list[Exception] = []
    for index, store in enumerate(stores):
        try:
            answer = await ask(store)
        except Exception as exc:  # noqa: BLE001 -- any failure falls through
            _skipped(operation, store, wanted, exc)
            failures.append(exc)
            continue
        if answer is not None:
            _served(operation, store, wanted, active)
            if index:
                telemetry.note_fallback(operation, store.id)
            return answer, store
    if failures:
        raise failures[0]
    return None


def _skipped(
    operation: str, store: BlobStore, wanted: Integrity, exc: Exception
) -> None:
    logger.warning(
        "%s backend=%s integrity=%s failed: %s: %s",
        operation,
        store.id,
        wanted,
        type(exc).__name__,
        exc,
        extra=telemetry.fields(store.id, operation, wanted),
    )


def _served(
    operation: str, store: BlobStore, wanted: Integrity, active: str | None
) -> None:
    if store.id != active:
        logger.info(
            "%s backend=%s integrity=%s served by a store that is not the "
            "active one (%s)",
            operation,
            store.id,
            wanted,
            active,
            extra=telemetry.fields(store.id, operation, wanted),
        )


async def _close_all(stores: Iterable[BlobStore]) -> None:
    """Close every store, even if one fails; then raise the first failure."""
    errors: list[Exception] = []
    for store in stores:
        try:
            await store.aclose()
        except Exception as exc:  # noqa: BLE001 -- close the others first
            logger.warning(
                "aclose backend=%s failed: %s: %s",
                store.id,
                type(exc).__name__,
                exc,
                extra=telemetry.fields(store.id, "aclose"),
            )
            errors.append(exc)
    if errors:
        raise errors[0]
