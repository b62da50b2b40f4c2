"""Spans, metrics and log fields, seen through the real OpenTelemetry SDK.

The SDK is installed once for the test process (OpenTelemetry's global
providers are set once); spans are kept only while a test records them, and
metrics are compared before and after each test's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.aiohttp_client import AioHttpClientInstrumentor
from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

from sriblob import (
    BlobStoreRegistry,
    CachedBlobStore,
    FilesystemBlobStore,
    IntegrityMismatch,
    MemoryBlobStore,
    PostgresBlobStore,
    S3BlobStore,
    S3StoreConfig,
    collect_garbage,
    migrate,
    verify,
)

from .helpers import Backend, blob, integrity_of

if TYPE_CHECKING:
    from sriblob import BlobStore


class Recorder(SpanExporter):
    """Keeps the spans finished while a test records (not the whole session's)."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []
        self.recording = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Keep *spans* if recording."""
        if self.recording:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def named(self, name: str) -> list[ReadableSpan]:
        """The recorded spans called *name*."""
        return [span for span in self.spans if span.name == name]


@attrs.define
class Telemetry:
    """The SDK's span recorder and metric reader, for one test."""

    spans: Recorder
    reader: InMemoryMetricReader
    before: dict[tuple[str, frozenset[tuple[str, Any]]], float]

    def points(self) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
        """Every metric point now: (name, attributes) -> value (or count)."""
        return _points(self.reader)

    def delta(self, name: str, **attributes: Any) -> float:
        """How much metric *name* grew for these attributes during the test."""
        key = (name, frozenset(attributes.items()))
        return self.points().get(key, 0) - self.before.get(key, 0)


def _points(
    reader: InMemoryMetricReader,
) -> dict[tuple[str, frozenset[tuple[str, Any]]], float]:
    found: dict[tuple[str, frozenset[tuple[str, Any]]], float] = {}
    data = reader.get_metrics_data()
    if data is None:
        return found
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = point.count  # type: ignore[union-attr]
                    key = (metric.name, frozenset((point.attributes or {}).items()))
                    found[key] = value
    return found


_SDK: tuple[Recorder, InMemoryMetricReader] | None = None


def _sdk() -> tuple[Recorder, InMemoryMetricReader]:
    """Install the SDK (once per process) and the host instrumentations."""
    global _SDK  # noqa: PLW0603 -- OpenTelemetry's providers are set once
    if _SDK is None:
        recorder = Recorder()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(recorder))
        trace.set_tracer_provider(tracer_provider)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        AioHttpClientInstrumentor().instrument()
        AsyncPGInstrumentor().instrument()  # type: ignore[no-untyped-call]
        _SDK = (recorder, reader)
    return _SDK


@pytest.fixture(name="telemetry")
def _telemetry() -> Iterator[Telemetry]:
    recorder, reader = _sdk()
    recorder.spans = []
    recorder.recording = True
    try:
        yield Telemetry(recorder, reader, _points(reader))
    finally:
        recorder.recording = False


async def exercise(store: BlobStore) -> str:
    """put, add, get, open, has, stat, list and delete one blob."""
    data = blob(3000, seed=1)
    integrity = await store.put(integrity_of(data), data)
    assert await store.add(data) == integrity
    assert await store.get(integrity) == data
    async with store.open(integrity) as reader:
        assert await reader.read() == data
    assert await store.has(integrity)
    assert (await store.stat(integrity)) is not None
    assert [name async for name in store.list()] == [integrity]
    assert await store.delete(integrity)
    return integrity


OPERATIONS = ["put", "add", "get", "open", "has", "stat", "list", "delete"]


