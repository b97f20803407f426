"""``pack_bundle``: schema inference, precision fallback, ONNX files, synthesized rows, bad input."""

from __future__ import annotations

import errno
import json
import os
import pickle
import time
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest

from bundlegate.bundle import read_bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import (
    BundleExists,
    InvalidName,
    ModelFileError,
    NotAnEstimator,
    ParityFailed,
    SampleMismatch,
)
from bundlegate.packer import PackOptions, pack_bundle
from bundlegate.runtime import load_model
from packer_zoo import IRIS_FEATURES, iris, mixed


def _dump(tmp_path: Path, name: str, obj: Any) -> Path:
    path = tmp_path / name
    joblib.dump(obj, path)
    return path


def _csv(tmp_path: Path, name: str, frame: pd.DataFrame) -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def iris_model() -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="module")
def mixed_model() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    X, y = mixed()
    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), ["bmi", "bp", "s5"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")
                ),
                ["band", "sex"],
            ),
        ]
    )
    return Pipeline([("columns", columns), ("clf", LogisticRegression(max_iter=500))]).fit(X, y)


def _served(path: Path, records: list[dict[str, Any]]) -> Any:
    bundle = read_bundle(path)
    return load_model(bundle).predict(CompiledSchema(bundle.manifest).from_records(records))


# ------------------------------------------------------------------------------------------ what is written


def test_numeric_array_model_gets_named_features_and_classes(tmp_path: Path, iris_model: Any) -> None:
    X, _ = iris()
    np.save(tmp_path / "iris.npy", X)
    result = pack_bundle(
        _dump(tmp_path, "iris.pkl", iris_model),
        PackOptions(
            name="iris",
            repo=tmp_path / "repo",
            sample=tmp_path / "iris.npy",
            features=IRIS_FEATURES,
            description="flowers",
            tags={"team": "ml"},
            metrics={"accuracy": 0.97},
        ),
    )
    m = result.manifest
    assert result.path == tmp_path / "repo" / "iris" / "1"
    assert m.feature_names == IRIS_FEATURES
    assert [i.dtype for i in m.inputs] == ["float64"] * 4
    assert m.inputs[2].min == pytest.approx(1.0)
    assert m.inputs[2].max == pytest.approx(6.9)
    assert m.onnx_inputs[0].name == "input"
    assert m.onnx_inputs[0].features == IRIS_FEATURES
    assert m.classes == ["setosa", "versicolor", "virginica"]
    assert (m.description, m.tags, m.metrics) == ("flowers", {"team": "ml"}, {"accuracy": 0.97})
    assert m.source.estimator == "sklearn.linear_model._logistic.LogisticRegression"
    assert m.source.converter == "skl2onnx"
    assert m.source.model_file == "iris.pkl"


def test_array_model_without_names_gets_f0_to_fn(tmp_path: Path, iris_model: Any) -> None:
    X, _ = iris()
    np.save(tmp_path / "iris.npy", X)
    m = pack_bundle(
        _dump(tmp_path, "iris.pkl", iris_model),
        PackOptions(name="iris", repo=tmp_path / "repo", sample=tmp_path / "iris.npy"),
    ).manifest
    assert m.feature_names == ["f0", "f1", "f2", "f3"]


def test_mixed_pipeline_schema_and_served_answers(tmp_path: Path, mixed_model: Any) -> None:
    X, _ = mixed()
    result = pack_bundle(
        _dump(tmp_path, "m.joblib", mixed_model),
        PackOptions(name="risk", repo=tmp_path / "repo", sample=_csv(tmp_path, "s.csv", X)),
    )
    m = result.manifest
    specs = {i.name: i for i in m.inputs}
    assert m.feature_names == ["band", "sex", "bmi", "bp", "s5"]
    assert specs["band"].dtype == "string"
    assert specs["band"].nullable
    assert specs["band"].categories == ["40s", "50s", "60+", "<40"]
    assert specs["band"].allow_unknown
    assert specs["sex"].categories == ["a", "b"]
    assert specs["bmi"].nullable
    assert specs["bp"].dtype == "float64"
    assert {o.name: o.dtype for o in m.onnx_inputs} == {
        "band": "string",
        "sex": "string",
        "bmi": "float32",
        "bp": "float32",
        "s5": "float32",
    }
    # a null string and an unseen category are answered as scikit-learn answers NaN and the category
    records = [
        {"band": None, "sex": "a", "bmi": None, "bp": 80.0, "s5": 4.5},
        {"band": "teen", "sex": "b", "bmi": 25.0, "bp": 90.0, "s5": 5.0},
    ]
    served = _served(result.path, records)
    frame = pd.DataFrame(records).astype({"bmi": float})
    frame["band"] = frame["band"].astype(object).where(frame["band"].notna(), np.nan)
    np.testing.assert_allclose(served.probabilities, mixed_model.predict_proba(frame), atol=1e-5)


