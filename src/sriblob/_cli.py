"""The ``sriblob`` command: blobs (put, get, has, rm, ls, info) and whole stores.

The whole-store commands (migrate, verify, gc) run the library operations
of :mod:`sriblob._operations` on the default registry's stores.

Only the standard library is imported up front, so ``sriblob --help`` and a
Ctrl-C during start-up are instant and quiet; the stores, and tqdm for
progress bars, load when a command needs them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import stat
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, TypeVar

# asyncio, json, signal and tempfile are imported where they are used: the
# less runs before main() can catch a Ctrl-C, the fewer tracebacks.
if TYPE_CHECKING:
    import socket
    from collections.abc import (
        AsyncIterator,
        Awaitable,
        Callable,
        Iterator,
        Sequence,
    )

    import uvicorn

    from ._integrity import Integrity
    from ._operations import Progress
    from ._registry import BlobStoreRegistry
    from ._store import BlobStore

__all__ = ["main"]

logger = logging.getLogger("sriblob")

#: Blobs up to this size are staged in memory before `get` prints them.
_SPOOL_SIZE: Final = 8 * 1024 * 1024
#: Chunk size for reading files and writing output.
_CHUNK: Final = 1024 * 1024
#: How long `serve` lets requests in flight finish once told to stop, in
#: seconds: Kubernetes' default grace period (30 s) less a margin.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 25.0
#: Exit statuses (sysexits.h where one fits).
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_BUSY: Final = 75  # EX_TEMPFAIL: another process holds the lease
EXIT_CONFIG: Final = 78
EXIT_INTERRUPTED: Final = 130
EXIT_TERMINATED: Final = 143
#: Every exit status and what it means: ``sriblob --help`` lists them, and
#: so does the command-line reference (docs/cli.md; a test compares them).
EXIT_STATUSES: Final = (
    (0, "success"),
    (
        EXIT_FAILED,
        (
            "a missing blob, a failing store, a put --integrity whose bytes "
            "don't match, or a migrate or verify that found a failed or "
            "corrupt blob"
        ),
    ),
    (
        EXIT_USAGE,
        (
            "a usage error: a malformed integrity or size, an input file "
            "that can't be read, an unknown store id, -o naming a directory"
        ),
    ),
    (
        EXIT_BUSY,
        (
            "another process holds the store's maintenance lease (gc --yes, "
            "migrate, verify --delete-corrupt); --lease-timeout waits for it"
        ),
    ),
    (
        EXIT_CONFIG,
        (
            "a backend is misconfigured, and the command would write or "
            "needs the active store"
        ),
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C)"),
    (EXIT_TERMINATED, "terminated (SIGTERM)"),
)


class _CommandError(Exception):
    """An error to print on one line, with the exit code to leave with."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class _Repeats(logging.Filter):
    """Hold back log records that repeat what the command prints itself.

    The command says in one line what is misconfigured, and prints each
    blob a migrate or verify failed on; the stores' log records saying the
    same are dropped (``-v`` shows them). While the registry is being built
    its records are held, since what it found is known only afterwards.
    """

    #: The operations' per-blob records the command prints itself.
    PER_BLOB: Final = ("migrate failed ", "verify corrupt ", "verify failed ")

    def __init__(self) -> None:
        super().__init__()
        self.held: list[logging.LogRecord] | None = None
        self.problems: tuple[str, ...] = ()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.held is not None:
            self.held.append(record)
            return False
        message = record.getMessage()
        if message.startswith(self.PER_BLOB):
            return False
        return not any(problem in message for problem in self.problems)


class _OneLine(logging.Formatter):
    """Log lines without tracebacks: the command prints no tracebacks."""

    def format(self, record: logging.LogRecord) -> str:
        record = logging.makeLogRecord(record.__dict__)
        record.exc_info = None
        record.exc_text = None
        return super().format(record)


def shown(text: object) -> str:
    r"""Return *text* safe to print: control characters escaped, not obeyed.

    A file name like ``missing\\x1b[2J`` would otherwise clear the terminal.
    """
    return "".join(
        char if char.isprintable() else repr(char)[1:-1] for char in str(text)
    )


def _version() -> str:
    from importlib.metadata import version  # noqa: PLC0415 -- only when asked

    return f"sriblob {version('sriblob')}"


