"""Whole-store operations: migrate, verify and collect garbage.

They use only the public :class:`~sriblob.BlobStore` API, so they work for
every backend, and any pair of backends.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
from collections.abc import AsyncIterable, Callable
from typing import TYPE_CHECKING, Self, TypeAlias, TypeVar

import attrs

from . import _telemetry as telemetry
from ._integrity import THREAD_HASH_THRESHOLD, Integrity, IntegrityHasher, candidates
from .exceptions import BlobNotFound, IntegrityMismatch, SriblobError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterable

    from ._integrity import Algorithm
    from ._lease import Lease
    from ._reader import BlobReader
    from ._store import BlobStore

__all__ = [
    "Failure",
    "GarbageReport",
    "MigrationReport",
    "Progress",
    "VerifyReport",
    "collect_garbage",
    "migrate",
    "verify",
]

logger = logging.getLogger("sriblob")

#: What a per-blob step may raise without stopping the run: the library's
#: own errors and the OS's. Anything else is a bug and propagates.
_RECORDED = (SriblobError, OSError)

_T = TypeVar("_T")

#: What ``on_progress`` must be: called with one positional :class:`Progress`.
ProgressCallback: TypeAlias = Callable[["Progress"], object]


@attrs.frozen
class Failure:
    """A blob an operation could not handle, and why.

    Attributes:
        integrity: The blob's canonical integrity.
        reason: One line: the exception's type and message.

    .. versionadded:: 0.1.0
    """

    integrity: str
    reason: str


def _failure(integrity: str, exc: BaseException) -> Failure:
    """Describe *exc* in one line."""
    text = " ".join(str(exc).split())
    reason = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return Failure(integrity, reason)


def _record(
    failures: list[Failure],
    operation: str,
    store: BlobStore,
    integrity: str,
    exc: BaseException,
) -> None:
    """Add *exc* to the run's *failures*, and log it as a warning."""
    failure = _failure(integrity, exc)
    failures.append(failure)
    logger.warning(
        "%s failed integrity=%s reason=%s",
        operation,
        integrity,
        failure.reason,
        extra=telemetry.fields(store.id, operation, integrity),
    )


@attrs.frozen
class Progress:
    """How far an operation has come, as ``on_progress`` receives it.

    A new value is passed after every blob, with counts that never decrease.

    Attributes:
        blobs_done: Blobs handled so far, whatever the outcome.
        bytes_done: Bytes copied (:func:`migrate`), read and checked
            (:func:`verify`), or freed (:func:`collect_garbage`; in a dry
            run, that would be freed) so far.
        copied: Blobs copied so far (always 0 for :func:`verify`).
        skipped: Blobs the target already held (always 0 for
            :func:`verify`).
        failed: Blobs that failed so far (for :func:`verify`, corrupt ones
            included).
        current: The integrity of the blob just handled.
        total: How many blobs the run will handle, when it knows that
            (:func:`collect_garbage` does, from its snapshot); else None.

    .. versionadded:: 0.1.0
    """

    blobs_done: int
    bytes_done: int
    copied: int
    skipped: int
    failed: int
    current: str
    total: int | None = None


@attrs.frozen
class MigrationReport:
    """What :func:`migrate` did.

    Attributes:
        copied: Blobs copied into the target (repaired ones included).
        skipped: Blobs the target already held (with ``delete_source``, held
            and read back intact).
        failed: The blobs that could not be copied (or, with
            ``delete_source``, not safely deleted), sorted by integrity.
        bytes_copied: Bytes copied into the target.
        deleted: Blobs deleted from the source (``delete_source=True``).
        repaired: Blobs whose copy in the target was damaged and was
            replaced from the source (found by ``delete_source=True``, which
            reads every copy it relies on).
        foreign: Objects in the source that aren't named by a canonical
            integrity (another tool's files, say), left alone.

    .. versionadded:: 0.1.0
    """

    copied: int
    skipped: int
    failed: tuple[Failure, ...]
    bytes_copied: int
    deleted: int
    repaired: int = 0
    foreign: int = 0

    @property
    def ok(self) -> bool:
        """True when no blob failed: the target holds every listed blob."""
        return not self.failed


