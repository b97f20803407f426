"""Prometheus metrics of the gateway (DESIGN.md §7, names in docs/architecture.md).

``GatewayMetrics`` owns every metric and takes the registry it registers them in, so tests and apps
build their own (no global registry, no import-time side effects)::

    metrics = GatewayMetrics(registry=CollectorRegistry())
    metrics.set_model_info([("iris", 1, "onnx", True)])        # declares the label values that exist
    metrics.observe_request("iris", 1, "v1_predict", 200, 0.0012)
    body, content_type = metrics.exposition()

Label sets are closed: ``model``/``version`` are only ever a model and version that the registry
declared (through ``set_model_info``/``model_loaded``); anything else, such as a name from a request
for an unknown model, becomes ``"-"``. ``endpoint``, ``reason`` and ``code`` are checked against fixed
sets the same way, so no request can add a label value.

The hot path caches the label children: ``observe_request`` for a known label set is a dict lookup,
a counter increment and a histogram observation; ``observer_for`` resolves its children once.

Multi-process mode (``bundle serve --workers N``): the serve command calls ``prepare_multiprocess_dir``
in the parent before the workers start, which empties the directory and sets ``PROMETHEUS_MULTIPROC_DIR``
for them; every worker builds ``GatewayMetrics.for_process()``, which writes its values to the shared
directory and answers ``/metrics`` with the sum over all workers. Counters and histograms add up across
workers; the gauges (load time, model states, model info) are set alike by every worker and use
``multiprocess_mode="mostrecent"``, so they are not multiplied by the worker count and a dead worker's
stale value loses to the live ones without any clean-up. Multi-process mode is process-wide (it is how
prometheus_client works): build it in worker processes, not in a test process that also wants plain
registries.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from bundlegate.errors import BundlegateError
from bundlegate.rollout_metrics import RolloutMetrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
UNKNOWN = "-"

ENDPOINTS = frozenset(
    {
        "v1_predict",
        "v1_predict_batch",
        "v1_models",
        "v1_model",
        "v2_infer",
        "v2_model",
        "v2_model_ready",
        "v2_server",
        "v2_repository",
        "health",
        "ready",
        "metrics",
        "docs",
        "other",
    }
)
REJECTION_REASONS = frozenset(
    {
        "queue_full",
        "draining",
        "rate_limited",
        "model_not_ready",
        "deadline_exceeded",
        # refused by the HTTP protocol before the app saw a request (server.wire)
        "request_timeout",
        "headers_too_large",
        "uri_too_long",
    }
)
MODEL_STATES = ("loading", "loaded", "failed")

# A gateway answers in 0.1-100 ms; the tails go to the request timeout (10 s by default).
REQUEST_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Queue wait and a batched onnxruntime call: tens of microseconds up to seconds.
STAGE_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
BATCH_ROWS_BUCKETS = tuple(float(2**i) for i in range(13))  # 1, 2, 4, ... 4096


def _error_codes() -> frozenset[str]:
    """Every ``code`` of the exception tree: the closed set of ``reason`` values for errors."""
    codes = {BundlegateError.code}
    pending: list[type[BundlegateError]] = [BundlegateError]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            codes.add(sub.code)
            pending.append(sub)
    return frozenset(codes)


class BatchObserver:
    """What a ``BatchQueue`` reports after each onnxruntime call; label children resolved once."""

    __slots__ = ("_inference", "_queue_wait", "_rows", "_rows_total")

    def __init__(self, metrics: GatewayMetrics, model: str, version: str) -> None:
        self._queue_wait = metrics.queue_wait.labels(model, version)
        self._inference = metrics.inference.labels(model, version)
        self._rows = metrics.batch_rows.labels(model, version)
        self._rows_total = metrics.rows_predicted.labels(model, version)

    def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None:
        self._queue_wait.observe(queue_wait_s)
        self._inference.observe(inference_s)
        self._rows.observe(rows)
        self._rows_total.inc(rows)


class GatewayMetrics:
    """Every metric of the gateway, registered in ``registry`` (a fresh ``CollectorRegistry`` if None).

    With ``multiprocess_dir`` the values live in that directory (shared by the workers of one
    ``bundle serve``) and ``exposition`` aggregates it; ``registry`` then only holds the metric objects.
    """

    def __init__(
        self, registry: CollectorRegistry | None = None, *, multiprocess_dir: Path | str | None = None
    ) -> None:
        self.multiprocess_dir = Path(multiprocess_dir) if multiprocess_dir is not None else None
        if self.multiprocess_dir is not None:
            _use_multiprocess_values(self.multiprocess_dir)
            self._exposed = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._exposed, path=str(self.multiprocess_dir))  # type: ignore[no-untyped-call]
        registry = registry if registry is not None else CollectorRegistry()
        if self.multiprocess_dir is None:
            self._exposed = registry
        self.registry = registry
        mv = ("model", "version")
        # Gauges that every worker sets to the same value: the most recent write wins across workers.
        gauge_mode: Final = "mostrecent"

        self.requests = Counter(
            "bundlegate_requests",
            "HTTP requests answered, by model, version, endpoint and status code.",
            (*mv, "endpoint", "code"),
            registry=registry,
        )
        self.request_duration = Histogram(
            "bundlegate_request_duration_seconds",
            "Time from receiving a request to sending the response.",
            (*mv, "endpoint"),
            buckets=REQUEST_BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "bundlegate_queue_wait_seconds",
            "Time a request's rows waited in the batching queue.",
            mv,
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.inference = Histogram(
            "bundlegate_inference_duration_seconds",
            "Duration of one batched inference call.",
            mv,
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.batch_rows = Histogram(
            "bundlegate_batch_size_rows",
            "Rows in one batched inference call.",
            mv,
            buckets=BATCH_ROWS_BUCKETS,
            registry=registry,
        )
        self.rows_predicted = Counter("bundlegate_rows_predicted", "Rows predicted.", mv, registry=registry)
        self.request_errors = Counter(
            "bundlegate_request_errors",
            "Requests that ended in an error, by error code.",
            (*mv, "reason"),
            registry=registry,
        )
        self.unhandled_errors = Counter(
            "bundlegate_unhandled_errors",
            "Requests that reached a traceback (500); the log holds at most "
            "--max-tracebacks-per-minute of them a minute.",
            registry=registry,
        )
        self.rejected = Counter(
            "bundlegate_rejected_requests",
            "Requests turned away before inference, by reason.",
            ("reason",),
            registry=registry,
        )
        self.model_load_duration = Gauge(
            "bundlegate_model_load_duration_seconds",
            "Time the last load of a model version took (verification, session, warm-up).",
            mv,
            registry=registry,
            multiprocess_mode=gauge_mode,
        )
        self.models = Gauge(
            "bundlegate_models",
            "Model versions by state.",
            ("state",),
            registry=registry,
            multiprocess_mode=gauge_mode,
        )
        self.model_info = Gauge(
            "bundlegate_model_info",
            "Model versions the registry knows (1 = current): runtime and whether it is the default.",
            (*mv, "runtime", "default"),
            registry=registry,
            multiprocess_mode=gauge_mode,
        )
        self.rollout = RolloutMetrics(registry)  # the registry's events: shadow, loads, memory
        self._error_reasons = _error_codes()
        self._known_models: set[str] = set()
        self._known_versions: set[tuple[str, str]] = set()
        self._request_children: dict[tuple[object, ...], tuple[Counter, Histogram]] = {}
        self._info_labels: set[tuple[str, str, str, str]] = set()
        # Series of closed label sets exist from the start, at 0, so rate() and alerts see them.
        for state in MODEL_STATES:
            self.models.labels(state).set(0)
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)

    @classmethod
    def for_process(cls, environ: Mapping[str, str] | None = None) -> GatewayMetrics:
        """The metrics of this process: multi-process mode when ``PROMETHEUS_MULTIPROC_DIR`` is set (a
        worker of ``bundle serve --workers N``), a fresh registry otherwise."""
        environ = os.environ if environ is None else environ
        directory = environ.get(MULTIPROC_ENV)
        return cls(multiprocess_dir=directory) if directory else cls()

    # --- label sets ------------------------------------------------------------------------------------

    def declare_model(self, model: str, version: str | int) -> None:
        """Allow ``model``/``version`` as label values (the registry knows them)."""
        self._known_models.add(model)
        self._known_versions.add((model, str(version)))

    def _model_labels(self, model: str, version: object) -> tuple[str, str]:
        if model not in self._known_models:
            return UNKNOWN, UNKNOWN
        v = str(version)
        return (model, v) if (model, v) in self._known_versions else (model, UNKNOWN)

    # --- the hot path ----------------------------------------------------------------------------------

    def observe_request(
        self, model: str, version: str | int, endpoint: str, code: int, seconds: float
    ) -> None:
        """Count one answered request and observe its latency. ``model``/``version`` not declared by the
        registry become ``"-"``, an unknown ``endpoint`` ``"other"``."""
        key = (model, version, endpoint, code)
        children = self._request_children.get(key)
        if children is None:
            children = self._resolve_request_children(model, version, endpoint, code)
        children[0].inc()
        children[1].observe(seconds)

    def _resolve_request_children(
        self, model: str, version: object, endpoint: str, code: int
    ) -> tuple[Counter, Histogram]:
        m, v = self._model_labels(model, version)
        ep = endpoint if endpoint in ENDPOINTS else "other"
        status = str(code) if isinstance(code, int) and 100 <= code <= 599 else "500"
        normal = (m, v, ep, int(status))
        children = self._request_children.get(normal)
        if children is None:
            children = (self.requests.labels(m, v, ep, status), self.request_duration.labels(m, v, ep))
            self._request_children[normal] = children
        # Only a key made of allowed values is cached as given, so the cache stays as bounded as the
        # label sets (a request for a random model name is looked up under its normalised key).
        if (model, str(version), endpoint, code) == (m, v, ep, int(status)):
            self._request_children[(model, version, endpoint, code)] = children
        return children

    def record_error(self, model: str, version: str | int, reason: str) -> None:
        """Count a request that ended in error ``reason`` (an error ``code``; anything else is
        ``"internal"``)."""
        m, v = self._model_labels(model, version)
        self.request_errors.labels(m, v, reason if reason in self._error_reasons else "internal").inc()

    def record_unhandled(self) -> None:
        """Count a request that reached a traceback."""
        self.unhandled_errors.inc()

    def record_rejection(self, reason: str) -> None:
        """Count a request turned away: ``queue_full``, ``draining``, ``rate_limited``,
        ``model_not_ready``, ``deadline_exceeded``, and before the app ``request_timeout``,
        ``headers_too_large``, ``uri_too_long`` (anything else is ignored: the label set is closed)."""
        if reason in REJECTION_REASONS:
            self.rejected.labels(reason).inc()

    def observer_for(self, model: str, version: str | int) -> BatchObserver:
        """The observer a model version's ``BatchQueue`` reports each batch to; declares the version."""
        self.declare_model(model, version)
        return BatchObserver(self, model, str(version))

    # --- the registry's view -------------------------------------------------------------------------

    def model_loaded(self, model: str, version: str | int, seconds: float) -> None:
        self.declare_model(model, version)
        self.model_load_duration.labels(model, str(version)).set(seconds)

    def set_model_states(self, counts: Mapping[str, int]) -> None:
        """Set the number of model versions per state; states not given are 0."""
        for state in MODEL_STATES:
            self.models.labels(state).set(counts.get(state, 0))

    def set_model_info(self, rows: Iterable[tuple[str, str | int, str, bool]]) -> None:
        """Replace the model info gauge with ``(model, version, runtime, is_default)`` rows and declare
        them as label values. Label sets that disappear are removed (set to 0 in multi-process mode,
        where a child cannot be removed from the other workers' files)."""
        new: set[tuple[str, str, str, str]] = set()
        for model, version, runtime, is_default in rows:
            self.declare_model(model, version)
            labels = (model, str(version), runtime, "true" if is_default else "false")
            new.add(labels)
            self.model_info.labels(*labels).set(1)
        for labels in self._info_labels - new:
            if self.multiprocess_dir is not None:
                self.model_info.labels(*labels).set(0)
            else:
                self.model_info.remove(*labels)
        self._info_labels = new

    # --- exposition ------------------------------------------------------------------------------------

    def exposition(self) -> tuple[bytes, str]:
        """The ``/metrics`` body and its content type (Prometheus text format 0.0.4)."""
        return generate_latest(self._exposed), CONTENT_TYPE_PLAIN_0_0_4


def _use_multiprocess_values(directory: Path) -> None:
    """Make new metric values live in ``directory``. prometheus_client picks its value class when it is
    imported, from ``PROMETHEUS_MULTIPROC_DIR``; a worker that imported it before the variable was set
    (or a test) gets the mmap-backed class here, before any metric is built."""
    if os.environ.get(MULTIPROC_ENV) != str(directory):
        os.environ[MULTIPROC_ENV] = str(directory)
    if values.ValueClass is values.MutexValue:
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]


def prepare_multiprocess_dir(directory: Path | str) -> Path:
    """For ``bundle serve --workers N``, in the parent before the workers start: create ``directory``
    (emptied if it exists, so counters start at zero for this run) and export it as
    ``PROMETHEUS_MULTIPROC_DIR`` for the workers. Returns the path."""
    path = Path(directory)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def multiprocess_exposition(directory: Path | str) -> tuple[bytes, str]:
    """The aggregated ``/metrics`` body of all workers writing to ``directory``, and its content type."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