class _Version(argparse.Action):
    """``--version``, looked up only when asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(_version())  # noqa: T201 -- the CLI's output
        parser.exit()


#: The variable ``sriblob url`` takes its base URL from.
_BASE_URL: Final = "SRIBLOB_BASE_URL"
#: The TCP ports there are.
_MAX_PORT: Final = 65535

_INTEGRITY_HELP: Final = (
    "the blob's Subresource Integrity, e.g. sha512-<base64> (several hashes "
    "separated by spaces are accepted; the strongest is used)"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sriblob",
        description="Store and fetch blobs named by their Subresource Integrity.",
        epilog=_exit_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
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
    put = commands.add_parser(
        "put",
        help="store a file in the active store and print its integrity",
        description="Store FILE (or standard input) and print its integrity. "
        "With --integrity, store it only if its bytes match.",
    )
    put.add_argument("file", metavar="FILE", help="the file to store; - for stdin")
    put.add_argument(
        "--integrity",
        metavar="SRI",
        help="the integrity the bytes must have (npm's dist.integrity, say); "
        "a mismatch stores nothing and exits 1",
    )
    _store_option(put, "store it in")
    get = commands.add_parser(
        "get",
        help="write a blob to stdout, from the first store that has it",
        description="Write a verified blob to standard output or to FILE. "
        "Nothing is written before the whole blob verified. A regular FILE is "
        "replaced atomically, keeping an existing file's mode; a symlink's "
        "target is replaced, the link kept; a device or FIFO is written into.",
    )
    get.add_argument("integrity", metavar="INTEGRITY", help=_INTEGRITY_HELP)
    get.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE instead; - for stdout"
    )
    has = commands.add_parser("has", help="print yes (exit 0) or no (exit 1)")
    has.add_argument("integrity", metavar="INTEGRITY", help=_INTEGRITY_HELP)
    rm = commands.add_parser(
        "rm",
        help="delete a blob from the active store",
        description="Delete a blob. Deleting a blob the store doesn't hold "
        "says so on stderr and exits 0: afterwards, it is not there.",
    )
    rm.add_argument("integrity", metavar="INTEGRITY", help=_INTEGRITY_HELP)
    _store_option(rm, "delete it from")
    ls = commands.add_parser(
        "ls",
        help="list the active store's blobs",
        description="List the integrity of every blob. Objects whose names "
        "are not canonical integrities (another tool's files) are counted on "
        "stderr, not listed. While a backend is misconfigured no store is "
        "active: name one with --store.",
    )
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
    serve = commands.add_parser(
        "serve",
        help="serve the blobs over HTTP (GET/HEAD /blobs/INTEGRITY)",
        description="Serve the blobs of the active store (or --store ID) over "
        "HTTP with sriblob.asgi.BlobApp under uvicorn, until Ctrl-C. Reads "
        "fall back over every registered store. Needs uvicorn: python -m pip "
        "install uvicorn, or install sriblob with its serve extra. GET /metrics "
        "answers in the Prometheus text format, beside the blobs unless "
        "--metrics-listen or --no-metrics says otherwise. Exit status 2 for a "
        "port outside 1-65535, 1 when it can't listen (the port is in use, say).",
    )
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default: 127.0.0.1)",
    )
    serve.add_argument(
        "--port", type=_positive_int, default=8080, help="the port (default: 8080)"
    )
    serve.add_argument(
        "--prefix", default="/blobs", help="the path prefix (default: /blobs)"
    )
    serve.add_argument(
        "--redirect",
        action="store_true",
        help="answer GET with a redirect to a presigned URL where the store can (S3)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help="on Ctrl-C or SIGTERM, how long requests in flight may take to "
        "finish before they are cut (default: 25)",
    )
    metrics = serve.add_mutually_exclusive_group()
    metrics.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        help="answer GET /metrics on this address instead, apart from the blobs "
        "(such as 127.0.0.1:9464; for a blob port open to the world)",
    )
    metrics.add_argument(
        "--no-metrics",
        action="store_true",
        help="don't answer GET /metrics (and install no OpenTelemetry SDK)",
    )
    _store_option(serve, "serve")
    url = commands.add_parser(
        "url",
        help="print the URL sriblob serve serves a blob at",
        description="Print where sriblob serve (or sriblob.asgi.BlobApp) serves "
        "the blob: PREFIX/INTEGRITY, URL-encoded, or the full URL with "
        "--base-url. Reads no store: the blob needn't be stored yet.",
    )
    url.add_argument("integrity", metavar="INTEGRITY", help=_INTEGRITY_HELP)
    url.add_argument(
        "--prefix", default="/blobs", help="the serve prefix (default: /blobs)"
    )
    url.add_argument(
        "--base-url",
        metavar="URL",
        help="the server's root URL, such as http://127.0.0.1:8080 (default: "
        f"${_BASE_URL}; without either, the path alone is printed)",
    )
    return parser


def _exit_table() -> str:
    """The exit statuses as ``sriblob --help`` ends with them: one a row."""
    import textwrap  # noqa: PLC0415 -- only for --help

    rows = ["exit status:"]
    for code, meaning in EXIT_STATUSES:
        rows += textwrap.wrap(
            meaning,
            width=78,
            initial_indent=f"  {code:<5}",
            subsequent_indent=" " * 7,
            break_on_hyphens=False,
        )
    return "\n".join(rows)


def _size_argument(text: str) -> int:
    from ._sizes import parse_size  # noqa: PLC0415 -- lazy

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    lease_help = (
        "wait up to SECONDS for the store's maintenance lease when another "
        "process holds it (default: fail at once, exit status 75)"
    )

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
    source.add_argument(
        "--from-postgres-layout",
        choices=["checkstack"],
        help="copy from the original system's PostgreSQL table in the database "
        "of $SRIBLOB_POSTGRES_DSN (layout 'checkstack'), verified",
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
        help="delete each blob from the source once the target holds a copy "
        "known to be good",
    )
    migrate.add_argument(
        "--lease-timeout", type=_seconds, metavar="SECONDS", help=lease_help
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
        "--lease-timeout",
        type=_seconds,
        metavar="SECONDS",
        help=lease_help + "; with --delete-corrupt only",
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
    gc.add_argument(
        "--lease-timeout",
        type=_seconds,
        metavar="SECONDS",
        help=lease_help + "; with --yes only",
    )
    _store_option(gc, "collect")
    gc.add_argument("--json", action="store_true", help=json_help)

    cache = commands.add_parser(
        "cache",
        help="show or prune the local caches (SRIBLOB_CACHE_DIR)",
        description="stats: what each cached store's front holds. prune: evict "
        "the least recently used blobs until each front holds at most "
        "--max-bytes (default: its cap; 0 empties it).",
    )
    cache.add_argument(
        "action",
        choices=["stats", "prune"],
        help="stats shows each front's blobs and bytes; prune evicts",
    )
    cache.add_argument(
        "--max-bytes",
        type=_size_argument,
        metavar="SIZE",
        help="prune down to SIZE: bytes, or with a unit such as 500MB or 1GiB "
        "(default: the cap)",
    )


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
        store id), 75 when another process holds the store's maintenance
        lease (``gc --yes``, ``migrate``, ``verify --delete-corrupt``), 78
        when a backend is misconfigured and the command would write or
        needs the active store (``ls``, ``verify``, ``gc`` without
        ``--store``), 130 when interrupted (Ctrl-C), 143 when terminated
        (SIGTERM). :data:`EXIT_STATUSES` lists them.

    .. versionadded:: 0.1.0
    """
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C anywhere, start-up included: no traceback. Inside a command,
        # asyncio.run cancelled it first: the running operation stopped, its
        # stores closed, no temp file or upload left.
        return _fail("interrupted", EXIT_INTERRUPTED)


