"""A ``runtime: sklearn`` bundle of a DataFrame pipeline (strings, gaps, a custom step) served over HTTP
in-process: answers equal the original's, bad input is a 4xx, and the gateway keeps serving."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from bundlegate.http.app import create_app
from bundlegate.keys import create_key
from bundlegate.metrics import GatewayMetrics
from bundlegate.packer import PackOptions, pack_bundle
from bundlegate.settings import Settings
from packer_zoo import CASES

CASE = next(c for c in CASES if c.id == "dataframe_function_transformer")


@pytest.fixture(scope="module")
def fitted() -> tuple[Any, Any]:
    return CASE.fit()


@pytest.fixture
async def client(fitted: tuple[Any, Any], tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    est, X = fitted
    joblib.dump(est, tmp_path / "model.joblib")
    X.to_csv(tmp_path / "sample.csv", index=False)
    repo = tmp_path / "repo"
    options = PackOptions(
        name="framed", repo=repo, sample=tmp_path / "sample.csv", allow_pickle_fallback=True
    )
    assert pack_bundle(tmp_path / "model.joblib", options).manifest.runtime == "sklearn"
    keys = tmp_path / "keys.json"
    key = create_key(keys, "t", ["*"])
    settings = Settings(repository=repo, keys_file=keys, access_log=False, allow_pickle=True)
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    await app.loaded()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://gateway.test", headers={"Authorization": f"Bearer {key}"}
    ) as c:
        yield c
    await app.shutdown()


def record(X: Any, i: int) -> dict[str, Any]:
    row = X.iloc[i].to_dict()
    return {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in row.items()}


async def test_one_record_with_gaps_equals_the_original(
    client: httpx.AsyncClient, fitted: tuple[Any, Any]
) -> None:
    est, X = fitted
    for i in (0, 7, 9):  # row 0 misses bmi and band; 7 misses band; 9 misses bmi
        r = await client.post("/v1/models/framed/predict", json={"inputs": record(X, i)})
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == est.predict(X.iloc[[i]])[0]
        want = dict(zip(est.classes_.tolist(), est.predict_proba(X.iloc[[i]])[0], strict=True))
        got = r.json()["probabilities"]
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) <= 1e-6 for k in want)


async def test_values_the_estimator_refuses_are_a_422_and_serving_goes_on(
    client: httpx.AsyncClient, fitted: tuple[Any, Any]
) -> None:
    est, X = fitted
    bad = {**record(X, 1), "bmi": -5.0}  # log1p(-5) is NaN, which LogisticRegression refuses
    r = await client.post("/v1/models/framed/predict", json={"inputs": bad})
    assert r.status_code == 422, r.text
    assert "the model refused these rows" in r.json()["error"]["message"]
    batch = [record(X, 2), bad, record(X, 3)]
    r = await client.post("/v1/models/framed/predict/batch", json={"inputs": batch})
    assert r.status_code == 422
    r = await client.post("/v1/models/framed/predict/batch", json={"inputs": [record(X, 2), record(X, 3)]})
    assert r.status_code == 200
    assert r.json()["predictions"] == est.predict(X.iloc[[2, 3]]).tolist()


async def test_schema_violations_are_refused_before_the_estimator(
    client: httpx.AsyncClient, fitted: tuple[Any, Any]
) -> None:
    _, X = fitted
    missing = {k: v for k, v in record(X, 1).items() if k != "bp"}
    r = await client.post("/v1/models/framed/predict", json={"inputs": missing})
    assert r.status_code == 422
    assert any(d["loc"][-1] == "bp" for d in r.json()["error"]["details"])
    r = await client.post("/v1/models/framed/predict", json={"inputs": {**record(X, 1), "bp": "high"}})
    assert r.status_code == 422
