"""Spans, metrics and log fields for every store call, through OpenTelemetry's API.

sriblob takes a tracer and a meter named ``sriblob`` from OpenTelemetry's
global providers the first time a store is used: a host that configures the
OpenTelemetry SDK sees every call (before or after that moment; the API's
proxies follow the providers set later), and a host that doesn't gets the
API's no-op objects, which cost microseconds a call. ``SRIBLOB_TELEMETRY=off``
turns all of it off (the benchmarks' baseline).

The names are public API (see docs/observability.md): spans ``sriblob.<op>``
with ``sriblob.store``, ``sriblob.integrity``, ``sriblob.bytes`` and
``sriblob.cache.result``; metrics ``sriblob.operations``,
``sriblob.operation.duration``, ``sriblob.bytes``,
``sriblob.integrity.failures``, ``sriblob.cache.requests``,
``sriblob.fallback.reads``, ``sriblob.store.usage`` and
``sriblob.lease.held``; for ``sriblob.asgi.BlobApp``,
``sriblob.http.requests`` and ``sriblob.http.response.bytes``; log records
carry ``sriblob_store``, ``sriblob_op`` and ``sriblob_integrity`` as
``extra`` fields.
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import TYPE_CHECKING, Any, Final

from .exceptions import BlobNotFound, IntegrityMismatch

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

    from opentelemetry.trace import Span

__all__ = [
    "DURATION_BUCKETS",
    "OFF_SWITCH",
    "Call",
    "call",
    "count_bytes",
    "fields",
    "note_cache",
    "note_fallback",
    "note_http",
    "note_http_bytes",
    "note_lease",
    "note_usage",
    "span",
]

#: The environment variable that turns telemetry off (``off``, ``0``, ``no``).
OFF_SWITCH: Final = "SRIBLOB_TELEMETRY"
#: Explicit histogram buckets, in seconds: 1 ms to 60 s (the SDK's defaults
#: are scaled for milliseconds).
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_OFF_VALUES: Final = frozenset({"0", "off", "false", "no"})


class _Instruments:
    """The tracer and the instruments, made on first use."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace  # noqa: PLC0415 -- on first use

        self.tracer = trace.get_tracer("sriblob")
        self._trace = trace
        meter = metrics.get_meter("sriblob")
        self.operations = meter.create_counter(
            "sriblob.operations",
            unit="{operation}",
            description="Store calls, by operation, store and outcome",
        )
        self.duration = meter.create_histogram(
            "sriblob.operation.duration",
            unit="s",
            description="How long store calls take",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.bytes = meter.create_counter(
            "sriblob.bytes", unit="By", description="Blob bytes in and out"
        )
        self.integrity_failures = meter.create_counter(
            "sriblob.integrity.failures",
            unit="{failure}",
            description="Bytes that didn't match their integrity",
        )
        self.cache_requests = meter.create_counter(
            "sriblob.cache.requests",
            unit="{request}",
            description="Reads through a cache, by result (hit or miss)",
        )
        self.fallback_reads = meter.create_counter(
            "sriblob.fallback.reads",
            unit="{read}",
            description="Registry reads served by another store than the first",
        )
        self.usage = meter.create_gauge(
            "sriblob.store.usage",
            unit="By",
            description="Bytes a store holds, where it keeps a running total",
        )
        self.leases = meter.create_up_down_counter(
            "sriblob.lease.held",
            unit="{lease}",
            description="Maintenance leases this process holds",
        )
        self.http_requests = meter.create_counter(
            "sriblob.http.requests",
            unit="{request}",
            description="HTTP requests BlobApp answered, by method and status",
        )
        self.http_bytes = meter.create_counter(
            "sriblob.http.response.bytes",
            unit="By",
            description="Response body bytes BlobApp sent, by method and status",
        )


def _tracing(instruments: _Instruments) -> bool:
    """Whether a tracer provider was set (the SDK's, say).

    Until one is, the API's tracer makes only no-op spans: skipping them
    saves most of what a call's telemetry costs. Asked at every call, so a
    provider set later is followed at once.
    """
    trace = instruments._trace  # noqa: SLF001 -- this module's own
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


_instruments: _Instruments | None = None
_enabled: bool | None = None


def _get() -> _Instruments | None:
    """The instruments, or None when telemetry is off (or OpenTelemetry absent)."""
    global _instruments, _enabled  # noqa: PLW0603 -- made once, on first use
    if _enabled is None:
        switch = os.environ.get(OFF_SWITCH, "").strip().lower()
        _enabled = switch not in _OFF_VALUES
        if _enabled:
            try:
                _instruments = _Instruments()
            except ImportError:  # pragma: no cover -- a dependency
                _enabled = False
    return _instruments


def fields(
    store: str | None, op: str, integrity: object = None
) -> Mapping[str, str | None]:
    """The ``extra`` fields of a log record: the store, the operation, the blob.

    *store* is None when the record is about no one store (the environment).
    """
    return {
        "sriblob_store": store,
        "sriblob_op": op,
        "sriblob_integrity": None if integrity is None else str(integrity),
    }


class Call:
    """What one store call reports: its outcome, its bytes, its cache result."""

    __slots__ = ("_attributes", "_direction", "_span", "bytes", "outcome")

    def __init__(self, span: Span | None, attributes: dict[str, str]) -> None:
        self._span = span
        self._attributes = attributes
        self._direction = "out"
        #: Blob bytes moved by the call.
        self.bytes = 0
        #: ``ok``, ``missing`` (the blob isn't there) or ``error``.
        self.outcome = "ok"

    def integrity(self, integrity: object) -> None:
        """Name the blob (once known: an ``add()`` learns it at its end)."""
        if self._span is not None:
            self._span.set_attribute("sriblob.integrity", str(integrity))

    def moved(self, size: int, *, direction: str) -> None:
        """Count *size* blob bytes going ``in`` (written) or ``out`` (read)."""
        self.bytes += size
        self._direction = direction

    def missing(self) -> None:
        """The call found no blob (a ``get()`` of None, a ``has()`` of False)."""
        self.outcome = "missing"


_NULL_CALL: Final = Call(None, {})


@contextlib.contextmanager
def call(
    op: str, store: str, integrity: object = None, *, current: bool = True
) -> Iterator[Call]:
    """One store call: a span ``sriblob.<op>``, counted and timed as it ends.

    An exception marks the span ERROR and records it; a ``BlobNotFound`` is
    the outcome ``missing``, an ``IntegrityMismatch`` counts as an
    integrity failure too. With *current* false (a listing, whose consumer
    runs between its items) the span isn't made the current one.
    """
    instruments = _get()
    if instruments is None:
        yield _NULL_CALL
        return
    attributes = {"sriblob.op": op, "sriblob.store": store}
    started = time.perf_counter()
    if _tracing(instruments):
        start = (
            instruments.tracer.start_as_current_span
            if current
            else instruments.tracer.start_span
        )
        spanning: contextlib.AbstractContextManager[Span | None] = start(
            f"sriblob.{op}",
            attributes={"sriblob.store": store}
            if integrity is None
            else {"sriblob.store": store, "sriblob.integrity": str(integrity)},
            record_exception=True,
            set_status_on_exception=True,
        )
    else:
        spanning = contextlib.nullcontext()
    with spanning as opened:
        made = Call(opened, attributes)
        try:
            yield made
        except BlobNotFound:
            made.outcome = "missing"
            raise
        except BaseException as exc:
            made.outcome = "error"
            if isinstance(exc, IntegrityMismatch):
                instruments.integrity_failures.add(1, attributes)
            raise
        finally:
            if made.bytes:
                if opened is not None:
                    opened.set_attribute("sriblob.bytes", made.bytes)
                instruments.bytes.add(
                    made.bytes,
                    {"sriblob.store": store, "sriblob.direction": made._direction},  # noqa: SLF001
                )
            attributes["sriblob.outcome"] = made.outcome
            instruments.operations.add(1, attributes)
            instruments.duration.record(time.perf_counter() - started, attributes)


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span | None]:
    """A span ``sriblob.<name>`` for a whole-store operation or a registry read."""
    instruments = _get()
    if instruments is None or not _tracing(instruments):
        yield None
        return
    with instruments.tracer.start_as_current_span(
        f"sriblob.{name}",
        attributes={f"sriblob.{k}": v for k, v in attributes.items() if v is not None},
        record_exception=True,
        set_status_on_exception=True,
    ) as opened:
        yield opened


