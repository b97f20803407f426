"""``/v1``: named features, what a plain application calls (``endpoints``, ``codec``)."""

from __future__ import annotations

from bundlegate.http.v1.endpoints import routes

__all__ = ["routes"]
