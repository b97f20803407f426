"""What the HTTP modules share: the gateway's services, one request's bookkeeping, and a reply.

``GatewayContext`` is built once by ``create_app`` and handed to the route modules (``v1``, ``v2``,
``ops``). ``RequestInfo`` lives in ``scope["bundlegate"]`` for one request: the middleware creates it
with the request id, the endpoint fills in what it learns (route, model, version, key id), and the
middleware uses it for the access log, the metrics and ``X-Model-Version``. Endpoints return a
``Reply``; the middleware sends it, so every response passes one place that adds ``X-Request-ID``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bundlegate.http.auth import ApiKeyAuth
from bundlegate.metrics import GatewayMetrics
from bundlegate.monitoring.monitor import Monitor
from bundlegate.monitoring.tracing import Tracing
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings

JSON_CONTENT_TYPE = b"application/json"


@dataclass(slots=True)
class GatewayState:
    """Lifecycle of one gateway process: stopping (unready, still serving: ``--drain-delay-s``) and
    draining after SIGTERM, requests in flight."""

    stopping: bool = False
    draining: bool = False
    in_flight: int = 0
    loader: asyncio.Task[None] | None = None
    loading_done: bool = False
    idle: asyncio.Event | None = None


@dataclass(slots=True)
class GatewayContext:
    """The services every endpoint uses, built once per app."""

    settings: Settings
    registry: ModelRegistry
    metrics: GatewayMetrics
    auth: ApiKeyAuth
    state: GatewayState = field(default_factory=GatewayState)
    monitor: Monitor | None = None  # payload log, drift, feedback; None when all are off
    tracing: Tracing | None = None  # OpenTelemetry spans; None unless --tracing


class Reply:
    """A response as an endpoint returns it: status, a body already encoded, extra headers."""

    __slots__ = ("body", "content_type", "headers", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        content_type: bytes = JSON_CONTENT_TYPE,
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers


class RequestInfo:
    """One request's bookkeeping, in ``scope["bundlegate"]`` (see the module docstring)."""

    __slots__ = (
        "endpoint",
        "error_code",
        "key_id",
        "model",
        "reply",
        "request_id",
        "route",
        "version",
    )

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.endpoint = "other"
        self.route = "-"
        self.model: str | None = None  # only a model the registry knows
        self.version: int | None = None
        self.key_id: str | None = None
        self.error_code: str | None = None
        self.reply: Reply | None = None