class TestStoreCalls:
    """One span sriblob.<op> per store call, counted and timed, on every backend."""

    async def test_every_call_has_its_span_and_metrics(
        self, backend: Backend, telemetry: Telemetry
    ) -> None:
        """Each call: a span with the store, integrity and bytes; counted, timed."""
        async with backend.make() as store:
            integrity = await exercise(store)
        spans = {name: telemetry.spans.named(f"sriblob.{name}") for name in OPERATIONS}
        for name, found in spans.items():
            assert len(found) == 1, name
            attributes = found[0].attributes or {}
            assert attributes["sriblob.store"] == store.id, name
            assert found[0].status.status_code == trace.StatusCode.UNSET, name
            if name != "list":
                assert attributes["sriblob.integrity"] == integrity, name
            if name in ("put", "add", "get", "open"):
                assert attributes["sriblob.bytes"] == 3000, name
            outcome = {"sriblob.op": name, "sriblob.store": store.id}
            assert (
                telemetry.delta(
                    "sriblob.operations", **outcome, **{"sriblob.outcome": "ok"}
                )
                == 1
            ), name
            assert (
                telemetry.delta(
                    "sriblob.operation.duration", **outcome, **{"sriblob.outcome": "ok"}
                )
                == 1
            ), name
        moved = {"sriblob.store": store.id}
        assert (
            telemetry.delta("sriblob.bytes", **moved, **{"sriblob.direction": "in"})
            == 6000
        )
        assert (
            telemetry.delta("sriblob.bytes", **moved, **{"sriblob.direction": "out"})
            == 6000
        )

    async def test_the_open_span_lasts_until_the_reader_closes(
        self, telemetry: Telemetry
    ) -> None:
        """open()'s span ends when the reader's block does, counting what it read."""
        async with MemoryBlobStore() as store:
            integrity = await store.add(blob(5000, seed=2))
            async with store.open(integrity) as reader:
                await anext(reader)
                assert telemetry.spans.named("sriblob.open") == []
                await asyncio.sleep(0.05)
                await reader.read()
        [opened] = telemetry.spans.named("sriblob.open")
        assert opened.end_time is not None
        assert opened.start_time is not None
        assert opened.end_time - opened.start_time >= 50_000_000
        assert (opened.attributes or {})["sriblob.bytes"] == 5000

    async def test_missing_blobs_are_an_outcome_not_an_error(
        self, telemetry: Telemetry
    ) -> None:
        """Get of None, has of False, stat of None, open of BlobNotFound: missing."""
        absent = integrity_of(b"absent")
        async with MemoryBlobStore(id="m") as store:
            assert await store.get(absent) is None
            assert not await store.has(absent)
            assert await store.stat(absent) is None
            with contextlib.suppress(LookupError):
                async with store.open(absent):
                    pass
        for name in ("get", "has", "stat", "open"):
            missing = {"sriblob.op": name, "sriblob.store": "m"}
            assert (
                telemetry.delta(
                    "sriblob.operations", **missing, **{"sriblob.outcome": "missing"}
                )
                == 1
            ), name

    async def test_a_failure_is_an_error_span_and_an_integrity_failure(
        self, tmp_path: Path, telemetry: Telemetry
    ) -> None:
        """A corrupt blob: ERROR status, the exception recorded, counted."""
        store = FilesystemBlobStore(tmp_path, id="fs")
        data = blob(1000, seed=3)
        integrity = await store.add(data)
        path = store.path_of(integrity)
        path.chmod(0o644)
        path.write_bytes(data[:-1] + b"!")
        with pytest.raises(IntegrityMismatch):
            await store.get(integrity)
        [failed] = telemetry.spans.named("sriblob.get")
        assert failed.status.status_code == trace.StatusCode.ERROR
        assert [event.name for event in failed.events] == ["exception"]
        failure = {"sriblob.op": "get", "sriblob.store": "fs"}
        assert telemetry.delta("sriblob.integrity.failures", **failure) == 1
        assert (
            telemetry.delta(
                "sriblob.operations", **failure, **{"sriblob.outcome": "error"}
            )
            == 1
        )


class TestAround:
    """The cache, the registry, the operations, the lease and the quota."""

    async def test_reads_through_a_cache_say_hit_or_miss(
        self, tmp_path: Path, telemetry: Telemetry
    ) -> None:
        """A cold read is a miss, a warm one a hit: on the span and counted."""
        back = MemoryBlobStore(id="back")
        data = blob(2000, seed=4)
        integrity = await back.add(data)
        async with CachedBlobStore(
            back, directory=tmp_path / "c", max_bytes=10**6
        ) as store:
            assert await store.get(integrity) == data
            assert await store.get(integrity) == data
        results = [
            (span.attributes or {}).get("sriblob.cache.result")
            for span in telemetry.spans.named("sriblob.get")
        ]
        assert results == ["miss", "hit"]
        for result in ("miss", "hit"):
            counted = {"sriblob.store": "back", "sriblob.cache.result": result}
            assert telemetry.delta("sriblob.cache.requests", **counted) == 1

    async def test_a_fallback_read_names_the_store_that_served(
        self, telemetry: Telemetry
    ) -> None:
        """Served by the second store: served_by on the span, and counted."""
        registry = BlobStoreRegistry()
        registry.register(MemoryBlobStore(id="first"))
        second = MemoryBlobStore(id="second")
        registry.register(second)
        data = blob(100, seed=5)
        integrity = await second.add(data)
        async with registry:
            assert await registry.read_with_fallback(integrity) == (data, "second")
            async with registry.open_with_fallback(integrity) as reader:
                assert await reader.read() == data
        for name in ("read_with_fallback", "open_with_fallback"):
            [span] = telemetry.spans.named(f"sriblob.{name}")
            assert (span.attributes or {})["sriblob.served_by"] == "second"
            counted = {"sriblob.op": name, "sriblob.served_by": "second"}
            assert telemetry.delta("sriblob.fallback.reads", **counted) == 1

    async def test_whole_store_operations_hold_their_calls(
        self, telemetry: Telemetry
    ) -> None:
        """Migrate, verify and gc are spans; the store calls they make, children."""
        async with MemoryBlobStore(id="a") as source, MemoryBlobStore(id="b") as target:
            integrity = await source.add(blob(100, seed=6))
            await migrate(source, target)
            await verify(target)
            later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
            await collect_garbage(target, [], dry_run=False, now=later)
            assert not await target.has(integrity)
        for name in ("migrate", "verify", "gc"):
            [operation] = telemetry.spans.named(f"sriblob.{name}")
            children = [
                span
                for span in telemetry.spans.spans
                if span.parent is not None
                and span.parent.span_id == operation.context.span_id
            ]
            assert children, name
        [migrated] = telemetry.spans.named("sriblob.migrate")
        assert (migrated.attributes or {})["sriblob.source"] == "a"

    async def test_the_quota_total_and_the_lease_are_gauged(
        self, tmp_path: Path, telemetry: Telemetry
    ) -> None:
        """A store with a quota reports its total; a held lease counts one."""
        async with FilesystemBlobStore(
            tmp_path, id="quota", max_total_size=10**6
        ) as store:
            await store.add(blob(1234, seed=7))
            assert (
                telemetry.points()[
                    ("sriblob.store.usage", frozenset({("sriblob.store", "quota")}))
                ]
                == 1234
            )
            async with store.lease("test"):
                assert (
                    telemetry.delta("sriblob.lease.held", **{"sriblob.store": "quota"})
                    == 1
                )
            assert (
                telemetry.delta("sriblob.lease.held", **{"sriblob.store": "quota"}) == 0
            )


