"""The ``sriblob`` command: put, get, has, rm, ls and info on the default registry."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ._integrity import Integrity
from ._registry import default_registry
from ._store import CHUNK_SIZE
from .exceptions import BlobNotFound, InvalidIntegrity, SriblobError

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Sequence

    from ._registry import BlobStoreRegistry

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
    get = commands.add_parser(
        "get", help="write a blob to stdout, from the first store that has it"
    )
    get.add_argument("integrity", metavar="INTEGRITY")
    get.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead")
    has = commands.add_parser("has", help="print yes (exit 0) or no (exit 1)")
    has.add_argument("integrity", metavar="INTEGRITY")
    rm = commands.add_parser("rm", help="delete a blob from the active store")
    rm.add_argument("integrity", metavar="INTEGRITY")
    commands.add_parser("ls", help="list the active store's blobs")
    commands.add_parser("info", help="show the stores and why one is active")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sriblob`` command.

    Args:
        argv: The arguments, without the program name; ``sys.argv[1:]`` by
            default.

    Returns:
        The exit status: 0 on success, 1 for a missing blob or a store error,
        2 for a usage error (a malformed integrity, a missing input file).

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
        return 130
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
        command = args.command
        if command == "put":
            return await _put(registry, args.file)
        if command == "get":
            return await _get(registry, Integrity.parse(args.integrity), args.output)
        if command == "has":
            return await _has(registry, Integrity.parse(args.integrity))
        if command == "rm":
            await registry.active.delete(Integrity.parse(args.integrity))
            return 0
        if command == "ls":
            async for name in registry.active.list():
                _out(name)
            return 0
        for line in registry.describe():
            _out(line)
        return 0


async def _read_chunks(file: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(file.read, CHUNK_SIZE):
        yield chunk


async def _put(registry: BlobStoreRegistry, name: str) -> int:
    if name == "-":
        integrity = await registry.active.add(_read_chunks(sys.stdin.buffer))
    else:
        try:
            file = await asyncio.to_thread(Path(name).open, "rb")
        except OSError as exc:
            raise _CommandError(
                f"can't read {name}: {exc.strerror or exc}", 2
            ) from None
        with file:
            integrity = await registry.active.add(_read_chunks(file))
    _out(integrity)
    return 0


async def _has(registry: BlobStoreRegistry, integrity: Integrity) -> int:
    failures: list[Exception] = []
    for store in registry.fallback_order():
        try:
            if await store.has(integrity):
                _out("yes")
                return 0
        except Exception as exc:  # noqa: BLE001 -- another store may hold it
            logger.warning("has backend=%s failed: %s", store.id, exc)
            failures.append(exc)
    if failures:
        raise failures[0]
    _out("no")
    return 1


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
    failures: list[Exception] = []
    for store in registry.fallback_order():
        staging.seek(0)
        staging.truncate()
        try:
            async with store.open(integrity) as reader:
                async for chunk in reader:
                    await asyncio.to_thread(staging.write, chunk)
        except BlobNotFound:
            continue
        except Exception as exc:  # noqa: BLE001 -- another store may hold it
            logger.warning("get backend=%s failed: %s", store.id, exc)
            failures.append(exc)
            continue
        return store.id
    if failures:
        raise failures[0]
    ids = ", ".join(registry.ids())
    raise _CommandError(f"no blob {integrity} in any store ({ids})", 1)