def _main(argv: Sequence[str] | None) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports

    args = _parser().parse_args(argv)
    from .exceptions import (  # noqa: PLC0415 -- after parsing: --help stays quick
        ConfigurationError,
        InvalidIntegrity,
        SriblobError,
        StoreBusy,
    )

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine("sriblob: %(levelname)s: %(message)s"))
    handler.setLevel(logging.DEBUG if args.verbose else logging.WARNING)
    repeats = None if args.verbose else _Repeats()
    if repeats is not None:
        handler.addFilter(repeats)
    previous_level = logger.level
    logger.addHandler(handler)
    if args.verbose:
        logger.setLevel(logging.DEBUG)
    try:
        return asyncio.run(_run(args, handler, repeats))
    except _CommandError as failure:
        return _fail(str(failure), failure.code)
    except InvalidIntegrity as exc:
        return _fail(str(exc), EXIT_USAGE)
    except ConfigurationError as exc:
        return _fail(str(exc), EXIT_CONFIG)
    except StoreBusy as exc:
        return _fail(str(exc), EXIT_BUSY)
    except (SriblobError, OSError) as exc:
        return _fail(str(exc) or type(exc).__name__, EXIT_FAILED)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)


def _fail(message: str, code: int) -> int:
    print(f"sriblob: error: {message}", file=sys.stderr)  # noqa: T201 -- the CLI's output
    return code


def _out(text: str) -> None:
    print(text)  # noqa: T201 -- the CLI's output


def _note(text: str) -> None:
    print(f"sriblob: {text}", file=sys.stderr)  # noqa: T201 -- the CLI's output


async def _run(
    args: argparse.Namespace, handler: logging.Handler, repeats: _Repeats | None
) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports
    import signal  # noqa: PLC0415 -- see the module's imports

    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None  # noqa: S101 -- asyncio.run runs us in a task
    terminated = False

    def terminate() -> None:
        # SIGTERM cancels the command like Ctrl-C, so its cleanup runs.
        nonlocal terminated
        terminated = True
        task.cancel()

    local = _LOCAL_COMMANDS.get(args.command)
    if local is not None:
        return local(args)
    prepare = _PREPARE.get(args.command)
    if prepare is not None:
        prepare(args)
    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        async with _registry(args, handler, repeats) as registry:
            _check_configuration(registry, args)
            command = _COMMANDS[args.command]
            return await command(registry, args)
    except asyncio.CancelledError:
        if terminated:
            raise _CommandError("terminated", EXIT_TERMINATED) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def _registry(
    args: argparse.Namespace, handler: logging.Handler, repeats: _Repeats | None
) -> BlobStoreRegistry:
    """The default registry; what its plugins logged, less what the command says."""
    from ._environment import default_registry  # noqa: PLC0415 -- lazy

    if repeats is None:  # -v: every record, as it comes
        return default_registry(root=args.root)
    repeats.held = []
    try:
        registry = default_registry(root=args.root)
    finally:
        held, repeats.held = repeats.held, None
    repeats.problems = tuple(str(error) for error in registry.problems.values())
    for record in held:
        if record.levelno >= handler.level:
            handler.handle(record)
    return registry


def _problems(registry: BlobStoreRegistry) -> str:
    """What is misconfigured and what to do, each problem once."""
    texts = dict.fromkeys(str(error) for error in registry.problems.values())
    return " ".join(text if text.endswith(".") else text + "." for text in texts)


def _uses_active_store(args: argparse.Namespace) -> bool:
    """Whether the command writes, or works on the active store (no --store)."""
    match args.command:
        case "put" | "rm" | "migrate":
            return True
        case "gc":
            return bool(args.yes) or args.store is None
        case "verify":
            return bool(args.delete_corrupt) or args.store is None
        case "ls":
            return args.store is None
    return False


def _check_configuration(registry: BlobStoreRegistry, args: argparse.Namespace) -> None:
    """Refuse in one line, or warn in one line, when a backend is misconfigured.

    Commands that write, or that would work on the active store, exit 78:
    there is no active store, and another one must not silently stand in.
    Reads go on over the stores that are configured, with one warning
    (``info`` shows the problem itself).
    """
    if not registry.writes_refused:
        return
    if _uses_active_store(args):
        raise _refusal(registry, args)
    if args.command != "info":
        readers = ", ".join(registry.ids()) or "none"
        problems = _problems(registry)
        _note(f"warning: reads fall back to {readers}, because {problems}")


def _refusal(registry: BlobStoreRegistry, args: argparse.Namespace) -> _CommandError:
    """The one-line error of a command that can't run beside a misconfiguration."""
    problems = _problems(registry)
    writes = args.command in ("put", "rm", "migrate") or (
        (args.command == "gc" and args.yes)
        or (args.command == "verify" and args.delete_corrupt)
    )
    if writes:
        return _CommandError(f"writes are refused: {problems}", EXIT_CONFIG)
    ids = ", ".join(registry.ids()) or "none"
    verb = {"ls": "list", "verify": "check", "gc": "collect"}[args.command]
    msg = (
        f"no store is active: {problems} Until then, --store ID picks a store "
        f"to {verb} from those configured: {ids}."
    )
    return _CommandError(msg, EXIT_CONFIG)


# -- one blob ---------------------------------------------------------------------


def _parse(text: str) -> str | Integrity:
    """Validate an integrity argument (before any I/O); keep a multi-hash one whole.

    A string with several digests of its strongest algorithm stays a string,
    so the store accepts (and looks under) each of them.
    """
    from ._integrity import candidates  # noqa: PLC0415 -- lazy

    options = candidates(text)
    return options[0] if len(options) == 1 else text


def _store(registry: BlobStoreRegistry, id: str | None) -> BlobStore:
    """Return the store registered under *id* (the active one for None)."""
    from .exceptions import UnknownBackend  # noqa: PLC0415 -- lazy

    try:
        return registry.active if id is None else registry.get(id)
    except UnknownBackend as exc:
        raise _CommandError(str(exc), EXIT_USAGE) from None


