"""Monitoring after deploy: payload log, drift against the bundle's reference, feedback (``monitor``)."""

from __future__ import annotations

from bundlegate.monitoring.monitor import FeedbackItem, Monitor, build_monitor

__all__ = ["FeedbackItem", "Monitor", "build_monitor"]
