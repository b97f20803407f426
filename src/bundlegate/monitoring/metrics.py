"""The monitoring metrics (names in docs/architecture.md), registered next to the gateway's own.

Label values come from the manifests of served versions only (model, version, feature names): a
closed set no request can grow. ``outcome`` is ``matched``, ``unmatched`` or ``late``.
"""

from __future__ import annotations

import contextlib
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge

OUTCOMES = ("matched", "unmatched", "late")


class MonitoringMetrics:
    """Drift, live accuracy, feedback and payload log metrics, in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        mv = ("model", "version")
        mode: Final = "mostrecent"  # --workers N: each worker's window; the latest write shows
        self.feature_psi = Gauge(
            "bundlegate_feature_drift_psi",
            "Population stability index of a feature over the drift window against the bundle's reference.",
            (*mv, "feature"),
            registry=registry,
            multiprocess_mode=mode,
        )
        self.prediction_psi = Gauge(
            "bundlegate_prediction_drift_psi",
            "Population stability index of the predictions against the original model's on the sample.",
            mv,
            registry=registry,
            multiprocess_mode=mode,
        )
        self.window_rows = Gauge(
            "bundlegate_drift_window_rows",
            "Rows in the drift window of a model version.",
            mv,
            registry=registry,
            multiprocess_mode=mode,
        )
        self.live_accuracy = Gauge(
            "bundlegate_live_accuracy",
            "Share of right predictions among the latest rows with feedback (classifiers).",
            mv,
            registry=registry,
            multiprocess_mode=mode,
        )
        self.live_mae = Gauge(
            "bundlegate_live_mae",
            "Mean absolute error over the latest rows with feedback (regressors).",
            mv,
            registry=registry,
            multiprocess_mode=mode,
        )
        self.feedback = Counter(
            "bundlegate_feedback",
            "Feedback items: matched to a kept prediction, unmatched (unknown request id), late (expired).",
            ("model", "outcome"),
            registry=registry,
        )
        self.payload_dropped = Counter(
            "bundlegate_payload_log_dropped",
            "Sampled requests the payload log dropped because its writer fell behind.",
            registry=registry,
        )
        self.payload_dropped.inc(0)

    def forget(self, model: str, version: str, features: list[str]) -> None:
        """Remove the series of a version that is no longer served."""
        for gauge in (self.prediction_psi, self.window_rows, self.live_accuracy, self.live_mae):
            with contextlib.suppress(KeyError):
                gauge.remove(model, version)
        for feature in features:
            with contextlib.suppress(KeyError):
                self.feature_psi.remove(model, version, feature)
