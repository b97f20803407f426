"""Monitoring through the app in-process: off by default, drift buckets for categories (unseen values and
nulls apart), every bad feedback answered 422/404 while predictions go on, live MAE for a regressor,
and the payload log's mask, per-model sample rate and rotation from ``serving.json``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, MakeApp, client_for
from prometheus_client.parser import text_string_to_metric_families

import bundle_factory as bf
from bundlegate.manifest import FeatureReference, PredictionReference, Reference
from fake_clock import FakeClock

IRIS_ROW = {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}


def credit_with_reference() -> bf.Built:
    built = bf.mixed_model()
    reference = Reference(
        rows=200,
        features=[
            FeatureReference(
                name="age",
                kind="numeric",
                count=200,
                null_rate=0.15,
                bins=[18.0, 49.0, 80.0],
                counts=[90, 80],
            ),
            FeatureReference(
                name="income",
                kind="numeric",
                count=200,
                null_rate=0.0,
                bins=[20.0, 50.0, 80.0],
                counts=[100, 100],
            ),
            FeatureReference(
                name="city",
                kind="categorical",
                count=200,
                null_rate=0.25,
                frequencies={"Berlin": 0.34, "Paris": 0.33, "Rome": 0.33},
            ),
        ],
        predictions=PredictionReference(kind="classes", frequencies={"approve": 0.4, "reject": 0.6}),
    )
    return bf.Built(
        built.manifest.model_copy(update={"reference": reference}), built.files, built.estimator, built.X
    )


@pytest.fixture
def own_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    bf.write(repo, bf.iris_model())
    bf.write(repo, credit_with_reference())
    bf.write(repo, bf.regressor_model())
    return repo


def metric(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


async def test_monitoring_is_off_by_default_and_its_routes_say_so(app: Any, keys: Keys) -> None:
    assert app.ctx.monitor is None
    async with client_for(app) as client:
        r = await client.post("/v1/models/iris/predict", json={"inputs": IRIS_ROW}, headers=keys.auth())
        assert r.status_code == 200
        drift = await client.get("/v1/models/iris/drift", headers=keys.auth())
        assert drift.status_code == 404
        assert "--drift" in drift.json()["error"]["message"]
        body = {"feedback": [{"request_id": r.json()["request_id"], "label": "setosa"}]}
        feedback = await client.post("/v1/models/iris/feedback", json=body, headers=keys.auth())
        assert feedback.status_code == 404
        assert "--feedback" in feedback.json()["error"]["message"]
        assert "bundlegate_feature_drift_psi" not in (await client.get("/metrics", headers=keys.auth())).text


async def test_drift_counts_unseen_categories_and_nulls_in_their_own_buckets(
    make_app: MakeApp, own_repo: Path, keys: Keys
) -> None:
    app = await make_app(repository=own_repo, drift=True)
    records = (
        [{"age": 30, "income": 40.0, "city": "Berlin"}] * 5
        + [{"age": None, "income": 60.0, "city": "Tokyo"}] * 3
        + [{"age": 90, "income": 70.0, "city": None}] * 2
    )
    async with client_for(app) as client:
        r = await client.post(
            "/v1/models/credit/predict/batch", json={"inputs": records}, headers=keys.auth()
        )
        assert r.status_code == 200, r.text
        r = await client.get("/v1/models/credit/drift", headers=keys.auth(keys.iris))
        assert r.status_code == 404  # a key that may not see the model
        r = await client.get("/v1/models/credit/versions/1/drift", headers=keys.auth())
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["window"]["rows"] == 10
        features = {f["name"]: f for f in report["features"]}
        city = dict(zip(features["city"]["buckets"], features["city"]["live"], strict=True))
        assert city == {"Berlin": 5, "Paris": 0, "Rome": 0, "__other__": 0, "__unseen__": 3, "__null__": 2}
        age = dict(zip(features["age"]["buckets"], features["age"]["live"], strict=True))
        assert age == {"< 18": 0, "18 .. 49": 5, "49 .. 80": 0, "> 80": 2, "__null__": 3}
        assert features["age"]["reference"][-1] == pytest.approx(0.15)
        predicted = report["prediction"]
        assert sum(predicted["live"]) == 10
        assert predicted["psi"] is not None
        # models whose bundle has no reference have nothing to compare with, and say so
        iris = (await client.get("/v1/models/iris/drift", headers=keys.auth())).json()
        assert iris["reference"] is False
        assert iris["features"] == []
        assert iris["prediction"] is None
        exposition = (await client.get("/metrics", headers=keys.auth())).text
        assert metric(exposition, "bundlegate_feature_drift_psi", model="credit", feature="city") is not None
        assert metric(exposition, "bundlegate_drift_window_rows", model="credit", version="1") == 10
        # an hour without traffic empties the window: no PSI series is left to alert on
        drift = app.ctx.monitor._versions[("credit", 1)].drift
        later = time.monotonic() + app.settings.drift_window_s + 1
        drift._clock = lambda: later
        exposition = (await client.get("/metrics", headers=keys.auth())).text
        assert metric(exposition, "bundlegate_feature_drift_psi", model="credit", feature="city") is None
        assert metric(exposition, "bundlegate_prediction_drift_psi", model="credit") is None
        assert metric(exposition, "bundlegate_drift_window_rows", model="credit", version="1") == 0


async def _predict_iris(client: httpx.AsyncClient, keys: Keys, n: int) -> list[dict[str, Any]]:
    answers = []
    for _ in range(n):
        r = await client.post("/v1/models/iris/predict", json={"inputs": IRIS_ROW}, headers=keys.auth())
        assert r.status_code == 200, r.text
        answers.append(r.json())
    return answers


async def test_bad_feedback_is_answered_and_predictions_go_on(make_app: MakeApp, keys: Keys) -> None:
    app = await make_app(feedback=True, request_max_rows=5)
    clock = FakeClock()
    app.ctx.monitor.feedback._clock = clock
    async with client_for(app) as client:
        answers = await _predict_iris(client, keys, 3)
        rid = answers[0]["request_id"]

        async def post(body: Any, key: str | None = None) -> httpx.Response:
            return await client.post("/v1/models/iris/feedback", json=body, headers=keys.auth(key))

        cases: list[tuple[Any, list[Any], str]] = [
            ([], ["feedback"], "type"),
            ({"feedback": [], "more": 1}, ["feedback"], "type"),
            ({"feedback": []}, ["feedback"], "type"),
            ({"feedback": [{"request_id": rid, "label": "setosa"}] * 6}, ["feedback"], "too_many_rows"),
            ({"feedback": ["x"]}, ["feedback", 0], "type"),
            (
                {"feedback": [{"request_id": rid, "label": "setosa", "why": 1}]},
                ["feedback", 0, "why"],
                "extra",
            ),
            ({"feedback": [{"label": "setosa"}]}, ["feedback", 0, "request_id"], "type"),
            (
                {"feedback": [{"request_id": rid, "row": True, "label": "setosa"}]},
                ["feedback", 0, "row"],
                "type",
            ),
            (
                {"feedback": [{"request_id": rid, "row": -1, "label": "setosa"}]},
                ["feedback", 0, "row"],
                "type",
            ),
            ({"feedback": [{"request_id": rid}]}, ["feedback", 0], "missing"),
            ({"feedback": [{"request_id": rid, "label": "setosa", "value": 1}]}, ["feedback", 0], "missing"),
            ({"feedback": [{"request_id": rid, "label": 2}]}, ["feedback", 0, "label"], "type"),
            ({"feedback": [{"request_id": rid, "label": "rose"}]}, ["feedback", 0, "label"], "value"),
            ({"feedback": [{"request_id": rid, "value": 1.5}]}, ["feedback", 0, "label"], "missing"),
            (
                {"feedback": [{"request_id": rid, "row": 1, "label": "setosa"}]},
                ["feedback", 0, "row"],
                "value",
            ),
            (
                {"feedback": [{"request_id": "nope", "label": "setosa"}]},
                ["feedback", 0, "request_id"],
                "unknown_request_id",
            ),
        ]
        for body, loc, kind in cases:
            r = await post(body)
            assert r.status_code == 422, (body, r.text)
            detail = r.json()["error"]["details"][0]
            assert (detail["loc"], detail["type"]) == (loc, kind), body
        # the one good item, by a key limited to iris; a model the key may not see answers 404
        r = await post({"feedback": [{"request_id": rid, "label": "setosa"}]}, keys.iris)
        assert r.status_code == 200
        assert r.json() == {"matched": 1}
        r = await client.post(
            "/v1/models/credit/feedback",
            json={"feedback": [{"request_id": rid, "label": "x"}]},
            headers=keys.auth(keys.iris),
        )
        assert r.status_code == 404
        # the request id of another model's prediction is unknown to this one
        r = await client.post(
            "/v1/models/credit/feedback",
            json={"feedback": [{"request_id": rid, "label": "approve"}]},
            headers=keys.auth(),
        )
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["type"] == "unknown_request_id"
        # expired: the prediction outlived the time to live
        clock.advance(app.settings.feedback_ttl_s + 1)
        r = await post({"feedback": [{"request_id": answers[1]["request_id"], "label": "setosa"}]})
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["type"] == "expired"
        assert (await _predict_iris(client, keys, 1))[0]["prediction"] == "setosa"
        exposition = (await client.get("/metrics", headers=keys.auth())).text
    assert metric(exposition, "bundlegate_feedback_total", model="iris", outcome="matched") == 1
    assert metric(exposition, "bundlegate_feedback_total", model="iris", outcome="unmatched") == 1
    assert metric(exposition, "bundlegate_feedback_total", model="iris", outcome="late") == 1
    assert metric(exposition, "bundlegate_live_accuracy", model="iris", version="2") == 1.0


async def test_regressor_feedback_gives_the_live_mean_absolute_error(
    make_app: MakeApp, own_repo: Path, keys: Keys
) -> None:
    app = await make_app(repository=own_repo, feedback=True)
    async with client_for(app) as client:
        rows = [[0.1, 0.2, 1], [1.0, -1.0, 2], [0.0, 0.0, 3]]
        r = await client.post("/v1/models/price/predict/batch", json={"inputs": rows}, headers=keys.auth())
        assert r.status_code == 200, r.text
        rid, predictions = r.json()["request_id"], r.json()["predictions"]
        errors = [2.0, -4.0, 0.0]
        feedback = [
            {"request_id": rid, "row": i, "value": p + e}
            for i, (p, e) in enumerate(zip(predictions, errors, strict=True))
        ]
        r = await client.post("/v1/models/price/feedback", json={"feedback": feedback}, headers=keys.auth())
        assert r.status_code == 200, r.text
        r = await client.post(
            "/v1/models/price/feedback",
            json={"feedback": [{"request_id": rid, "value": "9"}]},
            headers=keys.auth(),
        )
        assert r.status_code == 422
        assert r.json()["error"]["details"][0]["loc"] == ["feedback", 0, "value"]
        exposition = (await client.get("/metrics", headers=keys.auth())).text
    assert metric(exposition, "bundlegate_live_mae", model="price", version="1") == pytest.approx(
        2.0, abs=1e-3
    )


async def test_payload_log_masks_samples_per_model_and_rotates(
    make_app: MakeApp, own_repo: Path, keys: Keys, tmp_path: Path
) -> None:
    (own_repo / "iris" / "serving.json").write_text(json.dumps({"payload_mask": ["sepal_length"]}))
    (own_repo / "credit" / "serving.json").write_text(json.dumps({"payload_sample_rate": 0}))
    log = tmp_path / "payload.log"
    app = await make_app(
        repository=own_repo, payload_log=str(log), payload_sample_rate=1.0, payload_log_max_bytes=2048
    )
    async with client_for(app) as client:
        await _predict_iris(client, keys, 20)
        r = await client.post(
            "/v1/models/iris/predict/batch",
            json={"inputs": [IRIS_ROW, {**IRIS_ROW, "petal_length": 5.0}]},
            headers=keys.auth(),
        )
        assert r.status_code == 200
        batch_id = r.json()["request_id"]
        for _ in range(10):
            r = await client.post(
                "/v1/models/credit/predict",
                json={"inputs": {"age": 30, "income": 50.0, "city": "Rome"}},
                headers=keys.auth(),
            )
            assert r.status_code == 200
    await app.shutdown()  # writes what is queued
    files = sorted(tmp_path.glob("payload.log*"))
    assert len(files) > 1, "the log did not rotate at 2 KiB"
    assert all(f.stat().st_size <= 2048 for f in files)
    lines = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert len(lines) == 22
    assert {line["model"] for line in lines} == {"iris"}  # credit samples nothing
    assert all(line["inputs"][:2] == ["***", 3.5] for line in lines)  # sepal_length masked
    batch = [line for line in lines if line["request_id"] == batch_id]
    assert [line["row"] for line in batch] == [0, 1]
    assert [line["inputs"][2] for line in batch] == [1.4, 5.0]
    assert all(line["outputs"]["prediction"] in ("setosa", "versicolor", "virginica") for line in lines)
