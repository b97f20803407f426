"""The chart's alerts (helm/bundlegate/templates/prometheusrule.yaml) as Prometheus itself reads them: the
rendered PrometheusRule's groups pass ``promtool check rules``, and ``promtool test rules`` plays
synthetic series through them: a drifting feature fires after 15 minutes and the steady one never,
a 20% server-error ratio fires and a clean model does not, a slow p99 fires, and live accuracy that
falls below the floor or 0.1 below its recent best fires while a steady one stays quiet.

Skipped where promtool is missing, except under CI=true (tests/prometheus_server.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from prometheus_server import require_tool

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")

CHART = Path(__file__).resolve().parent.parent / "helm" / "bundlegate"
VALUES = {"metrics": {"prometheusRule": {"enabled": True}}}


def rules() -> dict[str, Any]:
    """The rendered PrometheusRule's spec: a Prometheus rules file (``groups``)."""
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render(VALUES, name="demo", namespace="ml")
    (doc,) = [yaml.safe_load(text) for path, text in rendered.items() if path.endswith("prometheusrule.yaml")]
    spec: dict[str, Any] = doc["spec"]
    return spec


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_rule_file_is_not_rendered_unless_asked() -> None:
    with helm.Chart.load(CHART) as chart:
        rendered = chart.render({}, name="demo", namespace="ml")
    assert not any("PrometheusRule" in text for text in rendered.values())


def test_promtool_accepts_the_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()))
    result = promtool("check", "rules", "rules.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = [r["alert"] for g in rules()["groups"] for r in g["rules"]]
    assert alerts == [
        "BundlegateFeatureDrift",
        "BundlegateErrorRatio",
        "BundlegateLatencyP99",
        "BundlegateLiveAccuracyDrop",
    ]


def _alert(labels: dict[str, str], summary: str, description: str | None = None) -> dict[str, Any]:
    annotations = {"summary": summary} | ({"description": description} if description else {})
    return {"exp_labels": labels, "exp_annotations": annotations}


DRIFT = 'bundlegate_feature_drift_psi{model="risk",version="1",feature="%s",instance="a"}'
REQUESTS = 'bundlegate_requests_total{model="%s",version="1",endpoint="v1_predict",code="%s"}'
BUCKET = 'bundlegate_request_duration_seconds_bucket{model="risk",version="1",endpoint="v1_predict",le="%s"}'
ACCURACY = 'bundlegate_live_accuracy{model="%s",version="1"}'

UNIT_TESTS: list[dict[str, Any]] = [
    {  # score drifts from minute 11 on; age stays put
        "interval": "1m",
        "input_series": [
            {"series": DRIFT % "score", "values": "0.05x10 0.35x50"},
            {"series": DRIFT % "age", "values": "0.05x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "20m", "alertname": "BundlegateFeatureDrift", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "BundlegateFeatureDrift",
                "exp_alerts": [
                    _alert(
                        {"severity": "warning", "model": "risk", "version": "1", "feature": "score"},
                        "risk v1: feature score drifted (PSI 0.35)",
                        "GET /v1/models/risk/versions/1/drift shows both histograms; retraining on recent "
                        "data may be due.",
                    )
                ],
            },
        ],
    },
    {  # risk answers 50 of 250 requests a minute with 503; clean never fails
        "interval": "1m",
        "input_series": [
            {"series": REQUESTS % ("risk", "200"), "values": "0+200x40"},
            {"series": REQUESTS % ("risk", "503"), "values": "0+50x40"},
            {"series": REQUESTS % ("clean", "200"), "values": "0+300x40"},
        ],
        "alert_rule_test": [
            {
                "eval_time": "30m",
                "alertname": "BundlegateErrorRatio",
                "exp_alerts": [
                    _alert(
                        {"severity": "critical", "model": "risk"}, "risk: 20% of answers are server errors"
                    )
                ],
            }
        ],
    },
    {  # every request between 0.1 and 0.5 s: p99 0.496 s
        "interval": "1m",
        "input_series": [
            {"series": BUCKET % "0.1", "values": "0x40"},
            {"series": BUCKET % "0.5", "values": "0+100x40"},
            {"series": BUCKET % "+Inf", "values": "0+100x40"},
        ],
        "alert_rule_test": [
            {"eval_time": "8m", "alertname": "BundlegateLatencyP99", "exp_alerts": []},
            {
                "eval_time": "30m",
                "alertname": "BundlegateLatencyP99",
                "exp_alerts": [_alert({"severity": "warning", "model": "risk"}, "risk: p99 latency 496ms")],
            },
        ],
    },
    {  # floor: 0.9 then 0.75; slide: 0.98 then 0.85 (over the floor, 0.13 below its best); steady
        "interval": "1m",
        "input_series": [
            {"series": ACCURACY % "floor", "values": "0.9x60 0.75x60"},
            {"series": ACCURACY % "slide", "values": "0.98x60 0.85x60"},
            {"series": ACCURACY % "steady", "values": "0.95x120"},
        ],
        "alert_rule_test": [
            {"eval_time": "80m", "alertname": "BundlegateLiveAccuracyDrop", "exp_alerts": []},
            {
                "eval_time": "100m",
                "alertname": "BundlegateLiveAccuracyDrop",
                "exp_alerts": [
                    _alert(
                        {"severity": "warning", "model": m, "version": "1"}, f"{m} v1: live accuracy dropped"
                    )
                    for m in ("floor", "slide")
                ],
            },
        ],
    },
]


def test_promtool_unit_tests_fire_what_should_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules()))
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({"rule_files": ["rules.yaml"], "tests": UNIT_TESTS}))
    result = promtool("test", "rules", "tests.yaml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
