"""The store users call: the blob contract, over a backend that moves bytes."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Final, TypeVar

from . import _telemetry as telemetry
from ._backend import Backend, BlobBody, BlobInfo
from ._integrity import Algorithm, Integrity, IntegrityHasher, candidates, hash_buffer
from ._lease import Lease
from ._lease import acquire as acquire_lease
from ._lifecycle import Lifecycle
from ._options import StoreOptions
from ._quota import Usage
from ._reader import BlobReader
from ._source import BlobSource, Data
from ._tasks import wait_out
from .exceptions import BlobNotFound, IntegrityMismatch, InvalidIntegrity

if TYPE_CHECKING:
    import datetime as dt
    import os
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

    import sriblob.backend

__all__ = ["BlobStore"]

_T = TypeVar("_T")

logger = logging.getLogger("sriblob")

#: How many integrities a store remembers as seen corrupt (see ``put``).
SUSPECT_MEMORY: Final = 4096


class Suspects:
    """The blobs whose stored copy a store saw fail verification (a put replaces)."""

    def __init__(self) -> None:
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()

    def suspect(self, integrity: Integrity) -> bool:
        """Whether the stored copy of *integrity* was seen corrupt."""
        return str(integrity) in self._seen

    def saw_corrupt(self, integrity: Integrity) -> None:
        """Remember that the stored copy failed verification (the last 4,096)."""
        name = str(integrity)
        self._seen[name] = None
        self._seen.move_to_end(name)
        while len(self._seen) > SUSPECT_MEMORY:
            self._seen.popitem(last=False)

    def forget(self, integrity: Integrity) -> None:
        """A put wrote the blob: its stored copy is a new one."""
        self._seen.pop(str(integrity), None)


class BlobStore(Lifecycle):
    """An async store of immutable blobs named by their integrity.

    A blob put under an integrity is read back by it, and content addressing
    is enforced: bytes are checked against the integrity on the way in and
    on the way out, unless the store was built with ``verify=False``. Every
    method that takes an integrity accepts a ``str`` or an
    :class:`~sriblob.Integrity`; a malformed string raises
    :class:`~sriblob.InvalidIntegrity` before any I/O. Stores are async
    context managers; :meth:`aclose` releases their resources.

    A store holds a :class:`~sriblob.backend.Backend`, which moves the bytes:
    the built-in stores (:class:`~sriblob.FilesystemBlobStore`,
    :class:`~sriblob.S3BlobStore`, ...) build theirs, and a backend of your
    own goes in as ``BlobStore(MyBackend(...), id="mine")`` (see the
    "Writing a backend" guide). Argument checks, verification, size limits,
    the quota, repair of copies seen corrupt and logging happen here, once,
    for every backend.

    Args:
        backend: What moves the bytes.
        id: The store's id in a registry (the backend's ``default_id``).
        verify: Check bytes against their integrity (off only for buckets
            that use integrities as *names* for derived bytes).
        max_blob_size: Refuse larger blobs (:class:`~sriblob.BlobTooLarge`).
        max_total_size: The quota (:class:`~sriblob.QuotaExceeded`).
        warn_total_size: Log one WARNING when the total reaches it.

    See :class:`~sriblob.StoreOptions` for each option, and "Quotas" in the
    operations guide for where each backend keeps its running total.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        backend: sriblob.backend.Backend,
        /,
        *,
        id: str | None = None,
        verify: bool = True,
        max_blob_size: int | None = None,
        max_total_size: int | None = None,
        warn_total_size: int | None = None,
    ) -> None:
        if not isinstance(backend, Backend):
            msg = (
                "A BlobStore holds a sriblob.backend.Backend, not "
                f"{type(backend).__name__}; subclass Backend to write one."
            )
            raise TypeError(msg)
        options = StoreOptions(
            id=backend.default_id if id is None else id,
            verify=verify,
            max_blob_size=max_blob_size,
            max_total_size=max_total_size,
            warn_total_size=warn_total_size,
        )
        backend.bind(options)
        self._backend = backend
        self._options = options
        #: Whether this store hashes what it reads (not when the backend does).
        self._hashes_reads = verify and not backend.verifies_reads
        self._started = False
        self._closed = False
        self._suspects = Suspects()

    @property
    def backend(self) -> sriblob.backend.Backend:
        """The backend that moves this store's bytes.

        .. versionadded:: 0.1.0
        """
        return self._backend

    @property
    def options(self) -> StoreOptions:
        """The store's options, as one value.

        .. versionadded:: 0.1.0
        """
        return self._options

    @property
    def id(self) -> str:
        """The store's id ("memory", "filesystem", "s3", ...)."""
        return self._options.id

    @property
    def verify(self) -> bool:
        """Whether bytes are checked against their integrity."""
        return self._options.verify

    @property
    def max_blob_size(self) -> int | None:
        """The largest blob this store accepts, in bytes, or None."""
        return self._options.max_blob_size

    @property
    def max_total_size(self) -> int | None:
        """The store's quota in bytes (see :class:`~sriblob.QuotaExceeded`), or None."""
        return self._options.max_total_size

    @property
    def warn_total_size(self) -> int | None:
        """The total above which puts log a WARNING, or None."""
        return self._options.warn_total_size

    @property
    def can_presign(self) -> bool:
        """Whether :meth:`presign` hands out URLs (S3: yes; others: no)."""
        return self._backend.can_presign

    @property
    def can_link(self) -> bool:
        """Whether :meth:`link_to` can place blobs (stores with local files).

        .. versionadded:: 0.1.0
        """
        return self._backend.can_link

    def __repr__(self) -> str:
        details = self._backend.describe()
        limit = self.max_blob_size
        return (
            f"<{type(self).__name__} id={self.id!r}"
            f"{' ' + details if details else ''} verify={self.verify}"
            f"{'' if limit is None else f' max_blob_size={limit}'}>"
        )

    def _store_of_record(self) -> BlobStore:
        record = getattr(self._backend, "store_of_record", None)
        return self if record is None else record._store_of_record()  # noqa: SLF001

    # -- writing ---------------------------------------------------------------

    async def put(
        self, integrity: str | Integrity, data: Data, /, *, replace: bool = False
    ) -> str:
        """Store *data* under *integrity*; return the integrity it is stored under.

        Putting a blob that is stored leaves a good copy: a copy that stands
        is checked first (or replaced, by backend; see "Repairing a damaged
        copy" in the operations guide), and *replace* replaces it outright.

        Args:
            integrity: The blob's integrity; it is stored under the canonical
                form of its strongest hash, matching any of its digests.
            data: Bytes-like data or an async iterable of bytes-like chunks
                (streamed, never held whole; writable buffers are copied).
            replace: Write the bytes even if a copy is stored, replacing it
                atomically (readers see the old copy or the new one).

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            IntegrityMismatch: The data doesn't match *integrity*; nothing is
                stored or visible under it.
            BlobTooLarge: The data is larger than ``max_blob_size``.
            QuotaExceeded: The blob would take the store past its quota.
            TypeError: *data* is neither bytes-like nor an async iterable.
        """
        wanted = candidates(integrity)
        self._check_usable()
        algorithm = wanted[0].algorithm
        with telemetry.call("put", self.id, wanted[0]) as call:
            if len(wanted) == 1:
                source = _source(self, data, wanted[0], algorithm, replace=replace)
            else:
                # The name is known once the bytes are hashed: as for add().
                source = _source(
                    self, data, None, algorithm, replace=replace, allowed=wanted
                )
                await source.resolve()
            stored = await self._write(source, call, "put")
        return str(stored)

    async def add(
        self, data: Data, /, *, algorithm: Algorithm = "sha512", replace: bool = False
    ) -> str:
        """Store *data* whose integrity the caller doesn't know yet; return it.

        Args:
            data: Bytes-like data or an async iterable of bytes-like chunks.
            algorithm: The hash to name the blob by.
            replace: See :meth:`put`.

        Raises:
            ValueError: *algorithm* is not sha256, sha384 or sha512.
            BlobTooLarge: The data is larger than ``max_blob_size``.
            QuotaExceeded: The blob would take the store past its quota.
        """
        IntegrityHasher(algorithm)  # validates the algorithm before any I/O
        self._check_usable()
        with telemetry.call("add", self.id) as call:
            source = _source(self, data, None, algorithm, replace=replace)
            await source.resolve()
            integrity = await self._write(source, call, "add")
        return str(integrity)

    async def _write(
        self, source: BlobSource, call: telemetry.Call, operation: str
    ) -> Integrity:
        await self._backend.write_blob(source)
        integrity = source.integrity
        call.integrity(integrity)
        # What the caller handed over: all of bytes-like data, a stream as
        # far as it was read (a backend that holds the blob may stop early).
        size = source.bytes_read if source.size is None else source.size
        call.moved(size, direction="in")
        if source.consumed:
            self._suspects.forget(integrity)
        logger.debug(
            "%s backend=%s integrity=%s size=%d",
            operation,
            self.id,
            integrity,
            source.bytes_read,
            extra=telemetry.fields(self.id, operation, integrity),
        )
        return integrity

    # -- reading -----------------------------------------------------------------

    async def get(self, integrity: str | Integrity, /) -> bytes | None:
        """Return the blob's bytes, or None when the store doesn't hold it.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            IntegrityMismatch: The stored bytes are corrupted.
        """
        options = candidates(integrity)
        self._check_usable()
        return await _first(self, "get", options, functools.partial(_read_bytes, self))

    def open(
        self, integrity: str | Integrity, /, *, start: int = 0, end: int | None = None
    ) -> contextlib.AbstractAsyncContextManager[BlobReader]:
        """Stream the blob: an async context manager yielding a ``BlobReader``.

        ::

            async with store.open(integrity) as reader:
                async for chunk in reader:
                    ...  # don't publish anything before the loop ends

        Memory stays bounded. The bytes are verified as they stream, and
        :class:`~sriblob.IntegrityMismatch` is raised at the end at the
        latest: don't trust the data before the iterator is exhausted. With
        *start* and *end* the reader yields bytes ``start`` to ``end - 1``
        (*end* None: to the blob's end), **unverified** unless that is the
        whole blob (:attr:`BlobReader.verifies`).

        Raises:
            InvalidIntegrity: *integrity* is malformed (raised by this call).
            ValueError: A range that can't be one (raised by this call).
            BlobNotFound: The store doesn't hold the blob (on entry).
            RangeNotSatisfiable: The range is past the blob's end (on entry).
            IntegrityMismatch: The stored bytes are corrupted (while iterating).
        """
        options = candidates(integrity)
        _check_bounds(start, end)
        self._check_usable()
        return _open_reader(self, options, start, end)

    async def has(self, integrity: str | Integrity, /) -> bool:
        """Return whether the store holds a blob under *integrity*.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        options = candidates(integrity)
        self._check_usable()
        return bool(await _first(self, "has", options, self._backend.has_blob))

    async def stat(self, integrity: str | Integrity, /) -> BlobInfo | None:
        """Return the blob's size (and storage time) without reading it, or None.

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
        """
        options = candidates(integrity)
        self._check_usable()
        return await _first(self, "stat", options, self._backend.stat_blob)

    # -- deleting and listing ----------------------------------------------------

    async def delete(
        self, integrity: str | Integrity, /, *, stored_before: dt.datetime | None = None
    ) -> bool:
        """Delete the blob; deleting an absent blob does nothing.

        Args:
            integrity: The blob's integrity.
            stored_before: Delete only if the blob's storage time is not later
                (timezone-aware), atomically with respect to a put renewing it.

        Returns:
            False if *stored_before* kept the blob; True (the blob is gone).

        Raises:
            InvalidIntegrity: *integrity* is malformed (before any I/O).
            ValueError: *stored_before* is naive.
        """
        options = candidates(integrity)
        if stored_before is not None and stored_before.utcoffset() is None:
            msg = "stored_before must be timezone-aware, e.g. datetime.now(UTC)."
            raise ValueError(msg)
        self._check_usable()
        with telemetry.call("delete", self.id, options[0]):
            gone = True
            for wanted in options:
                deleted = await self._backend.delete_blob(
                    wanted, stored_before=stored_before
                )
                logger.debug(
                    "delete backend=%s integrity=%s deleted=%s",
                    self.id,
                    wanted,
                    deleted,
                    extra=telemetry.fields(self.id, "delete", wanted),
                )
                gone = gone and deleted
            return gone

    async def list(
        self, *, on_skip: Callable[[str], object] | None = None
    ) -> AsyncGenerator[str, None]:
        """Yield the canonical integrity of every blob, as the backend pages.

        The listing is never held whole in memory; order is backend-defined.

        Args:
            on_skip: Called with each stored name that isn't listed because
                it doesn't decode to a canonical integrity (objects another
                tool wrote under the prefix, say). The store's own temporary
                and internal objects are never reported.
        """
        # Not the current span: the consumer runs between the yields.
        with telemetry.call("list", self.id, current=False):
            async with contextlib.aclosing(self._list_parsed(on_skip=on_skip)) as blobs:
                async for name, _ in blobs:
                    yield name

    def _list_parsed(
        self, *, on_skip: Callable[[str], object] | None = None
    ) -> AsyncGenerator[tuple[str, Integrity], None]:
        """Like :meth:`list`, each name with its parsed integrity (operations')."""
        self._check_usable()
        return _parsed_names(self, on_skip)

    # -- what the whole store holds, and who maintains it --------------------------

    async def usage(self) -> Usage:
        """Return the bytes the store holds, against its quota levels.

        With a quota (``max_total_size`` or ``warn_total_size``) this is the
        running total the store keeps for every process that writes to it;
        without one the blobs are counted now (a listing).
        """
        self._check_usable()
        if self._backend.keeps_total:
            total = await self._backend.charge(0)
        else:
            total = await self._backend.stored_total()
        return Usage(total, self.max_total_size, self.warn_total_size)

    @contextlib.asynccontextmanager
    async def lease(
        self, purpose: str, *, wait: float | None = None
    ) -> AsyncIterator[Lease]:
        """Hold the store's maintenance lease for the ``async with`` block.

        One holder at a time across every process and host sharing the store
        (see "Several replicas on one store" in the operations guide); gc,
        migrate and verify with deletion take it, puts and gets never do.

        Args:
            purpose: What it is taken for, shown to whoever finds it busy.
            wait: Seconds to wait for a busy lease; None (default) fails at
                once.

        Raises:
            StoreBusy: Someone else holds it (naming who and since when).
        """
        self._check_usable()
        async with _held(self, purpose, wait) as mine:
            yield mine

    async def check_lease(self, lease: Lease, /) -> None:
        """Raise :class:`~sriblob.StoreBusy` if *lease* (of :meth:`lease`) was lost.

        Operations call it before each deletion.
        """
        await self._backend.check_lease(lease)

    # -- optional capabilities -------------------------------------------------------

    async def presign(
        self,
        integrity: str | Integrity,
        /,
        *,
        expires_in: int = 3600,
        method: str = "GET",
    ) -> str:
        """Return a URL that fetches the blob without credentials, for a while.

        Only stores that :attr:`can_presign` hand them out (see
        :meth:`S3BlobStore.presign <sriblob.S3BlobStore.presign>`).

        Raises:
            PresignUnsupported: The store can't presign.
        """
        wanted = candidates(integrity)[0]
        if self.can_presign:
            self._check_usable()
        with telemetry.call("presign", self.id, wanted):
            return await self._backend.presign(
                wanted, expires_in=expires_in, method=method
            )

    async def link_to(
        self, integrity: str | Integrity, path: str | os.PathLike[str], /
    ) -> str:
        """Place the blob at *path*, verified, without copying where possible.

        Only stores that :attr:`can_link` (files on local disk): see
        :meth:`FilesystemBlobStore.link_to <sriblob.FilesystemBlobStore.link_to>`.

        Returns:
            ``"reflink"``, ``"hardlink"`` or ``"copy"``: how it was placed.

        Raises:
            BlobNotFound: The store doesn't hold the blob.
            IntegrityMismatch: The stored copy is corrupt; nothing is placed.
            OperationUnsupported: The store has no local files.
        """
        wanted = candidates(integrity)[0]
        if self.can_link:
            self._check_usable()
        with telemetry.call("link_to", self.id, wanted):
            try:
                return await self._backend.link_to(wanted, path)
            except IntegrityMismatch:
                self._suspects.saw_corrupt(wanted)
                raise


@contextlib.asynccontextmanager
async def _open_reader(
    store: BlobStore, options: tuple[Integrity, ...], start: int, end: int | None
) -> AsyncIterator[BlobReader]:
    """Open the first of *options* the backend holds; yield its reader."""
    with telemetry.call("open", store.id, options[0]) as call:
        async with _opened(store, options, start, end) as reader:
            try:
                yield reader
            finally:
                call.moved(reader.bytes_read, direction="out")


@contextlib.asynccontextmanager
async def _opened(
    store: BlobStore, options: tuple[Integrity, ...], start: int, end: int | None
) -> AsyncIterator[BlobReader]:
    """Open the first of *options* the backend holds; yield its reader."""
    backend = store.backend
    whole = start == 0 and end is None
    async with contextlib.AsyncExitStack() as stack:
        for wanted in options:
            opening = (
                backend.read_blob(wanted)
                if whole
                else backend.read_blob_range(wanted, start, end)
            )
            try:
                body = await stack.enter_async_context(opening)
            except BlobNotFound:
                if wanted is options[-1]:
                    raise
                continue
            break
        reader = _reader(store, wanted, body, start, end, ranged=not whole)
        try:
            yield reader
        finally:
            reader._close()  # noqa: SLF001 -- the store owns its readers


def _reader(
    store: BlobStore,
    wanted: Integrity,
    body: BlobBody,
    start: int,
    end: int | None,
    *,
    ranged: bool,
) -> BlobReader:
    stop = body.size if end is None else end
    # Only the whole blob has an integrity to check against. A backend that
    # checks its reads itself does so for whole reads, not ranges.
    whole = start == 0 and (end is None or end == body.size)
    checks = store.verify and whole
    by_backend = checks and store.backend.verifies_reads and not ranged
    logger.debug(
        "open backend=%s integrity=%s size=%s range=%s-%s",
        store.id,
        wanted,
        body.size,
        start,
        stop,
        extra=telemetry.fields(store.id, "open", wanted),
    )
    return BlobReader(
        body.chunks,
        integrity=wanted,
        size=body.size,
        verify=checks and not by_backend,
        checked=by_backend,
        store_id=store.id,
        on_mismatch=store._suspects.saw_corrupt,  # noqa: SLF001 -- its own
        start=start,
        end=stop,
    )


async def _parsed_names(
    store: BlobStore, on_skip: Callable[[str], object] | None
) -> AsyncGenerator[tuple[str, Integrity], None]:
    """Each listed name that is a canonical integrity, with it parsed."""
    names = store.backend.list_names()
    count = skipped = 0
    try:
        async for name in names:
            parsed = _canonical(name)
            if parsed is not None:
                count += 1
                yield name, parsed
                continue
            skipped += 1
            if on_skip is not None:
                on_skip(name)
    finally:
        logger.debug(
            "list backend=%s count=%d skipped=%d",
            store.id,
            count,
            skipped,
            extra=telemetry.fields(store.id, "list"),
        )
        # A consumer that stops early closes the backend's listing now,
        # releasing its connection or cursor, not whenever GC gets to it.
        close = getattr(names, "aclose", None)
        if close is not None:
            await close()


@contextlib.asynccontextmanager
async def _held(
    store: BlobStore, purpose: str, wait: float | None
) -> AsyncIterator[Lease]:
    """Take *store*'s maintenance lease for the block; give it back after."""
    if wait is not None and (
        isinstance(wait, bool) or not isinstance(wait, int | float) or not wait >= 0
    ):
        msg = f"wait must be None or a number of seconds >= 0, not {wait!r}."
        raise ValueError(msg)
    mine = Lease.mine(purpose)
    await acquire_lease(store.backend, mine, wait)
    logger.debug(
        "lease taken backend=%s purpose=%s token=%s",
        store.id,
        purpose,
        mine.token,
        extra=telemetry.fields(store.id, "lease"),
    )
    telemetry.note_lease(store.id, 1)
    try:
        yield mine
    finally:
        telemetry.note_lease(store.id, -1)
        await _release(store.backend, mine)
        logger.debug(
            "lease released backend=%s token=%s",
            store.id,
            mine.token,
            extra=telemetry.fields(store.id, "lease"),
        )


def _source(
    store: BlobStore,
    data: Data,
    expected: Integrity | None,
    algorithm: Algorithm,
    *,
    replace: bool,
    allowed: tuple[Integrity, ...] = (),
) -> BlobSource:
    """The source of a put or add into *store*: its limits, quota and checks."""
    backend = store.backend
    return BlobSource(
        data,
        expected=expected,
        algorithm=algorithm,
        verify=store.verify,
        max_size=store.max_blob_size,
        backend=store.id,
        replace=replace,
        suspect=store._suspects.suspect,  # noqa: SLF001 -- its own
        allowed=allowed,
        adjust=backend.charge if backend.keeps_total else None,
        check_stored=functools.partial(_stored_copy_intact, store),
    )


async def _stored_copy_intact(store: BlobStore, integrity: Integrity) -> bool:
    """Read the stored copy through, verified: False if damaged or gone."""
    if not store.verify:
        return True
    try:
        # Part of the put's call, not an open() of its own (span, metrics).
        async with _opened(store, (integrity,), 0, None) as reader:
            async for _ in reader:
                pass
    except IntegrityMismatch:
        logger.warning(
            "put backend=%s integrity=%s: the stored copy is corrupt; "
            "replacing it with the bytes put",
            store.id,
            integrity,
            extra=telemetry.fields(store.id, "put", integrity),
        )
        return False
    except BlobNotFound:
        return False
    return True


async def _read_bytes(store: BlobStore, wanted: Integrity) -> bytes | None:
    """The blob's bytes from the backend, verified; None when absent."""
    try:
        data = await store.backend.read_blob_bytes(wanted)
        if data is not None and store._hashes_reads:  # noqa: SLF001 -- its own
            (await hash_buffer(data, wanted.algorithm)).verify(wanted)
    except IntegrityMismatch:
        store._suspects.saw_corrupt(wanted)  # noqa: SLF001 -- its own
        raise
    logger.debug(
        "get backend=%s integrity=%s size=%s",
        store.id,
        wanted,
        None if data is None else len(data),
        extra=telemetry.fields(store.id, "get", wanted),
    )
    return data


async def _first(
    store: BlobStore,
    operation: str,
    options: tuple[Integrity, ...],
    ask: Callable[[Integrity], Awaitable[_T]],
) -> _T | None:
    """The first answer of *ask* (not None or False) for an SRI string's digests.

    One store call (``has``, ``stat``, ``get``): its span, its outcome
    (``missing`` when no digest answered), the bytes a ``get`` read.
    """
    with telemetry.call(operation, store.id, options[0]) as call:
        for wanted in options:
            answer = await ask(wanted)
            if operation != "get":  # a get logs its own line (_read_bytes)
                _logged(store, operation, wanted, answer)
            if answer is not None and answer is not False:
                if isinstance(answer, bytes):
                    call.moved(len(answer), direction="out")
                return answer
        call.missing()
        return None


def _logged(
    store: BlobStore, operation: str, wanted: Integrity, answer: object
) -> None:
    """Log what one digest's look-up answered."""
    shown = (
        f"found={answer}"
        if isinstance(answer, bool)
        else f"size={getattr(answer, 'size', None)}"
    )
    logger.debug(
        "%s backend=%s integrity=%s %s",
        operation,
        store.id,
        wanted,
        shown,
        extra=telemetry.fields(store.id, operation, wanted),
    )


async def _release(backend: Backend, lease: Lease) -> None:
    """Give the lease back, even if the holder is cancelled meanwhile."""
    releasing = asyncio.ensure_future(backend.release_lease(lease))
    await wait_out(releasing)
    releasing.result()


def _canonical(name: str) -> Integrity | None:
    """The integrity *name* is the canonical form of, or None."""
    try:
        parsed = Integrity.parse(name)
    except InvalidIntegrity:
        return None
    return parsed if str(parsed) == name else None


def _check_bounds(start: object, end: object) -> None:
    """Refuse a range that can't be one, whatever the blob (before any I/O)."""
    for name, value in (("start", start), ("end", end)):
        if value is None and name == "end":
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            msg = f"{name} must be an int, not {type(value).__name__}."
            raise TypeError(msg)
    assert isinstance(start, int)  # noqa: S101 -- checked above
    if start < 0:
        msg = f"start must be >= 0, not {start}."
        raise ValueError(msg)
    if end is not None and end < start:  # type: ignore[operator]
        msg = f"end must be None or >= start ({start}), not {end}."
        raise ValueError(msg)
