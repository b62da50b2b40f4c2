"""The ``sriblob`` command: blobs (put, get, has, rm, ls, info) and whole stores.

The whole-store commands (migrate, verify, gc) run the library operations
of :mod:`sriblob._operations` on the default registry's stores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import attrs
from tqdm import tqdm

from ._filesystem import FilesystemBlobStore
from ._integrity import Integrity
from ._operations import collect_garbage, migrate, verify
from ._registry import default_registry
from ._store import CHUNK_SIZE
from .exceptions import BlobNotFound, InvalidIntegrity, SriblobError, UnknownBackend

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterator,
        Sequence,
    )

    from ._operations import Progress
    from ._registry import BlobStoreRegistry
    from ._store import BlobStore

__all__ = ["main"]

logger = logging.getLogger("sriblob")

#: Blobs up to this size are staged in memory before `get` prints them.
_SPOOL_SIZE = 8 * 1024 * 1024


class _CommandError(Exception):
    """An error to print on one line, with the exit code to leave with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _OneLine(logging.Formatter):
    """Log lines without tracebacks: the command prints no tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = None
        record.exc_text = None
        return super().format(record)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sriblob",
        description="Store and fetch blobs named by their Subresource Integrity.",
    )
    parser.add_argument(
        "--root",
        metavar="DIR",
        help="the filesystem store's directory (default: $SRIBLOB_ROOT, else "
        "the user data directory)",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log what the stores do"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    put = commands.add_parser("put", help="store a file in the active store")
    put.add_argument("file", metavar="FILE", help="the file to store; - for stdin")
    _store_option(put, "store it in")
    get = commands.add_parser(
        "get", help="write a blob to stdout, from the first store that has it"
    )
    get.add_argument("integrity", metavar="INTEGRITY")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead")
    has = commands.add_parser("has", help="print yes (exit 0) or no (exit 1)")
    has.add_argument("integrity", metavar="INTEGRITY")
    rm = commands.add_parser("rm", help="delete a blob from the active store")
    rm.add_argument("integrity", metavar="INTEGRITY")
    _store_option(rm, "delete it from")
    ls = commands.add_parser("ls", help="list the active store's blobs")
    _store_option(ls, "list")
    info = commands.add_parser(
        "info",
        help="show the stores and why one is active; with INTEGRITY, the blob's "
        "size and storage time",
    )
    info.add_argument(
        "integrity",
        metavar="INTEGRITY",
        nargs="?",
        help="a blob to describe (from the first store that holds it), "
        "without reading its bytes",
    )
    _add_operation_parsers(commands)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected an integer >= 1, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        msg = f"expected a number of seconds >= 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _add_operation_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    json_help = "print a machine-readable summary (JSON) to stdout"
    concurrency_help = "how many blobs to handle at once (default: 4)"

    migrate = commands.add_parser(
        "migrate",
        help="copy every blob of one store into another (resumable)",
        description="Copy every blob of one store into another. Blobs the target "
        "already holds are skipped, so running it again after an interruption "
        "finishes the job. Exit status 1 if any blob failed.",
    )
    source = migrate.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--from", dest="source", metavar="ID", help="the store id to copy from"
    )
    source.add_argument(
        "--from-root",
        metavar="DIR",
        help="copy from the filesystem store at DIR instead of a registered store",
    )
    migrate.add_argument(
        "--to", dest="target", metavar="ID", required=True, help="the store id to fill"
    )
    migrate.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help=concurrency_help,
    )
    migrate.add_argument(
        "--delete-source",
        action="store_true",
        help="delete each blob from the source once the target holds it",
    )
    migrate.add_argument("--json", action="store_true", help=json_help)

    verify = commands.add_parser(
        "verify",
        help="read every blob of a store and check it against its integrity",
        description="Read every blob of a store through to the end, checking it "
        "against its integrity. Exit status 1 if any blob is corrupt or unreadable.",
    )
    _store_option(verify, "check")
    verify.add_argument(
        "--delete-corrupt", action="store_true", help="delete the corrupt blobs"
    )
    verify.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        metavar="N",
        help=concurrency_help,
    )
    verify.add_argument("--json", action="store_true", help=json_help)

    gc = commands.add_parser(
        "gc",
        help="delete the blobs not listed in a keep file (a dry run without --yes)",
        description="Delete every blob of the store that FILE doesn't list. "
        "Without --yes nothing is deleted: the command prints what would be "
        "deleted and how many bytes that would free.",
    )
    gc.add_argument(
        "--keep",
        metavar="FILE",
        required=True,
        help="the integrities to keep, one a line; blank lines and # comments "
        "are ignored; - for stdin",
    )
    gc.add_argument("--yes", action="store_true", help="really delete")
    gc.add_argument(
        "--grace",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="spare blobs stored less than this long ago (default: 3600)",
    )
    _store_option(gc, "collect")
    gc.add_argument("--json", action="store_true", help=json_help)


def _store_option(parser: argparse.ArgumentParser, verb: str) -> None:
    parser.add_argument(
        "--store",
        metavar="ID",
        help=f"the id of the store to {verb} (default: the active one)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sriblob`` command.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by
            default.

    Returns:
        The exit status: 0 on success, 1 for a missing blob or a store error
        (or a migrate, verify that found a failed or corrupt blob), 2 for a
        usage error (a malformed integrity, a missing input file, an unknown
        store id), 130 when interrupted (Ctrl-C).

    .. versionadded:: 0.1.0
    """
    args = _parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("sriblob: %(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    previous_level = logger.level
    logger.addHandler(handler)
    if args.verbose:
        logger.setLevel(logging.DEBUG)
    try:
        return asyncio.run(_run(args))
    except _CommandError as failure:
        return _fail(str(failure), failure.code)
    except InvalidIntegrity as exc:
        return _fail(str(exc), 2)
    except (SriblobError, OSError) as exc:
        return _fail(str(exc) or type(exc).__name__, 1)
    except KeyboardInterrupt:
        # asyncio.run cancelled the command's task first: the running
        # operation stopped, its stores closed, no temp file or upload left.
        return _fail("interrupted", 130)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _fail(message: str, code: int) -> int:
    print(f"sriblob: error: {message}", file=sys.stderr)  # noqa: T201 -- the CLI's output
    return code


def _out(text: str) -> None:
    print(text)  # noqa: T201 -- the CLI's output


async def _run(args: argparse.Namespace) -> int:
    async with default_registry(root=args.root) as registry:
        command: Callable[[BlobStoreRegistry, argparse.Namespace], Awaitable[int]]
        command = _COMMANDS[args.command]
        return await command(registry, args)


async def _put_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    return await _put(_store(registry, args.store), args.file)


async def _get_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    return await _get(registry, Integrity.parse(args.integrity), args.output)


async def _has_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    return await _has(registry, Integrity.parse(args.integrity))


async def _rm_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    integrity = Integrity.parse(args.integrity)
    await _store(registry, args.store).delete(integrity)
    return 0


async def _ls_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    async for name in _store(registry, args.store).list():
        _out(name)
    return 0


async def _info_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    if args.integrity is not None:
        return await _info_blob(registry, Integrity.parse(args.integrity))
    for line in registry.describe():
        _out(line)
    return 0


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
        yield chunk


async def _put(store: BlobStore, name: str) -> int:
    if name == "-":
        integrity = await store.add(_read_chunks(sys.stdin.buffer))
    else:
        try:
            file = await asyncio.to_thread(Path(name).open, "rb")
        except OSError as exc:
            raise _CommandError(
                f"can't read {name}: {exc.strerror or exc}", 2
            ) from None
        with file:
            integrity = await store.add(_read_chunks(file))
    _out(integrity)
    return 0


_T = TypeVar("_T")


async def _first_answer(
    registry: BlobStoreRegistry,
    operation: str,
    ask: Callable[[BlobStore], Awaitable[_T | None]],
) -> tuple[_T, BlobStore] | None:
    """Ask the stores in fallback order; return the first answer and its store.

    A store that fails is logged and skipped, since another may hold the
    blob; when no store answered and one failed, the first failure is raised.
    """
    failures: list[Exception] = []
    for store in registry.fallback_order():
        try:
            answer = await ask(store)
        except Exception as exc:  # noqa: BLE001 -- another store may hold it
            logger.warning("%s backend=%s failed: %s", operation, store.id, exc)
            failures.append(exc)
            continue
        if answer is not None:
            return answer, store
    if failures:
        raise failures[0]
    return None


def _nowhere(registry: BlobStoreRegistry, integrity: Integrity) -> _CommandError:
    ids = ", ".join(registry.ids())
    return _CommandError(f"no blob {integrity} in any store ({ids})", 1)


async def _has(registry: BlobStoreRegistry, integrity: Integrity) -> int:
    async def holds(store: BlobStore) -> bool | None:
        return await store.has(integrity) or None

    found = await _first_answer(registry, "has", holds) is not None
    _out("yes" if found else "no")
    return 0 if found else 1


async def _get(
    registry: BlobStoreRegistry, integrity: Integrity, output: str | None
) -> int:
    if output is None:
        # Stage the blob: nothing is printed before it verified.
        with tempfile.SpooledTemporaryFile(_SPOOL_SIZE) as staging:
            served = await _fetch(registry, integrity, staging)
            staging.seek(0)
            with contextlib.suppress(BrokenPipeError):
                shutil.copyfileobj(staging, sys.stdout.buffer, CHUNK_SIZE)
                sys.stdout.buffer.flush()
        logger.debug("get integrity=%s served by %s", integrity, served)
        return 0
    target = Path(output)
    temp = target.with_name(f".{target.name}.tmp-{secrets.token_hex(6)}")
    try:
        with temp.open("xb") as staging:
            await _fetch(registry, integrity, staging)
            staging.flush()
            os.fsync(staging.fileno())
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)
    return 0


