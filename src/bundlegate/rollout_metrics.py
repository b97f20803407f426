"""The metrics of rollouts and memory: shadow agreement, refused ``serving.json`` files, loads,
evictions and resident bytes. ``RolloutMetrics`` is the registry's ``RegistryEvents`` as metrics; it
registers in the ``GatewayMetrics`` registry (``metrics.rollout``)::

    bundlegate_shadow_agreement_ratio{model,version}      rows the shadow agreed on / rows compared
    bundlegate_shadow_rows_total{model,version,result}    result: agree | disagree
    bundlegate_shadow_duration_seconds{model,version}     decode + queue + inference of the copy
    bundlegate_serving_config_refused{model}              1 while the model's serving.json is refused
    bundlegate_model_loads_total{model,version,cold}      cold: on a request (--lazy, after eviction)
    bundlegate_model_evictions_total{model,version}       versions evicted for the memory budget
    bundlegate_resident_model_bytes                       bytes of the loaded versions' bundles
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from bundlegate.registry_events import RegistryEvents

SHADOW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RolloutMetrics(RegistryEvents):
    """See the module docstring."""

    def __init__(self, registry: CollectorRegistry) -> None:
        mv = ("model", "version")
        mode: Final = "mostrecent"
        self.shadow_ratio = Gauge(
            "bundlegate_shadow_agreement_ratio",
            "Share of shadow-scored rows whose answer agreed with the served version's.",
            mv,
            registry=registry,
            multiprocess_mode=mode,
        )
        self.shadow_rows = Counter(
            "bundlegate_shadow_rows",
            "Rows scored on a shadow version, by agreement with the served answer.",
            (*mv, "result"),
            registry=registry,
        )
        self.shadow_duration = Histogram(
            "bundlegate_shadow_duration_seconds",
            "Time a shadow version took to score a request's copy.",
            mv,
            buckets=SHADOW_BUCKETS,
            registry=registry,
        )
        self.refused_configs = Gauge(
            "bundlegate_serving_config_refused",
            "1 while the model's serving.json is refused (the previous configuration applies).",
            ("model",),
            registry=registry,
            multiprocess_mode=mode,
        )
        self.loads = Counter(
            "bundlegate_model_loads",
            "Model versions loaded; cold: on a request (--lazy, or after an eviction).",
            (*mv, "cold"),
            registry=registry,
        )
        self.evictions = Counter(
            "bundlegate_model_evictions",
            "Model versions evicted to keep within --memory-budget-mb.",
            mv,
            registry=registry,
        )
        self.resident_bytes = Gauge(
            "bundlegate_resident_model_bytes",
            "Bytes of the bundles of the loaded model versions (what the memory budget counts).",
            registry=registry,
            multiprocess_mode="max",
        )
        self._agreed: dict[tuple[str, int], tuple[int, int]] = {}

    def version_loaded(self, model: str, version: int, seconds: float, size: int, cold: bool) -> None:
        self.loads.labels(model, str(version), "true" if cold else "false").inc()

    def evicted(self, model: str, version: int) -> None:
        self.evictions.labels(model, str(version)).inc()

    def resident(self, total_bytes: int) -> None:
        self.resident_bytes.set(total_bytes)

    def serving_refused(self, model: str, refused: bool) -> None:
        self.refused_configs.labels(model).set(1 if refused else 0)

    def shadow_compared(self, model: str, version: int, agreed: int, rows: int, seconds: float) -> None:
        v = str(version)
        before = self._agreed.get((model, version), (0, 0))
        total = (before[0] + agreed, before[1] + rows)
        self._agreed[(model, version)] = total
        self.shadow_ratio.labels(model, v).set(total[0] / total[1])
        self.shadow_rows.labels(model, v, "agree").inc(agreed)
        self.shadow_rows.labels(model, v, "disagree").inc(rows - agreed)
        self.shadow_duration.labels(model, v).observe(seconds)
