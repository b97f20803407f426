"""The Grafana dashboard (deploy/grafana/bundlegate-dashboard.json, also shipped in the Helm chart) against
a real Prometheus scraping a real gateway: every PromQL expression of every panel, with Grafana's
template variables filled in the way Grafana fills them, is evaluated as an instant and as a range query
and must come back without an error and with data, so a misspelt metric or label cannot hide in it.

Skipped where the prometheus binary is missing, except under CI=true (see tests/prometheus_server.py)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bundlegate.keys import create_key
from ports import free_port
from prometheus_server import query, query_range, require_tool, running_prometheus, wait_for_result

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "bundlegate-dashboard.json"
EXAMPLE_BUNDLES = ROOT / "bundles"
START_TIMEOUT_S = 60
# What Grafana puts in for its built-in interval variables (a 1 s scrape interval, a short test run).
GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "5m"}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])  # panels inside collapsed rows


def panel_expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every Prometheus target of every panel."""
    return [
        (panel["title"], target["expr"])
        for panel in panels(dashboard)
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def grafana_regex(values: list[str]) -> str:
    """A multi-value variable as Grafana writes it into a ``=~`` matcher: ``(a|b)``, regex-escaped, with
    the backslashes escaped again for the PromQL string literal."""
    return "(" + "|".join(re.escape(v).replace("\\", "\\\\") for v in values) + ")"


def substitute(expr: str, model_regex: str) -> str:
    for name, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(name, value)
    expr = expr.replace("${model}", model_regex).replace("$model", model_regex)
    assert "$" not in expr, f"a template variable the test does not know: {expr}"
    return expr


def served_models(client: httpx.Client) -> dict[str, list[dict[str, Any]]]:
    """Model name -> input features of its default version, for every model the gateway serves (an
    example bundle that failed to load, e.g. a pickle without --allow-pickle, is left out)."""
    listing = client.get("/v1/models")
    assert listing.status_code == 200, listing.text
    models: dict[str, list[dict[str, Any]]] = {}
    for model in listing.json()["models"]:
        states = {v["version"]: v["state"] for v in model["versions"]}
        default = model.get("default_version")
        if default is not None and states.get(default) == "loaded":
            manifest = json.loads(
                (EXAMPLE_BUNDLES / model["name"] / str(default) / "bundle.json").read_text()
            )
            models[model["name"]] = manifest["inputs"]
    assert models, f"the gateway serves no model from {EXAMPLE_BUNDLES}"
    return dict(sorted(models.items()))


def record_for(inputs: list[dict[str, Any]], i: int) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for feature in inputs:
        if feature.get("categories"):
            record[feature["name"]] = feature["categories"][i % len(feature["categories"])]
        elif feature["dtype"] == "string":
            record[feature["name"]] = f"s{i}"
        elif feature["dtype"] == "bool":
            record[feature["name"]] = bool(i % 2)
        elif feature["dtype"] == "int64":
            record[feature["name"]] = int(feature.get("min") or 0) + i
        else:
            record[feature["name"]] = float(feature.get("min") or 0.0) + i / 10
    return record


@contextlib.contextmanager
def running_gateway(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`bundle serve` on the example bundles on 127.0.0.1; yields (base URL, API key)."""
    keys_file = tmp_path / "keys.json"
    key = create_key(keys_file, "dashboard-test", ["*"])
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLEGATE_")}
    log = tmp_path / "gateway.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bundlegate.cli",
                "serve",
                str(EXAMPLE_BUNDLES),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--keys",
                str(keys_file),
                "--no-access-log",
                "--drain-timeout-s",
                "2",
                "--drift",
                "--feedback",
                "--payload-log",
                "payload.log",
                "--payload-sample-rate",
                "0.1",
            ],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"bundle serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"bundle serve not ready within {START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield base_url, key
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def feedback_for(answer: dict[str, Any]) -> dict[str, Any]:
    """Ground truth for a single prediction: the predicted label (classifiers), or the predicted value
    plus one (regressors), so live accuracy and live MAE both have a value."""
    prediction = answer["prediction"]
    if isinstance(prediction, float):
        return {"request_id": answer["request_id"], "value": prediction + 1.0}
    return {"request_id": answer["request_id"], "label": prediction}


def send_traffic(client: httpx.Client, models: dict[str, list[dict[str, Any]]], rounds: int = 10) -> None:
    """Singles, batches, feedback and a few 4xx per model: every panel has something to show."""
    for i in range(rounds):
        for name, inputs in models.items():
            single = client.post(f"/v1/models/{name}/predict", json={"inputs": record_for(inputs, i)})
            assert single.status_code == 200, single.text
            feedback = client.post(
                f"/v1/models/{name}/feedback", json={"feedback": [feedback_for(single.json())]}
            )
            assert feedback.status_code == 200, feedback.text
            batch = [record_for(inputs, i + j) for j in range(1 + i % 5)]
            batched = client.post(f"/v1/models/{name}/predict/batch", json={"inputs": batch})
            assert batched.status_code == 200, batched.text
            if i % 3 == 0:
                invalid = client.post(f"/v1/models/{name}/predict", json={"inputs": {"no_such_feature": 1}})
                assert invalid.status_code == 422, invalid.text
        assert client.post("/v1/models/no-such-model/predict", json={"inputs": {}}).status_code == 404


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in panel_expressions(dashboard))
    for metric in (
        "bundlegate_requests_total",
        "bundlegate_request_duration_seconds_bucket",
        "bundlegate_queue_wait_seconds_bucket",
        "bundlegate_batch_size_rows_bucket",
        "bundlegate_models",
        "bundlegate_model_info",
        "bundlegate_feature_drift_psi",
        "bundlegate_prediction_drift_psi",
        "bundlegate_live_accuracy",
        "bundlegate_live_mae",
        "bundlegate_feedback_total",
    ):
        assert metric in exprs
    for quantile in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({quantile}, sum by (model, le)" in exprs
    (model_variable,) = [v for v in dashboard["templating"]["list"] if v["name"] == "model"]
    assert model_variable["definition"] == "label_values(bundlegate_model_info, model)"
    assert model_variable["multi"] is True
    assert model_variable["includeAll"] is True


def test_dashboard_is_well_formed_for_grafana() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    all_panels = list(panels(dashboard))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in all_panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24
        covered = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not covered & cells, f"{panel['title']} overlaps another panel"
        cells |= covered
        targets = panel.get("targets", [])
        assert len({t["refId"] for t in targets}) == len(targets)
        for target in targets:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    # Imports by hand and the Grafana sidecar both work without __inputs: the data source is a variable.
    assert "__inputs" not in dashboard
    (datasource,) = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    assert datasource["type"] == "datasource"
    assert datasource["query"] == "prometheus"


@pytest.mark.slow
@pytest.mark.socket
def test_every_panel_query_runs_on_real_prometheus_against_a_running_gateway(tmp_path: Path) -> None:
    require_tool("prometheus")
    dashboard = json.loads(DASHBOARD.read_text())
    with running_gateway(tmp_path) as (base_url, key):
        target = base_url.removeprefix("http://")
        with (
            running_prometheus([target], scrape_interval="1s", key=key) as prom,
            httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client,
        ):
            models = served_models(client)
            # Two bursts with scrapes in between, so every rate() has samples that differ.
            send_traffic(client, models)
            wait_for_result(prom, "bundlegate_requests_total", timeout_s=30)
            time.sleep(2.5)
            send_traffic(client, models)
            wait_for_result(
                prom,
                'sum by (model) (increase(bundlegate_requests_total{endpoint="v1_predict_batch"}[1m]))',
                accept=lambda result: len(result) == len(models),
                timeout_s=30,
            )
            time.sleep(2.5)

            # The $model variable: label_values(bundlegate_model_info, model), as Grafana asks for it.
            values = httpx.get(
                f"{prom}/api/v1/label/model/values", params={"match[]": "bundlegate_model_info"}, timeout=10
            ).json()
            assert values["status"] == "success"
            assert sorted(values["data"]) == sorted(models)
            model_regex = grafana_regex(values["data"])

            now = time.time()
            problems = []
            for title, expr in panel_expressions(dashboard):
                promql = substitute(expr, model_regex)
                try:
                    instant = query(prom, promql)
                    query_range(prom, promql, start=now - 60, end=now, step=5)
                except Exception as exc:  # report every broken panel, not just the first
                    problems.append(f"{title}: {exc}")
                    continue
                if not instant:
                    problems.append(f"{title}: no data for {promql}")
            assert problems == [], "\n".join(problems)
