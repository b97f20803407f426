"""``/v2``: the Open Inference Protocol (``endpoints``, ``codec``, ``binary``)."""

from __future__ import annotations

from bundlegate.http.v2.endpoints import routes

__all__ = ["routes"]