def _writable_store(registry: BlobStoreRegistry, id: str | None) -> BlobStore:
    """Like :func:`_store`, but refuse while a backend is misconfigured.

    With ``--store ID`` too: a command that writes or deletes never runs
    beside a broken configuration, whichever store it names.
    """
    if registry.writes_refused:
        msg = f"writes are refused: {_problems(registry)}"
        raise _CommandError(msg, EXIT_CONFIG)
    return _store(registry, id)


async def _put_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports

    store = _writable_store(registry, args.store)
    expected = None if args.integrity is None else _parse(args.integrity)
    if args.file == "-":
        chunks = _read_chunks(sys.stdin.buffer, None, label="put -")
        integrity = await _store_chunks(store, expected, chunks)
    else:
        try:
            file = await asyncio.to_thread(Path(args.file).open, "rb")
        except OSError as exc:
            reason = exc.strerror or exc
            msg = f"can't read {shown(args.file)}: {reason}"
            raise _CommandError(msg, EXIT_USAGE) from None
        with file:
            size = os.fstat(file.fileno()).st_size
            chunks = _read_chunks(file, size, label=f"put {args.file}")
            integrity = await _store_chunks(store, expected, chunks)
    _out(integrity)
    return 0


async def _store_chunks(
    store: BlobStore, expected: str | Integrity | None, chunks: AsyncIterator[bytes]
) -> str:
    from .exceptions import IntegrityMismatch  # noqa: PLC0415 -- lazy

    if expected is None:
        return await store.add(chunks)
    try:
        return await store.put(expected, chunks)
    except IntegrityMismatch as exc:
        msg = f"the bytes don't match --integrity {exc.expected} (they are "
        msg += f"{exc.actual}); nothing was stored"
        raise _CommandError(msg, EXIT_FAILED) from None


async def _read_chunks(
    file: IO[bytes], size: int | None, *, label: str
) -> AsyncIterator[bytes]:
    import asyncio  # noqa: PLC0415 -- see the module's imports

    with _byte_bar(label, size) as bar:
        while chunk := await asyncio.to_thread(file.read, _CHUNK):
            bar(len(chunk))
            yield chunk


async def _has_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    found = await registry.has_with_fallback(_parse(args.integrity)) is not None
    _out("yes" if found else "no")
    return 0 if found else 1


async def _rm_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    integrity = _parse(args.integrity)
    store = _writable_store(registry, args.store)
    if not await store.has(integrity):
        _note(f"no blob {integrity} in the {store.id!r} store; nothing to delete")
        return 0
    await store.delete(integrity)
    return 0


async def _ls_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    skipped: list[str] = []
    async for name in _store(registry, args.store).list(on_skip=skipped.append):
        _out(name)
    _report_foreign(len(skipped))
    return 0


def _report_foreign(count: int) -> None:
    if count:
        _note(
            f"skipped {count} object(s) whose names are not canonical "
            "integrities (not written by sriblob)"
        )


async def _info_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    if args.integrity is not None:
        return await _info_blob(registry, _parse(args.integrity))
    for line in registry.describe():
        _out(line)
    for store in registry.stores():
        _out(await _usage_line(store))
    return 0


async def _usage_line(store: BlobStore) -> str:
    """One line: the store's running total against its quota levels."""
    from ._sizes import format_size  # noqa: PLC0415 -- lazy
    from .exceptions import StoreError  # noqa: PLC0415 -- lazy

    if store.max_total_size is None and store.warn_total_size is None:
        return f"usage {store.id}: no quota (SRIBLOB_MAX_TOTAL_SIZE is not set)"
    try:
        usage = await store.usage()
    except StoreError as exc:
        return f"usage {store.id}: unavailable ({exc})"
    levels = []
    if usage.max_total_size is not None:
        share = (
            100 * usage.total / usage.max_total_size if usage.max_total_size else 100
        )
        levels.append(
            f"{share:.1f}% of max_total_size {format_size(usage.max_total_size)}"
        )
    if usage.warn_total_size is not None:
        state = "reached" if usage.over_warning else "below"
        levels.append(f"warn_total_size {format_size(usage.warn_total_size)} ({state})")
    return f"usage {store.id}: {format_size(usage.total)}, {'; '.join(levels)}"


def _nowhere(registry: BlobStoreRegistry, integrity: str | Integrity) -> _CommandError:
    ids = ", ".join(registry.ids())
    return _CommandError(f"no blob {integrity} in any store ({ids})", EXIT_FAILED)


async def _info_blob(registry: BlobStoreRegistry, integrity: str | Integrity) -> int:
    """Print a blob's size and storage time from the first store that has it."""
    import datetime as dt  # noqa: PLC0415 -- lazy

    found = await registry.stat_with_fallback(integrity)
    if found is None:
        raise _nowhere(registry, integrity)
    info, store_id = found
    stored_at = (
        "unknown (the store doesn't record it)"
        if info.stored_at is None
        else info.stored_at.astimezone(dt.UTC).isoformat()
    )
    _out(f"integrity: {info.integrity}")
    _out(f"store: {store_id}")
    _out(f"size: {info.size}")
    _out(f"stored_at: {stored_at}")
    return 0


# -- get ------------------------------------------------------------------------


async def _get_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports
    import tempfile  # noqa: PLC0415 -- see the module's imports

    integrity = _parse(args.integrity)
    # Nothing at the output path is touched for a blob no store holds.
    if await registry.has_with_fallback(integrity) is None:
        raise _nowhere(registry, integrity)
    output = args.output
    if output is None or output == "-":
        with tempfile.SpooledTemporaryFile(_SPOOL_SIZE) as staging:
            served = await _fetch(registry, integrity, staging)
            staging.seek(0)
            with contextlib.suppress(BrokenPipeError):
                await asyncio.to_thread(_copy_out, staging, sys.stdout.buffer)
        from ._telemetry import fields  # noqa: PLC0415 -- see the module's imports

        logger.debug(
            "get integrity=%s served by %s",
            integrity,
            served,
            extra=fields(served, "get", integrity),
        )
        return 0
    await _get_to_path(registry, integrity, Path(output))
    return 0