async def _fetch(
    registry: BlobStoreRegistry, integrity: Integrity, staging: IO[bytes]
) -> str:
    """Copy the verified blob from the first store that has it into *staging*."""

    async def copy(store: BlobStore) -> bool | None:
        staging.seek(0)
        staging.truncate()
        try:
            async with store.open(integrity) as reader:
                async for chunk in reader:
                    await asyncio.to_thread(staging.write, chunk)
        except BlobNotFound:
            return None
        return True

    found = await _first_answer(registry, "get", copy)
    if found is None:
        raise _nowhere(registry, integrity)
    return found[1].id


async def _info_blob(registry: BlobStoreRegistry, integrity: Integrity) -> int:
    """Print a blob's size and storage time from the first store that has it."""
    found = await _first_answer(registry, "stat", lambda store: store.stat(integrity))
    if found is None:
        raise _nowhere(registry, integrity)
    info, store = found
    stored_at = (
        "unknown (the store doesn't record it)"
        if info.stored_at is None
        else info.stored_at.astimezone(dt.UTC).isoformat()
    )
    _out(f"integrity: {info.integrity}")
    _out(f"store: {store.id}")
    _out(f"size: {info.size}")
    _out(f"stored_at: {stored_at}")
    return 0


# -- whole-store operations ---------------------------------------------------


