"""``bundle serve REPO``: the gateway under uvicorn.

Settings come from the defaults, then ``BUNDLEGATE_*`` variables, then these flags (a flag wins). The
command refuses to start without API keys unless ``--insecure-no-auth`` is given, which binds to
127.0.0.1 whatever ``--host`` says and prints a loud warning.

uvicorn runs the app factory ``serving_app`` (``create_app`` in a process tuned to serve, see
``bundlegate.heap``) by import string, so ``--workers N`` works: the final settings are handed to the
workers as ``BUNDLEGATE_*`` variables, and with more than one worker the metrics live in a shared
directory (``PROMETHEUS_MULTIPROC_DIR``) that ``/metrics`` aggregates. The workers are started by
``bundlegate.cli.workers``, one listening socket each. uvicorn's own access log is off: the gateway
writes its own, as JSON lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging.config
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bundlegate import heap
from bundlegate.keys import KeyStore
from bundlegate.settings import LOG_LEVELS, InvalidSetting, Settings

if TYPE_CHECKING:
    from bundlegate.http.app import Gateway

logger = logging.getLogger("bundlegate")
APP_FACTORY = "bundlegate.cli.serve_command:serving_app"
WORKER_APP_FACTORY = "bundlegate.cli.serve_command:serving_worker_app"  # --workers N: listen once loaded
HTTP_PROTOCOL = "bundlegate.http.wire:GatewayHttpProtocol"
LOOPBACK = "127.0.0.1"
INSECURE_BANNER = """\
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!
!!  INSECURE: API keys are OFF (--insecure-no-auth). Every model and the admin endpoints answer
!!  anyone who can reach the port. Bound to 127.0.0.1 only. Never run this way in production.
!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"""

# flag name → Settings field, for the plain-valued options
_OPTIONS: list[tuple[str, str, Any, str]] = [
    ("--host", "host", str, "Interface to bind (BUNDLEGATE_HOST, default 127.0.0.1)."),
    ("--port", "port", click.IntRange(0, 65535), "Port (BUNDLEGATE_PORT, default 8080)."),
    ("--workers", "workers", click.IntRange(1, 64), "Worker processes (BUNDLEGATE_WORKERS, default 1)."),
    ("--max-body-bytes", "max_body_bytes", int, "Largest request body (default 16 MiB)."),
    ("--max-batch-rows", "max_batch_rows", int, "Most rows in one request (default 10000)."),
    ("--max-string-length", "max_string_length", int, "Longest string feature value (default 1024)."),
    ("--max-json-depth", "max_json_depth", int, "Deepest JSON nesting (default 32)."),
    ("--rate-limit-rps", "rate_limit_rps", float, "Requests per second per key, 0 = off (default)."),
    ("--batch-max-rows", "batch_max_rows", int, "Most rows per onnxruntime call (default 256)."),
    ("--batch-max-delay-ms", "batch_max_delay_ms", float, "Longest wait to fill a batch (default 1)."),
    ("--queue-max-rows", "queue_max_rows", int, "Rows waiting per model version (default 20000)."),
    ("--request-timeout-ms", "request_timeout_ms", int, "Inference deadline, then 504 (default 10000)."),
    ("--reload-interval-s", "reload_interval_s", float, "Re-scan the repository every N s (0 = off)."),
    ("--drain-timeout-s", "drain_timeout_s", float, "Longest wait for in-flight work at shutdown (20)."),
    ("--ort-threads", "ort_threads", int, "onnxruntime intra-op threads per session (default 1)."),
]


def resolve_settings(environ: dict[str, str] | os._Environ[str], **flags: Any) -> Settings:
    """Defaults, then ``BUNDLEGATE_*`` from ``environ``, then the flags that were given."""
    return Settings.from_env(environ).replace(**flags)


def check_startable(settings: Settings) -> Settings:
    """Refuse to start without keys (unless insecure); insecure forces loopback. Loads the keys file
    once so a missing or broken file is a one-line error before uvicorn starts."""
    if settings.repository_url is not None:
        from bundlegate.objectstore import open_store

        open_store(settings.repository_url, settings.s3_endpoint_url)  # the extra is installed
    elif not settings.repository.is_dir():
        raise InvalidSetting(
            f"model repository not found: {settings.repository} (build bundles with `bundle pack`)"
        )
    if settings.keys_file is not None:
        KeyStore(settings.keys_file)
        return settings
    if not settings.insecure_no_auth:
        raise InvalidSetting(
            "no API keys: pass --keys FILE (create one with `bundle keys create`), "
            "or --insecure-no-auth for local development"
        )
    return settings.replace(host=LOOPBACK)


def run(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT (blocking)."""
    import uvicorn

    from bundlegate.cli import workers

    env = settings.to_env()
    os.environ.update(env)
    metrics_dir: Path | None = None
    if settings.workers > 1:
        from bundlegate.metrics import prepare_multiprocess_dir

        metrics_dir = prepare_multiprocess_dir(tempfile.mkdtemp(prefix="bundlegate-metrics-"))
    options = uvicorn_options(settings)
    try:
        if settings.workers > 1 and workers.available():
            logging.config.dictConfig(options["log_config"])
            try:
                supervisor = workers.Workers(
                    settings.host, settings.port, settings.workers, options, settings.drain_timeout_s
                )
            except OSError as e:
                raise click.ClickException(
                    f"cannot bind {settings.host}:{settings.port}: {e.strerror}"
                ) from e
            code = supervisor.run()
            if code:
                sys.exit(code)
        else:  # one worker; or no SO_REUSEPORT: uvicorn's supervisor with one shared socket
            uvicorn.run(host=settings.host, port=settings.port, workers=settings.workers, **options)
    finally:
        if metrics_dir is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(metrics_dir)


