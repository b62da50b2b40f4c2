"""A host wires the OpenTelemetry SDK; sriblob's spans and metrics flow out.

Run it with the SDK installed (python -m pip install opentelemetry-sdk): it
prints the spans of one add and one get, then the metrics. In production,
swap the console exporters for OTLP ones (opentelemetry-exporter-otlp) or
a Prometheus reader (opentelemetry-exporter-prometheus).
"""

import asyncio
import tempfile

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

import sriblob

# 1. Once, at start-up, before or after sriblob is imported: sriblob takes
#    its tracer and meter from these global providers on first use.
resource = Resource.create({"service.name": "package-host"})
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
trace.set_tracer_provider(tracer_provider)
reader = PeriodicExportingMetricReader(ConsoleMetricExporter())
metrics.set_meter_provider(MeterProvider(resource=resource, metric_readers=[reader]))


async def main() -> None:
    """Add a blob and read it back: two spans, and their metrics."""
    # 2. Use sriblob as usual: every store call is a span and counted.
    with tempfile.TemporaryDirectory() as root:
        async with sriblob.FilesystemBlobStore(root) as store:
            integrity = await store.add(b"a package tarball")
            assert await store.get(integrity) == b"a package tarball"


asyncio.run(main())
# 3. At shutdown, flush what is still buffered.
tracer_provider.shutdown()
metrics.get_meter_provider().shutdown()  # type: ignore[attr-defined]
