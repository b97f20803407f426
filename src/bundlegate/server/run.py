"""Run the gateway under uvicorn: one process, or ``--workers N`` processes each on its own socket.

    serve(settings)          # blocks until SIGTERM/SIGINT; returns the exit code

One process listens at once, answers ``/healthz`` while its bundles load and ``/readyz`` 503 until
they have. With several workers (``workers``) every process builds its app from the same
``Settings`` and listens only once its bundles are loaded; their metrics live in a shared directory
(``PROMETHEUS_MULTIPROC_DIR``, which prometheus_client reads from the environment) that ``/metrics``
adds up. How each process is configured: ``config``.
"""

from __future__ import annotations

import contextlib
import logging.config
import shutil
import tempfile

from bundlegate.errors import CannotServe
from bundlegate.server.config import STARTUP_FAILURE, log_config, uvicorn_config
from bundlegate.settings import Settings


def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (blocking); the process's exit code."""
    if settings.workers == 1:
        from bundlegate.server.lifecycle import GatewayServer

        server = GatewayServer(uvicorn_config(settings))
        server.run()
        return 0 if server.started else STARTUP_FAILURE
    from bundlegate.metrics import prepare_multiprocess_dir
    from bundlegate.server.workers import Workers

    # exported as PROMETHEUS_MULTIPROC_DIR, which prometheus_client reads in every worker
    metrics_dir = prepare_multiprocess_dir(tempfile.mkdtemp(prefix="bundlegate-metrics-"))
    try:
        logging.config.dictConfig(log_config(settings.log_level))
        try:
            supervisor = Workers(settings)
        except OSError as e:
            raise CannotServe(f"cannot bind {settings.host}:{settings.port}: {e.strerror}") from None
        return supervisor.run()
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(metrics_dir)
