"""``sriblob serve``'s ``GET /metrics``: OpenTelemetry's metrics as Prometheus text.

The serve process is the host that configures OpenTelemetry: before it opens
a store it installs the SDK's ``MeterProvider``, read by OpenTelemetry's
Prometheus exporter, as the global one. The library's metrics and
``BlobApp``'s HTTP metrics then land in prometheus_client's registry, which
prometheus_client's ASGI app renders for each scrape (the Prometheus text
format, or OpenMetrics when the scraper asks for it).

``/metrics`` is matched exactly, before the blob app sees the request: no
blob's path is ``/metrics`` under any prefix (a blob is named by an
integrity or a hex key), so it shadows nothing, not even with the prefix
``""``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .asgi import Receive, Scope, Send

    ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

__all__ = ["PATH", "MetricsRouter", "install", "not_found"]

#: Where a scrape finds the metrics.
PATH: Final = "/metrics"
#: The ``service.name`` of the metrics' resource (``target_info``) unless
#: ``OTEL_SERVICE_NAME`` or ``OTEL_RESOURCE_ATTRIBUTES`` names one.
SERVICE_NAME: Final = "sriblob"


def install() -> ASGIApp:
    """Make the SDK's MeterProvider, read for Prometheus, the global one.

    Returns:
        The ASGI app that answers a scrape with every metric of the process.

    Raises:
        ImportError: The SDK or the exporter is missing (the ``serve`` extra
            brings them), with the command that installs them.
    """
    try:
        from opentelemetry import metrics  # noqa: PLC0415 -- serve only
        from opentelemetry.exporter.prometheus import (  # noqa: PLC0415
            PrometheusMetricReader,
        )
        from opentelemetry.sdk.metrics import MeterProvider  # noqa: PLC0415
        from opentelemetry.sdk.resources import Resource  # noqa: PLC0415
        from prometheus_client import REGISTRY, make_asgi_app  # noqa: PLC0415
    except ImportError as exc:
        msg = (
            "sriblob serve's /metrics needs the OpenTelemetry SDK and its "
            "Prometheus exporter: python -m pip install opentelemetry-sdk "
            "opentelemetry-exporter-prometheus (or install sriblob with its "
            "serve extra), or pass --no-metrics"
        )
        raise ImportError(msg) from exc
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    # The reader registers itself in prometheus_client's global registry,
    # beside the process and Python collectors that registry starts with.
    reader = PrometheusMetricReader()
    metrics.set_meter_provider(
        MeterProvider(metric_readers=[reader], resource=resource)
    )
    app: ASGIApp = make_asgi_app(REGISTRY)
    return app


class MetricsRouter:
    """``GET`` and ``HEAD`` of exactly :data:`PATH` to the metrics, the rest on.

    Args:
        metrics: The app that answers a scrape (:func:`install`'s).
        rest: The app for every other request: the blobs, or :func:`not_found`.
    """

    def __init__(self, metrics: ASGIApp, rest: ASGIApp) -> None:
        self._metrics = metrics
        self._rest = rest

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer one ASGI connection."""
        if (
            scope["type"] == "http"
            and scope["path"] == PATH
            and scope["method"] in ("GET", "HEAD")
        ):
            await self._metrics(scope, receive, send)
        else:
            await self._rest(scope, receive, send)


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:  # noqa: ARG001 -- ASGI
    """Answer 404: a metrics port serves nothing but :data:`PATH`."""
    if scope["type"] != "http":
        return
    body = b"Not found; the metrics are at /metrics.\n"
    await send(
        {
            "type": "http.response.start",
            "status": 404,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