def test_reference_statistics_and_stored_rows(tmp_path: Path, mixed_model: Any) -> None:
    X, _ = mixed()
    result = pack_bundle(
        _dump(tmp_path, "m.joblib", mixed_model),
        PackOptions(name="risk", repo=tmp_path / "repo", sample=_csv(tmp_path, "s.csv", X)),
    )
    ref = result.manifest.reference
    assert ref is not None
    assert ref.rows == len(X)
    feats = {f.name: f for f in ref.features}
    assert feats["bmi"].kind == "numeric"
    assert feats["bmi"].null_rate == pytest.approx(X["bmi"].isna().mean(), abs=1e-6)
    assert sum(feats["bmi"].counts or []) == X["bmi"].notna().sum()
    assert feats["band"].kind == "categorical"
    assert sum((feats["band"].frequencies or {}).values()) == pytest.approx(1.0, abs=1e-4)
    assert ref.predictions is not None
    assert set((ref.predictions.frequencies or {}).keys()) == {"high", "low"}

    sample = json.loads((result.path / "sample.json").read_text())
    expected = json.loads((result.path / "expected.json").read_text())
    assert len(sample) == 20
    assert sample[0]["band"] is None  # row 0 has a missing band
    assert expected["labels"] == mixed_model.predict(X.head(20)).tolist()


def test_float32_parity_failure_falls_back_to_double(tmp_path: Path) -> None:
    """Epoch seconds lose minutes in float32; the double conversion keeps them."""
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(0)
    t = 1.7e9 + rng.uniform(0, 86400 * 30, 200)
    X = np.c_[t, rng.normal(size=200)]
    reg = LinearRegression().fit(X, (t - 1.7e9) / 3600 + 2 * X[:, 1])
    np.save(tmp_path / "ts.npy", X)
    result = pack_bundle(
        _dump(tmp_path, "ts.joblib", reg),
        PackOptions(name="ts", repo=tmp_path / "repo", sample=tmp_path / "ts.npy", features=["epoch_s", "x"]),
    )
    m = result.manifest
    assert any("float32 conversion fails parity" in n for n in result.notes)
    assert m.source.precision == "float64"
    assert m.onnx_inputs[0].dtype == "float64"
    assert m.parity is not None
    assert m.parity.max_abs_diff_values is not None
    assert m.parity.max_abs_diff_values < 1e-6
    served = _served(result.path, [{"epoch_s": float(a), "x": float(b)} for a, b in X[:5]])
    np.testing.assert_allclose(np.asarray(served.values).ravel(), reg.predict(X[:5]), atol=1e-6)


def test_without_sample_rows_are_synthesized(tmp_path: Path, iris_model: Any, mixed_model: Any) -> None:
    m = pack_bundle(
        _dump(tmp_path, "iris.pkl", iris_model),
        PackOptions(name="iris", repo=tmp_path / "repo", features=IRIS_FEATURES),
    ).manifest
    assert m.parity is not None
    assert m.parity.sample == "synthesized"
    assert m.parity.rows == 200
    assert m.parity.passed

    m = pack_bundle(
        _dump(tmp_path, "m.pkl", mixed_model), PackOptions(name="risk", repo=tmp_path / "repo")
    ).manifest
    assert m.parity is not None
    assert m.parity.sample == "synthesized"
    assert m.parity.passed
    assert {i.name: i.dtype for i in m.inputs}["band"] == "string"


def test_headerless_csv_keeps_its_first_row(tmp_path: Path, iris_model: Any) -> None:
    X, _ = iris()
    np.savetxt(tmp_path / "x.csv", X, delimiter=",")
    m = pack_bundle(
        _dump(tmp_path, "iris.pkl", iris_model),
        PackOptions(name="iris", repo=tmp_path / "repo", sample=tmp_path / "x.csv"),
    ).manifest
    assert m.feature_names == ["f0", "f1", "f2", "f3"]
    assert m.parity is not None
    assert m.parity.rows == 150


def test_json_records_sample(tmp_path: Path, mixed_model: Any) -> None:
    X, _ = mixed()
    records = [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in X.head(50).to_dict("records")]
    (tmp_path / "s.json").write_text(json.dumps(records))
    m = pack_bundle(
        _dump(tmp_path, "m.pkl", mixed_model),
        PackOptions(name="risk", repo=tmp_path / "repo", sample=tmp_path / "s.json"),
    ).manifest
    assert m.parity is not None
    assert m.parity.rows == 50
    assert m.parity.passed