class TestHostInstrumentation:
    """A host's aiohttp-client and asyncpg spans nest under sriblob's."""

    @pytest.mark.s3
    async def test_s3_requests_nest_under_the_store_call(
        self, s3_config: S3StoreConfig, telemetry: Telemetry
    ) -> None:
        """The PUT and GET requests aiohttp sends are children of sriblob.put/get."""
        async with S3BlobStore(s3_config) as store:
            integrity = await store.add(blob(1000, seed=8))
            await store.get(integrity)
        for name in ("add", "get"):
            [call] = telemetry.spans.named(f"sriblob.{name}")
            children = [
                span
                for span in telemetry.spans.spans
                if span.parent is not None
                and span.parent.span_id == call.context.span_id
            ]
            assert children, name
            assert all(span.kind == trace.SpanKind.CLIENT for span in children), name

    @pytest.mark.postgres
    async def test_postgres_queries_nest_under_the_store_call(
        self, postgres_backend: Backend, telemetry: Telemetry
    ) -> None:
        """The queries asyncpg runs for a get are children of sriblob.get."""
        async with postgres_backend.make() as store:
            integrity = await store.add(blob(1000, seed=9))
            await store.get(integrity)
        [call] = telemetry.spans.named("sriblob.get")
        children = [
            span
            for span in telemetry.spans.spans
            if span.parent is not None and span.parent.span_id == call.context.span_id
        ]
        assert children


SECRET = "wJalrXUtnFEMI-telemetry-secret"
PASSWORD = "telemetry-pw-Zq9"