def count_bytes(store: str, size: int, *, direction: str) -> None:
    """Count blob bytes moved outside a store call (a reader's stream)."""
    instruments = _get()
    if instruments is not None and size:
        instruments.bytes.add(
            size, {"sriblob.store": store, "sriblob.direction": direction}
        )


def note_cache(store: str, result: str) -> None:
    """A read through a cache was a ``hit`` or a ``miss``: count it, on the span."""
    instruments = _get()
    if instruments is None:
        return
    from opentelemetry import trace  # noqa: PLC0415 -- loaded by _get already

    trace.get_current_span().set_attribute("sriblob.cache.result", result)
    instruments.cache_requests.add(
        1, {"sriblob.store": store, "sriblob.cache.result": result}
    )


def note_fallback(op: str, served_by: str) -> None:
    """A registry read was served by a store that wasn't the first asked."""
    instruments = _get()
    if instruments is not None:
        instruments.fallback_reads.add(
            1, {"sriblob.op": op, "sriblob.served_by": served_by}
        )


def note_usage(store: str, total: int) -> None:
    """A store that keeps a running total holds *total* bytes now."""
    instruments = _get()
    if instruments is not None:
        instruments.usage.set(total, {"sriblob.store": store})


def note_lease(store: str, held: int) -> None:
    """This process took (+1) or gave back (-1) a store's maintenance lease."""
    instruments = _get()
    if instruments is not None:
        instruments.leases.add(held, {"sriblob.store": store})


def note_http(method: str, status: int, error: str | None = None) -> None:
    """BlobApp answered a request (*error*: what aborted it, once started)."""
    instruments = _get()
    if instruments is None:
        return
    attributes: dict[str, str | int] = {
        "http.request.method": method,
        "http.response.status_code": status,
    }
    if error is not None:
        attributes["error.type"] = error
    instruments.http_requests.add(1, attributes)


def note_http_bytes(method: str, status: int, size: int) -> None:
    """BlobApp sent *size* bytes of a response's body."""
    instruments = _get()
    if instruments is not None and size:
        instruments.http_bytes.add(
            size, {"http.request.method": method, "http.response.status_code": status}
        )
