"""The gateway's ASGI app: ``create_app()``.

    app = create_app()     # from BUNDLEGATE_*; also ``uvicorn --factory bundlegate.http.app:create_app``
    app = create_app(settings, registry=..., metrics=..., keys=...)   # tests and ``bundle serve``

Lifecycle (ASGI lifespan, or ``await app.startup()`` / ``await app.shutdown()`` where no server runs
it, as in-process tests):

- startup starts loading every bundle in the background and returns at once, so ``/healthz``
  answers immediately; ``/readyz`` turns 200 when every bundle has loaded or failed. A worker of
  ``bundle serve --workers N`` (``listen_after_load``) finishes its startup only once that load is
  done, so uvicorn listens only then: the kernel hands a new connection to any listening worker,
  and one worker's ``/readyz`` says nothing about another's (a worker that took connections while
  loading would answer them ``503 model_not_ready``);
- with ``reload_interval_s`` the repository is re-scanned on that interval;
- SIGTERM under ``server.lifecycle.GatewayServer`` first calls ``stop_requested``: ``/readyz`` 503 at
  once while requests are still answered for ``drain_delay_s``; then uvicorn closes the listener
  and the shutdown turns readiness false, answers new predictions 503, waits up to
  ``drain_timeout_s`` for requests in flight and the batching queues, then returns;
- SIGHUP (the same server) calls ``rescan``: the repository and the keys file are read again.

No import-time side effects: settings, registry, metrics and keys are built here and passed down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any

from starlette.routing import Router
from starlette.types import ASGIApp, Receive, Scope, Send

from bundlegate.errors import InvalidSetting
from bundlegate.http import docs, ops, v1, v2
from bundlegate.http.auth import ApiKeyAuth
from bundlegate.http.context import GatewayContext, GatewayState
from bundlegate.http.metrics_listener import MetricsApp, start_metrics_listener
from bundlegate.http.middleware import AccessLog, GatewayMiddleware
from bundlegate.http.routing import HotRoutes
from bundlegate.http.v1 import monitoring as v1_monitoring
from bundlegate.keys import KeyStore
from bundlegate.metrics import GatewayMetrics
from bundlegate.monitoring.monitor import build_monitor
from bundlegate.monitoring.tracing import build_tracing
from bundlegate.objectstore import RepositoryMirror, default_cache_root
from bundlegate.ratelimit import rate_limiter_for_process
from bundlegate.registry import ModelRegistry
from bundlegate.server.wire import WireLimits
from bundlegate.settings import Settings

logger = logging.getLogger("bundlegate")

INSECURE_WARNING = (
    "WARNING: API keys are OFF (--insecure-no-auth). Anyone who can reach this port can call every "
    "model and the admin endpoints. Serving on loopback only; never use this in production."
)


class Gateway:
    """The ASGI app ``create_app`` returns: lifespan handling around the middleware and the router."""

    def __init__(self, ctx: GatewayContext, *, listen_after_load: bool = False) -> None:
        self.ctx = ctx
        self.listen_after_load = listen_after_load  # a worker of --workers N: startup waits for the load
        # The POST model routes are matched by HotRoutes; Starlette's router answers the rest.
        routes = [
            *v1.routes(ctx),
            *v1_monitoring.routes(ctx),
            *v2.routes(ctx),
            *ops.routes(ctx),
            *docs.routes(ctx),
        ]
        router = Router(routes=routes, redirect_slashes=False)
        access_log = AccessLog() if ctx.settings.access_log else None
        self._http = GatewayMiddleware(HotRoutes(routes, router), ctx, access_log)
        self._edge = cors(self._http, ctx.settings.cors_origin_list)
        self._reloader: asyncio.Task[None] | None = None
        self._metrics_server: asyncio.AbstractServer | None = None
        settings = ctx.settings
        self.wire_limits = WireLimits(  # read by the HTTP protocol of each connection (server.wire)
            max_header_bytes=settings.max_header_bytes,
            max_headers=settings.max_headers,
            head_timeout_s=settings.head_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            on_refusal=ctx.metrics.record_rejection,
        )

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    @property
    def state(self) -> GatewayState:
        return self.ctx.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._edge(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets: not part of the API
            await send({"type": "websocket.close", "code": 1008})

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.startup()
            if self.listen_after_load:
                await self.loaded()
        except Exception as exc:
            logger.exception("gateway startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(exc)[:200]})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        try:
            await self.shutdown()
        finally:
            await send({"type": "lifespan.shutdown.complete"})

    async def startup(self) -> None:
        """Start loading the repository in the background (see the module docstring); open the
        metrics listener when there is a metrics port."""
        state = self.state
        state.draining = False
        port = self.settings.metrics_port
        if port is not None and self._metrics_server is None:
            app = MetricsApp(lambda: ops.exposition(self.ctx), self.wire_limits)
            self._metrics_server = await start_metrics_listener(
                self.settings.host, port, app, reuse_port=self.settings.workers > 1
            )
            logger.info("metrics on http://%s:%d/metrics", self.settings.host, port)
        elif port is None:
            logger.info("/metrics is on the data port, without a key; --metrics-port moves it to its own")
        state.loader = asyncio.create_task(self._load(), name="bundlegate-load")
        if self.settings.reload_interval_s > 0:
            self._reloader = asyncio.create_task(self._reload_periodically(), name="bundlegate-reload")

    async def loaded(self) -> None:
        """Wait until the initial load has finished (every bundle loaded or failed)."""
        if self.state.loader is not None:
            await asyncio.shield(self.state.loader)

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            await self.ctx.registry.start()
        except Exception:
            logger.exception("loading the model repository failed")
        finally:
            self.state.loading_done = True
        ops.refresh_model_gauges(self.ctx)
        counts: dict[str, int] = {}
        for status in self.ctx.registry.models():  # each failure was logged by the registry
            for v in status.versions:
                counts[str(v.state)] = counts.get(str(v.state), 0) + 1
        logger.info(
            "model repository loaded in %.2fs: %s; inference %s",
            time.monotonic() - started,
            ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no bundles",
            f"in a thread pool for calls over {self.ctx.registry.inline_max_s * 1000:g} ms"
            if self.ctx.registry.run_in_threads
            else "on the event loop (this process may use one CPU)",
        )

    async def rescan(self) -> None:
        """SIGHUP: re-scan the repository and re-read the keys file now."""
        store = self.ctx.auth.store
        if store is not None:
            store.reload_if_changed()
        try:
            report = await self.ctx.registry.reload()
        except Exception:
            logger.exception("re-scanning the model repository failed")
            return
        ops.refresh_model_gauges(self.ctx)
        logger.info(
            "repository re-scanned: %d added, %d removed, %d failed",
            len(report.added),
            len(report.removed),
            len(report.failed),
        )

    def stop_requested(self) -> None:
        """SIGTERM with ``--drain-delay-s``: unready at once, still serving until the listener closes."""
        self.state.stopping = True

    async def _reload_periodically(self) -> None:
        interval = self.settings.reload_interval_s
        await self.loaded()
        while not self.state.draining:
            await asyncio.sleep(interval)
            try:
                await self.ctx.registry.reload()
                ops.refresh_model_gauges(self.ctx)
            except Exception:
                logger.exception("reloading the model repository failed")

    async def shutdown(self) -> None:
        """Readiness false, drain requests in flight and the queues (bounded by ``drain_timeout_s``)."""
        state = self.state
        state.draining = True
        deadline = time.monotonic() + self.settings.drain_timeout_s
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader
        if state.in_flight:
            state.idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.idle.wait(), max(0.0, deadline - time.monotonic()))
        try:
            await self.ctx.registry.drain(max(0.0, deadline - time.monotonic()))
        except Exception:
            logger.exception("draining the model queues failed")
        loader = state.loader
        if loader is not None and not loader.done():
            loader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loader
        if state.in_flight:
            logger.warning("shutting down with %d requests still in flight", state.in_flight)
        if self._metrics_server is not None:
            self._metrics_server.close()
            self._metrics_server = None
        if self._http.access_log is not None:
            self._http.access_log.flush()
        if self.ctx.monitor is not None:
            self.ctx.monitor.close()


def cors(app: ASGIApp, origins: list[str]) -> ASGIApp:
    """``app`` behind Starlette's CORS middleware when origins are configured (``--cors-origins``):
    browsers on those origins may call the API with a key header and read the gateway's headers."""
    if not origins:
        return app
    from starlette.middleware.cors import CORSMiddleware

    return CORSMiddleware(
        app,
        allow_origins=origins,
        allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "X-API-Key", "Content-Type", "Content-Encoding", "X-Request-ID"],
        expose_headers=["X-Request-ID", "X-Model-Version", "Retry-After"],
        max_age=600,
    )


