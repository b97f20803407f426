"""The packer zoo: every estimator kind of ``packer_zoo.CASES`` through ``pack_bundle``.

ONNX cases must pass parity on the whole sample and the served model (the gateway's own schema and
runtime, onnxruntime) must answer what scikit-learn answers. Fallback cases must refuse without
``--allow-pickle-fallback`` (naming the estimator, writing nothing) and give a runtime sklearn bundle
with it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from bundlegate.bundle import read_bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import ConversionFailed, ParityFailed
from bundlegate.packer import PackOptions, pack_bundle
from bundlegate.runtime import load_model
from packer_zoo import CASES, ZooCase

SLOW = {"gaussian_process_regressor", "hist_gradient_boosting", "column_transformer_forest"}


def _write_inputs(case: ZooCase, est: Any, X: Any, tmp_path: Path) -> tuple[Path, Path]:
    model_path = tmp_path / f"{case.id}.joblib"
    joblib.dump(est, model_path)
    if isinstance(X, pd.DataFrame):
        sample = tmp_path / f"{case.id}.csv"
        X.to_csv(sample, index=False)
    else:
        sample = tmp_path / f"{case.id}.npy"
        np.save(sample, X)
    return model_path, sample


def _records(X: Any, names: list[str], rows: int) -> list[dict[str, Any]]:
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(X, columns=names)
    frame = frame.head(rows)
    out = []
    for row in frame.itertuples(index=False, name=None):
        out.append(
            {
                n: (None if isinstance(v, float) and math.isnan(v) else v)
                for n, v in zip(names, row, strict=True)
            }
        )
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()} for r in out]


def _original_input(est: Any, X: Any, rows: int) -> Any:
    from bundlegate.packer.schema_inference import is_text_model

    part = X.head(rows) if isinstance(X, pd.DataFrame) else X[:rows]
    if is_text_model(est):
        return part.iloc[:, 0].to_numpy()
    return part


@pytest.mark.parametrize(
    "case",
    [pytest.param(c, id=c.id, marks=[pytest.mark.slow] if c.id in SLOW else []) for c in CASES],
)
def test_zoo_case(case: ZooCase, tmp_path: Path) -> None:
    est, X = case.fit()
    model_path, sample = _write_inputs(case, est, X, tmp_path)
    name = case.id.replace("_", "-")
    repo = tmp_path / "repo"

    if case.expect == "onnx":
        result = pack_bundle(
            model_path, PackOptions(name=name, repo=repo, sample=sample, features=case.features)
        )
        m = result.manifest
        assert m.runtime == "onnx"
        assert m.parity is not None
        assert m.parity.passed
        assert m.parity.sample == "provided"
        assert m.parity.rows == len(X)
        if m.task == "classification":
            assert m.parity.label_agreement is not None
            agreeing = round(m.parity.label_agreement * m.parity.rows) + (m.parity.label_ties or 0)
            assert agreeing == m.parity.rows
            assert m.parity.max_abs_diff_probabilities is not None
            assert m.parity.max_abs_diff_probabilities <= m.parity.tolerance <= 1e-4
        else:
            assert m.parity.max_abs_diff_values is not None
            assert m.parity.max_abs_diff_values <= m.parity.tolerance

        # what the gateway serves equals what scikit-learn answers, on sample rows given as JSON records
        bundle = read_bundle(result.path)
        served = load_model(bundle).predict(CompiledSchema(m).from_records(_records(X, m.feature_names, 40)))
        Xo = _original_input(est, X, 40)
        if m.task == "classification":
            want = est.predict(Xo)
            assert served.labels is not None
            proba = est.predict_proba(Xo) if hasattr(est, "predict_proba") else None
            for i, (got, exp) in enumerate(zip(served.labels.tolist(), want.tolist(), strict=True)):
                if got != exp:  # only an exact tie of the top probabilities may differ
                    assert proba is not None
                    assert proba[i].max() == proba[i][m.classes.index(got)]  # type: ignore[union-attr]
            if proba is not None:
                assert served.probabilities is not None
                np.testing.assert_allclose(served.probabilities, proba, atol=1e-4)
        else:
            assert served.values is not None
            np.testing.assert_allclose(
                np.asarray(served.values).reshape(-1), est.predict(Xo), atol=m.parity.tolerance
            )
        return

    options = PackOptions(name=name, repo=repo, sample=sample, features=case.features)
    with pytest.raises((ParityFailed, ConversionFailed)) as refused:
        pack_bundle(model_path, options)
    assert type(est).__name__ in refused.value.message
    assert "--allow-pickle-fallback" in refused.value.message
    assert not (repo / name).exists() or list((repo / name).iterdir()) == []

    result = pack_bundle(
        model_path,
        PackOptions(name=name, repo=repo, sample=sample, features=case.features, allow_pickle_fallback=True),
    )
    m = result.manifest
    assert m.runtime == "sklearn"
    assert m.parity is not None  # why it is not ONNX stays in the manifest
    assert not m.parity.passed
    assert m.parity.reason
    assert m.model_file == "model.joblib"
    assert m.onnx_inputs == []
    import platform

    import sklearn

    assert m.source.sklearn_version == sklearn.__version__
    assert m.source.numpy_version == np.__version__
    assert m.source.python_version == platform.python_version()
    assert sorted(p.name for p in result.path.iterdir()) == [
        "bundle.json",
        "expected.json",
        "model.joblib",
        "sample.json",
    ]
    reloaded = joblib.load(result.path / "model.joblib")
    Xo = _original_input(est, X, 20)
    np.testing.assert_array_equal(reloaded.predict(Xo), est.predict(Xo))


def test_zoo_covers_the_kinds_users_bring() -> None:
    assert len(CASES) >= 14
    assert len({c.id for c in CASES}) == len(CASES)
    assert sum(c.expect == "onnx" for c in CASES) >= 14
