"""What gets served: integer class labels stay integers, pickled (``runtime: sklearn``) bundles only
with the opt-in and the same sklearn version, and the periodic repository re-scan."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from gateway_support import Keys, MakeApp, client_for

import bundle_factory as bf

ROWS = bf.iris_model().X[::30]


@pytest.fixture
def own_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "bundles"
    repo.mkdir()
    return repo


async def test_integer_classes_are_answered_as_integers(
    make_app: MakeApp, keys: Keys, own_repo: Path
) -> None:
    built = bf.with_version(bf.iris_model(string_classes=False), 1, name="iris-int")
    bf.write(own_repo, built)
    async with client_for(await make_app(repository=own_repo)) as client:
        r = await client.post(
            "/v1/models/iris-int/predict/batch", json={"inputs": ROWS.tolist()}, headers=keys.auth()
        )
        assert r.status_code == 200, r.text
        assert r.json()["predictions"] == built.estimator.predict(ROWS).tolist()
        assert all(type(p) is int for p in r.json()["predictions"])
        one = await client.post(
            "/v1/models/iris-int/predict", json={"inputs": ROWS[0].tolist()}, headers=keys.auth()
        )
        assert list(one.json()["probabilities"]) == ["0", "1", "2"]
        meta = (await client.get("/v2/models/iris-int", headers=keys.auth())).json()
        assert meta["outputs"][0] == {"name": "label", "datatype": "INT64", "shape": [-1]}
        tensor = {
            "name": "input",
            "datatype": "FP64",
            "shape": list(ROWS.shape),
            "data": ROWS.ravel().tolist(),
        }
        infer = await client.post("/v2/models/iris-int/infer", json={"inputs": [tensor]}, headers=keys.auth())
        label = infer.json()["outputs"][0]
        assert (label["datatype"], label["data"]) == ("INT64", built.estimator.predict(ROWS).tolist())


async def test_pickled_bundles_need_the_opt_in_and_the_same_sklearn(
    make_app: MakeApp, keys: Keys, own_repo: Path
) -> None:
    bf.write(own_repo, bf.pickled_model())
    bf.write(own_repo, bf.with_version(bf.pickled_model(sklearn_version="0.0.1"), 1, name="iris-old-pickle"))
    record = {"inputs": ROWS[1].tolist()}
    async with client_for(await make_app(repository=own_repo)) as client:
        r = await client.post("/v1/models/iris-pickle/predict", json=record, headers=keys.auth())
        assert r.status_code == 503
        states = {
            m["name"]: m["versions"][0]
            for m in (await client.get("/v1/models", headers=keys.auth())).json()["models"]
        }
        assert states["iris-pickle"]["state"] == "failed"
        assert "pickle" in states["iris-pickle"]["error"]
    async with client_for(await make_app(repository=own_repo, allow_pickle=True)) as client:
        r = await client.post("/v1/models/iris-pickle/predict", json=record, headers=keys.auth())
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == bf.iris_model().estimator.predict(ROWS[1:2])[0]
        old = await client.post("/v1/models/iris-old-pickle/predict", json=record, headers=keys.auth())
        assert old.status_code == 503
        models = (await client.get("/v1/models", headers=keys.auth())).json()["models"]
        assert {m["name"]: m["versions"][0]["state"] for m in models}["iris-old-pickle"] == "failed"


async def test_reload_interval_picks_up_a_new_version(make_app: MakeApp, keys: Keys, own_repo: Path) -> None:
    iris = bf.iris_model()
    bf.write(own_repo, iris)
    async with client_for(await make_app(repository=own_repo, reload_interval_s=0.1)) as client:
        r = await client.post(
            "/v1/models/iris/predict", json={"inputs": ROWS[0].tolist()}, headers=keys.auth()
        )
        assert r.json()["version"] == 1
        bf.write(own_repo, bf.with_version(iris, 2))
        deadline = time.monotonic() + 10
        version = 1
        while version == 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            assert (await client.get("/readyz")).status_code == 200  # ready all along
            r = await client.post(
                "/v1/models/iris/predict", json={"inputs": ROWS[0].tolist()}, headers=keys.auth()
            )
            version = r.json()["version"]
        assert version == 2
        assert r.headers["x-model-version"] == "2"
        assert np.isclose(sum(r.json()["probabilities"].values()), 1.0)
