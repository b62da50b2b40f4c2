"""Subresource Integrity values: parsing, hashing and verification."""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import concurrent.futures
import hashlib
import re
from typing import TYPE_CHECKING, Final, Literal

import attrs

from .exceptions import IntegrityMismatch, InvalidIntegrity

if TYPE_CHECKING:
    from ._compat import Buffer

Algorithm = Literal["sha256", "sha384", "sha512"]

#: Digest size in bytes, and strength order (later is stronger).
_DIGEST_SIZES: Final[dict[str, int]] = {"sha256": 32, "sha384": 48, "sha512": 64}
_STRENGTH: Final[dict[str, int]] = {"sha256": 1, "sha384": 2, "sha512": 3}
#: Chunks at least this large are hashed in a worker thread (hashlib releases
#: the GIL), so verification overlaps I/O and never stalls the event loop.
THREAD_HASH_THRESHOLD: Final = 256 * 1024
#: How many large chunks may wait to be hashed while a stream goes on.
HASH_AHEAD: Final = 2
#: Longest input quoted back in an error message.
_QUOTE_LIMIT: Final = 60
_BASE64_RE: Final = re.compile(r"[A-Za-z0-9+/]*={0,2}")
#: ASCII whitespace as the SRI specification (and JavaScript) splits on; not
#: Python's str.split(), which also splits on \x1c-\x1f and \x85.
_SRI_WHITESPACE: Final = re.compile("[ \t\n\f\r]+")


def _quote(text: str) -> str:
    """Return a short, printable rendering of *text* for an error message."""
    if len(text) > _QUOTE_LIMIT:
        return repr(text[:_QUOTE_LIMIT]) + f"... ({len(text)} characters)"
    return repr(text)


def _invalid(reason: str, text: str) -> InvalidIntegrity:
    shown = text[:_QUOTE_LIMIT]
    msg = f"Invalid integrity {_quote(text)}: {reason}."
    return InvalidIntegrity(msg, text=shown)


