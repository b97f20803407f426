"""Operations endpoints: the probes need no key and name no model; ``/metrics`` on the data port does.

GET /healthz   200 while the process serves HTTP (liveness)
GET /readyz    200 when ready (``readiness``: the first load done, the required models serving),
               503 (+ Retry-After) before, and from SIGTERM on (during ``--drain-delay-s`` too)
GET /metrics   Prometheus text exposition for a key, holding only the series of the models that key
               may see (and those of no model), so the data port names no model to a caller
               without a key for it. With ``--metrics-port`` it is served there instead, without a
               key, for Prometheus (``http.metrics_listener``), and the data port answers 404.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
    """The metrics as Prometheus text, the model gauges (and monitoring's drift windows) refreshed
    first."""
    refresh_model_gauges(ctx)
    if ctx.monitor is not None:
        registry = ctx.registry
        ctx.monitor.refresh(
            (s.name, v.version) for s in registry.models() for v in s.versions if v.state == "loaded"
        )
    return ctx.metrics.exposition()


async def metrics(call: Call) -> Reply:
    key = call.authenticate(rate_limited=False)  # a scrape is not the key's traffic
    body, content_type = exposition(call.ctx)
    if not key.allows_every_model:
        body = only_models(body, key.allows)
    return Reply(200, body, content_type.encode())


_MODEL_LABEL = re.compile(rb'[{,]model="((?:[^"\\]|\\.)*)"')


def only_models(body: bytes, allows: Callable[[str], bool]) -> bytes:
    """The exposition without the samples of models ``allows`` refuses (samples without a ``model``
    label, or with ``model="-"``, stay: they name no model)."""
    kept: list[bytes] = []
    for line in body.splitlines(keepends=True):
        if not line.startswith(b"#"):
            match = _MODEL_LABEL.search(line)
            if match is not None and match[1] != b"-" and not allows(match[1].decode("utf-8", "replace")):
                continue
        kept.append(line)
    return b"".join(kept)


def routes(ctx: GatewayContext) -> list[Route]:
    return [
        route(ctx, "/healthz", healthz, ["GET"], "health"),
        route(ctx, "/readyz", readyz, ["GET"], "ready"),
    ] + ([route(ctx, "/metrics", metrics, ["GET"], "metrics")] if ctx.settings.metrics_port is None else [])
