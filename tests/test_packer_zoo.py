"""The packer zoo: every estimator kind of ``packer_zoo.CASES`` packed, then served over HTTP.

Each case is packed with ``pack_bundle`` (from a joblib file, or from a hand-written MLflow model
directory) and served by the gateway app in-process (``httpx.ASGITransport``, pickles allowed for the
fallback cases). The answers to 40 sample rows sent as JSON records must equal the original model's:
labels equal (or an exact tie of the top probabilities), probabilities and values within the parity
tolerance the bundle records.

ONNX cases must pass parity on the whole sample. Fallback cases must refuse without
``--allow-pickle-fallback`` (naming the estimator, writing nothing) and give a ``runtime: sklearn``
bundle with it, whose recorded parity is the gateway's own answers against the original.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import pickle
import platform
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry

from bundlegate.errors import ConversionFailed, ParityFailed
from bundlegate.http.app import create_app
from bundlegate.keys import create_key
from bundlegate.manifest import Manifest
from bundlegate.metrics import GatewayMetrics
from bundlegate.packer import PackOptions, pack_bundle
from bundlegate.settings import Settings
from packer_zoo import CASES, ZooCase

SLOW = {"gaussian_process_regressor", "column_transformer_forest", "awkward_names_forest"}
SERVED_ROWS = 40


def _write_inputs(case: ZooCase, est: Any, X: Any, tmp_path: Path) -> tuple[Path, Path | None]:
    if case.mlflow:
        return _mlflow_dir(est, X, tmp_path / "mlflow-model"), None
    model_path = tmp_path / f"{case.id}.joblib"
    joblib.dump(est, model_path)
    if isinstance(X, pd.DataFrame):
        sample = tmp_path / f"{case.id}.csv"
        X.to_csv(sample, index=False)
    else:
        sample = tmp_path / f"{case.id}.npy"
        np.save(sample, X)
    return model_path, sample


SIGNATURE_TYPES = {"f": "double", "i": "long", "b": "boolean", "O": "string"}


def _mlflow_dir(est: Any, X: pd.DataFrame, root: Path) -> Path:
    """What ``mlflow.sklearn.save_model(est, signature=..., input_example=X.head(5))`` writes, by hand."""
    root.mkdir()
    with (root / "model.pkl").open("wb") as f:
        pickle.dump(est, f)
    columns = [
        {"type": SIGNATURE_TYPES[X[c].dtype.kind], "name": c, "required": not X[c].isna().any()}
        for c in X.columns
    ]
    example = X.head(5).astype(object).where(X.head(5).notna(), None)
    (root / "input_example.json").write_text(
        json.dumps({"columns": list(X.columns), "data": example.to_numpy().tolist()})
    )
    (root / "MLmodel").write_text(
        "artifact_path: model\n"
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        "    model_path: model.pkl\n"
        "    predict_fn: predict\n"
        "  sklearn:\n"
        "    pickled_model: model.pkl\n"
        "    serialization_format: cloudpickle\n"
        "mlflow_version: 2.17.0\n"
        "model_uuid: 5e1f0c4a9b3d4f6e8a7b2c1d0e9f8a7b\n"
        "run_id: 0a1b2c3d4e5f\n"
        "saved_input_example_info:\n"
        "  artifact_path: input_example.json\n"
        "  pandas_orient: split\n"
        "  type: dataframe\n"
        "signature:\n"
        f"  inputs: '{json.dumps(columns)}'\n"
        '  outputs: \'[{"type": "string", "required": true}]\'\n'
    )
    return root


def _records(X: Any, names: list[str], rows: int) -> list[dict[str, Any]]:
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)
    out = []
    for row in frame.head(rows).itertuples(index=False, name=None):
        out.append(
            {
                n: None if isinstance(v, float) and math.isnan(v) else (v.item() if hasattr(v, "item") else v)
                for n, v in zip(names, row, strict=True)
            }
        )
    return out


def _original_input(est: Any, X: Any, rows: int) -> Any:
    from bundlegate.packer.schema_inference import is_text_model

    part = X.head(rows) if isinstance(X, pd.DataFrame) else X[:rows]
    if is_text_model(est):
        return part.iloc[:, 0].to_numpy()
    return part


async def _served(repo: Path, tmp_path: Path, m: Manifest, records: list[dict[str, Any]]) -> dict[str, Any]:
    """The gateway's answer to ``records`` (one batch request over HTTP, in-process)."""
    keys = tmp_path / "keys.json"
    key = create_key(keys, "zoo", ["*"])
    # skl2onnx converts text pipelines with onnxruntime's own com.microsoft operators
    settings = Settings(
        repository=repo, keys_file=keys, access_log=False, allow_pickle=True, onnx_domains="com.microsoft"
    )
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    try:
        await app.loaded()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as client:
            r = await client.post(
                f"/v1/models/{m.name}/predict/batch",
                json={"inputs": records},
                headers={"Authorization": f"Bearer {key}"},
            )
    finally:
        await app.shutdown()
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _assert_answers_equal(est: Any, X: Any, m: Manifest, body: dict[str, Any]) -> None:
    assert m.parity is not None
    Xo = _original_input(est, X, SERVED_ROWS)
    if m.task == "classification":
        want = est.predict(Xo).tolist()
        proba = est.predict_proba(Xo) if hasattr(est, "predict_proba") else None
        got = body["predictions"]
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            if g != w:  # only an exact tie of the top probabilities may differ
                assert proba is not None
                assert m.classes is not None
                assert proba[i].max() == proba[i][m.classes.index(g)]
        if proba is not None:
            np.testing.assert_allclose(np.asarray(body["probabilities"]), proba, atol=m.parity.tolerance)
    else:
        np.testing.assert_allclose(
            np.asarray(body["predictions"], dtype=float).reshape(-1),
            est.predict(Xo),
            atol=m.parity.tolerance,
        )