def create_app(
    settings: Settings | None = None,
    *,
    registry: ModelRegistry | None = None,
    metrics: GatewayMetrics | None = None,
    keys: KeyStore | None = None,
    listen_after_load: bool = False,
    tracer_provider: Any = None,
) -> Gateway:
    """The gateway app. Without arguments everything comes from the ``BUNDLEGATE_*`` environment.
    ``listen_after_load``: the lifespan startup waits for the initial load (a ``--workers N`` worker).
    ``tracer_provider``: where ``--tracing`` spans go (default: the process's OpenTelemetry provider).

    Raises ``InvalidSetting`` when there are no keys (no ``keys`` and no ``keys_file``) and
    ``insecure_no_auth`` is not set, and ``KeysFileError`` when the keys file is missing or broken."""
    if settings is None:
        settings = Settings.from_env(os.environ)
    if metrics is None:
        metrics = GatewayMetrics.for_process()
    if keys is None and settings.keys_file is not None:
        keys = KeyStore(settings.keys_file)
    if keys is None and not settings.insecure_no_auth:
        raise InvalidSetting(
            "no API keys: pass --keys FILE (BUNDLEGATE_KEYS_FILE; create one with `bundle keys create`) "
            "or, for local development only, --insecure-no-auth"
        )
    if keys is None:
        logger.warning(INSECURE_WARNING)
    auth = ApiKeyAuth(keys, rate_limiter_for_process(settings.rate_limit_rps))
    tracing = build_tracing(settings.tracing, tracer_provider)
    if registry is None:
        observers = (
            metrics.observer_for if tracing is None else tracing.observer_factory(metrics.observer_for)
        )
        repo, sync = settings.repository, None
        if settings.repository_url is not None:  # served from a local mirror of the object store
            mirror = RepositoryMirror(
                settings.repository_url,
                settings.cache_dir or default_cache_root(),
                endpoint_url=settings.s3_endpoint_url,
            )
            repo, sync = mirror.local, mirror.sync
        registry = ModelRegistry(
            repo,
            settings,
            observers,
            on_loaded=metrics.model_loaded,
            events=metrics.rollout,
            sync=sync,
        )
    monitor = build_monitor(settings, registry.policies.of, metrics.registry)
    ctx = GatewayContext(settings, registry, metrics, auth, monitor=monitor, tracing=tracing)
    return Gateway(ctx, listen_after_load=listen_after_load)