class _Bar(tqdm):  # type: ignore[type-arg]
    """A tqdm bar without tqdm's monitor thread (the command is short-lived)."""

    monitor_interval = 0


class _ProgressBar:
    """Show an operation's :class:`Progress` on stderr, if it is a terminal.

    Counts blobs, with their rate and (where the total is known) an ETA;
    the bytes handled and their rate follow. Not a terminal: shows nothing.
    """

    def __init__(self, description: str, bytes_word: str) -> None:
        self._bytes_word = bytes_word
        self._start = time.monotonic()
        self._bar = _Bar(
            desc=description,
            unit=" blobs",
            file=sys.stderr,
            disable=not _is_terminal(sys.stderr),
            dynamic_ncols=True,
            leave=True,
        )

    def __call__(self, progress: Progress, /) -> None:
        bar = self._bar
        if bar.disable:
            return
        if progress.total is not None and bar.total != progress.total:
            bar.total = progress.total
        elapsed = max(time.monotonic() - self._start, 1e-6)
        size = tqdm.format_sizeof(progress.bytes_done, "B", 1024)
        rate = tqdm.format_sizeof(progress.bytes_done / elapsed, "B/s", 1024)
        failed = f", {progress.failed} failed" if progress.failed else ""
        bar.set_postfix_str(f"{size} {self._bytes_word}, {rate}{failed}", refresh=False)
        bar.update(progress.blobs_done - bar.n)

    def close(self) -> None:
        self._bar.close()


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def _progress_bar(description: str, bytes_word: str) -> Iterator[_ProgressBar]:
    bar = _ProgressBar(description, bytes_word)
    try:
        yield bar
    finally:
        bar.close()