def _copy_out(source: IO[bytes], target: IO[bytes]) -> None:
    while chunk := source.read(_CHUNK):
        target.write(chunk)
    target.flush()


async def _get_to_path(
    registry: BlobStoreRegistry, integrity: str | Integrity, output: Path
) -> None:
    """Write the verified blob to *output* the way its kind of file needs.

    A symlink's target is what gets replaced, so the link survives. A
    device, FIFO or socket can't be replaced: the blob is staged, verified,
    then written into it. A regular file (or a new one) is replaced
    atomically by a temp file in its directory, keeping the old file's mode
    and, where allowed, its owner.
    """
    import asyncio  # noqa: PLC0415 -- see the module's imports
    import tempfile  # noqa: PLC0415 -- see the module's imports

    target, existing = await asyncio.to_thread(_resolve_output, output)
    if existing is not None and stat.S_ISDIR(existing.st_mode):
        msg = f"can't write {shown(output)}: it is a directory"
        raise _CommandError(msg, EXIT_USAGE)
    if existing is not None and not stat.S_ISREG(existing.st_mode):
        with tempfile.SpooledTemporaryFile(_SPOOL_SIZE) as staging:
            await _fetch(registry, integrity, staging)
            staging.seek(0)
            with await asyncio.to_thread(target.open, "wb") as sink:
                await asyncio.to_thread(_copy_out, staging, sink)
        return
    with _temp_beside(target, existing, output) as staging:
        await _fetch(registry, integrity, staging)
        staging.flush()
        os.fsync(staging.fileno())


def _resolve_output(output: Path) -> tuple[Path, os.stat_result | None]:
    """Return the path to write (a symlink's target) and what is there now."""
    target = Path(os.path.realpath(output)) if output.is_symlink() else output
    try:
        return target, target.stat()
    except FileNotFoundError:
        return target, None
    except OSError as exc:
        msg = f"can't write {shown(output)}: {exc.strerror}"
        raise _CommandError(msg, EXIT_FAILED) from None


@contextlib.contextmanager
def _temp_beside(
    target: Path, existing: os.stat_result | None, shown_as: Path
) -> Iterator[IO[bytes]]:
    """Yield a temp file next to *target*; rename it over *target* on success.

    Removed on any error, cancellation (Ctrl-C, SIGTERM) included.
    """
    import tempfile  # noqa: PLC0415 -- see the module's imports

    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{target.name}.tmp-", dir=target.parent or "."
        )
    except OSError as exc:
        msg = f"can't write {shown(shown_as)}: {exc.strerror}"
        raise _CommandError(msg, EXIT_FAILED) from None
    temp = Path(name)
    try:
        with os.fdopen(fd, "wb") as file:
            if existing is None:
                # A new file gets the usual mode: 0o666 less the umask.
                mask = os.umask(0)
                os.umask(mask)
                os.fchmod(file.fileno(), 0o666 & ~mask)
            else:
                os.fchmod(file.fileno(), stat.S_IMODE(existing.st_mode))
                with contextlib.suppress(PermissionError):
                    os.fchown(file.fileno(), existing.st_uid, existing.st_gid)
            yield file
        temp.replace(target)
    finally:
        temp.unlink(missing_ok=True)


async def _fetch(
    registry: BlobStoreRegistry, integrity: str | Integrity, staging: IO[bytes]
) -> str:
    """Copy the verified blob from the first store that has it into *staging*.

    A store whose copy fails verification is skipped for the next one, since
    nothing left *staging* before the copy verified.
    """
    import asyncio  # noqa: PLC0415 -- see the module's imports

    from .exceptions import BlobNotFound  # noqa: PLC0415 -- lazy

    async def copy(store: BlobStore) -> bool | None:
        staging.seek(0)
        staging.truncate()
        try:
            async with store.open(integrity) as reader:
                with _byte_bar(f"get {integrity}"[:40], reader.size) as bar:
                    async for chunk in reader:
                        await asyncio.to_thread(staging.write, chunk)
                        bar(len(chunk))
        except BlobNotFound:
            return None
        return True

    found = await registry.first_answer(integrity, copy, operation="get")
    if found is None:
        raise _nowhere(registry, integrity)
    return found[1].id


# -- progress -----------------------------------------------------------------


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _bar(**options: Any) -> Any:
    """A tqdm bar on stderr without tqdm's monitor thread (short-lived command)."""
    from tqdm import tqdm  # noqa: PLC0415 -- lazy: only on terminals

    class Bar(tqdm):  # type: ignore[type-arg]
        monitor_interval = 0

    return Bar(file=sys.stderr, dynamic_ncols=True, leave=True, **options)


def _size(count: float, unit: str = "B") -> str:
    """Format *count* bytes in SI units: kB, MB, GB are powers of 1,000."""
    from tqdm import tqdm  # noqa: PLC0415 -- lazy: only on terminals

    return str(tqdm.format_sizeof(count, unit, 1000))