def serving_app() -> Gateway:
    """``create_app()`` in the process that will serve it (uvicorn's factory, in every worker)."""
    from bundlegate.http.app import create_app  # the app's imports only where it is served

    logger.info(heap.keep_freed_memory())
    return create_app()


def serving_worker_app() -> Gateway:
    """``create_worker_app()`` likewise, for ``--workers N``."""
    from bundlegate.http.app import create_worker_app

    logger.info(heap.keep_freed_memory())
    return create_worker_app()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """The uvicorn configuration of every worker (without the address and the worker count). With
    several workers each one listens only once its bundles are loaded (``create_worker_app``); one
    process alone listens at once and answers ``/readyz`` 503 while it loads."""
    return {
        "app": WORKER_APP_FACTORY if settings.workers > 1 else APP_FACTORY,
        "factory": True,
        "log_level": settings.log_level,
        "log_config": _log_config(settings.log_level),
        "access_log": False,
        "server_header": False,
        # uvicorn's httptools protocol with a connection's writes coalesced; uvicorn's own choice
        # where httptools is missing (uvicorn[standard] brings it, but not on every interpreter)
        "http": HTTP_PROTOCOL if importlib.util.find_spec("httptools") else "auto",
        # clients are the peers that connect: no X-Forwarded-For rewriting (cheaper, and the
        # insecure mode's loopback-only check sees the real peer)
        "proxy_headers": False,
        "timeout_graceful_shutdown": max(1, int(settings.drain_timeout_s)),
    }


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging config plus the ``bundlegate`` logger on stderr at ``level``."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG, "loggers": dict(LOGGING_CONFIG["loggers"])}
    config["loggers"]["bundlegate"] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return config


def register(group: click.Group) -> None:
    """Add ``serve`` to the ``bundle`` group."""

    @click.argument("repo", required=False)
    @click.option(
        "--keys",
        "keys_file",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Keys file from `bundle keys create` (BUNDLEGATE_KEYS_FILE).",
    )
    @click.option(
        "--insecure-no-auth",
        is_flag=True,
        default=None,
        help="Serve without API keys, on 127.0.0.1 only. Development only.",
    )
    @click.option(
        "--allow-pickle",
        is_flag=True,
        default=None,
        help="Load runtime: sklearn bundles (pickles) made with this sklearn version.",
    )
    @click.option(
        "--s3-endpoint-url",
        default=None,
        help="S3-compatible endpoint for an s3:// REPO instead of AWS (BUNDLEGATE_S3_ENDPOINT_URL).",
    )
    @click.option(
        "--cache-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Where an s3:// REPO is mirrored (BUNDLEGATE_CACHE_DIR, default ~/.cache/bundlegate).",
    )
    @click.option("--access-log/--no-access-log", default=None, help="JSON lines access log on stderr.")
    @click.option("--log-level", type=click.Choice(LOG_LEVELS), default=None, help="Log level (info).")
    def serve(repo: str | None, **flags: Any) -> None:
        """Serve every bundle in REPO: a directory, or object storage (s3://bucket/prefix, mirrored
        into --cache-dir and polled every --reload-interval-s). Default: BUNDLEGATE_REPOSITORY or
        ./bundles."""
        if repo is not None and "://" in repo:
            flags["repository_url"] = repo
        elif repo is not None:
            flags["repository"] = Path(repo)
        settings = check_startable(resolve_settings(os.environ, **flags))
        if settings.insecure_no_auth and settings.keys_file is None:
            click.echo(INSECURE_BANNER, err=True)
        where = settings.repository_url or settings.repository
        click.echo(
            f"bundle serve: {where} on http://{settings.host}:{settings.port} "
            f"({settings.workers} worker{'s' if settings.workers > 1 else ''})",
            err=True,
        )
        run(settings)

    for flag, name, kind, help_text in reversed(_OPTIONS):
        serve = click.option(flag, name, type=kind, default=None, help=help_text)(serve)
    group.command("serve")(serve)