@attrs.frozen
class VerifyReport:
    """What :func:`verify` found.

    Attributes:
        checked: Blobs read through to the end and found intact.
        bytes_checked: Bytes read from the intact blobs.
        corrupt: Blobs whose bytes don't match their integrity, sorted.
        failed: Blobs that could not be read (other than corruption), and
            corrupt blobs that could not be deleted, sorted by integrity.
        deleted: Corrupt blobs deleted (``delete_corrupt=True``).
        foreign: Objects in the store that aren't named by a canonical
            integrity (another tool's files, say), not checked.

    .. versionadded:: 0.1.0
    """

    checked: int
    bytes_checked: int
    corrupt: tuple[str, ...]
    failed: tuple[Failure, ...]
    deleted: int
    foreign: int = 0

    @property
    def ok(self) -> bool:
        """True when every blob was read and found intact."""
        return not self.corrupt and not self.failed


@attrs.frozen
class GarbageReport:
    """What :func:`collect_garbage` deleted, or would delete in a dry run.

    Attributes:
        deleted: The blobs deleted, sorted; in a dry run, the blobs that
            would have been deleted (nothing was).
        bytes_freed: Their total size; in a dry run, what would be freed.
        kept: Listed blobs that are live.
        spared_fresh: Blobs that are not live but were spared because they
            may have been stored too recently (see :func:`collect_garbage`).
        dry_run: Whether this was a dry run.

    .. versionadded:: 0.1.0
    """

    deleted: tuple[str, ...]
    bytes_freed: int
    kept: int
    spared_fresh: int
    dry_run: bool


class _NotDeletedError(SriblobError):
    """A migrated blob was kept in the source: its copy wasn't confirmed."""


def _check_concurrency(concurrency: int) -> None:
    if (
        isinstance(concurrency, bool)
        or not isinstance(concurrency, int)
        or concurrency < 1
    ):
        msg = f"concurrency must be an int >= 1, not {concurrency!r}."
        raise ValueError(msg)


async def _pool(
    items: AsyncIterator[_T],
    handle: Callable[[_T], Awaitable[None]],
    concurrency: int,
) -> None:
    """Run *handle* over *items* with at most *concurrency* running at once.

    A fixed set of workers takes items from a queue that holds at most
    *concurrency* of them, so neither tasks nor listed items pile up however
    long the listing is. The first exception *handle* or the listing raises
    stops everything and propagates; so does cancellation.
    """
    queue: asyncio.Queue[_T | None] = asyncio.Queue(maxsize=concurrency)

    async def produce() -> None:
        try:
            async for item in items:
                await queue.put(item)
        finally:
            # Close the listing even when stopped early, so a backend's
            # cursor or connection is released now, not when it is collected.
            aclose = getattr(items, "aclose", None)
            # BlobStore.list() is an async generator; its type just doesn't say.
            if aclose is not None:  # pragma: no branch
                await aclose()
        for _ in range(concurrency):
            await queue.put(None)

    async def work() -> None:
        while (item := await queue.get()) is not None:
            await handle(item)

    tasks = [asyncio.create_task(produce())]
    tasks += [asyncio.create_task(work()) for _ in range(concurrency)]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc


class _Tap:
    """Pass a reader's chunks through, counting and (optionally) hashing them."""

    def __init__(self, reader: BlobReader, hasher: IntegrityHasher | None) -> None:
        self._reader = reader
        self._hasher = hasher
        self.size = 0

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._reader)
        self.size += len(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def digest(self) -> Integrity | None:
        return None if self._hasher is None else self._hasher.integrity()


async def _read_digest(
    store: BlobStore, integrity: Integrity, algorithm: Algorithm
) -> Integrity | None:
    """Read *store*'s copy whole and return the *algorithm* hash of its bytes.

    Returns None when the store doesn't hold the blob; a copy that fails
    the store's own verification raises ``IntegrityMismatch``.
    """
    hasher = IntegrityHasher(algorithm)
    try:
        async with store.open(integrity) as reader:
            async for chunk in reader:
                if len(chunk) >= THREAD_HASH_THRESHOLD:
                    await asyncio.to_thread(hasher.update, chunk)
                else:
                    hasher.update(chunk)
    except BlobNotFound:
        return None
    return hasher.integrity()


async def _leases(
    stack: contextlib.AsyncExitStack,
    purpose: str,
    stores: list[BlobStore],
    wait: float | None,
) -> dict[int, Lease]:
    """Take the lease of every store in *stores*, in one order for every run.

    The order (by ``repr()``, which names the bucket, root or database) is
    the same in every process, so two runs waiting for each other's stores
    can't deadlock. Returns each store's lease by ``id(store)``.
    """
    held: dict[int, Lease] = {}
    for store in sorted(stores, key=repr):
        held[id(store)] = await stack.enter_async_context(
            store.lease(purpose, wait=wait)
        )
    return held


async def _check_distinct(source: BlobStore, target: BlobStore) -> None:
    """Refuse to delete from a source that is the target under another name.

    Two store objects can share one bucket or directory; then every blob
    looks migrated, and deleting it from the source deletes the only copy.
    A random canary blob put into the target must not appear in the source.
    """
    canary = os.urandom(32)
    integrity = Integrity.from_bytes(canary)
    await target.put(integrity, canary)
    try:
        shared = await source.has(integrity)
    finally:
        await target.delete(integrity)
    if shared:
        msg = (
            f"{source!r} and {target!r} hold the same blobs (a blob put into "
            "the target appeared in the source): they are one storage "
            "location, and delete_source=True would delete the only copy. "
            "Point the target somewhere else."
        )
        raise ValueError(msg)


async def migrate(
    source: BlobStore,
    target: BlobStore,
    *,
    concurrency: int = 4,
    delete_source: bool = False,
    on_progress: ProgressCallback | None = None,
    lease_timeout: float | None = None,
) -> MigrationReport:
    """Copy every blob of *source* into *target*, resumably.

    Each blob is streamed (memory stays bounded whatever its size) and
    verified twice: by the source as it is read and by the target as it is
    written, unless a store was opened with ``verify=False``. Blobs the
    target already has are skipped without being read, so running
    ``migrate`` again after an interruption finishes the job. Up to
    *concurrency* blobs are copied at once.

    **Deleting the source.** With *delete_source*, a blob is deleted from
    the source only once the target's copy is known good:

    - a copy made by this run counts when the target verified it as it
      wrote it (both stores verify); otherwise it is read back and its
      digest compared with that of the bytes read from the source;
    - a copy the target already held is read whole first (against the
      integrity, or against a digest of the source's bytes when the source
      doesn't verify): a damaged copy is replaced from the source (counted
      in :attr:`MigrationReport.repaired`), and deleting waits for that.

    A source opened with ``verify=False`` (whose names don't hash their
    bytes, like the original system's repacked archives) needs a target
    opened the same way, or the target refuses the bytes. Nothing proves
    such a copy by its name, so every copy made from a store that doesn't
    verify, or into one, is read back from the target and its digest
    compared with a digest of the bytes read from the source before it
    counts as copied (a mismatch is a failure, and the source is kept).

    A blob that fails (corrupt in the source, a backend error, ...) is
    recorded in :attr:`MigrationReport.failed` and the run goes on;
    cancellation and unexpected errors (including one raised by
    *on_progress*) stop the run and propagate.

    Args:
        source: The store to copy from.
        target: The store to copy into.
        concurrency: How many blobs to copy at once.
        delete_source: Delete each blob from *source* once *target* holds a
            copy known to be good (see above). Before anything is deleted, a
            canary blob checks that the two stores are not one storage
            location under two names.
        on_progress: Called with a :class:`Progress` after every blob.
        lease_timeout: Seconds to wait for a busy store's maintenance lease
            (see below); None (default) fails at once.

    **The lease.** The run holds the target's maintenance lease (and the
    source's, with *delete_source*) throughout, so no other migration or
    garbage collection runs against them meanwhile, in any process; see
    :meth:`BlobStore.lease`.

    Returns:
        A :class:`MigrationReport`; check :attr:`~MigrationReport.ok`.

    Raises:
        StoreBusy: Another process holds a store's lease (after
            *lease_timeout*), or the run lost one; nothing more is deleted.
        ValueError: *concurrency* is not a positive int, or *source* and
            *target* are the same store.
        StoreError: Listing the source failed, or (with *delete_source*)
            putting the canary blob into the target did.

    .. versionadded:: 0.1.0
    """
    _check_concurrency(concurrency)
    if source is target:
        msg = "source and target are the same store; migrate into another store."
        raise ValueError(msg)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(
            telemetry.span("migrate", source=source.id, target=target.id)
        )
        stores = [target, source] if delete_source else [target]
        held = await _leases(stack, "migrate", stores, lease_timeout)
        if delete_source:
            await _check_distinct(source, target)
        run = _Migration(source, target, delete_source, on_progress, held)
        listing = source._list_parsed(on_skip=run.foreign)  # noqa: SLF001
        await _pool(listing, run.copy, concurrency)
    report = MigrationReport(
        copied=run.copied,
        skipped=run.skipped,
        failed=tuple(sorted(run.failures, key=lambda failure: failure.integrity)),
        bytes_copied=run.bytes_copied,
        deleted=run.deleted,
        repaired=run.repaired,
        foreign=run.foreign.count,
    )
    logger.info(
        "migrate source=%s target=%s copied=%d skipped=%d failed=%d "
        "bytes_copied=%d deleted=%d repaired=%d foreign=%d",
        source.id,
        target.id,
        report.copied,
        report.skipped,
        len(report.failed),
        report.bytes_copied,
        report.deleted,
        report.repaired,
        report.foreign,
        extra=telemetry.fields(source.id, "migrate"),
    )
    return report


@attrs.define
class _Foreign:
    """Counts (and logs) the listed names that aren't canonical integrities."""

    _operation: str
    _store: BlobStore
    count: int = 0

    def __call__(self, name: str) -> None:
        self.count += 1
        logger.info(
            "%s skipped backend=%s name=%r: not a canonical integrity",
            self._operation,
            self._store.id,
            name,
            extra=telemetry.fields(self._store.id, self._operation),
        )


@attrs.define
class _Migration:
    """The state of one :func:`migrate` run, shared by its workers."""

    _source: BlobStore
    _target: BlobStore
    _delete_source: bool
    _on_progress: ProgressCallback | None
    _leases: dict[int, Lease]
    done: int = 0
    copied: int = 0
    skipped: int = 0
    deleted: int = 0
    repaired: int = 0
    bytes_copied: int = 0
    failures: list[Failure] = attrs.Factory(list)
    foreign: _Foreign = attrs.field(
        default=attrs.Factory(
            lambda self: _Foreign("migrate", self._source), takes_self=True
        )
    )

    async def copy(self, item: tuple[str, Integrity]) -> None:
        name, integrity = item
        await self._target.check_lease(self._leases[id(self._target)])
        try:
            if self._delete_source:
                await self._move(integrity)
            elif await self._target.has(integrity):
                self.skipped += 1
                logger.debug(
                    "migrate skipped integrity=%s",
                    name,
                    extra=telemetry.fields(self._source.id, "migrate", name),
                )
            else:
                written = await self._copy(integrity, replace=False)
                await self._confirm(integrity, written, deleting=False)
        except _RECORDED as exc:
            _record(self.failures, "migrate", self._source, name, exc)
        self.done += 1
        if self._on_progress is not None:
            self._on_progress(
                Progress(
                    blobs_done=self.done,
                    bytes_done=self.bytes_copied,
                    copied=self.copied,
                    skipped=self.skipped,
                    failed=len(self.failures),
                    current=name,
                )
            )

    async def _copy(self, integrity: Integrity, *, replace: bool) -> Integrity | None:
        """Stream the blob into the target; return the sha512 of what was read.

        The digest is taken only for a source that doesn't verify, whose
        bytes a read-back must then be compared with.
        """
        digest = not self._source.verify
        async with self._source.open(integrity) as reader:
            tap = _Tap(reader, IntegrityHasher("sha512") if digest else None)
            await self._target.put(integrity, tap, replace=replace)
        self.copied += 1
        self.bytes_copied += tap.size
        logger.debug(
            "migrate copied integrity=%s size=%d",
            integrity,
            tap.size,
            extra=telemetry.fields(self._source.id, "migrate", integrity),
        )
        return tap.digest()

    async def _move(self, integrity: Integrity) -> None:
        """Make sure the target holds a good copy, then delete the source's."""
        held = None
        if await self._target.has(integrity):
            reference = None
            if not self._source.verify:
                reference = await _read_digest(self._source, integrity, "sha512")
                if reference is None:
                    msg = "vanished from the source before it could be moved"
                    raise _NotDeletedError(msg)
            held = await self._target_copy_good(integrity, reference)
        if held is None:
            written = await self._copy(integrity, replace=False)
            await self._confirm(integrity, written)
        elif held:
            self.skipped += 1
            logger.debug(
                "migrate skipped integrity=%s (read back intact)",
                integrity,
                extra=telemetry.fields(self._source.id, "migrate", integrity),
            )
        else:
            logger.warning(
                "migrate repairing integrity=%s: the target's copy is damaged",
                integrity,
                extra=telemetry.fields(self._source.id, "migrate", integrity),
            )
            written = await self._copy(integrity, replace=True)
            await self._confirm(integrity, written)
            self.repaired += 1
        await self._delete(integrity)

    async def _target_copy_good(
        self, integrity: Integrity, reference: Integrity | None
    ) -> bool | None:
        """Read the target's copy: None if absent, else whether it is good.

        Good means it hashes to the integrity, or, for a source that doesn't
        verify, has the same sha512 as the source's bytes (*reference*).
        """
        algorithm = integrity.algorithm if reference is None else "sha512"
        # The store of record's copy: a cache's front copy proves nothing
        # about what its back holds.
        record = self._target._store_of_record()  # noqa: SLF001 -- in the package
        try:
            digest = await _read_digest(record, integrity, algorithm)
        except IntegrityMismatch:
            return False
        if digest is None:
            return None
        return digest == (integrity if reference is None else reference)

    async def _confirm(
        self, integrity: Integrity, written: Integrity | None, *, deleting: bool = True
    ) -> None:
        """Check a copy just made, unless the target's verified write counts.

        A store that doesn't verify names blobs that may not hash their
        bytes, so the copy is read back from the target and its digest
        compared with that of the bytes read from the source.
        """
        if self._source.verify and self._target.verify:
            return  # the target checked the bytes against the integrity
        if not await self._target_copy_good(integrity, written):
            outcome = "not deleted from the source" if deleting else "not copied"
            msg = (
                f"{outcome}: reading the copy back from the target gave other "
                "bytes, or none"
            )
            self.copied -= 1
            raise _NotDeletedError(msg)

    async def _delete(self, integrity: Integrity) -> None:
        if not await self._source.has(integrity):
            msg = "vanished from the source before it could be deleted"
            raise _NotDeletedError(msg)
        await self._source.check_lease(self._leases[id(self._source)])
        await self._source.delete(integrity)
        self.deleted += 1
        logger.debug(
            "migrate deleted from source integrity=%s",
            integrity,
            extra=telemetry.fields(self._source.id, "migrate", integrity),
        )


async def verify(
    store: BlobStore,
    *,
    concurrency: int = 4,
    delete_corrupt: bool = False,
    on_progress: ProgressCallback | None = None,
    lease_timeout: float | None = None,
) -> VerifyReport:
    """Read every blob of *store* through the end, checking its integrity.

    Blobs are streamed through :meth:`BlobStore.open`, which hashes them as
    they come, so memory stays bounded. Corrupt blobs are collected in
    :attr:`VerifyReport.corrupt`; blobs that can't be read for another reason
    in :attr:`VerifyReport.failed`. Up to *concurrency* blobs are read at
    once.

    With *delete_corrupt*, corrupt blobs are deleted, so that a healthy copy
    can be put again (from a replica, with :func:`migrate`, or from the
    original source).

    Args:
        store: The store to check; it must verify (``verify=True``).
        concurrency: How many blobs to read at once.
        delete_corrupt: Delete the blobs found corrupt.
        on_progress: Called with a :class:`Progress` after every blob.
        lease_timeout: With *delete_corrupt*, seconds to wait for the
            store's maintenance lease if another process holds it; None
            (default) fails at once. Without deletion no lease is taken.

    Returns:
        A :class:`VerifyReport`; check :attr:`~VerifyReport.ok`.

    Raises:
        StoreBusy: With *delete_corrupt*, another process holds the store's
            lease (after *lease_timeout*), or the run lost it.
        ValueError: *store* was opened with ``verify=False`` (it can't detect
            corruption), or *concurrency* is not a positive int.
        StoreError: Listing the store failed.

    .. versionadded:: 0.1.0
    """
    if not store.verify:
        msg = (
            f"{store!r} doesn't verify what it reads, so it can't detect "
            "corruption; open the store with verify=True to check it."
        )
        raise ValueError(msg)
    _check_concurrency(concurrency)

    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(telemetry.span("verify", store=store.id))
        stores = [store] if delete_corrupt else []
        held = await _leases(stack, "verify", stores, lease_timeout)
        run = _Verification(store, delete_corrupt, on_progress, held.get(id(store)))
        listing = store._list_parsed(on_skip=run.foreign)  # noqa: SLF001
        await _pool(listing, run.check, concurrency)
    report = VerifyReport(
        checked=run.checked,
        bytes_checked=run.bytes_checked,
        corrupt=tuple(sorted(run.corrupt)),
        failed=tuple(sorted(run.failures, key=lambda failure: failure.integrity)),
        deleted=run.deleted,
        foreign=run.foreign.count,
    )
    logger.info(
        "verify store=%s checked=%d bytes_checked=%d corrupt=%d failed=%d "
        "deleted=%d foreign=%d",
        store.id,
        report.checked,
        report.bytes_checked,
        len(report.corrupt),
        len(report.failed),
        report.deleted,
        report.foreign,
        extra=telemetry.fields(store.id, "verify"),
    )
    return report


@attrs.define
class _Verification:
    """The state of one :func:`verify` run, shared by its workers."""

    _store: BlobStore
    _delete_corrupt: bool
    _on_progress: ProgressCallback | None
    _lease: Lease | None
    done: int = 0
    checked: int = 0
    bytes_checked: int = 0
    deleted: int = 0
    corrupt: list[str] = attrs.Factory(list)
    failures: list[Failure] = attrs.Factory(list)
    foreign: _Foreign = attrs.field(
        default=attrs.Factory(
            lambda self: _Foreign("verify", self._store), takes_self=True
        )
    )

    async def check(self, item: tuple[str, Integrity]) -> None:
        name, integrity = item
        size = 0
        # The store of record's copy (a cache's back): that is the one a
        # deletion or a migration relies on.
        record = self._store._store_of_record()  # noqa: SLF001 -- in the package
        try:
            async with record.open(integrity) as reader:
                async for chunk in reader:
                    size += len(chunk)
        except IntegrityMismatch:
            self.corrupt.append(name)
            logger.warning(
                "verify corrupt integrity=%s",
                name,
                extra=telemetry.fields(self._store.id, "verify", name),
            )
            if self._delete_corrupt:
                await self._delete(name, integrity)
        except _RECORDED as exc:
            self._fail(name, exc)
        else:
            self.checked += 1
            self.bytes_checked += size
            logger.debug(
                "verify ok integrity=%s size=%d",
                name,
                size,
                extra=telemetry.fields(self._store.id, "verify", name),
            )
        self.done += 1
        if self._on_progress is not None:
            self._on_progress(
                Progress(
                    blobs_done=self.done,
                    bytes_done=self.bytes_checked,
                    copied=0,
                    skipped=0,
                    failed=self.done - self.checked,
                    current=name,
                )
            )

    async def _delete(self, name: str, integrity: Integrity) -> None:
        if self._lease is not None:
            await self._store.check_lease(self._lease)
        try:
            await self._store.delete(integrity)
        except _RECORDED as exc:
            self._fail(name, exc)
        else:
            self.deleted += 1
            logger.debug(
                "verify deleted corrupt integrity=%s",
                name,
                extra=telemetry.fields(self._store.id, "verify", name),
            )

    def _fail(self, integrity: str, exc: BaseException) -> None:
        _record(self.failures, "verify", self._store, integrity, exc)


async def _live_set(
    live: Iterable[str | Integrity] | AsyncIterable[str | Integrity],
) -> set[str]:
    if isinstance(live, str):
        msg = "live must be an iterable of integrities, not a single str."
        raise TypeError(msg)
    if isinstance(live, AsyncIterable):
        items = [item async for item in live]
    else:
        items = list(live)
    return {str(option) for item in items for option in candidates(item)}


async def collect_garbage(
    store: BlobStore,
    live: Iterable[str | Integrity] | AsyncIterable[str | Integrity],
    *,
    dry_run: bool = True,
    grace: dt.timedelta = dt.timedelta(hours=1),
    now: dt.datetime | None = None,
    on_progress: ProgressCallback | None = None,
    lease_timeout: float | None = None,
) -> GarbageReport:
    """Delete every blob of *store* that is not in *live*.

    A dry run (the default) deletes nothing and reports what would be
    deleted and how many bytes that would free.

    The run goes in this order: *now* is fixed (the current time unless
    given); the store is listed, and the listing kept in memory as a
    snapshot (about a hundred bytes a blob); *live*
    is read (all of it, so a malformed integrity raises before anything is
    deleted); then each snapshot blob that isn't live is looked at with
    :meth:`BlobStore.stat` and deleted unless it is spared.

    **What is protected.** Blobs in *live* are never deleted. A blob put
    after the listing finished is never deleted (it isn't in the snapshot).
    A blob that isn't live is spared (counted in
    :attr:`GarbageReport.spared_fresh`) when its storage time is later than
    ``now - grace``. So when a writer puts a blob and then records it where
    *live* comes from, the blob is safe provided the writer records it
    within *grace* of putting it and *live* is read after *now*: pass an
    async iterable (or a generator) that queries the references when it is
    iterated, or take *now* before computing a precomputed *live*.

    A backend that records no storage time (``stat().stored_at`` is None)
    can't show which blobs are recent: such blobs are always spared while
    *grace* is positive. With ``grace=timedelta(0)`` only the snapshot
    protects them: use it only while no writer is between putting a blob
    and recording it.

    **What is not protected.** Putting a blob that is already stored is a
    no-op and, except in :class:`~sriblob.FilesystemBlobStore` (which
    renews the file's modification time), doesn't renew its storage time,
    so a writer that "puts" an old, unreferenced blob and records it after
    *live* was read can lose it to a concurrent collection. Writers that
    reuse blobs should record the reference first, or check
    :meth:`BlobStore.has` after recording it and put the blob again if it
    is gone.

    Args:
        store: The store to collect.
        live: The integrities to keep (``str`` or :class:`~sriblob.Integrity`),
            an iterable or async iterable. Each keeps the blobs
            :meth:`BlobStore.get` could find under it: a multi-hash string
            keeps the blobs stored under any digest of its strongest
            algorithm.
        dry_run: Report only; delete nothing.
        grace: Spare blobs stored less than this long before *now*.
        now: The time *grace* counts back from (timezone-aware); the
            current time by default.
        on_progress: Called with a :class:`Progress` after every snapshot
            blob is looked at (its ``total`` is the snapshot's size).
        lease_timeout: Seconds to wait for the store's maintenance lease if
            another process holds it; None (default) fails at once. A dry
            run takes no lease.

    Returns:
        A :class:`GarbageReport`.

    Raises:
        InvalidIntegrity: *live* holds a malformed integrity; nothing was
            deleted.
        ValueError: *grace* is negative or *now* is naive.
        TypeError: *live* is a single string.
        StoreBusy: Another process holds the store's maintenance lease
            (another gc or migration; after *lease_timeout*), or the run lost
            it; blobs deleted so far stay deleted.
        StoreError: The store failed; blobs deleted so far stay deleted.

    .. versionadded:: 0.1.0
    """
    if not isinstance(grace, dt.timedelta) or grace < dt.timedelta(0):
        msg = f"grace must be a timedelta >= 0, not {grace!r}."
        raise ValueError(msg)
    if now is None:
        now = dt.datetime.now(dt.UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        msg = "now must be timezone-aware, e.g. datetime.now(datetime.UTC)."
        raise ValueError(msg)
    cutoff = now - grace

    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(telemetry.span("gc", store=store.id, dry_run=dry_run))
        stores = [] if dry_run else [store]
        held = await _leases(stack, "collect_garbage", stores, lease_timeout)
        snapshot = [item async for item in store._list_parsed()]  # noqa: SLF001
        keep = await _live_set(live)
        run = _Collection(store, keep, dry_run, grace, cutoff, held.get(id(store)))
        for done, (name, integrity) in enumerate(snapshot, start=1):
            await run.look_at(name, integrity)
            if on_progress is not None:
                on_progress(
                    Progress(
                        blobs_done=done,
                        bytes_done=run.bytes_freed,
                        copied=0,
                        skipped=0,
                        failed=0,
                        current=name,
                        total=len(snapshot),
                    )
                )
    report = GarbageReport(
        deleted=tuple(sorted(run.doomed)),
        bytes_freed=run.bytes_freed,
        kept=run.kept,
        spared_fresh=run.spared,
        dry_run=dry_run,
    )
    logger.info(
        "collect_garbage store=%s dry_run=%s deleted=%d bytes_freed=%d kept=%d "
        "spared_fresh=%d",
        store.id,
        dry_run,
        len(report.deleted),
        report.bytes_freed,
        report.kept,
        report.spared_fresh,
        extra=telemetry.fields(store.id, "collect_garbage"),
    )
    return report


@attrs.define
class _Collection:
    """The state of one :func:`collect_garbage` run."""

    _store: BlobStore
    _keep: set[str]
    _dry_run: bool
    _grace: dt.timedelta
    _cutoff: dt.datetime
    _lease: Lease | None
    doomed: list[str] = attrs.Factory(list)
    bytes_freed: int = 0
    kept: int = 0
    spared: int = 0

    async def look_at(self, name: str, integrity: Integrity) -> None:
        """Keep, spare or delete one snapshot blob."""
        if name in self._keep:
            self.kept += 1
            return
        info = await self._store.stat(integrity)
        if info is None:
            return  # deleted by someone else meanwhile
        if info.stored_at is None:
            fresh = self._grace > dt.timedelta(0)
        else:
            fresh = info.stored_at > self._cutoff
        # The stat decided; the deletion checks the time again, atomically
        # with respect to a put that renews it meanwhile.
        if not fresh and not self._dry_run:
            if self._lease is not None:
                await self._store.check_lease(self._lease)
            before = None if info.stored_at is None else self._cutoff
            fresh = not await self._store.delete(integrity, stored_before=before)
        if fresh:
            self.spared += 1
            logger.debug(
                "collect_garbage spared integrity=%s stored_at=%s",
                name,
                info.stored_at,
                extra=telemetry.fields(self._store.id, "collect_garbage", name),
            )
            return
        self.doomed.append(name)
        self.bytes_freed += info.size
        logger.debug(
            "collect_garbage %s integrity=%s size=%d",
            "would delete" if self._dry_run else "deleted",
            name,
            info.size,
            extra=telemetry.fields(self._store.id, "collect_garbage", name),
        )