@contextlib.contextmanager
def _byte_bar(label: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Show a byte counter (rate, ETA where *total* is known) on a terminal.

    Units are SI (``MB`` is 10**6 bytes), as tqdm labels them with a divisor
    of 1,000. Not a terminal: shows nothing and costs nothing.
    """
    if not _is_terminal(sys.stderr):
        yield lambda _: None
        return
    bar = _bar(
        desc=shown(label),
        total=total,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
    )
    try:
        yield bar.update
    finally:
        bar.close()


class _ProgressBar:
    """Show an operation's :class:`Progress` on stderr, if it is a terminal.

    Counts blobs, with their rate and (where the total is known) an ETA;
    the bytes handled and their rate follow, in SI units. Not a terminal:
    shows nothing.
    """

    def __init__(self, description: str, bytes_word: str) -> None:
        import time  # noqa: PLC0415 -- lazy

        self._clock = time.monotonic
        self._bytes_word = bytes_word
        self._start = self._clock()
        self._bar = (
            _bar(desc=description, unit=" blobs") if _is_terminal(sys.stderr) else None
        )

    def __call__(self, progress: Progress, /) -> None:
        bar = self._bar
        if bar is None:
            return
        if progress.total is not None and bar.total != progress.total:
            bar.total = progress.total
        elapsed = max(self._clock() - self._start, 1e-6)
        size = _size(progress.bytes_done)
        rate = _size(progress.bytes_done / elapsed, "B/s")
        failed = f", {progress.failed} failed" if progress.failed else ""
        bar.set_postfix_str(f"{size} {self._bytes_word}, {rate}{failed}", refresh=False)
        bar.update(progress.blobs_done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


_R = TypeVar("_R")


async def _with_progress(
    description: str, bytes_word: str, run: Callable[[_ProgressBar], Awaitable[_R]]
) -> _R:
    """Run a whole-store operation with a progress bar; its ValueError is usage."""
    bar = _ProgressBar(description, bytes_word)
    try:
        return await run(bar)
    except ValueError as exc:
        raise _CommandError(str(exc), EXIT_USAGE) from None
    finally:
        bar.close()


# -- whole-store operations ---------------------------------------------------


def _print_json(command: str, report: object, **fields: object) -> None:
    import json  # noqa: PLC0415 -- see the module's imports

    import attrs  # noqa: PLC0415 -- lazy

    summary: dict[str, Any] = {"command": command, **fields}
    summary.update(attrs.asdict(report))  # type: ignore[arg-type]
    ok = getattr(report, "ok", None)
    if ok is not None:
        summary["ok"] = ok
    _out(json.dumps(summary, indent=2))


async def _migrate_command(
    registry: BlobStoreRegistry, args: argparse.Namespace
) -> int:
    from ._filesystem import FilesystemBlobStore  # noqa: PLC0415 -- lazy
    from ._operations import migrate  # noqa: PLC0415 -- lazy
    from ._sizes import format_size  # noqa: PLC0415 -- lazy

    target = _writable_store(registry, args.target)
    async with contextlib.AsyncExitStack() as stack:
        source: BlobStore
        if args.from_root is not None:
            source = await stack.enter_async_context(
                FilesystemBlobStore(args.from_root, id="filesystem-source")
            )
        elif args.from_postgres_layout is not None:
            source = await stack.enter_async_context(
                _layout_store(args.from_postgres_layout)
            )
        else:
            source = _store(registry, args.source)
        report = await _with_progress(
            f"migrate {source.id} -> {target.id}",
            "copied",
            lambda bar: migrate(
                source,
                target,
                concurrency=args.concurrency,
                delete_source=args.delete_source,
                on_progress=bar,
                lease_timeout=args.lease_timeout,
            ),
        )
    if args.json:
        _print_json("migrate", report, source=source.id, target=target.id)
    else:
        for failure in report.failed:
            _out(f"failed {failure.integrity}: {failure.reason}")
        repaired = f", repaired {report.repaired}" if report.repaired else ""
        _out(
            f"migrate {source.id} -> {target.id}: copied {report.copied} "
            f"({format_size(report.bytes_copied)}), skipped {report.skipped}, "
            f"failed {len(report.failed)}, deleted from source {report.deleted}"
            f"{repaired}"
        )
        _report_foreign(report.foreign)
    return 0 if report.ok else EXIT_FAILED


async def _cache_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    from ._cache import CachedBlobStore  # noqa: PLC0415 -- lazy
    from ._sizes import format_size  # noqa: PLC0415 -- lazy

    caches = [s for s in registry.stores() if isinstance(s, CachedBlobStore)]
    if not caches:
        raise _CommandError(
            f"no store is cached: {_why_uncached(registry)}", EXIT_USAGE
        )
    for store in caches:
        if args.action == "prune":
            evicted = await store.prune(max_bytes=args.max_bytes)
            _out(f"cache {store.id}: evicted {evicted}")
        stats = await store.stats()
        _out(
            f"cache {store.id}: {stats.blobs} blobs, {format_size(stats.bytes)} of "
            f"{format_size(stats.max_bytes)} in {shown(str(store.front.root))}"
        )
    return 0


def _why_uncached(registry: BlobStoreRegistry) -> str:
    """Why the default registry wrapped no store in a cache, and what to do."""
    from ._environment import CACHE_DIR, load_cache_settings  # noqa: PLC0415 -- lazy
    from .exceptions import ConfigurationError  # noqa: PLC0415 -- lazy

    try:
        settings = load_cache_settings(os.environ)
    except ConfigurationError as exc:
        return str(exc)
    if settings is None:
        return f"{CACHE_DIR} is not set; set it to cache the remote stores"
    local = ", ".join(registry.ids()) or "none"
    return (
        f"{CACHE_DIR} is set, but there is no remote store to cache: only S3 "
        f"and PostgreSQL stores are cached, and the stores here are local ({local})"
    )


def _layout_store(layout: str) -> BlobStore:
    """A PostgreSQL store of *layout* on the database of ``SRIBLOB_POSTGRES_DSN``."""
    import os  # noqa: PLC0415 -- lazy

    import attrs  # noqa: PLC0415 -- lazy

    from ._config import Configured, load_postgres_config_from_env  # noqa: PLC0415
    from ._postgres import PostgresBlobStore  # noqa: PLC0415 -- lazy

    result = load_postgres_config_from_env(os.environ)
    if not isinstance(result, Configured):
        reason = getattr(result, "error", None) or "SRIBLOB_POSTGRES_DSN is not set"
        msg = (
            f"--from-postgres-layout needs the database in SRIBLOB_POSTGRES_DSN: "
            f"{reason}"
        )
        raise _CommandError(msg, EXIT_CONFIG)
    config = attrs.evolve(result.config, layout=layout)
    return PostgresBlobStore.from_config(config, id=f"postgres-{layout}")


async def _verify_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    from ._operations import verify  # noqa: PLC0415 -- lazy
    from ._sizes import format_size  # noqa: PLC0415 -- lazy

    if args.delete_corrupt:
        store = _writable_store(registry, args.store)
    else:
        store = _store(registry, args.store)
    report = await _with_progress(
        f"verify {store.id}",
        "checked",
        lambda bar: verify(
            store,
            concurrency=args.concurrency,
            delete_corrupt=args.delete_corrupt,
            on_progress=bar,
            lease_timeout=args.lease_timeout,
        ),
    )
    if args.json:
        _print_json("verify", report, store=store.id)
    else:
        for integrity in report.corrupt:
            _out(f"corrupt {integrity}")
        for failure in report.failed:
            _out(f"failed {failure.integrity}: {failure.reason}")
        _out(
            f"verify {store.id}: {report.checked} intact "
            f"({format_size(report.bytes_checked)}), {len(report.corrupt)} "
            f"corrupt, {len(report.failed)} failed, "
            f"{report.deleted} deleted"
        )
        _report_foreign(report.foreign)
    return 0 if report.ok else EXIT_FAILED


def _read_keep(name: str) -> list[str]:
    """Read a keep file: one integrity a line, blank lines and # comments ignored."""
    from ._integrity import candidates  # noqa: PLC0415 -- lazy
    from .exceptions import InvalidIntegrity  # noqa: PLC0415 -- lazy

    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            text = Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise _CommandError(f"can't read {shown(name)}: {reason}", EXIT_USAGE) from None
    keep: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        try:
            keep.extend(str(option) for option in candidates(entry))
        except InvalidIntegrity as exc:
            raise _CommandError(f"{shown(name)}:{number}: {exc}", EXIT_USAGE) from None
    return keep


async def _gc_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports
    import datetime as dt  # noqa: PLC0415 -- lazy

    from ._operations import collect_garbage  # noqa: PLC0415 -- lazy
    from ._sizes import format_size  # noqa: PLC0415 -- lazy

    dry_run = not args.yes
    store = (
        _store(registry, args.store)
        if dry_run
        else _writable_store(registry, args.store)
    )
    keep = await asyncio.to_thread(_read_keep, args.keep)
    word = "would free" if dry_run else "freed"
    report = await _with_progress(
        f"gc {store.id}",
        word,
        lambda bar: collect_garbage(
            store,
            keep,
            dry_run=dry_run,
            grace=dt.timedelta(seconds=args.grace),
            on_progress=bar,
            lease_timeout=args.lease_timeout,
        ),
    )
    if args.json:
        _print_json("gc", report, store=store.id)
        return 0
    verb = "would delete" if dry_run else "deleted"
    for integrity in report.deleted:
        _out(f"{verb} {integrity}")
    _out(
        f"gc {store.id}: {word} {format_size(report.bytes_freed)} from "
        f"{len(report.deleted)} blobs; kept {report.kept} listed, spared "
        f"{report.spared_fresh} stored within the last {args.grace:g} s"
    )
    if dry_run:
        _out("dry run: nothing was deleted; pass --yes to delete")
    return 0


def _prepare_serve(args: argparse.Namespace) -> None:
    """Check serve's options and set up its metrics, before any store opens.

    The SDK's MeterProvider must be the global one before the first store
    call, so that every call is counted. Sets ``args.scrape``, the app that
    answers ``GET /metrics`` (None with ``--no-metrics``), and
    ``args.metrics_address``, ``--metrics-listen``'s (host, port) or None.
    """
    try:
        import uvicorn  # noqa: F401, PLC0415 -- optional: the serve extra
    except ImportError:
        msg = (
            "sriblob serve needs uvicorn: python -m pip install uvicorn (or "
            "install sriblob with its serve extra)"
        )
        raise _CommandError(msg, EXIT_FAILED) from None
    if args.port > _MAX_PORT:
        msg = f"--port {args.port} is not a TCP port: give one from 1 to {_MAX_PORT}"
        raise _CommandError(msg, EXIT_USAGE)
    args.metrics_address = (
        None if args.metrics_listen is None else _host_port(args.metrics_listen)
    )
    args.scrape = None
    if not args.no_metrics:
        from . import _prometheus  # noqa: PLC0415 -- serve only

        try:
            args.scrape = _prometheus.install()
        except ImportError as exc:
            raise _CommandError(str(exc), EXIT_FAILED) from None


def _host_port(text: str) -> tuple[str, int]:
    """``--metrics-listen``'s HOST:PORT (``[::1]:9464`` for IPv6), or a usage error."""
    import re  # noqa: PLC0415 -- lazy

    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not re.fullmatch(r"[0-9]{1,5}", port) or int(port) > _MAX_PORT:
        msg = (
            "--metrics-listen must be HOST:PORT with a port from 1 to "
            f"{_MAX_PORT}, such as 127.0.0.1:9464, not {shown(text)!r}"
        )
        raise _CommandError(msg, EXIT_USAGE)
    if int(port) == 0:
        msg = f"--metrics-listen {shown(text)}: give a port from 1 to {_MAX_PORT}"
        raise _CommandError(msg, EXIT_USAGE)
    return host, int(port)


async def _serve_command(registry: BlobStoreRegistry, args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415 -- see the module's imports
    import signal  # noqa: PLC0415 -- see the module's imports

    import uvicorn  # noqa: PLC0415 -- optional: _prepare_serve checked it

    from ._prometheus import MetricsRouter, not_found  # noqa: PLC0415 -- lazy
    from .asgi import BlobApp  # noqa: PLC0415 -- lazy

    source: BlobStore | BlobStoreRegistry = (
        registry if args.store is None else _store(registry, args.store)
    )
    try:
        app = BlobApp(source, prefix=args.prefix, redirect=args.redirect)
    except ValueError as exc:
        raise _CommandError(str(exc), EXIT_USAGE) from None
    apart = args.scrape is not None and args.metrics_address is not None
    sockets = _listen(args.host, args.port)
    try:
        metrics_sockets = _listen(*args.metrics_address) if apart else []
    except _CommandError:
        for sock in sockets:
            sock.close()
        raise
    base = _base_url(args.host, args.port)
    what = "the registry's stores" if args.store is None else f"store {args.store}"
    _note(f"serving {what} at {base}{args.prefix}/ (base URL {base})")
    if args.scrape is not None:
        where = _base_url(*args.metrics_address) if apart else base
        _note(f"metrics at {where}/metrics")
    blob_app = app if args.scrape is None or apart else MetricsRouter(args.scrape, app)
    config = uvicorn.Config(
        blob_app,
        host=args.host,
        port=args.port,
        lifespan="off",
        access_log=True,
        log_level="info",
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    servers = [(config, sockets)]
    if apart:
        # No log_config or log_level: uvicorn's logging is the blob server's
        # (a second dictConfig would reset it).
        metrics_config = uvicorn.Config(
            MetricsRouter(args.scrape, not_found),
            host=args.metrics_address[0],
            port=args.metrics_address[1],
            lifespan="off",
            log_config=None,
            timeout_graceful_shutdown=args.shutdown_timeout,
        )
        servers.append((metrics_config, metrics_sockets))
    # uvicorn handles SIGTERM itself now (a graceful stop), not _run().
    asyncio.get_running_loop().remove_signal_handler(signal.SIGTERM)
    try:
        await _run_servers(servers)
    finally:
        for sock in [*sockets, *metrics_sockets]:
            sock.close()
    return 0


async def _run_servers(
    servers: list[tuple[uvicorn.Config, list[socket.socket]]],
) -> None:
    """Run uvicorn servers until Ctrl-C or SIGTERM: the first takes the signals."""
    import asyncio  # noqa: PLC0415 -- see the module's imports

    import uvicorn  # noqa: PLC0415 -- optional: _prepare_serve checked it

    class Server(uvicorn.Server):
        """Ctrl-C or SIGTERM stops it gracefully, and that is a clean exit.

        uvicorn raises the signal again once it stopped, for its caller;
        this command is the caller, and a server that was asked to stop
        has not failed.
        """

        def handle_exit(self, sig: int, frame: object) -> None:
            super().handle_exit(sig, frame)  # type: ignore[arg-type]
            self._captured_signals.clear()

    class Follower(uvicorn.Server):
        """A server that stops when the first stops, which takes the signals.

        Two servers capturing them would take them from each other.
        """

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    running = [
        (Server(config) if not index else Follower(config), bound)
        for index, (config, bound) in enumerate(servers)
    ]
    # Requests still running after --shutdown-timeout are cancelled; uvicorn
    # logs that it did (one line), then each cancellation as a traceback.
    logging.getLogger("uvicorn.error").addFilter(_not_a_cancellation)

    async def run(server: uvicorn.Server, bound: list[socket.socket]) -> None:
        try:
            await server.serve(sockets=bound)
        finally:
            for other, _ in running:
                other.should_exit = True

    await asyncio.gather(*(run(server, bound) for server, bound in running))


def _not_a_cancellation(record: logging.LogRecord) -> bool:
    """False for uvicorn's traceback of a request it cancelled at shutdown."""
    import asyncio  # noqa: PLC0415 -- see the module's imports

    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, asyncio.CancelledError)


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind every address *host* has on *port*, or fail on one line.

    Binding here, before uvicorn starts, turns a port in use (or a host
    that doesn't resolve) into one line and exit status 1, where uvicorn
    would log it and exit 3.
    """
    import socket  # noqa: PLC0415 -- see the module's imports

    try:
        infos = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        msg = f"can't listen on {shown(host)}:{port}: {exc.strerror or exc}"
        raise _CommandError(msg, EXIT_FAILED) from None
    bound: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(
            (info[0], info[1], info[2], "", info[4]) for info in infos
        ):
            sock = socket.socket(family, kind, proto)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            # Listening now makes a port another of our sockets took (the
            # metrics' and the blobs' on one port) fail here too.
            sock.listen()
    except OSError as exc:
        for sock in bound:
            sock.close()
        msg = f"can't listen on {shown(host)}:{port}: {exc.strerror or exc}"
        raise _CommandError(msg, EXIT_FAILED) from None
    return bound


def _base_url(host: str, port: int) -> str:
    """The URL of a server's root on *host* and *port*."""
    shown_host = f"[{host}]" if ":" in host else host
    return f"http://{shown_host}:{port}"


def _url_command(args: argparse.Namespace) -> int:
    import urllib.parse  # noqa: PLC0415 -- lazy

    from ._integrity import candidates  # noqa: PLC0415 -- lazy

    integrity = candidates(args.integrity)[0]
    prefix = args.prefix
    if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
        msg = f"--prefix must be '' or start with '/' and not end with one: {prefix!r}"
        raise _CommandError(msg, EXIT_USAGE)
    path = f"{prefix}/{urllib.parse.quote(str(integrity), safe='')}"
    base = args.base_url
    if base is None:
        base = os.environ.get(_BASE_URL, "").strip() or None
    if base is None:
        _out(path)
        return 0
    parts = urllib.parse.urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        origin = "--base-url" if args.base_url is not None else _BASE_URL
        msg = (
            f"{origin} must be an http:// or https:// URL such as "
            f"http://127.0.0.1:8080, not {shown(base)!r}"
        )
        raise _CommandError(msg, EXIT_USAGE)
    _out(base.rstrip("/") + path)
    return 0


#: What a command does before the stores open.
_PREPARE: dict[str, Callable[[argparse.Namespace], None]] = {
    "serve": _prepare_serve,
}

#: Commands that open no store.
_LOCAL_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "url": _url_command,
}


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
    "serve": _serve_command,
    "cache": _cache_command,
}
