"""``Monitor``: what the predict endpoints hand each answered request to, when monitoring is on.

    monitor = build_monitor(settings, registry.serving, metrics.registry)   # None: all monitoring off
    monitor.observe(loaded, request_id, feed, prediction)   # after each prediction, on the event loop
    monitor.refresh(served)            # at /metrics: drift windows counted, gauges set
    monitor.drift_report(loaded)       # GET .../drift
    monitor.join_feedback(name, items) # POST .../feedback

``observe`` does constant work: a dict lookup for the version's state, then it hands the rows to
drift (copied or kept, counted per chunk, ``drift``), keeps references for feedback
(``feedback.FeedbackStore``) and, for a sampled request, hands an entry to the payload log
(``payload_log``, which sends it to its writer process). With monitoring off
there is no monitor and the endpoints skip the call.

Per-model overrides come from ``serving.json`` (``payload_sample_rate``, ``payload_mask``); the
monitor re-reads them when the registry's ``ServingConfig`` object for the model changes.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from bundlegate.feed import Feed, Prediction
from bundlegate.manifest import Manifest
from bundlegate.monitoring.columns import FeatureColumns
from bundlegate.monitoring.drift import VersionDrift
from bundlegate.monitoring.feedback import FeedbackStore, LiveScore, Remembered
from bundlegate.monitoring.metrics import MonitoringMetrics
from bundlegate.monitoring.payload_lines import PayloadEntry
from bundlegate.monitoring.payload_log import PayloadLog
from bundlegate.serving import ServingConfig


class MonitorSettings(Protocol):
    """The settings monitoring reads (``bundlegate.settings.Settings`` has them all)."""

    @property
    def payload_log(self) -> str | None: ...
    @property
    def payload_sample_rate(self) -> float: ...
    @property
    def payload_log_max_bytes(self) -> int: ...
    @property
    def payload_log_queue(self) -> int: ...
    @property
    def payload_log_nice(self) -> int: ...
    @property
    def drift(self) -> bool: ...
    @property
    def drift_window_rows(self) -> int: ...
    @property
    def drift_window_s(self) -> float: ...
    @property
    def drift_max_rows_per_s(self) -> float: ...
    @property
    def feedback(self) -> bool: ...
    @property
    def feedback_ttl_s(self) -> float: ...
    @property
    def feedback_max_rows(self) -> int: ...
    @property
    def feedback_window(self) -> int: ...


class Served(Protocol):
    """A served model version as the registry hands it out (``registry.LoadedVersion``)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def manifest(self) -> Manifest: ...


@dataclass(frozen=True, slots=True)
class FeedbackItem:
    """One piece of ground truth: ``label`` (classifiers) or ``value`` (regressors) for a row."""

    index: int  # its place in the request body
    request_id: str
    row: int
    label: Any = None
    value: Any = None


class _Version:
    """The monitoring state of one served version."""

    def __init__(self, loaded: Served, monitor: Monitor) -> None:
        manifest = loaded.manifest
        self.manifest = manifest
        self.columns = FeatureColumns(manifest)
        s = monitor.settings
        self.drift = (
            VersionDrift(
                manifest,
                self.columns,
                s.drift_window_rows,
                s.drift_window_s,
                max_rows_per_s=s.drift_max_rows_per_s or None,
            )
            if s.drift
            else None
        )
        self.score = LiveScore(s.feedback_window) if s.feedback else None
        classes = manifest.classes
        self.bool_classes = bool(classes) and isinstance((classes or [None])[0], bool)
        self.serving: ServingConfig | None = None
        self.sample_rate = 0.0
        self.mask: frozenset[str] = frozenset()
        self.names = [s.name for s in manifest.inputs]
        self.block: str | None = None  # the payload log's rows: this tensor, when nothing is masked


def build_monitor(
    settings: MonitorSettings, serving_of: Callable[[str], ServingConfig], registry: CollectorRegistry
) -> Monitor | None:
    """The monitor ``settings`` ask for, or None when payload log, drift and feedback are all off."""
    if not (settings.payload_log or settings.drift or settings.feedback):
        return None
    return Monitor(settings, serving_of, MonitoringMetrics(registry))


