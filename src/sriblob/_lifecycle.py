"""A store's lifetime: entered (``async with``), used, closed once."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Self

from .exceptions import StoreClosed

if TYPE_CHECKING:
    from types import TracebackType

    from ._backend import Backend

__all__ = ["Lifecycle"]


class Lifecycle:
    """What every store does with its backend's resources, once.

    Entering the store (``async with``) starts the backend, :meth:`aclose`
    stops it, and a store collected while open warns (``ResourceWarning``)
    when its backend says it leaks something.
    """

    _backend: Backend
    _started: bool = False
    _closed: bool = False

    @property
    def requires_startup(self) -> bool:
        """Whether the store must be entered (``async with``) before use."""
        return self._backend.requires_startup

    @property
    def is_open(self) -> bool:
        """Whether the store can be used now.

        False before ``async with`` for stores that need it
        (:attr:`requires_startup`), and after :meth:`aclose` for every store.
        """
        return not self._closed and (self._started or not self.requires_startup)

    def __del__(self) -> None:
        # getattr: __init__ may have raised before setting everything.
        if not getattr(self, "_started", False) or self._closed:
            return
        leaked = self._backend.left_open()
        if leaked is not None:
            msg = (
                f"{self!r} was never closed; use `async with "
                f"{type(self).__name__}(...)` or `await store.aclose()` to close "
                f"{leaked}."
            )
            warnings.warn(msg, ResourceWarning, source=self, stacklevel=1)

    async def __aenter__(self) -> Self:
        if self._closed:
            msg = f"{self!r} is closed; create a new store instead of reopening it."
            raise StoreClosed(msg)
        if not self._started:
            await self._backend.startup()
            self._started = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release the store's resources. Calling it again does nothing."""
        if self._closed:
            return
        self._closed = True
        if self._started or not self.requires_startup:
            await self._backend.shutdown()

    def _check_usable(self) -> None:
        if self._closed:
            msg = f"{self!r} is closed; it can't be used any more."
            raise StoreClosed(msg)
        if self.requires_startup and not self._started:
            msg = (
                f"{self!r} is not open. Use `async with {type(self).__name__}(...) "
                "as store:` (or `await store.__aenter__()`) before using it."
            )
            raise StoreClosed(msg)