@attrs.frozen(order=True, repr=False)
class Integrity:
    """A parsed Subresource Integrity value: one algorithm and its digest.

    Instances are immutable, hashable and ordered; ``str()`` gives the
    canonical form ``<algorithm>-<base64 digest>`` that stores key blobs by.

    Build one with :meth:`parse`, :meth:`from_bytes` or an
    :class:`IntegrityHasher`; the constructor does not validate.

    .. versionadded:: 0.1.0
    """

    algorithm: Algorithm
    digest: bytes

    @classmethod
    def parse(cls, text: str) -> Integrity:
        r"""Parse an SRI string and keep its strongest hash.

        Accepts ``<alg>-<base64>`` with optional ``?options``, several hashes
        separated by ASCII whitespace (space, tab, line feed, form feed,
        carriage return: the SRI specification's separators; other
        characters, ``\x1c`` or ``\x85`` say, are part of a token), and
        the algorithms sha256, sha384 and sha512. Hashes of other algorithms
        are ignored as the SRI specification says, but at least one
        supported hash must be present. Each supported hash must be
        canonical standard base64 (with padding) of exactly its algorithm's
        digest length.

        Args:
            text: The SRI string, for example an npm ``dist.integrity``.

        Returns:
            The strongest hash: sha512 over sha384 over sha256. Among equally
            strong hashes, the first one (see :meth:`parse_all` for every one:
            stores accept bytes that match any of them).

        Raises:
            InvalidIntegrity: *text* is not a string, is empty, has no
                supported hash, or a supported hash is malformed.
        """
        return cls.parse_all(text)[0]

    @classmethod
    def parse_all(cls, text: str | Integrity) -> tuple[Integrity, ...]:
        """Parse an SRI string and return every hash of its strongest algorithm.

        The SRI specification (and npm's ``ssri``) accept data that matches
        *any* digest of the strongest algorithm present; stores do the same
        with what this returns, in the order the string gives them.

        Raises:
            InvalidIntegrity: As :meth:`parse`.

        .. versionadded:: 0.1.0
        """
        if isinstance(text, Integrity):
            return (text.checked(),)
        if not isinstance(text, str):
            msg = f"Integrity must be a str, not {type(text).__name__}."
            raise InvalidIntegrity(msg, text=repr(text)[:_QUOTE_LIMIT])
        strongest: list[Integrity] = []
        unsupported: list[str] = []
        for token in _SRI_WHITESPACE.split(text):
            if not token:
                continue
            algorithm, sep, rest = token.partition("-")
            if not sep:
                raise _invalid(f"{_quote(token)} is not '<algorithm>-<base64>'", text)
            if algorithm not in _DIGEST_SIZES:
                unsupported.append(algorithm)
                continue
            digest = _decode_digest(algorithm, rest.partition("?")[0], text)
            candidate = cls(algorithm, digest)  # type: ignore[arg-type]
            if (
                not strongest
                or _STRENGTH[algorithm] > _STRENGTH[strongest[0].algorithm]
            ):
                strongest = [candidate]
            elif algorithm == strongest[0].algorithm and candidate not in strongest:
                strongest.append(candidate)
        if not strongest:
            raise _nothing_supported(unsupported, text)
        return tuple(strongest)

    @classmethod
    def from_bytes(cls, data: Buffer, algorithm: Algorithm = "sha512") -> Integrity:
        """Hash *data* and return its integrity.

        Args:
            data: Any bytes-like object.
            algorithm: sha256, sha384 or sha512.

        Raises:
            ValueError: *algorithm* is not supported.
        """
        hasher = IntegrityHasher(algorithm)
        hasher.update(data)
        return hasher.integrity()

    def checked(self) -> Integrity:
        """Return this value if it is usable, as :meth:`parse` would build it.

        The constructor doesn't validate, so stores call this on an
        :class:`Integrity` they are handed.

        Raises:
            InvalidIntegrity: The algorithm is not sha256, sha384 or sha512,
                or the digest is not bytes of that algorithm's length.
        """
        algorithm, digest = self.algorithm, self.digest
        size = _DIGEST_SIZES.get(algorithm) if isinstance(algorithm, str) else None
        if size is None:
            reason = (
                f"unsupported algorithm {_quote(str(algorithm))} "
                "(use sha256, sha384 or sha512)"
            )
        elif not isinstance(digest, bytes) or len(digest) != size:
            got = len(digest) if isinstance(digest, bytes) else type(digest).__name__
            reason = f"a {algorithm} digest is {size} bytes, not {got}"
        else:
            return self
        msg = f"Invalid integrity: {reason}."
        raise InvalidIntegrity(msg, text=f"{algorithm!r}"[:_QUOTE_LIMIT])

    def hasher(self) -> IntegrityHasher:
        """Return a new incremental hasher of this integrity's algorithm."""
        return IntegrityHasher(self.algorithm)

    def __str__(self) -> str:
        return f"{self.algorithm}-{base64.b64encode(self.digest).decode('ascii')}"

    def __repr__(self) -> str:
        return f"Integrity({str(self)!r})"


def _nothing_supported(unsupported: list[str], text: str) -> InvalidIntegrity:
    if unsupported:
        names = ", ".join(_quote(a) for a in unsupported[:3])
        return _invalid(
            f"no supported hash algorithm (got {names}; use sha256, sha384 or sha512)",
            text,
        )
    return _invalid("it is empty", text)


