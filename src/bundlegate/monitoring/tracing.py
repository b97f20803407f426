"""OpenTelemetry spans for predictions (``bundle serve --tracing``; the ``tracing`` extra): ``Tracing``.

Each request to a model route is a server span named ``<METHOD> <route>``, a child of the caller's
trace when the request carries a W3C ``traceparent`` (and ``tracestate``) header. A prediction adds
two child spans, ``queue wait`` and ``inference``, timed from what the model's batching queue reports
for the batch that answered it (the last batch the queue finished when the request got its answer;
batching shares one ``inference`` among the requests of a batch). Attributes: ``http.request.method``,
``http.route``, ``http.response.status_code``, ``bundlegate.request_id``, ``bundlegate.model``,
``bundlegate.model_version``, ``bundlegate.rows``, ``bundlegate.batch_rows``.

Spans go to the process's tracer provider. Where none is set up (no ``opentelemetry-instrument``),
``build_tracing`` sets one up from the SDK with an OTLP/HTTP exporter, configured by the standard
``OTEL_*`` variables. opentelemetry is imported only here and only when tracing is on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from bundlegate.batching import BatchObserver
from bundlegate.errors import InvalidSetting, RequestError

log = logging.getLogger("bundlegate.tracing")
_PROPAGATED = (b"traceparent", b"tracestate")


class StageObserver:
    """A batching observer that also keeps the timing of the last batch (for the stage spans)."""

    __slots__ = ("inner", "last")

    def __init__(self, inner: BatchObserver | None) -> None:
        self.inner = inner
        self.last: tuple[float, float, int] | None = None  # (end monotonic, inference_s, rows)

    def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None:
        self.last = (time.monotonic(), inference_s, rows)
        if self.inner is not None:
            self.inner.on_batch(rows, queue_wait_s, inference_s)


class Tracing:
    """Spans of one gateway process (see the module docstring)."""

    def __init__(self, provider: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from bundlegate import __version__

        self._trace = trace
        provider = provider if provider is not None else trace.get_tracer_provider()
        self._tracer = provider.get_tracer("bundlegate", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._server = trace.SpanKind.SERVER

    def observer_factory(
        self, inner: Callable[[str, int], BatchObserver] | None
    ) -> Callable[[str, int], BatchObserver]:
        """The registry's observer factory, each observer wrapped in a ``StageObserver``."""

        def make(model: str, version: int) -> BatchObserver:
            return StageObserver(inner(model, version) if inner is not None else None)

        return make

    @contextlib.contextmanager
    def request(
        self, method: str, route: str, headers: list[tuple[bytes, bytes]], info: Any
    ) -> Iterator[None]:
        """The server span around one request; ``info`` is its ``RequestInfo`` (model, reply)."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers if k in _PROPAGATED}
        parent = self._propagator.extract(carrier) if carrier else None
        attributes = {
            "http.request.method": method,
            "http.route": route,
            "bundlegate.request_id": info.request_id,
        }
        with self._tracer.start_as_current_span(
            f"{method} {route}",
            context=parent,
            kind=self._server,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                yield
            except Exception as exc:
                code = getattr(exc, "code", "internal")
                span.set_attribute("error.type", code)
                if not isinstance(exc, RequestError):  # the server's fault, not the caller's
                    span.record_exception(exc)
                    span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, code))
                raise
            finally:
                if info.model is not None:
                    span.set_attribute("bundlegate.model", info.model)
                if info.version is not None:
                    span.set_attribute("bundlegate.model_version", info.version)
                if info.reply is not None:
                    span.set_attribute("http.response.status_code", info.reply.status)

    def stages(self, observer: object, submitted: float, rows: int) -> None:
        """``queue wait`` and ``inference`` spans under the current span, for a prediction submitted
        at ``submitted`` (monotonic) whose queue reports to ``observer``."""
        last = getattr(observer, "last", None)
        if last is None:
            return
        end, inference_s, batch_rows = last
        offset = time.time_ns() - time.monotonic_ns()
        started = max(submitted, end - inference_s)
        for name, t0, t1 in (("queue wait", submitted, started), ("inference", started, end)):
            span = self._tracer.start_span(name, start_time=offset + int(t0 * 1e9))
            span.set_attribute("bundlegate.rows", rows)
            span.set_attribute("bundlegate.batch_rows", batch_rows)
            span.end(end_time=offset + int(t1 * 1e9))


def build_tracing(enabled: bool, provider: Any = None) -> Tracing | None:
    """``Tracing`` when ``enabled``; ``InvalidSetting`` when opentelemetry is not installed."""
    if not enabled:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        raise InvalidSetting("--tracing needs OpenTelemetry: pip install 'bundlegate[tracing]'") from None
    if provider is None and type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
        provider = _sdk_provider()
    return Tracing(provider)


def _sdk_provider() -> Any:
    """An SDK tracer provider exporting over OTLP/HTTP (``OTEL_EXPORTER_OTLP_*``, ``OTEL_SERVICE_NAME``)."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "tracing: no tracer provider is set up and opentelemetry-sdk is missing; spans go nowhere"
        )
        return None
    name = os.environ.get("OTEL_SERVICE_NAME") or "bundlegate"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        log.warning("tracing: opentelemetry-exporter-otlp-proto-http is missing; spans are not exported")
    else:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return provider
