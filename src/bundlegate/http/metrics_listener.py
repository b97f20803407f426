"""``--metrics-port``: ``GET /metrics`` on a listener of its own, next to the data port.

The exposition names every model and version, so it belongs where only the scraper reaches (a port
the Service or NetworkPolicy keeps in the cluster), not on the port whose 404s hide from a key the
models it may not see. With a metrics port the data port answers ``/metrics`` 404.

The listener runs on the gateway's event loop with the gateway's HTTP protocol (``server.wire``, with
its limits), started and stopped with the app's lifespan. With ``--workers N`` every worker binds it
with ``SO_REUSEPORT``; whichever worker answers, the exposition sums all workers (multi-process mode).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
from starlette.types import Receive, Scope, Send

Exposition = Callable[[], tuple[bytes, str]]


class MetricsApp:
    """The ASGI app of the metrics listener: ``GET``/``HEAD /metrics``, and 404 for anything else."""

    def __init__(self, exposition: Exposition, wire_limits: object = None) -> None:
        self.exposition = exposition
        self.wire_limits = wire_limits  # read by the HTTP protocol of each connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"] == "/metrics" and scope["method"] in ("GET", "HEAD"):
            body, content_type = self.exposition()
            status, headers = 200, [(b"content-type", content_type.encode())]
        else:
            body = orjson.dumps({"error": {"code": "not_found", "message": "not found", "details": []}})
            status, headers = 404, [(b"content-type", b"application/json")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def start_metrics_listener(
    host: str, port: int, app: MetricsApp, *, reuse_port: bool
) -> asyncio.Server:
    """Listen on ``host:port`` for ``app`` on the running loop (``reuse_port``: one of several workers)."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from bundlegate.server.wire import GatewayHttpProtocol

    config = Config(app=app, lifespan="off", log_config=None, proxy_headers=False, server_header=False)
    config.load()
    state = ServerState()
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: GatewayHttpProtocol(config=config, server_state=state, app_state={}),
        host,
        port,
        reuse_port=reuse_port or None,
    )
