"""Store configurations and their environment loaders (pure, no I/O).

Each configuration is a frozen attrs class that validates every field; a
loader reads the environment and answers :class:`Unconfigured`,
:class:`Configured` or :class:`Misconfigured`, never a partial config.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, TypeVar

import attrs
import cattrs

from ._sizes import parse_size, size_requirement
from .exceptions import ConfigurationError
from .keys import KEY_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

__all__ = [
    "DEFAULT_ENV_PREFIX",
    "POSTGRES_ENV_PREFIX",
    "Configured",
    "Misconfigured",
    "PostgresStoreConfig",
    "S3StoreConfig",
    "Unconfigured",
    "describe_dsn",
    "dsn_problem",
    "load_postgres_config_from_env",
    "load_s3_config_from_env",
]

MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB
#: S3's limits on multipart uploads.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * GiB
MAX_PARTS: Final = 10_000

DEFAULT_ENV_PREFIX: Final = "CHECKSTACK_SCRIPT_PACKAGES_S3_"
POSTGRES_ENV_PREFIX: Final = "SRIBLOB_POSTGRES_"

ChecksumMode = Literal["when_required", "when_supported"]


def _problem(attribute: attrs.Attribute[Any], requirement: str) -> ConfigurationError:
    label = attribute.metadata.get("label", "S3")
    msg = f"Invalid {label} configuration: {attribute.name} {requirement}."
    return ConfigurationError(msg, fields=(attribute.name,))


def _requirement(error: ConfigurationError, attribute: attrs.Attribute[Any]) -> str:
    """What :func:`_problem` said *attribute* must be (``must be ...``)."""
    _, _, requirement = str(error).partition(f" configuration: {attribute.name} ")
    return requirement.removesuffix(".") or "is invalid"


def _non_empty(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise _problem(attribute, "must be a non-empty string")


def _optional_non_empty(
    _: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    if value is not None:
        _non_empty(_, attribute, value)


def _endpoint(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    requirement = "must be an http:// or https:// URL with a host and no credentials"
    if not isinstance(value, str):
        raise _problem(attribute, requirement)
    try:
        url = urllib.parse.urlsplit(value)
        _ = url.port  # raises ValueError for a malformed port
    except ValueError:
        raise _problem(attribute, requirement) from None
    if url.scheme not in ("http", "https") or not url.hostname or "@" in url.netloc:
        raise _problem(attribute, requirement)


def _in_range(
    low: float, high: float, *, integer: bool = False
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    """Check a number from *low* to *high*; an int if *integer*."""
    kinds = int if integer else int | float
    what = "an integer" if integer else "a number"

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, kinds)
            or not low <= value <= high
        ):
            raise _problem(attribute, f"must be {what} from {low:g} to {high:g}")

    return check


def _size(
    low: int, high: int
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    """Check a byte count from *low* to *high* (the converter made it an int)."""

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not low <= value <= high
        ):
            raise _problem(attribute, "must be " + size_requirement(low, high))

    return check


def _whole_bytes(value: float | str) -> int:
    """A size field's value as an int (``6MiB``, ``5.5 * MiB``), where it is one.

    Anything else is left as it is, for the field's validator to refuse
    with the field's name.
    """
    try:
        return parse_size(value)
    except ValueError:
        return value  # type: ignore[return-value]  # the validator refuses it


def _optional_in_range(
    low: float, high: float, *, integer: bool = False
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    check = _in_range(low, high, integer=integer)

    def optional(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None:
            check(_, attribute, value)

    return optional


def _bool(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise _problem(attribute, "must be a bool")


def _optional_bool(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not isinstance(value, bool):
        raise _problem(attribute, "must be a bool or None")


#: S3 keys are at most 1,024 UTF-8 bytes; a blob's key adds the hex of its
#: canonical integrity (190 characters for sha512) to the prefix.
MAX_KEY_PREFIX_BYTES: Final = 1024 - 2 * len("sha512-") - 2 * 88


def _key_prefix(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, str):
        raise _problem(attribute, "must be a string")
    if value.startswith("/") or (value and not value.endswith("/")):
        raise _problem(
            attribute,
            "must be empty or a path ending with '/' and not starting with one "
            f"(the default is {KEY_PREFIX!r})",
        )
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise _problem(attribute, "must be encodable as UTF-8") from None
    if size > MAX_KEY_PREFIX_BYTES:
        raise _problem(
            attribute,
            f"must be at most {MAX_KEY_PREFIX_BYTES} bytes long, so that every "
            "key fits S3's 1,024-byte limit",
        )


def _checksum_mode(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in ("when_required", "when_supported"):
        raise _problem(attribute, "must be 'when_required' or 'when_supported'")


@attrs.frozen(kw_only=True)
class S3StoreConfig:
    """Everything :class:`~sriblob.S3BlobStore` needs to reach a bucket.

    The credentials never appear in ``repr()`` or ``str()``. The sizes
    (*part_size*, *multipart_threshold*, *read_part_size*,
    *min_transfer_rate*) take an int, a float that is a whole number
    (``5.5 * 1024 * 1024``) or a string with a unit (``"8MiB"``, ``"16MB"``).

    Args:
        bucket: The bucket name.
        access_key_id: The access key id.
        secret_access_key: The secret access key.
        endpoint: An ``http://`` or ``https://`` URL for S3-compatible servers
            (MinIO, Ceph RGW, ...); None for AWS.
        region: The region; None lets the SDK decide (``us-east-1`` for
            most S3-compatible servers).
        force_path_style: Address the bucket in the path
            (``http://host/bucket/key``) instead of the host name.
        key_prefix: The prefix under which blobs live: empty (the bucket's
            root) or a path ending with ``/``, not starting with one, of at
            most 834 bytes. The default is the layout the original system's
            buckets use.
        part_size: Multipart upload part size in bytes (5 MiB to 5 GiB; 6 MiB
            by default); grown automatically when a known size would need
            more than 10,000 parts. An upload holds about ``part_size *
            (max_concurrency + 1)`` bytes at most.
        multipart_threshold: Blobs of known size up to this many bytes go up
            in one PutObject; larger or streamed ones use multipart.
        max_concurrency: Parts in flight per upload, and the connection
            pool's size.
        read_concurrency: Connections one read of a large blob uses at once
            (1 to 256): its bytes are fetched as ranges of ``read_part_size``
            in parallel and handed on in order, at most this many ranges
            buffered. S3 serves each request at a bounded rate (AWS: about
            85-90 MB/s), so parallel ranges are how one read goes faster.
            1 reads every blob in one GetObject. None (default) measures,
            on any endpoint: a read starts as one GetObject and, once it
            proves slower than 200 MB/s with two ranges' worth left,
            fetches the rest on 8 connections (a local server, where one
            stream is fast and ranges can be slow, stays on one).
        read_part_size: Bytes per range of a parallel read (64 KiB to
            5 GiB; 4 MiB by default); blobs up to this size are read in one
            GetObject. A read holds about ``read_concurrency *
            read_part_size`` bytes at most.
        list_page_size: Keys per ListObjectsV2 page (1 to 1000).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on an open connection.
        max_attempts: Attempts per request, the first included, for transient
            failures (5xx, throttling, connection resets, timeouts).
        pool_timeout: Seconds one attempt may wait for a free connection of
            the pool (``max(max_concurrency, read_concurrency) + 4``
            connections); all of them held
            (by open readers, say) then fails the attempt instead of waiting
            forever.
        min_transfer_rate: Bytes a second below which a request body (sent
            or received) counts as stalled: one attempt may take at most
            ``pool_timeout + connect_timeout + read_timeout + size /
            min_transfer_rate`` seconds (plus one), and a GetObject body
            ``read_timeout + size / min_transfer_rate`` (plus one). This
            bounds a server that never answers ``Expect: 100-continue``,
            stops reading an upload, or trickles a body, where the socket
            timeouts alone would wait forever.
        operation_timeout: Seconds one store call (a put, a get, the opening
            of a read and its body, ...) may take in all, retries included;
            None (default) for no bound beyond the per-request ones.
        lease_ttl: Seconds the maintenance lease object lives without its
            holder renewing it (every third of that); a holder that died
            blocks :func:`~sriblob.collect_garbage` and :func:`~sriblob.migrate`
            for at most this long. Judged on the server's clock.
        checksum_mode: ``"when_required"`` (default) computes request
            checksums only where S3 demands them, which S3-compatible servers
            without flexible checksums accept; ``"when_supported"`` is the
            AWS SDK default.
        sign_payloads: Whether SigV4 signs each request body with its
            SHA-256 (a second pass over every uploaded byte). None (default)
            signs over ``http://`` endpoints and not over ``https://`` ones
            (AWS included), where TLS already protects the bytes in transit;
            sriblob verifies every blob by its integrity on the way in and
            out either way. False sends ``UNSIGNED-PAYLOAD`` on plain http
            too: less client CPU per upload on a link you trust (loopback, a
            private network).

    Raises:
        ConfigurationError: A value is missing or invalid; its ``fields``
            name the field.

    .. versionadded:: 0.1.0
    """

    bucket: str = attrs.field(validator=_non_empty)
    access_key_id: str = attrs.field(validator=_non_empty, repr=False)
    secret_access_key: str = attrs.field(validator=_non_empty, repr=False)
    endpoint: str | None = attrs.field(default=None, validator=_endpoint)
    region: str | None = attrs.field(default=None, validator=_optional_non_empty)
    force_path_style: bool = attrs.field(default=False, validator=_bool)
    key_prefix: str = attrs.field(default=KEY_PREFIX, validator=_key_prefix)
    part_size: int = attrs.field(
        default=6 * MiB,
        converter=_whole_bytes,
        validator=_size(MIN_PART_SIZE, MAX_PART_SIZE),
        metadata={"size": True},
    )
    multipart_threshold: int = attrs.field(
        default=16 * MiB,
        converter=_whole_bytes,
        validator=_size(0, MAX_PART_SIZE),
        metadata={"size": True},
    )
    max_concurrency: int = attrs.field(
        default=8, validator=_in_range(1, 256, integer=True)
    )
    read_concurrency: int | None = attrs.field(
        default=None, validator=_optional_in_range(1, 256, integer=True)
    )
    read_part_size: int = attrs.field(
        default=4 * MiB,
        converter=_whole_bytes,
        validator=_size(64 * 1024, MAX_PART_SIZE),
        metadata={"size": True},
    )
    list_page_size: int = attrs.field(
        default=1000, validator=_in_range(1, 1000, integer=True)
    )
    connect_timeout: float = attrs.field(default=10.0, validator=_in_range(0.001, 3600))
    read_timeout: float = attrs.field(default=60.0, validator=_in_range(0.001, 3600))
    max_attempts: int = attrs.field(
        default=5, validator=_in_range(1, 100, integer=True)
    )
    pool_timeout: float = attrs.field(default=30.0, validator=_in_range(0.001, 3600))
    min_transfer_rate: int = attrs.field(
        default=32 * 1024,
        converter=_whole_bytes,
        validator=_size(1, 2**40),
        metadata={"size": True},
    )
    operation_timeout: float | None = attrs.field(
        default=None, validator=_optional_in_range(0.001, 7 * 24 * 3600)
    )
    lease_ttl: float = attrs.field(default=60.0, validator=_in_range(3, 86400))
    checksum_mode: ChecksumMode = attrs.field(
        default="when_required", validator=_checksum_mode
    )
    sign_payloads: bool | None = attrs.field(default=None, validator=_optional_bool)


attrs.resolve_types(S3StoreConfig)


# -- PostgreSQL ------------------------------------------------------------------

_SCHEMES: Final = ("postgres", "postgresql")
_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]{0,19}", re.IGNORECASE)
#: PostgreSQL truncates identifiers longer than this (NAMEDATALEN - 1).
MAX_IDENTIFIER: Final = 63
#: The longest table-name suffix the PostgreSQL store appends to the prefix.
LONGEST_TABLE_SUFFIX: Final = "schema_version"
_IDENTIFIER: Final = re.compile(r"[a-z_][a-z0-9_]*")
_PG: Final = {"label": "PostgreSQL"}
MAX_CHUNK_SIZE: Final = 64 * MiB


def _split_dsn(dsn: str) -> tuple[str, str | None, str]:
    """Split a DSN into its scheme, its user info (or None) and the rest.

    The user info is everything before the *last* ``@`` of the part after
    ``scheme://``: a password may hold any character, so nothing before that
    ``@`` is ever shown.
    """
    scheme, _, rest = dsn.partition("://")
    userinfo, at, location = rest.rpartition("@")
    return scheme, (userinfo if at else None), location


def dsn_problem(dsn: object) -> str | None:  # noqa: PLR0911 -- one answer a problem
    """Return what is wrong with a PostgreSQL DSN, or None if it looks usable.

    The answer never contains the DSN itself, which may hold a password.
    """
    if not isinstance(dsn, str):
        return f"it must be a str, not {type(dsn).__name__}"
    if not dsn.strip():
        return "it is empty"
    scheme, userinfo, _ = _split_dsn(dsn)
    if "://" not in dsn:
        return "it must be a URL such as postgresql://user:password@host:5432/database"
    if scheme not in _SCHEMES:
        # A scheme is no secret; anything else before :// may be one.
        shown = f" (not {scheme}://)" if _SCHEME.fullmatch(scheme) else ""
        return f"it must start with postgresql:// or postgres://{shown}"
    if userinfo is not None and any(c in userinfo for c in "/?#"):
        # A URL parser (asyncpg's among them) would end the host part at the
        # first of these and read the password as a host, port or path.
        return (
            "the user name or password holds an unencoded '/', '?' or '#'; "
            "percent-encode it (for example '/' as %2F)"
        )
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return "its host is not valid (an IPv6 address goes in [brackets])"
    try:
        if "," not in parts.netloc:  # several hosts carry their own ports
            parts.port  # noqa: B018 -- raises ValueError for a bad port
    except ValueError:
        return "its port must be a number from 0 to 65535"
    return None


def describe_dsn(dsn: str) -> str:
    """Return ``host:port/database`` for messages: no user, no password.

    Whatever precedes the last ``@`` is dropped, so even a malformed DSN
    never shows its password.
    """
    _, _, location = _split_dsn(dsn)
    host, slash, rest = location.partition("/")
    database = rest.partition("?")[0].partition("#")[0]
    return f"{host or 'localhost'}/{database if slash else ''}"


def _dsn(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and (problem := dsn_problem(value)) is not None:
        raise _problem(attribute, f"is not a usable DSN: {problem}")


def _identifier(
    max_length: int, *, empty: bool = False
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if empty and value == "":
            return
        if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
            raise _problem(
                attribute,
                "must be lowercase letters, digits and underscores, starting "
                "with a letter or underscore",
            )
        if len(value) > max_length:
            raise _problem(attribute, f"must be at most {max_length} characters")

    return check


def _schema(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    _identifier(MAX_IDENTIFIER)(_, attribute, value)
    assert isinstance(value, str)  # noqa: S101 -- checked just now
    if value.startswith("pg_"):
        raise _problem(attribute, "must not start with 'pg_' (reserved)")


#: The table layouts :class:`~sriblob.PostgresBlobStore` reads and writes.
POSTGRES_LAYOUTS: Final = ("sriblob", "checkstack")


def _layout(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in POSTGRES_LAYOUTS:
        raise _problem(attribute, "must be 'sriblob' or 'checkstack'")


@attrs.frozen(kw_only=True, repr=False)
class PostgresStoreConfig:
    """Everything :class:`~sriblob.PostgresBlobStore` needs besides a pool.

    The DSN may hold a password; it never appears in ``repr()`` or a
    message, which show :func:`describe_dsn` (host, port, database) only.

    Args:
        dsn: A ``postgresql://`` (or ``postgres://``) URL; characters such as
            ``/``, ``?``, ``#`` and ``@`` in the user name or password must
            be percent-encoded. None when the store is given a pool.
        schema: The schema holding the tables; created if missing.
        table_prefix: Prefix of the table names, so several stores can share
            a schema; may be empty.
        chunk_size: Bytes per chunk row (1 to 64 MiB): an int, a whole
            float or a string with a unit (``"1MiB"``).
        max_connections: The size of the pool made from *dsn*.
        acquire_timeout: Seconds a call waits for a free connection.
        connect_timeout: Seconds a new connection may take to be made and
            answered (an unreachable or silent server fails within it).
        layout: ``"sriblob"`` (the store's own tables), or ``"checkstack"``:
            the original TypeScript system's table
            ``"plugin_script-packages-store-postgres".script_package_blob_data``
            (*schema*, *table_prefix* and *chunk_size* don't apply to it).

    Raises:
        ConfigurationError: A value is invalid; its ``fields`` name the field.

    .. versionadded:: 0.1.0
    """

    dsn: str | None = attrs.field(default=None, validator=_dsn, metadata=_PG)
    schema: str = attrs.field(default="public", validator=_schema, metadata=_PG)
    table_prefix: str = attrs.field(
        default="sriblob_",
        validator=_identifier(MAX_IDENTIFIER - len(LONGEST_TABLE_SUFFIX), empty=True),
        metadata=_PG,
    )
    chunk_size: int = attrs.field(
        default=MiB,
        converter=_whole_bytes,
        validator=_size(1, MAX_CHUNK_SIZE),
        metadata={**_PG, "size": True},
    )
    max_connections: int = attrs.field(
        default=10, validator=_in_range(1, 10_000, integer=True), metadata=_PG
    )
    acquire_timeout: float = attrs.field(
        default=30.0, validator=_in_range(0.001, 3600), metadata=_PG
    )
    connect_timeout: float = attrs.field(
        default=5.0, validator=_in_range(0.001, 3600), metadata=_PG
    )
    layout: str = attrs.field(default="sriblob", validator=_layout, metadata=_PG)

    def __repr__(self) -> str:
        where = "None" if self.dsn is None else repr(describe_dsn(self.dsn))
        return (
            f"PostgresStoreConfig(dsn={where}, schema={self.schema!r}, "
            f"table_prefix={self.table_prefix!r}, chunk_size={self.chunk_size}, "
            f"max_connections={self.max_connections}, "
            f"acquire_timeout={self.acquire_timeout!r}, "
            f"connect_timeout={self.connect_timeout!r}, layout={self.layout!r})"
        )


attrs.resolve_types(PostgresStoreConfig)


# -- what the environment says ---------------------------------------------------

_C = TypeVar("_C")


@attrs.frozen
class Unconfigured:
    """No setting of the backend is present in the environment.

    .. versionadded:: 0.1.0
    """


@attrs.frozen
class Configured(Generic[_C]):
    """Every required setting is present and valid.

    Attributes:
        config: The configuration (an :class:`S3StoreConfig`, or a
            :class:`PostgresStoreConfig`).

    .. versionadded:: 0.1.0
    """

    config: _C


@attrs.frozen
class Misconfigured:
    """Some settings are present but the whole is unusable.

    ``error.fields`` names every missing or invalid field; neither it nor
    the message ever contains a value.

    .. versionadded:: 0.1.0
    """

    error: ConfigurationError


@attrs.frozen
class _EnvLayout:
    """How a backend's settings are spelled in the environment."""

    what: str
    fields: dict[str, str]  # variable suffix -> config field
    required: tuple[str, ...]


#: S3: variable suffix -> config field, in the documented order.
_S3_ENV: Final = _EnvLayout(
    "S3 storage",
    {
        "ENDPOINT": "endpoint",
        "BUCKET": "bucket",
        "REGION": "region",
        "ACCESS_KEY_ID": "access_key_id",
        "SECRET_ACCESS_KEY": "secret_access_key",
        "FORCE_PATH_STYLE": "force_path_style",
    },
    ("bucket", "access_key_id", "secret_access_key"),
)
_POSTGRES_ENV: Final = _EnvLayout(
    "PostgreSQL storage",
    {
        "DSN": "dsn",
        "SCHEMA": "schema",
        "TABLE_PREFIX": "table_prefix",
        "CHUNK_SIZE": "chunk_size",
        "MAX_CONNECTIONS": "max_connections",
        "CONNECT_TIMEOUT": "connect_timeout",
        "LAYOUT": "layout",
    },
    ("dsn",),
)
_TRUE: Final = frozenset({"true", "1", "yes"})
_FALSE: Final = frozenset({"false", "0", "no"})


def _structure_bool(value: object, _: type) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    msg = "must be true, false, 1, 0, yes or no (any case)"
    raise ValueError(msg)


def _structure_int(value: object, _: type) -> int:
    msg = "must be an integer"
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(msg)
    try:
        return int(value)
    except ValueError:
        raise ValueError(msg) from None  # int()'s message shows the value


_converter = cattrs.Converter()
_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook(int, _structure_int)


def backend_variables() -> tuple[str, ...]:
    """Every variable the S3 and PostgreSQL loaders read, with the default prefixes."""
    return (
        *(DEFAULT_ENV_PREFIX + suffix for suffix in _S3_ENV.fields),
        *(POSTGRES_ENV_PREFIX + suffix for suffix in _POSTGRES_ENV.fields),
    )


def typo_distance(a: str, b: str, /, *, limit: int) -> int:
    """The edits (insert, delete, substitute, swap two neighbours) from *a* to *b*.

    Optimal string alignment distance, counted only up to *limit*: any
    larger distance is returned as ``limit + 1``.
    """
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            current[j] = min(
                previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)
            )
            if i > 1 and j > 1 and x == b[j - 2] and a[i - 2] == y:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        before, previous = previous, current
    return min(previous[-1], limit + 1)


def closest(name: str, /, known: Iterable[str], *, limit: int) -> str | None:
    """The name in *known* fewest typos away from *name*, if within *limit*."""
    scored = ((typo_distance(name, k, limit=limit), k) for k in known)
    distance, best = min(scored, key=lambda pair: pair[0], default=(limit + 1, None))
    return best if distance <= limit else None


def _unknown(
    layout: _EnvLayout, source: Mapping[str, str], prefix: str
) -> dict[str, str | None]:
    """Set variables under *prefix* that aren't *layout*'s, each to a guess.

    The guess is the suffix of *layout*'s the variable likely meant, or None.
    """
    unknown: dict[str, str | None] = {}
    for variable, value in source.items():
        if not variable.startswith(prefix) or not value.strip():
            continue
        suffix = variable[len(prefix) :]
        if suffix in layout.fields:
            continue
        unknown[variable] = closest(
            suffix, layout.fields, limit=max(2, len(suffix) // 3)
        )
    return dict(sorted(unknown.items()))


#: What :func:`_load` records for a required field that is not set.
_MISSING: Final = "missing"


def _load(
    cls: type[_C], layout: _EnvLayout, env: Mapping[str, str] | None, prefix: str
) -> Unconfigured | Configured[_C] | Misconfigured:
    """Read *layout*'s variables and build *cls*, or say what is wrong."""
    source = os.environ if env is None else env
    raw = {
        name: text
        for suffix, name in layout.fields.items()
        if (text := source.get(prefix + suffix, "")).strip()
    }
    unknown = _unknown(layout, source, prefix)
    if not raw and not unknown:
        return Unconfigured()
    values: dict[str, Any] = {}
    value: Any
    problems: dict[str, str] = {}  # field -> _MISSING, or what it must be
    for attribute in attrs.fields(cls):  # type: ignore[arg-type]
        name = attribute.name
        if name not in raw:
            if name in layout.required:
                problems[name] = _MISSING
            continue
        try:
            if attribute.metadata.get("size"):
                value = _whole_bytes(raw[name])
            else:
                value = _converter.structure(raw[name], attribute.type)
            if attribute.validator is not None:
                attribute.validator(None, attribute, value)
        except ConfigurationError as exc:
            problems[name] = _requirement(exc, attribute)
            continue
        except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
            # Our structure hooks say "must be ..." and never show the value.
            text = str(exc)
            problems[name] = text if text.startswith("must be") else "is invalid"
            continue
        values[name] = value
    if problems or unknown:
        return Misconfigured(_describe(layout, problems, prefix, unknown))
    return Configured(cls(**values))


def _names(variables: list[str]) -> str:
    """``A``, ``A and B``, ``A, B and C``."""
    *rest, last = variables
    return f"{', '.join(rest)} and {last}" if rest else last


def _describe(
    layout: _EnvLayout,
    problems: dict[str, str],
    prefix: str,
    unknown: dict[str, str | None],
) -> ConfigurationError:
    """One message: each variable that is wrong, how, and what to do about it.

    A misspelt variable is named with the setting it likely meant (which is
    then not also called missing); missing ones are to be set; invalid ones
    say what they must be. Never a value.
    """
    env_names = {field: prefix + suffix for suffix, field in layout.fields.items()}
    meant_fields = {layout.fields[m] for m in unknown.values() if m is not None}
    clauses = []
    for variable, meant in unknown.items():
        if meant is None:
            clauses.append(f"unknown variable {variable}: unset it")
        else:
            clauses.append(
                f"unknown variable {variable} (did you mean {prefix}{meant}?): "
                "rename or unset it"
            )
    missing = [
        env_names[field]
        for field, problem in problems.items()
        if problem == _MISSING and field not in meant_fields
    ]
    if missing:
        verb, pronoun = ("is", "it") if len(missing) == 1 else ("are", "them")
        clauses.append(f"{_names(missing)} {verb} not set: set {pronoun}")
    clauses += [
        f"{env_names[field]} {problem}"
        for field, problem in problems.items()
        if problem != _MISSING
    ]
    msg = (
        f"{layout.what} is misconfigured: {'; '.join(clauses)}. Or unset every "
        f"{prefix}* variable to use another store."
    )
    fields = list(problems)
    for meant in unknown.values():
        if meant is not None and layout.fields[meant] not in fields:
            fields.append(layout.fields[meant])
    return ConfigurationError(msg, fields=tuple(fields))


def load_s3_config_from_env(
    env: Mapping[str, str] | None = None, *, prefix: str = DEFAULT_ENV_PREFIX
) -> Unconfigured | Configured[S3StoreConfig] | Misconfigured:
    """Read the S3 settings from the environment.

    Reads ``{prefix}ENDPOINT``, ``BUCKET``, ``REGION``, ``ACCESS_KEY_ID``,
    ``SECRET_ACCESS_KEY`` and ``FORCE_PATH_STYLE``. An empty value counts as
    unset. ``FORCE_PATH_STYLE`` takes true/false/1/0/yes/no in any case.

    Args:
        env: The variables to read; :data:`os.environ` by default.
        prefix: The common prefix of the variable names.

    Returns:
        :class:`Unconfigured` when none is set, :class:`Configured` when the
        set is complete and valid, :class:`Misconfigured` otherwise: a partial
        configuration is an error, never a silent fallback. A set variable
        under *prefix* that isn't one of these (a typo) is Misconfigured too.

    .. versionadded:: 0.1.0
    """
    return _load(S3StoreConfig, _S3_ENV, env, prefix)


def load_postgres_config_from_env(
    env: Mapping[str, str] | None = None, *, prefix: str = POSTGRES_ENV_PREFIX
) -> Unconfigured | Configured[PostgresStoreConfig] | Misconfigured:
    """Read the PostgreSQL settings from the environment.

    Reads ``{prefix}DSN`` (required once any is set), ``SCHEMA``,
    ``TABLE_PREFIX``, ``CHUNK_SIZE`` and ``MAX_CONNECTIONS``. An empty value
    counts as unset.

    Args:
        env: The variables to read; :data:`os.environ` by default.
        prefix: The common prefix of the variable names.

    Returns:
        :class:`Unconfigured`, :class:`Configured` or :class:`Misconfigured`,
        as :func:`load_s3_config_from_env`.

    .. versionadded:: 0.1.0
    """
    return _load(PostgresStoreConfig, _POSTGRES_ENV, env, prefix)