class TestSecrets:
    """No secret in a span attribute or event, a metric attribute or a log field."""

    def assert_clean(
        self, telemetry: Telemetry, caplog: pytest.LogCaptureFixture, secret: str
    ) -> None:
        """*secret* appears in nothing telemetry recorded."""
        for span in telemetry.spans.spans:
            assert secret not in json.dumps(dict(span.attributes or {}), default=str)
            for event in span.events:
                assert secret not in json.dumps(
                    dict(event.attributes or {}), default=str
                )
        assert secret not in repr(telemetry.points())
        for record in caplog.records:
            assert secret not in json.dumps(record.__dict__, default=str)

    @pytest.mark.s3
    async def test_s3_credentials(
        self,
        s3_config: S3StoreConfig,
        telemetry: Telemetry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Good and bad credentials: the secret key never shows."""
        caplog.set_level(logging.DEBUG)
        good = attrs.evolve(s3_config, secret_access_key=SECRET)
        async with S3BlobStore(good) as store:
            await exercise(store)
        bad = attrs.evolve(s3_config, access_key_id="nobody", secret_access_key=SECRET)
        async with S3BlobStore(bad) as store:
            with contextlib.suppress(Exception):
                await store.add(b"refused")
        assert telemetry.spans.spans
        self.assert_clean(telemetry, caplog, SECRET)

    @pytest.mark.postgres
    async def test_a_postgres_password(
        self,
        postgres_dsn: str,
        telemetry: Telemetry,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """A DSN with a password, refused by a server that isn't there: never shown."""
        caplog.set_level(logging.DEBUG)
        dsn = f"postgresql://app:{PASSWORD}@127.0.0.1:1/blobs"
        async with PostgresBlobStore(dsn, connect_timeout=1.0) as store:
            with contextlib.suppress(Exception):
                await store.add(b"refused")
        assert telemetry.spans.named("sriblob.add")
        self.assert_clean(telemetry, caplog, PASSWORD)


class TestLogFields:
    """Log records carry sriblob_store, sriblob_op and sriblob_integrity."""

    async def test_every_call_logs_its_fields(
        self, tmp_path: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A JSON handler would show them as fields."""
        caplog.set_level(logging.DEBUG, logger="sriblob")
        store = FilesystemBlobStore(tmp_path, id="fields")
        data = blob(100, seed=10)
        integrity = await store.add(data)
        await store.get(integrity)
        await store.has(integrity)
        records = [r for r in caplog.records if r.name == "sriblob"]
        assert records
        for record in records:
            assert record.__dict__["sriblob_store"] == "fields"
            assert record.__dict__["sriblob_op"] in OPERATIONS
        gets = [r for r in records if r.__dict__["sriblob_op"] == "get"]
        assert [r.__dict__["sriblob_integrity"] for r in gets] == [integrity]


def test_the_off_switch(tmp_path: Path) -> None:
    """SRIBLOB_TELEMETRY=off: no span reaches even a configured SDK."""
    script = f"""
import asyncio
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
import sriblob
store = sriblob.FilesystemBlobStore({str(tmp_path)!r})
asyncio.run(store.add(b"x"))
print(len(exporter.get_finished_spans()))
"""
    for switch, expected in (("off", "0"), ("on", "1")):
        done = subprocess.run(  # noqa: S603 -- our own interpreter
            [sys.executable, "-c", script],
            env={**os.environ, "SRIBLOB_TELEMETRY": switch},
            capture_output=True,
            text=True,
            check=True,
        )
        assert done.stdout.strip() == expected, switch


class TestTheDocsExamples:
    """docs/observability.md's two samples run and show what the page says."""

    EXAMPLES = (
        Path(__file__).resolve().parents[1] / "docs" / "examples" / "observability"
    )

    def run(self, name: str) -> str:
        """Run one example in a fresh interpreter; its standard output."""
        done = subprocess.run(  # noqa: S603 -- our own interpreter and file
            [sys.executable, str(self.EXAMPLES / name)],
            env={k: v for k, v in os.environ.items() if k != "SRIBLOB_TELEMETRY"},
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout

    def test_wiring_the_sdk(self) -> None:
        """The console exporters print the add and get spans, then the metrics."""
        out = self.run("wire_sdk.py")
        assert '"name": "sriblob.add"' in out
        assert '"name": "sriblob.get"' in out
        assert '"service.name": "package-host"' in out
        assert '"name": "sriblob.operations"' in out
        assert '"name": "sriblob.operation.duration"' in out

    def test_json_logging(self) -> None:
        """One JSON object per call, with the three fields."""
        lines = [json.loads(line) for line in self.run("json_logging.py").splitlines()]
        assert [line["sriblob_op"] for line in lines] == ["add", "get"]
        assert {line["sriblob_store"] for line in lines} == {"packages"}
        assert lines[0]["sriblob_integrity"] == lines[1]["sriblob_integrity"]
        assert lines[0]["sriblob_integrity"].startswith("sha512-")


def test_every_log_call_in_the_library_passes_its_fields() -> None:
    """Each ``logger.<level>(...)`` in src/sriblob passes ``extra=``.

    So no record reaches a JSON handler without sriblob_store, sriblob_op and
    sriblob_integrity (a new log line without them fails here).
    """
    import ast  # noqa: PLC0415 -- this test only

    source = Path(__file__).resolve().parents[1] / "src" / "sriblob"
    levels = {"debug", "info", "warning", "error", "exception", "critical", "log"}
    missing = [
        f"{path.relative_to(source)}:{node.lineno}"
        for path in sorted(source.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "logger"
        and node.func.attr in levels
        and not any(keyword.arg == "extra" for keyword in node.keywords)
    ]
    assert missing == []


def test_a_provider_set_after_the_first_call_is_followed(tmp_path: Path) -> None:
    """Calls before any SDK make no span; once a host sets one, calls do."""
    script = f"""
import asyncio
import sriblob
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
store = sriblob.FilesystemBlobStore({str(tmp_path)!r})
integrity = asyncio.run(store.add(b"before"))
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)
asyncio.run(sriblob.FilesystemBlobStore({str(tmp_path)!r}).get(integrity))
print(",".join(span.name for span in exporter.get_finished_spans()))
"""
    done = subprocess.run(  # noqa: S603 -- our own interpreter
        [sys.executable, "-c", script],
        env={k: v for k, v in os.environ.items() if k != "SRIBLOB_TELEMETRY"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip() == "sriblob.get"
