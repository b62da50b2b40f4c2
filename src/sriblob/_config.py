"""S3 store configuration and the environment loader (pure, no I/O)."""

from __future__ import annotations

import os
import urllib.parse
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import cattrs

from .exceptions import ConfigurationError
from .keys import KEY_PREFIX

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = [
    "DEFAULT_ENV_PREFIX",
    "Configured",
    "Misconfigured",
    "S3StoreConfig",
    "Unconfigured",
    "load_s3_config_from_env",
]

MiB: Final = 1024 * 1024
GiB: Final = 1024 * MiB
#: S3's limits on multipart uploads.
MIN_PART_SIZE: Final = 5 * MiB
MAX_PART_SIZE: Final = 5 * GiB
MAX_PARTS: Final = 10_000

DEFAULT_ENV_PREFIX: Final = "CHECKSTACK_SCRIPT_PACKAGES_S3_"

ChecksumMode = Literal["when_required", "when_supported"]


def _problem(attribute: attrs.Attribute[Any], requirement: str) -> ConfigurationError:
    msg = f"Invalid S3 configuration: {attribute.name} {requirement}."
    return ConfigurationError(msg, fields=(attribute.name,))


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


def _optional_in_range(
    low: float, high: float
) -> Callable[[object, attrs.Attribute[Any], object], None]:
    check = _in_range(low, high)

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

    The credentials never appear in ``repr()`` or ``str()``.

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
        part_size: Multipart upload part size in bytes (5 MiB to 5 GiB);
            grown automatically when a known size would need more than
            10,000 parts.
        multipart_threshold: Blobs of known size up to this many bytes go up
            in one PutObject; larger or streamed ones use multipart.
        max_concurrency: Parts in flight per upload, and the connection
            pool's size.
        list_page_size: Keys per ListObjectsV2 page (1 to 1000).
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for data on an open connection.
        max_attempts: Attempts per request, the first included, for transient
            failures (5xx, throttling, connection resets, timeouts).
        pool_timeout: Seconds one attempt may wait for a free connection of
            the pool (``max_concurrency + 4`` connections); all of them held
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
        default=8 * MiB,
        validator=_in_range(MIN_PART_SIZE, MAX_PART_SIZE, integer=True),
    )
    multipart_threshold: int = attrs.field(
        default=16 * MiB, validator=_in_range(0, MAX_PART_SIZE, integer=True)
    )
    max_concurrency: int = attrs.field(
        default=8, validator=_in_range(1, 256, integer=True)
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
        default=32 * 1024, validator=_in_range(1, 2**40, integer=True)
    )
    operation_timeout: float | None = attrs.field(
        default=None, validator=_optional_in_range(0.001, 7 * 24 * 3600)
    )
    checksum_mode: ChecksumMode = attrs.field(
        default="when_required", validator=_checksum_mode
    )
    sign_payloads: bool | None = attrs.field(default=None, validator=_optional_bool)


attrs.resolve_types(S3StoreConfig)


@attrs.frozen
class Unconfigured:
    """No S3 setting is present in the environment.

    .. versionadded:: 0.1.0
    """


@attrs.frozen
class Configured:
    """Every required S3 setting is present and valid.

    .. versionadded:: 0.1.0
    """

    config: S3StoreConfig


@attrs.frozen
class Misconfigured:
    """Some S3 settings are present but the whole is unusable.

    ``error.fields`` names every missing or invalid field; neither it nor
    the message ever contains a value.

    .. versionadded:: 0.1.0
    """

    error: ConfigurationError


#: Environment variable suffix → config field, in the documented order.
_ENV_FIELDS: Final = {
    "ENDPOINT": "endpoint",
    "BUCKET": "bucket",
    "REGION": "region",
    "ACCESS_KEY_ID": "access_key_id",
    "SECRET_ACCESS_KEY": "secret_access_key",
    "FORCE_PATH_STYLE": "force_path_style",
}
_REQUIRED: Final = ("bucket", "access_key_id", "secret_access_key")
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
    msg = "expected true/false/1/0/yes/no"
    raise ValueError(msg)


_converter = cattrs.Converter()
_converter.register_structure_hook(bool, _structure_bool)


def load_s3_config_from_env(
    env: Mapping[str, str] | None = None, *, prefix: str = DEFAULT_ENV_PREFIX
) -> Unconfigured | Configured | Misconfigured:
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
        configuration is an error, never a silent fallback.

    .. versionadded:: 0.1.0
    """
    source = os.environ if env is None else env
    raw = {
        name: value
        for suffix, name in _ENV_FIELDS.items()
        if (value := source.get(prefix + suffix, "")).strip()
    }
    if not raw:
        return Unconfigured()
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for attribute in attrs.fields(S3StoreConfig):
        name = attribute.name
        if name not in raw:
            if name in _REQUIRED:
                problems[name] = "missing"
            continue
        try:
            value = _converter.structure(raw[name], attribute.type)  # type: ignore[arg-type]
            if attribute.validator is not None:
                attribute.validator(None, attribute, value)
        except (ValueError, TypeError, ConfigurationError, cattrs.BaseValidationError):
            problems[name] = "invalid"
            continue
        values[name] = value
    if problems:
        return Misconfigured(_describe(problems, prefix))
    return Configured(S3StoreConfig(**values))


def _describe(problems: dict[str, str], prefix: str) -> ConfigurationError:
    missing = [name for name, kind in problems.items() if kind == "missing"]
    invalid = [name for name, kind in problems.items() if kind == "invalid"]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(missing))
    if invalid:
        parts.append("invalid " + ", ".join(invalid))
    env_names = {v: k for k, v in _ENV_FIELDS.items()}
    variables = ", ".join(prefix + env_names[name] for name in problems)
    msg = (
        f"S3 storage is partly configured: {'; '.join(parts)}. "
        f"Set or fix {variables}, or unset all {prefix}* variables to use "
        "another backend."
    )
    return ConfigurationError(msg, fields=tuple(problems))
