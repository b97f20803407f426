"""/v2 with tritonclient over a real socket, for what the Open Inference Protocol cannot say directly:

- a missing value: a nullable numeric feature takes NaN in its tensor, and the answer is the one /v1
  gives for the same row with ``null`` (and the original sklearn pipeline's for NaN); NaN for a
  feature that is not nullable, and infinity anywhere, are 422;
- a multi-output regressor (three named targets): metadata declares ``value`` as ``[-1, 3]``, infer
  answers ``[n, 3]`` that tritonclient reads as such, and /v1 names the targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest

import bundle_factory as bf
from bundlegate.keys import create_key
from bundlegate.packer import PackOptions, pack_bundle
from server.test_serve_socket import Server, serve

pytestmark = [pytest.mark.socket, pytest.mark.slow]
TARGETS = ["width", "height", "depth"]


def multi_output_regressor(root: Path, repo: Path) -> tuple[object, np.ndarray]:
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(21)
    X = rng.normal(size=(120, 4))
    Y = X @ rng.normal(size=(4, 3)) + np.array([10.0, -5.0, 0.5])
    model = LinearRegression().fit(X, Y)
    joblib.dump(model, root / "boxes.joblib")
    pack_bundle(root / "boxes.joblib", PackOptions(name="boxes", repo=repo, targets=TARGETS))
    return model, X


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Server, dict[str, str], object, np.ndarray]]:
    root = tmp_path_factory.mktemp("v2gaps")
    repo = root / "bundles"
    repo.mkdir()
    bf.write(repo, bf.mixed_model())
    bf.write(repo, bf.iris_model())
    model, X = multi_output_regressor(root, repo)
    keys = root / "keys.json"
    auth = {"Authorization": f"Bearer {create_key(keys, 'v2', ['*'])}"}
    with serve(root, str(repo), "--keys", str(keys), "--no-access-log") as server:
        yield server, auth, model, X


def triton_client(server: Server):  # type: ignore[no-untyped-def]
    import tritonclient.http as triton

    return triton, triton.InferenceServerClient(f"127.0.0.1:{server.port}")


def test_nan_is_a_missing_value_and_answers_like_v1_null(gateway) -> None:  # type: ignore[no-untyped-def]
    server, auth, _, _ = gateway
    mixed = bf.mixed_model()
    frame = mixed.X.iloc[:30].copy()
    frame.loc[frame.index[::3], "age"] = np.nan  # gaps, on purpose
    assert frame["age"].isna().sum() >= 10
    triton, client = triton_client(server)
    tensors = []
    for name, datatype, values in (
        ("age", "FP64", frame["age"].to_numpy().reshape(-1, 1)),
        ("income", "FP64", frame["income"].to_numpy().reshape(-1, 1)),
        ("city", "BYTES", frame["city"].fillna("").to_numpy(dtype=object).reshape(-1, 1)),
    ):
        t = triton.InferInput(name, list(values.shape), datatype)
        t.set_data_from_numpy(values, binary_data=True)  # JSON has no NaN: binary tensor data
        tensors.append(t)
    result = client.infer("credit", tensors, headers=dict(auth))
    v2_labels = [v.decode() if isinstance(v, bytes) else v for v in result.as_numpy("label").tolist()]
    v2_proba = result.as_numpy("probabilities")

    records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
    v1 = httpx.post(
        f"{server.url}/v1/models/credit/predict/batch", json={"inputs": records}, headers=dict(auth)
    )
    assert v1.status_code == 200, v1.text
    assert v2_labels == v1.json()["predictions"] == mixed.estimator.predict(frame).tolist()
    assert np.array_equal(v2_proba, np.array(v1.json()["probabilities"], dtype=np.float32))


def test_nan_where_not_nullable_and_infinity_are_422(gateway) -> None:  # type: ignore[no-untyped-def]
    server, auth, _, _ = gateway
    triton, client = triton_client(server)
    rows = bf.iris_model().X[:3].copy()
    for bad in (np.nan, np.inf):
        rows[1, 2] = bad
        t = triton.InferInput("input", list(rows.shape), "FP64")
        t.set_data_from_numpy(rows, binary_data=True)
        with pytest.raises(triton.InferenceServerException) as refused:
            client.infer("iris", [t], headers=dict(auth))
        assert refused.value.status() == "422"
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_multi_output_regressor_over_v2_and_v1(gateway) -> None:  # type: ignore[no-untyped-def]
    server, auth, model, X = gateway
    triton, client = triton_client(server)
    meta = client.get_model_metadata("boxes", headers=dict(auth))
    assert meta["outputs"] == [{"name": "value", "datatype": "FP32", "shape": [-1, 3]}]
    rows = X[:7]
    expected = model.predict(rows)  # type: ignore[attr-defined]
    for binary in (False, True):
        t = triton.InferInput(meta["inputs"][0]["name"], list(rows.shape), meta["inputs"][0]["datatype"])
        t.set_data_from_numpy(
            rows.astype(np.float32 if meta["inputs"][0]["datatype"] == "FP32" else np.float64),
            binary_data=binary,
        )
        values = client.infer("boxes", [t], headers=dict(auth)).as_numpy("value")
        assert values.shape == (7, 3)
        assert np.allclose(values, expected, atol=1e-3)

    batch = httpx.post(
        f"{server.url}/v1/models/boxes/predict/batch", json={"inputs": rows.tolist()}, headers=auth
    )
    assert batch.json()["targets"] == TARGETS
    assert np.allclose(batch.json()["predictions"], expected, atol=1e-3)
    one = httpx.post(
        f"{server.url}/v1/models/boxes/predict", json={"inputs": rows[0].tolist()}, headers=dict(auth)
    )
    assert list(one.json()["prediction"]) == TARGETS
    assert np.allclose(list(one.json()["prediction"].values()), expected[0], atol=1e-3)


def test_pack_refuses_target_names_that_do_not_fit(tmp_path: Path) -> None:
    from bundlegate.errors import PackError

    multi_output_regressor(tmp_path, tmp_path / "ok")
    with pytest.raises(PackError, match="--targets names 2"):
        pack_bundle(
            tmp_path / "boxes.joblib", PackOptions(name="bad", repo=tmp_path / "r", targets=["a", "b"])
        )
