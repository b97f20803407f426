"""The uvicorn configuration of a serving process, its app built from ``Settings``.

Every serving process tunes malloc first (``heap``) and speaks HTTP through
``wire.GatewayHttpProtocol``; uvicorn's own access log is off, the gateway writes its own.
"""

from __future__ import annotations

import importlib.util
import logging.config
from typing import Any

from bundlegate.server import heap
from bundlegate.settings import Settings

logger = logging.getLogger("bundlegate")
HTTP_PROTOCOL = "bundlegate.server.wire:GatewayHttpProtocol"
STARTUP_FAILURE = 3  # uvicorn's exit code for a server that could not start


def uvicorn_config(settings: Settings, *, worker: bool = False) -> Any:
    """The uvicorn configuration of one serving process, its app built from ``settings``. A worker
    (``worker``) finishes its startup, and so listens, only once its bundles are loaded."""
    import uvicorn

    from bundlegate.http.app import create_app  # the app's imports only where it is served

    logging.config.dictConfig(log_config(settings.log_level))  # uvicorn applies it again, later
    logger.info(heap.keep_freed_memory())
    app = create_app(settings, listen_after_load=worker)
    return uvicorn.Config(app, host=settings.host, port=settings.port, **uvicorn_options(settings))


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options for the gateway, but the app and the address."""
    return {
        "log_level": settings.log_level,
        "log_config": log_config(settings.log_level),
        "access_log": False,
        "server_header": False,
        # uvicorn's httptools protocol with a connection's writes coalesced; uvicorn's own choice
        # where httptools is missing (uvicorn[standard] brings it, but not on every interpreter)
        "http": HTTP_PROTOCOL if importlib.util.find_spec("httptools") else "auto",
        # clients are the peers that connect: no X-Forwarded-For rewriting (cheaper, and the
        # insecure mode's loopback-only check sees the real peer)
        "proxy_headers": False,
        "timeout_graceful_shutdown": max(1, int(settings.drain_timeout_s)),
        **tls_options(settings),
    }


def tls_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's TLS options with ``--ssl-certfile/--ssl-keyfile`` (both, or plain HTTP)."""
    if settings.ssl_certfile is None or settings.ssl_keyfile is None:
        return {}
    return {"ssl_certfile": str(settings.ssl_certfile), "ssl_keyfile": str(settings.ssl_keyfile)}


def log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``bundlegate`` logger on stderr at ``level``."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["bundlegate"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config