class Monitor:
    """See the module docstring."""

    def __init__(
        self,
        settings: MonitorSettings,
        serving_of: Callable[[str], ServingConfig],
        metrics: MonitoringMetrics,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._serving_of = serving_of
        self._versions: dict[tuple[str, int], _Version] = {}
        self.feedback = (
            FeedbackStore(settings.feedback_ttl_s, settings.feedback_max_rows) if settings.feedback else None
        )
        target = settings.payload_log
        self.payload = (
            PayloadLog(
                target,
                max_bytes=settings.payload_log_max_bytes,
                max_queue=settings.payload_log_queue,
                nice=settings.payload_log_nice,
                on_drop=metrics.payload_dropped.inc,
            )
            if target
            else None
        )
        self._random = random.random

    # ------------------------------------------------------------------ the request path

    def observe(self, loaded: Served, request_id: str, feed: Feed, prediction: Prediction) -> None:
        """One answered request: its rows for drift, its prediction for feedback, maybe a log entry."""
        state = self._versions.get((loaded.name, loaded.version))
        if state is None or state.manifest is not loaded.manifest:
            state = self._versions[(loaded.name, loaded.version)] = _Version(loaded, self)
        if state.drift is not None:
            state.drift.add(feed, prediction)
        if self.feedback is not None:
            self.feedback.remember(request_id, loaded.name, loaded.version, prediction, feed.n_rows)
        if self.payload is not None:
            serving = self._serving_of(loaded.name)
            if serving is not state.serving:
                self._apply_serving(state, serving)
            if state.sample_rate >= 1.0 or self._random() < state.sample_rate:
                if state.block is not None:
                    inputs: Any = feed.arrays[state.block]
                else:
                    columns = state.columns.columns(feed)
                    inputs = [None if name in state.mask else columns[name] for name in state.names]
                self.payload.put(
                    PayloadEntry(
                        time.time(),
                        request_id,
                        loaded.name,
                        loaded.version,
                        inputs,
                        prediction,
                        state.bool_classes,
                    )
                )

    def _apply_serving(self, state: _Version, serving: ServingConfig) -> None:
        state.serving = serving
        rate = serving.payload_sample_rate
        state.sample_rate = self.settings.payload_sample_rate if rate is None else rate
        state.mask = frozenset(serving.payload_mask or ())
        state.block = None if state.mask & set(state.names) else state.columns.block

    # ------------------------------------------------------------------ drift

    def refresh(self, served: Iterable[tuple[str, int]]) -> None:
        """Count what is pending, set the drift gauges; forget versions no longer in ``served``."""
        served = set(served)
        for key in [k for k in self._versions if k not in served]:
            state = self._versions.pop(key)
            self.metrics.forget(key[0], str(key[1]), [s.name for s in state.manifest.inputs])
        for (name, version), state in self._versions.items():
            if state.drift is not None and state.drift.monitored:
                self._publish(name, version, *state.drift.report())

    def drift_report(self, loaded: Served) -> dict[str, Any]:
        """``GET .../drift``: the window, each feature's PSI and histograms, the predictions'."""
        state = self._versions.get((loaded.name, loaded.version))
        if state is None or state.manifest is not loaded.manifest:
            state = self._versions[(loaded.name, loaded.version)] = _Version(loaded, self)
        drift = state.drift
        if drift is None:
            return {}
        rows, features, prediction = drift.report()
        if drift.monitored:
            self._publish(loaded.name, loaded.version, rows, features, prediction)
        return {
            "model": loaded.name,
            "version": loaded.version,
            "reference": loaded.manifest.reference is not None,
            "window": {
                "rows": rows,
                "max_rows": drift.window_rows,
                "max_seconds": drift.window_s,
                "one_request_in": drift.stride,
            },
            "features": [h.as_json() for h in features],
            "prediction": prediction.as_json() if prediction is not None else None,
        }

    def _publish(self, name: str, version: int, rows: int, features: list[Any], prediction: Any) -> None:
        """Set the drift gauges; an empty window (no traffic within its time) has no PSI series, so
        an alert cannot go on firing on an old value."""
        v = str(version)
        m = self.metrics
        m.window_rows.labels(name, v).set(rows)
        for h in features:
            if h.psi is not None:
                m.feature_psi.labels(name, v, h.name).set(h.psi)
            else:
                with contextlib.suppress(KeyError):
                    m.feature_psi.remove(name, v, h.name)
        if prediction is not None and prediction.psi is not None:
            m.prediction_psi.labels(name, v).set(prediction.psi)
        elif prediction is not None:
            with contextlib.suppress(KeyError):
                m.prediction_psi.remove(name, v)

    # ------------------------------------------------------------------ feedback

    def join_feedback(self, model: str, items: list[FeedbackItem]) -> list[tuple[int, str, str, str]]:
        """Join ground truth to kept predictions of ``model``. All or nothing: the problems found
        (index, field, message, kind), or, when there are none, every item is scored."""
        assert self.feedback is not None
        problems: list[tuple[int, str, str, str]] = []
        found: list[tuple[Remembered, FeedbackItem]] = []
        outcomes = {"unmatched": 0, "late": 0}
        for item in items:
            entry = self.feedback.find(item.request_id, model)
            if isinstance(entry, str):
                kind = "unmatched" if entry == "unknown" else "late"
                outcomes[kind] += 1
                msg = (
                    "no prediction with this request id" if kind == "unmatched" else "the prediction expired"
                )
                problems.append(
                    (
                        item.index,
                        "request_id",
                        msg,
                        "unknown_request_id" if kind == "unmatched" else "expired",
                    )
                )
                continue
            if not 0 <= item.row < entry.rows:
                problems.append((item.index, "row", f"the request had {entry.rows} row(s)", "value"))
                continue
            problem = _truth_problem(entry.prediction, item, self._manifest(model, entry.version))
            if problem is not None:
                problems.append((item.index, *problem))
                continue
            found.append((entry, item))
        for outcome, n in outcomes.items():
            if n:
                self.metrics.feedback.labels(model, outcome).inc(n)
        if problems:
            return problems
        for entry, item in found:
            self._score(model, entry, item)
        if found:
            self.metrics.feedback.labels(model, "matched").inc(len(found))
        return []

    def _manifest(self, model: str, version: int) -> Manifest | None:
        state = self._versions.get((model, version))
        return state.manifest if state is not None else None

    def _score(self, model: str, entry: Remembered, item: FeedbackItem) -> None:
        state = self._versions.get((model, entry.version))
        if state is None or state.score is None:
            return
        p = entry.prediction
        v = str(entry.version)
        if p.labels is not None:
            predicted = _item(p.labels.ravel()[item.row])
            if state.bool_classes and not isinstance(predicted, bool):
                predicted = predicted in (1, "1", "True", "true")
            state.score.add(1.0 if _key(predicted) == _key(item.label) else 0.0)
            self.metrics.live_accuracy.labels(model, v).set(state.score.mean or 0.0)
        elif p.values is not None:
            predicted = float(p.values.reshape(entry.rows, -1)[item.row, 0])
            state.score.add(abs(predicted - float(item.value)))
            self.metrics.live_mae.labels(model, v).set(state.score.mean or 0.0)

    def live_score(self, model: str, version: int) -> tuple[int, float | None]:
        """(matched rows in the window, accuracy or MAE) of one version."""
        state = self._versions.get((model, version))
        if state is None or state.score is None:
            return 0, None
        return state.score.count, state.score.mean

    def close(self) -> None:
        """Write what the payload log holds and stop its writer."""
        if self.payload is not None:
            self.payload.close()


def _truth_problem(
    p: Prediction, item: FeedbackItem, manifest: Manifest | None
) -> tuple[str, str, str] | None:
    """What is wrong with the item's ground truth for a model that answered ``p``: (field, message,
    kind) or None."""
    if p.labels is not None:
        truth = item.label
        classes = manifest.classes if manifest is not None else None
        if classes is None or truth is None:
            return ("label", "a label is required for a classifier", "missing")
        want = type(classes[0]) if classes else str
        ok = (
            isinstance(truth, bool)
            if want is bool
            else isinstance(truth, want) and not isinstance(truth, bool)
        )
        if not ok:
            return (
                "label",
                f"expected a {'boolean' if want is bool else 'string' if want is str else 'integer'}",
                "type",
            )
        if _key(truth) not in {_key(c) for c in classes}:
            return ("label", "not one of the model's classes", "value")
        return None
    truth = item.value
    if truth is None:
        return ("value", "a value is required for a regressor", "missing")
    if isinstance(truth, bool) or not isinstance(truth, int | float) or not math.isfinite(float(truth)):
        return ("value", "expected a finite number", "type")
    return None


def _item(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _key(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