def _decode_digest(algorithm: str, encoded: str, text: str) -> bytes:
    size = _DIGEST_SIZES[algorithm]
    expected_length = 4 * ((size + 2) // 3)
    if not _BASE64_RE.fullmatch(encoded):
        raise _invalid(f"the {algorithm} digest is not standard base64", text)
    if len(encoded) != expected_length:
        raise _invalid(
            f"a {algorithm} digest is {expected_length} base64 characters "
            f"({size} bytes), not {len(encoded)}",
            text,
        )
    try:
        digest = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise _invalid(f"the {algorithm} digest is not valid base64", text) from None
    if len(digest) != size or base64.b64encode(digest).decode("ascii") != encoded:
        raise _invalid(f"the {algorithm} digest is not canonical base64", text)
    return digest


def coerce_integrity(value: str | Integrity) -> Integrity:
    """Return *value* as an :class:`Integrity`, parsing strings."""
    if isinstance(value, Integrity):
        return value.checked()
    return Integrity.parse(value)


def candidates(value: str | Integrity) -> tuple[Integrity, ...]:
    """Return every integrity *value* accepts: its strongest algorithm's digests."""
    return Integrity.parse_all(value)


class IntegrityHasher:
    """Hash bytes incrementally and check them against an integrity.

    Stores feed every chunk through one of these while streaming, so
    verification never needs the whole blob in memory::

        hasher = IntegrityHasher("sha512")
        for chunk in chunks:
            hasher.update(chunk)
        hasher.verify(expected)  # raises IntegrityMismatch

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_algorithm", "_hash", "_size")

    def __init__(self, algorithm: Algorithm = "sha512") -> None:
        if algorithm not in _DIGEST_SIZES:
            msg = (
                f"Unsupported integrity algorithm {algorithm!r}; "
                "use 'sha256', 'sha384' or 'sha512'."
            )
            raise ValueError(msg)
        self._algorithm: Algorithm = algorithm
        self._hash = hashlib.new(algorithm)
        self._size = 0

    @property
    def algorithm(self) -> Algorithm:
        """The hash algorithm."""
        return self._algorithm

    @property
    def size(self) -> int:
        """How many bytes have been hashed so far."""
        return self._size

    def update(self, data: Buffer) -> None:
        """Hash another chunk (bytes-like; large chunks release the GIL)."""
        view = memoryview(data)
        self._hash.update(view)
        self._size += view.nbytes

    def integrity(self) -> Integrity:
        """Return the integrity of everything hashed so far."""
        return Integrity(self._algorithm, self._hash.digest())

    def verify(self, expected: Integrity) -> None:
        """Raise unless everything hashed so far matches *expected*.

        Raises:
            IntegrityMismatch: The digests differ.
        """
        actual = self.integrity()
        if actual != expected:
            msg = (
                f"Integrity mismatch: expected {expected}, got {actual} "
                f"({self._size} bytes)."
            )
            raise IntegrityMismatch(msg, expected=str(expected), actual=str(actual))


# -- hashing streams off the event loop ------------------------------------


class PipelinedHasher:
    """Hash chunks in order, off the event loop when they are large.

    Large chunks go to one worker thread of the hasher's own, in order, up
    to :data:`HASH_AHEAD` of them queued: ``update()`` returns at once, so
    the caller hands the chunk on (or fetches the next one) while the thread
    hashes, and the thread never waits for the event loop between chunks.
    Small chunks are hashed inline, after the queued ones.
    """

    __slots__ = ("_executor", "_hasher", "_pending")

    def __init__(self, algorithm: Algorithm) -> None:
        self._hasher = IntegrityHasher(algorithm)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    async def update(self, chunk: Buffer) -> None:
        if memoryview(chunk).nbytes < THREAD_HASH_THRESHOLD:
            await self._drain(0)
            self._hasher.update(chunk)
            return
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="sriblob-hash"
            )
        loop = asyncio.get_running_loop()
        self._pending.append(
            loop.run_in_executor(self._executor, self._hasher.update, chunk)
        )
        await self._drain(HASH_AHEAD)

    async def _drain(self, keep: int) -> None:
        while len(self._pending) > keep:
            await self._pending[0]
            self._pending.popleft()

    async def finish(self) -> IntegrityHasher:
        try:
            await self._drain(0)
        finally:
            self.close()
        return self._hasher

    def close(self) -> None:
        """Drop what is queued and let the thread go (idempotent)."""
        for pending in self._pending:
            pending.cancel()
        self._pending.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


async def hash_buffer(view: Buffer, algorithm: Algorithm) -> IntegrityHasher:
    """Hash *view* whole, in a worker thread when it is large."""
    hasher = IntegrityHasher(algorithm)
    if memoryview(view).nbytes >= THREAD_HASH_THRESHOLD:
        await asyncio.to_thread(hasher.update, view)
    else:
        hasher.update(view)
    return hasher
