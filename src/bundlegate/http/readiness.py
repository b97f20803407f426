"""Whether the gateway is ready for traffic: the one check behind ``/readyz`` and ``/v2/health/ready``.

Ready once the first load is done and the required models serve (``--require-models``; by default any
one model when the repository holds bundles); not ready from SIGTERM on (during ``--drain-delay-s``
too) nor while draining. A re-scan loading a new version leaves a ready gateway ready.
"""

from __future__ import annotations

from bundlegate.errors import Unavailable
from bundlegate.http.context import GatewayContext


def check_ready(ctx: GatewayContext) -> None:
    """Return when ready; else raise ``Unavailable`` (503 with ``Retry-After``) saying why."""
    if ctx.state.draining or ctx.state.stopping:
        raise Unavailable("shutting down", retry_after=1)
    if not ctx.state.loading_done:  # only the first load: a re-scan loading a new version stays ready
        raise Unavailable("loading models", retry_after=1)
    registry = ctx.registry
    required = ctx.settings.required_models
    if required:
        waiting = [name for name in required if not registry.serves(name)]
        if waiting:
            raise Unavailable(f"required models not serving: {', '.join(waiting)[:200]}", retry_after=5)
    elif (names := registry.names()) and not any(registry.serves(name) for name in names):
        raise Unavailable("no model could be loaded", retry_after=5)
