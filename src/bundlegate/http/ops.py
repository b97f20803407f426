"""Operations endpoints, no key needed (DESIGN.md §3): they reveal no model internals beyond names.

GET /healthz   200 while the process serves HTTP (liveness)
GET /readyz    200 when ready (``readiness``: the first load done, the required models serving),
               503 (+ Retry-After) before, and from SIGTERM on (during ``--drain-delay-s`` too)
GET /metrics   Prometheus text exposition (on the metrics port instead when ``--metrics-port`` is
               set: ``http.metrics_listener``)
"""

from __future__ import annotations

from starlette.routing import Route

from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.readiness import check_ready
from bundlegate.http.routing import Call, json_reply, route


async def healthz(call: Call) -> Reply:
    return json_reply({"status": "ok"})


async def readyz(call: Call) -> Reply:
    check_ready(call.ctx)
    return json_reply({"status": "ready"})


def refresh_model_gauges(ctx: GatewayContext) -> None:
    """Copy the registry's model states into the metrics gauges (at scrape time and after loading)."""
    registry = ctx.registry
    ctx.metrics.set_model_states(registry.state_counts())
    ctx.metrics.set_model_info(
        (status.name, v.version, v.runtime or "onnx", v.version == status.default)
        for status in registry.models()
        for v in status.versions
        if v.state == "loaded"
    )


def exposition(ctx: GatewayContext) -> tuple[bytes, str]:
    """The metrics as Prometheus text, the model gauges refreshed first."""
    refresh_model_gauges(ctx)
    return ctx.metrics.exposition()


async def metrics(call: Call) -> Reply:
    body, content_type = exposition(call.ctx)
    return Reply(200, body, content_type.encode())


def routes(ctx: GatewayContext) -> list[Route]:
    return [
        route(ctx, "/healthz", healthz, ["GET"], "health"),
        route(ctx, "/readyz", readyz, ["GET"], "ready"),
    ] + ([route(ctx, "/metrics", metrics, ["GET"], "metrics")] if ctx.settings.metrics_port is None else [])
