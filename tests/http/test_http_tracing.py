"""``--tracing``: OpenTelemetry spans collected by the SDK's in-memory exporter. A predict carrying a W3C
``traceparent`` becomes a server span of that trace with ``queue wait`` and ``inference`` children in
time order; a request without one starts a trace; a caller's mistake is not a server error."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from gateway_support import Keys, client_for
from prometheus_client import CollectorRegistry

from bundlegate.http.app import create_app
from bundlegate.metrics import GatewayMetrics
from bundlegate.settings import Settings

try:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind, StatusCode
except ImportError:  # the tracing extra; `make test` installs it
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("opentelemetry-sdk is not installed (the tracing extra)", allow_module_level=True)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


@pytest.fixture
async def traced(repo: Path, keys: Keys) -> AsyncIterator[tuple[Any, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    settings = dataclasses.replace(
        Settings(repository=repo, keys_file=keys.path, access_log=False), tracing=True
    )
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()), tracer_provider=provider)
    await app.startup()
    await app.loaded()
    yield app, exporter
    await app.shutdown()


async def test_a_prediction_is_a_server_span_of_the_callers_trace_with_its_stages(
    traced: tuple[Any, InMemorySpanExporter], keys: Keys
) -> None:
    app, exporter = traced
    headers = keys.auth() | {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    async with client_for(app) as client:
        r = await client.post("/v1/models/iris/predict", json={"inputs": ROW}, headers=headers)
        assert r.status_code == 200
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"POST /v1/models/{name}/predict", "queue wait", "inference"}
    request = spans["POST /v1/models/{name}/predict"]
    assert request.kind == SpanKind.SERVER
    assert format(request.context.trace_id, "032x") == TRACE_ID
    assert request.parent is not None
    assert format(request.parent.span_id, "016x") == PARENT_ID
    assert request.attributes["bundlegate.request_id"] == r.json()["request_id"]
    assert request.attributes["bundlegate.model"] == "iris"
    assert request.attributes["bundlegate.model_version"] == 2
    assert request.attributes["http.response.status_code"] == 200
    wait, inference = spans["queue wait"], spans["inference"]
    for stage in (wait, inference):
        assert stage.parent is not None
        assert stage.parent.span_id == request.context.span_id
        assert stage.context.trace_id == request.context.trace_id
        assert stage.attributes["bundlegate.rows"] == 1
    assert request.start_time <= wait.start_time <= wait.end_time == inference.start_time
    assert inference.start_time <= inference.end_time <= request.end_time


async def test_without_traceparent_a_trace_starts_and_caller_errors_are_not_server_errors(
    traced: tuple[Any, InMemorySpanExporter], keys: Keys
) -> None:
    app, exporter = traced
    async with client_for(app) as client:
        r = await client.post("/v1/models/iris/predict", json={"inputs": {"petal": 1}}, headers=keys.auth())
        assert r.status_code == 422
        r = await client.post("/v2/models/iris/infer", json={"inputs": "x"}, headers=keys.auth())
        assert r.status_code == 422
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["POST /v1/models/{name}/predict", "POST /v2/models/{name}/infer"]
    for span in spans:
        assert span.parent is None
        assert span.attributes["error.type"] == "invalid_input"
        assert span.status.status_code != StatusCode.ERROR
    assert spans[0].context.trace_id != spans[1].context.trace_id


async def test_tracing_is_off_by_default(app: Any) -> None:
    assert app.ctx.tracing is None