def test_integer_classes_stay_integers(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    X, _ = iris()
    y = np.repeat([3, 7, 9], 50)
    clf = DecisionTreeClassifier(random_state=0, max_depth=3).fit(X, y)
    np.save(tmp_path / "x.npy", X)
    result = pack_bundle(
        _dump(tmp_path, "t.pkl", clf),
        PackOptions(name="t", repo=tmp_path / "repo", sample=tmp_path / "x.npy"),
    )
    assert result.manifest.classes == [3, 7, 9]
    served = _served(result.path, [dict(zip(["f0", "f1", "f2", "f3"], X[0].tolist(), strict=True))])
    assert served.labels.tolist() == [3]


def test_next_version_and_explicit_version(tmp_path: Path, iris_model: Any) -> None:
    model = _dump(tmp_path, "iris.pkl", iris_model)
    repo = tmp_path / "repo"
    assert (
        pack_bundle(model, PackOptions(name="iris", repo=repo, features=IRIS_FEATURES)).manifest.version == 1
    )
    assert pack_bundle(model, PackOptions(name="iris", repo=repo, version=5)).manifest.version == 5
    assert pack_bundle(model, PackOptions(name="iris", repo=repo)).manifest.version == 6


# ------------------------------------------------------------------------------------------ ONNX files


def _onnx_file(tmp_path: Path, model: Any, zipmap: bool = False) -> Path:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[("X", FloatTensorType([None, 4]))],
        options={id(model): {"zipmap": zipmap}},
        target_opset=17,
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(onx.SerializeToString())
    return path


def test_existing_onnx_file(tmp_path: Path, iris_model: Any) -> None:
    X, _ = iris()
    np.save(tmp_path / "iris.npy", X)
    result = pack_bundle(
        _onnx_file(tmp_path, iris_model),
        PackOptions(
            name="iris", repo=tmp_path / "repo", sample=tmp_path / "iris.npy", features=IRIS_FEATURES
        ),
    )
    m = result.manifest
    assert m.task == "classification"
    assert m.classes == ["setosa", "versicolor", "virginica"]
    assert m.parity is None
    assert m.onnx_inputs[0].name == "X"
    served = _served(result.path, [dict(zip(IRIS_FEATURES, X[100].tolist(), strict=True))])
    assert served.labels.tolist() == ["virginica"]


def test_onnx_file_with_zipmap_is_refused(tmp_path: Path, iris_model: Any) -> None:
    X, _ = iris()
    np.save(tmp_path / "iris.npy", X)
    with pytest.raises(ModelFileError, match="zipmap"):
        pack_bundle(
            _onnx_file(tmp_path, iris_model, zipmap=True),
            PackOptions(name="iris", repo=tmp_path / "repo", sample=tmp_path / "iris.npy"),
        )
    assert not (tmp_path / "repo" / "iris").exists()


def test_corrupt_onnx_file(tmp_path: Path) -> None:
    (tmp_path / "bad.onnx").write_bytes(b"\x00not onnx at all")
    with pytest.raises(ModelFileError, match="not a valid ONNX model"):
        pack_bundle(tmp_path / "bad.onnx", PackOptions(name="x", repo=tmp_path / "repo"))


# ------------------------------------------------------------------------------------------ bad input


def test_not_a_pickle(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_text("name,age\nbob,3\n")
    with pytest.raises(ModelFileError, match="not a model file"):
        pack_bundle(tmp_path / "model.pkl", PackOptions(name="x", repo=tmp_path / "repo"))


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="no such model file"):
        pack_bundle(tmp_path / "nope.pkl", PackOptions(name="x", repo=tmp_path / "repo"))


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"weights": [1, 2]}, "holds a builtins.dict, not a scikit-learn estimator"),
        ("unfitted", "unfitted LogisticRegression"),
        ("scaler", "StandardScaler, which is neither a classifier nor a regressor"),
    ],
)
def test_pickle_of_something_else(tmp_path: Path, obj: Any, message: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if obj == "unfitted":
        obj = LogisticRegression()
    elif obj == "scaler":
        obj = StandardScaler().fit(np.ones((3, 2)))
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(NotAnEstimator, match=message):
        pack_bundle(path, PackOptions(name="x", repo=tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()


def test_sample_with_missing_and_extra_columns(tmp_path: Path, mixed_model: Any) -> None:
    X, _ = mixed()
    bad = X.drop(columns=["bp"]).assign(target=1)
    with pytest.raises(SampleMismatch, match=r"missing columns \['bp'\].*unexpected columns \['target'\]"):
        pack_bundle(
            _dump(tmp_path, "m.pkl", mixed_model),
            PackOptions(name="risk", repo=tmp_path / "repo", sample=_csv(tmp_path, "s.csv", bad)),
        )


def test_sample_of_the_wrong_width(tmp_path: Path, iris_model: Any) -> None:
    np.save(tmp_path / "x.npy", np.ones((5, 3)))
    with pytest.raises(SampleMismatch, match=r"has 3 columns, iris\.pkl takes 4 features"):
        pack_bundle(
            _dump(tmp_path, "iris.pkl", iris_model),
            PackOptions(name="iris", repo=tmp_path / "repo", sample=tmp_path / "x.npy"),
        )


def test_sample_with_text_for_a_numeric_model(tmp_path: Path, iris_model: Any) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": ["x", "y"], "c": [1.0, 1.0], "d": [0.0, 1.0]})
    with pytest.raises(SampleMismatch, match=r"columns \['b'\] hold text"):
        pack_bundle(
            _dump(tmp_path, "iris.pkl", iris_model),
            PackOptions(name="iris", repo=tmp_path / "repo", sample=_csv(tmp_path, "s.csv", frame)),
        )


def test_unreadable_sample(tmp_path: Path, iris_model: Any) -> None:
    (tmp_path / "x.npy").write_bytes(b"garbage")
    with pytest.raises(SampleMismatch, match="cannot read the sample"):
        pack_bundle(
            _dump(tmp_path, "iris.pkl", iris_model),
            PackOptions(name="iris", repo=tmp_path / "repo", sample=tmp_path / "x.npy"),
        )


def test_wrong_number_of_feature_names(tmp_path: Path, iris_model: Any) -> None:
    with pytest.raises(SampleMismatch, match="--features names 2 features"):
        pack_bundle(
            _dump(tmp_path, "iris.pkl", iris_model),
            PackOptions(name="iris", repo=tmp_path / "repo", features=["a", "b"]),
        )


@pytest.mark.parametrize("name", ["Credit", "../x", "a b", "", "x" * 64, "-lead"])
def test_invalid_name_is_refused_before_any_work(tmp_path: Path, name: str) -> None:
    with pytest.raises(InvalidName):
        pack_bundle(tmp_path / "does-not-matter.pkl", PackOptions(name=name, repo=tmp_path / "repo"))
    assert not (tmp_path / "repo").exists()


def test_existing_version_is_refused(tmp_path: Path, iris_model: Any) -> None:
    model = _dump(tmp_path, "iris.pkl", iris_model)
    pack_bundle(model, PackOptions(name="iris", repo=tmp_path / "repo", version=2))
    before = (tmp_path / "repo" / "iris" / "2" / "bundle.json").read_bytes()
    with pytest.raises(BundleExists, match="iris version 2 already exists"):
        pack_bundle(model, PackOptions(name="iris", repo=tmp_path / "repo", version=2, description="new"))
    assert (tmp_path / "repo" / "iris" / "2" / "bundle.json").read_bytes() == before


def test_output_that_is_a_file(tmp_path: Path, iris_model: Any) -> None:
    (tmp_path / "repo").write_text("not a directory")
    with pytest.raises(OSError):
        pack_bundle(_dump(tmp_path, "iris.pkl", iris_model), PackOptions(name="iris", repo=tmp_path / "repo"))


def test_full_disk_leaves_nothing(tmp_path: Path, iris_model: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import bundlegate.bundle as bundle_module

    def no_space(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(bundle_module, "_write_synced", no_space)
    model = _dump(tmp_path, "iris.pkl", iris_model)
    with pytest.raises(OSError, match="No space left"):
        pack_bundle(model, PackOptions(name="iris", repo=tmp_path / "repo"))
    assert list((tmp_path / "repo" / "iris").iterdir()) == []


def test_parity_failure_without_fallback_names_the_estimator(tmp_path: Path) -> None:
    from sklearn.neighbors import KNeighborsClassifier

    X, y = iris()
    knn = KNeighborsClassifier().fit(X, y)  # iris has duplicate rows: neighbour ties break differently
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(
        ParityFailed, match=r"KNeighborsClassifier cannot be packed as ONNX.*probabilities differ"
    ):
        pack_bundle(
            _dump(tmp_path, "knn.pkl", knn),
            PackOptions(name="knn", repo=tmp_path / "repo", sample=tmp_path / "x.npy"),
        )
    assert not (tmp_path / "repo" / "knn").exists()


@pytest.mark.slow
def test_pack_time_of_a_100_tree_forest(tmp_path: Path) -> None:
    """The issue's budget: a 100-tree forest (depth 8, 20 features) with a 1,000-row sample under 3 s."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    X, y = make_classification(n_samples=1000, n_features=20, n_informative=10, random_state=0)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(20)])
    rf = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(frame, y)
    model, sample = _dump(tmp_path, "rf.joblib", rf), _csv(tmp_path, "s.csv", frame)
    start = time.perf_counter()
    m = pack_bundle(model, PackOptions(name="rf", repo=tmp_path / "repo", sample=sample)).manifest
    elapsed = time.perf_counter() - start
    assert m.runtime == "onnx"
    assert m.parity is not None
    assert m.parity.rows == 1000
    assert elapsed < 3.0
