"""S3 errors as sriblob's: one table, one translator, and named predicates.

Like s3fs's ``translate_boto_error`` and httpx's ``map_httpcore_exceptions``:
botocore's, aiohttp's and the network's exceptions are mapped in one place.
Where the backend must branch on an answer (no such key, a failed
condition), it asks a predicate here (:func:`is_missing`,
:func:`is_condition_failed`, ...), so no other module inspects an error code
or status itself.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Final, NoReturn, TypeVar

import aiohttp
import attrs
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
    ResponseStreamingError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from sriblob.exceptions import (
    AccessDenied,
    BucketNotFound,
    StoreError,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "TRANSLATED",
    "Where",
    "is_condition_failed",
    "is_invalid_range",
    "is_missing",
    "is_no_such_key",
    "is_no_such_upload",
    "is_not_implemented",
]

#: What :meth:`Where.translate` turns into sriblob errors.
TRANSLATED: Final = (BotoCoreError, ClientError, aiohttp.ClientError, TimeoutError)

#: Transport failures: the request didn't get an answer.
_TRANSPORT: Final = (
    BotoConnectionError,
    HTTPClientError,
    ResponseStreamingError,
    IncompleteReadError,
    aiohttp.ClientError,
    TimeoutError,
)

_DENIED_HINT: Final = (
    "access denied ({code}); check the access key id, the secret access key "
    "and the bucket policy"
)
#: Error code → the sriblob error it means, and what to say.
_BY_CODE: Final[dict[str, tuple[type[StoreError], str]]] = {
    "NoSuchBucket": (BucketNotFound, "the bucket does not exist"),
    **dict.fromkeys(
        (
            "AccessDenied",
            "AccountProblem",
            "AllAccessDisabled",
            "ExpiredToken",
            "InvalidAccessKeyId",
            "InvalidToken",
            "SignatureDoesNotMatch",
        ),
        (AccessDenied, _DENIED_HINT),
    ),
    **dict.fromkeys(
        (
            "InternalError",
            "RequestTimeout",
            "RequestTimeTooSkewed",
            "ServiceUnavailable",
            "SlowDown",
            "Throttling",
            "ThrottlingException",
        ),
        (StoreUnavailable, "the server kept failing ({code}) after retries"),
    ),
}
_BY_CODE["PreconditionFailed"] = (
    StoreError,
    "a condition failed: the object changed while it was read ({code})",
)
#: HTTP status → the same, for answers without an error code (HEAD).
_BY_STATUS: Final[dict[int, tuple[type[StoreError], str]]] = {
    403: (AccessDenied, _DENIED_HINT),
}
_SERVER_ERROR: Final = (
    StoreUnavailable,
    "the server kept failing ({code}) after retries",
)
_OTHER: Final = (StoreError, "the server answered {code}")


#: Answers to a conditional request that mean "the condition failed".
_CONDITION_FAILED: Final = frozenset(
    {"PreconditionFailed", "ConditionalRequestConflict"}
)


def _code_of(error: ClientError) -> str:
    """Return the S3 error code of *error* ("" when the answer had none)."""
    return str(error.response.get("Error", {}).get("Code", ""))


def _status_of(error: ClientError) -> int:
    """Return the HTTP status of *error* (0 when unknown)."""
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


# -- predicates: what the backend branches on --------------------------------
# Each takes any exception (or None, an error's missing ``__cause__``) and is
# False for anything but a botocore ClientError.


def is_missing(error: BaseException | None) -> bool:
    """Whether *error* is a 404: no such key or, to a bodiless HEAD, no bucket.

    A HEAD answer has no error code, so its 404 may mean either; a GET's
    404 names which (see :func:`is_no_such_key`).
    """
    return isinstance(error, ClientError) and (
        _code_of(error) == "NoSuchKey" or _status_of(error) == 404  # noqa: PLR2004
    )


def is_no_such_key(error: BaseException | None) -> bool:
    """Whether *error* says the bucket holds no such key (never: no such bucket)."""
    return isinstance(error, ClientError) and _code_of(error) == "NoSuchKey"


def is_invalid_range(error: BaseException | None) -> bool:
    """Whether *error* refuses a range that starts at or past the end (416)."""
    return isinstance(error, ClientError) and _code_of(error) == "InvalidRange"


def is_condition_failed(error: BaseException | None) -> bool:
    """Whether *error* is a conditional request's precondition failing (412)."""
    return isinstance(error, ClientError) and (
        _code_of(error) in _CONDITION_FAILED or _status_of(error) == 412  # noqa: PLR2004
    )


def is_no_such_upload(error: BaseException | None) -> bool:
    """Whether *error* says a multipart upload is gone (completed or aborted)."""
    return isinstance(error, ClientError) and _code_of(error) == "NoSuchUpload"


def is_not_implemented(error: BaseException | None) -> bool:
    """Whether *error* says the server lacks the operation (501 NotImplemented)."""
    return isinstance(error, ClientError) and (
        _code_of(error) == "NotImplemented" or _status_of(error) == 501  # noqa: PLR2004
    )


def _classify(error: Exception, action: str) -> tuple[type[StoreError], str]:
    if isinstance(error, ClientError):
        code, status = _code_of(error), _status_of(error)
        if is_not_implemented(error):
            # Not transient: small S3-compatible servers lack whole
            # operations (s3rver: UploadPartCopy, AbortMultipartUpload).
            return (
                StoreError,
                f"the server does not implement {action} ({code or status})",
            )
        if action == "HeadBucket" and status == 404:  # noqa: PLR2004
            code = "NoSuchBucket"  # HEAD answers carry no code
        kind, what = (
            _BY_CODE.get(code)
            or _BY_STATUS.get(status)
            or (
                _SERVER_ERROR if status >= 500 else _OTHER  # noqa: PLR2004
            )
        )
        return kind, what.format(code=code or status)
    if isinstance(error, _TRANSPORT):
        name = type(error).__name__
        return StoreUnavailable, f"the endpoint is unreachable or timed out ({name})"
    return StoreError, f"the request failed ({type(error).__name__})"


_E = TypeVar("_E", bound=StoreError)


@attrs.frozen
class Where:
    """The bucket a store talks to, for messages: never a credential.

    Attributes:
        backend: The store's id.
        bucket: The bucket name.
        endpoint: The endpoint URL, or "AWS".
    """

    backend: str
    bucket: str
    endpoint: str

    def error(self, kind: type[_E], message: str) -> _E:
        """Return *kind* with *message*, naming this bucket and endpoint."""
        return kind(
            message, backend=self.backend, bucket=self.bucket, endpoint=self.endpoint
        )

    def failed(self, kind: type[_E], action: str, what: str) -> _E:
        """Return *kind* saying "S3 *action* on this bucket failed: *what*."."""
        msg = (
            f"S3 {action} on bucket {self.bucket!r} at {self.endpoint} failed: {what}."
        )
        return self.error(kind, msg)

    def fail(self, error: Exception, action: str) -> NoReturn:
        """Raise the sriblob error for a botocore, aiohttp or network *error*."""
        kind, what = _classify(error, action)
        raise self.failed(kind, action, what) from error

    @contextlib.contextmanager
    def translate(self, action: str) -> Iterator[None]:
        """Turn the errors of the S3 call *action* into sriblob's."""
        try:
            yield
        except TRANSLATED as error:
            self.fail(error, action)