def _needs(case: ZooCase) -> None:
    if case.needs is None or importlib.util.find_spec(case.needs) is not None:
        return
    message = f"{case.needs} is not installed (pip install 'bundlegate[boost]')"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW else []) for c in CASES],
)
async def test_zoo_case_is_served_as_the_original_answers(case: ZooCase, tmp_path: Path) -> None:
    _needs(case)
    est, X = case.fit()
    model_path, sample = _write_inputs(case, est, X, tmp_path)
    name = case.id.replace("_", "-")
    repo = tmp_path / "repo"
    options = PackOptions(name=name, repo=repo, sample=sample, features=case.features)

    if case.expect == "onnx":
        m = pack_bundle(model_path, options).manifest
        assert m.runtime == "onnx"
        assert m.parity is not None
        assert m.parity.passed
        rows = 5 if case.mlflow else len(X)  # an MLflow directory's input example is its sample
        assert (m.parity.sample, m.parity.rows) == ("provided", rows)
        if m.task == "classification":
            assert m.parity.label_agreement is not None
            agreeing = round(m.parity.label_agreement * m.parity.rows) + (m.parity.label_ties or 0)
            assert agreeing == m.parity.rows
            assert m.parity.max_abs_diff_probabilities is not None
            assert m.parity.max_abs_diff_probabilities <= m.parity.tolerance <= 1e-4
        else:
            assert m.parity.max_abs_diff_values is not None
            assert m.parity.max_abs_diff_values <= m.parity.tolerance
    else:
        with pytest.raises((ParityFailed, ConversionFailed)) as refused:
            pack_bundle(model_path, options)
        assert type(est).__name__ in refused.value.message
        assert "--allow-pickle-fallback" in refused.value.message
        assert not (repo / name).exists() or list((repo / name).iterdir()) == []

        result = pack_bundle(model_path, PackOptions(**{**options.__dict__, "allow_pickle_fallback": True}))
        m = result.manifest
        assert m.runtime == "sklearn"
        assert m.parity is not None
        assert m.parity.passed  # the gateway's answers through its own decoding equal the original's
        assert m.parity.reason  # and why it is not ONNX stays in the manifest
        assert m.model_file == "model.joblib"
        import sklearn

        assert m.source.sklearn_version == sklearn.__version__
        assert m.source.numpy_version == np.__version__
        assert m.source.python_version == platform.python_version()
        assert m.source.libraries is not None
        assert m.source.libraries["pandas"] == pd.__version__

    if case.mlflow:
        assert m.tags["mlflow.model_uuid"] == "5e1f0c4a9b3d4f6e8a7b2c1d0e9f8a7b"
        assert m.tags["mlflow.run_id"] == "0a1b2c3d4e5f"
        assert m.feature_names == list(X.columns)  # the signature's names, types and "required"
        assert {i.name: i.dtype for i in m.inputs} == {
            c: "string" if X[c].dtype == object else "float64" for c in X
        }
        assert all(i.nullable for i in m.inputs if X[i.name].isna().any())

    body = await _served(repo, tmp_path, m, _records(X, m.feature_names, SERVED_ROWS))
    _assert_answers_equal(est, X, m, body)


def test_zoo_covers_the_kinds_users_bring() -> None:
    assert len(CASES) >= 24
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.expect == "onnx" for c in CASES) >= 24
    assert {c.needs for c in CASES} >= {"xgboost", "lightgbm", "catboost"}
    assert any(c.mlflow for c in CASES)