def _store(registry: BlobStoreRegistry, id: str | None) -> BlobStore:
    """Return the store registered under *id* (the active one for None)."""
    try:
        return registry.active if id is None else registry.get(id)
    except UnknownBackend as exc:
        raise _CommandError(str(exc), 2) from None


def _print_json(command: str, report: object, **fields: object) -> None:
    summary: dict[str, Any] = {"command": command, **fields}
    summary.update(attrs.asdict(report))  # type: ignore[arg-type]
    ok = getattr(report, "ok", None)
    if ok is not None:
        summary["ok"] = ok
    _out(json.dumps(summary, indent=2))


async def _migrate_command(
    registry: BlobStoreRegistry, args: argparse.Namespace
) -> int:
    target = _store(registry, args.target)
    async with contextlib.AsyncExitStack() as stack:
        source: BlobStore
        if args.from_root is not None:
            source = await stack.enter_async_context(
                FilesystemBlobStore(args.from_root, id="filesystem-source")
            )
        else:
            source = _store(registry, args.source)
        with _progress_bar(f"migrate {source.id} -> {target.id}", "copied") as bar:
            try:
                report = await migrate(
                    source,
                    target,
                    concurrency=args.concurrency,
                    delete_source=args.delete_source,
                    on_progress=bar,
                )
            except ValueError as exc:
                raise _CommandError(str(exc), 2) from None
    if args.json:
        _print_json("migrate", report, source=source.id, target=target.id)
    else:
        for failure in report.failed:
            _out(f"failed {failure.integrity}: {failure.reason}")
        _out(
            f"migrate {source.id} -> {target.id}: copied {report.copied} "
            f"({report.bytes_copied} bytes), skipped {report.skipped}, "
            f"failed {len(report.failed)}, deleted from source {report.deleted}"
        )
    return 0 if report.ok else 1


async def _verify_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    store = _store(registry, args.store)
    with _progress_bar(f"verify {store.id}", "checked") as bar:
        try:
            report = await verify(
                store,
                concurrency=args.concurrency,
                delete_corrupt=args.delete_corrupt,
                on_progress=bar,
            )
        except ValueError as exc:
            raise _CommandError(str(exc), 2) from None
    if args.json:
        _print_json("verify", report, store=store.id)
    else:
        for integrity in report.corrupt:
            _out(f"corrupt {integrity}")
        for failure in report.failed:
            _out(f"failed {failure.integrity}: {failure.reason}")
        _out(
            f"verify {store.id}: {report.checked} intact ({report.bytes_checked} "
            f"bytes), {len(report.corrupt)} corrupt, {len(report.failed)} failed, "
            f"{report.deleted} deleted"
        )
    return 0 if report.ok else 1


def _read_keep(name: str) -> list[str]:
    """Read a keep file: one integrity a line, blank lines and # comments ignored."""
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise _CommandError(f"can't read {name}: {reason}", 2) from None
    keep: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            keep.append(str(Integrity.parse(entry)))
        except InvalidIntegrity as exc:
            raise _CommandError(f"{name}:{number}: {exc}", 2) from None
    return keep


async def _gc_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    store = _store(registry, args.store)
    keep = await asyncio.to_thread(_read_keep, args.keep)
    dry_run = not args.yes
    word = "would free" if dry_run else "freed"
    with _progress_bar(f"gc {store.id}", word) as bar:
        report = await collect_garbage(
            store,
            keep,
            dry_run=dry_run,
            grace=dt.timedelta(seconds=args.grace),
            on_progress=bar,
        )
    if args.json:
        _print_json("gc", report, store=store.id)
        return 0
    verb = "would delete" if dry_run else "deleted"
    for integrity in report.deleted:
        _out(f"{verb} {integrity}")
    _out(
        f"gc {store.id}: {word} {report.bytes_freed} bytes from "
        f"{len(report.deleted)} blobs; kept {report.kept} listed, spared "
        f"{report.spared_fresh} stored within the last {args.grace:g} s"
    )
    if dry_run:
        _out("dry run: nothing was deleted; pass --yes to delete")
    return 0


_COMMANDS: dict[
    str, Callable[[BlobStoreRegistry, argparse.Namespace], Awaitable[int]]
] = {
    "put": _put_command,
    "get": _get_command,
    "has": _has_command,
    "rm": _rm_command,
    "ls": _ls_command,
    "info": _info_command,
    "migrate": _migrate_command,
    "verify": _verify_command,
    "gc": _gc_command,
}
