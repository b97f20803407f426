"""Small real bundles for the core tests: fitted sklearn models converted with skl2onnx.

Each ``*_model()`` returns a ``Built``: the manifest (files not yet filled), the bundle files, the fitted
estimator and the rows it was trained on, so tests compare the gateway's answers with sklearn's.
Fitting and converting happen once per test session (``functools.cache``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bundlegate.manifest import (
    FileEntry,
    InputSpec,
    LabelOutput,
    Manifest,
    OnnxInput,
    Outputs,
    Source,
    TensorOutput,
    utc_now,
)

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True, eq=False)
class Built:
    manifest: Manifest
    files: dict[str, bytes]
    estimator: Any
    X: Any  # numpy array (numeric) or pandas DataFrame (mixed)


def _source(estimator: Any) -> Source:
    import sklearn

    return Source(
        estimator=f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        sklearn_version=sklearn.__version__,
        converter="skl2onnx",
        opset=17,
    )


def _manifest(name: str, version: int, files: dict[str, bytes], **fields: Any) -> Manifest:
    entries = [
        FileEntry(name=n, size=len(b), sha256=hashlib.sha256(b).hexdigest()) for n, b in sorted(files.items())
    ]
    return Manifest(name=name, version=version, created_at=utc_now(), files=entries, **fields)


@cache
def iris_model(string_classes: bool = True, c: float = 1.0) -> Built:
    """Logistic regression on iris; another ``c`` (regularisation) answers some rows differently."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    data = load_iris()
    X = data.data
    y = data.target_names[data.target] if string_classes else data.target
    clf = LogisticRegression(max_iter=500, C=c).fit(X, y)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(clf): {"zipmap": False}},
        target_opset=17,
    )
    sample = [dict(zip(IRIS_FEATURES, row, strict=True)) for row in X[::30].tolist()]
    files = {"model.onnx": onx.SerializeToString(), "sample.json": json.dumps(sample).encode()}
    classes = [c.item() for c in clf.classes_]
    manifest = _manifest(
        "iris",
        1,
        files,
        task="classification",
        source=_source(clf),
        inputs=[InputSpec(name=f, dtype="float64") for f in IRIS_FEATURES],
        onnx_inputs=[OnnxInput(name="input", dtype="float32", features=IRIS_FEATURES)],
        outputs=Outputs(
            label=LabelOutput(onnx_name="label", classes=classes),
            probabilities=TensorOutput(onnx_name="probabilities"),
        ),
        sample_file="sample.json",
    )
    return Built(manifest, files, clf, X)


@cache
def mixed_model() -> Built:
    """A credit-like classifier: nullable numeric ``age``, numeric ``income``, nullable string ``city``."""
    import pandas as pd
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    n = 200
    X = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(float),
            "income": rng.normal(50, 10, n),
            "city": rng.choice(["Berlin", "Rome", "Paris", ""], n),
        }
    )
    X.loc[::7, "age"] = np.nan
    y = np.where(X["income"] + (X["city"] == "Rome") * 5 > 52, "approve", "reject")
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    city = Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value="missing", missing_values="")),
            ("onehot", OneHotEncoder(handle_unknown="ignore")),
        ]
    )
    pipe = Pipeline(
        [
            ("columns", ColumnTransformer([("num", numeric, ["age", "income"]), ("cat", city, ["city"])])),
            ("clf", LogisticRegression()),
        ]
    ).fit(X, y)
    onx = convert_sklearn(
        pipe,
        initial_types=[
            ("age", FloatTensorType([None, 1])),
            ("income", FloatTensorType([None, 1])),
            ("city", StringTensorType([None, 1])),
        ],
        options={id(pipe.steps[-1][1]): {"zipmap": False}},
        target_opset=17,
    )
    files = {"model.onnx": onx.SerializeToString()}
    manifest = _manifest(
        "credit",
        1,
        files,
        task="classification",
        source=_source(pipe),
        inputs=[
            InputSpec(name="age", dtype="float64", nullable=True),
            InputSpec(name="income", dtype="float64"),
            InputSpec(name="city", dtype="string", nullable=True, categories=["Berlin", "Paris", "Rome"]),
        ],
        onnx_inputs=[
            OnnxInput(name="age", dtype="float32", features=["age"]),
            OnnxInput(name="income", dtype="float32", features=["income"]),
            OnnxInput(name="city", dtype="string", features=["city"]),
        ],
        outputs=Outputs(
            label=LabelOutput(onnx_name="label", classes=[str(c) for c in pipe.classes_]),
            probabilities=TensorOutput(onnx_name="probabilities"),
        ),
    )
    return Built(manifest, files, pipe, X)


@cache
def regressor_model() -> Built:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(1)
    X = rng.normal(size=(100, 3))
    y = X @ np.array([3.0, -2.0, 0.5]) + 150
    reg = Ridge().fit(X, y)
    onx = convert_sklearn(reg, initial_types=[("X", FloatTensorType([None, 3]))], target_opset=17)
    files = {"model.onnx": onx.SerializeToString()}
    names = ["a", "b", "n"]
    manifest = _manifest(
        "price",
        1,
        files,
        task="regression",
        source=_source(reg),
        inputs=[InputSpec(name=n, dtype="int64" if n == "n" else "float64") for n in names],
        onnx_inputs=[OnnxInput(name="X", dtype="float32", features=names)],
        outputs=Outputs(value=TensorOutput(onnx_name="variable")),
    )
    return Built(manifest, files, reg, X)


def pickled_model(sklearn_version: str | None = None) -> Built:
    """The iris classifier as a ``runtime: sklearn`` bundle (a joblib pickle)."""
    import io

    import joblib

    base = iris_model()
    buf = io.BytesIO()
    joblib.dump(base.estimator, buf)
    files = {"model.joblib": buf.getvalue()}
    source = base.manifest.source
    if sklearn_version is not None:
        source = replace_model(source, sklearn_version=sklearn_version)
    manifest = _manifest(
        "iris-pickle",
        1,
        files,
        task="classification",
        runtime="sklearn",
        model_file="model.joblib",
        source=source,
        inputs=base.manifest.inputs,
        outputs=Outputs(label=base.manifest.outputs.label),
    )
    return Built(manifest, files, base.estimator, base.X)


def replace_model(model: Any, **changes: Any) -> Any:
    """A copy of a frozen pydantic model with some fields changed."""
    return model.model_copy(update=changes)


def with_version(built: Built, version: int, name: str | None = None) -> Built:
    manifest = built.manifest.model_copy(update={"version": version, "name": name or built.manifest.name})
    return replace(built, manifest=manifest)


def with_files(built: Built, files: dict[str, bytes]) -> Built:
    """``built`` with some files replaced and the manifest's digests updated to match them."""
    merged = {**built.files, **files}
    entries = [
        FileEntry(name=n, size=len(b), sha256=hashlib.sha256(b).hexdigest())
        for n, b in sorted(merged.items())
    ]
    return replace(built, manifest=built.manifest.model_copy(update={"files": entries}), files=merged)


def write(repo: Path, built: Built) -> Path:
    """Write ``built`` as ``repo/<name>/<version>/`` with bundle.json and its files."""
    from bundlegate.bundle import write_bundle

    return write_bundle(repo, built.manifest, built.files)


@cache
def slow_model() -> Built:
    """A regressor ``slow`` whose one input ``n`` sets how long it computes: an ONNX ``Loop`` of ``n``
    small matrix products (~1 µs each), then it answers ``n`` back. ``n = 0`` answers at once; ``n =
    1e7`` keeps onnxruntime busy for seconds (a stuck inference)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((32, 32), 0.01, dtype=np.float32), "W")
    start = numpy_helper.from_array(np.ones((1, 32), dtype=np.float32), "v0")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    body = helper.make_graph(
        [
            helper.make_node("MatMul", ["v_in", "W"], ["product"]),
            helper.make_node("Tanh", ["product"], ["v_out"]),
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
        ],
        "step",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, [1, 32]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, [1, 32]),
        ],
    )
    true = helper.make_tensor("true", TensorProto.BOOL, [], [True])
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMax", ["X"], ["most"], keepdims=0),
            helper.make_node("Cast", ["most"], ["trips"], to=TensorProto.INT64),
            helper.make_node("Constant", [], ["cond"], value=true),
            helper.make_node("Loop", ["trips", "cond", "v0"], ["v_final"], body=body),
            helper.make_node("ReduceSum", ["v_final"], ["total"], keepdims=0),
            helper.make_node("Mul", ["total", "zero"], ["nothing"]),
            helper.make_node("Add", ["X", "nothing"], ["variable"]),
        ],
        "slow",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 1])],
        initializer=[weights, start, zero],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    # the warm-up's 2000 trips make a call cost ~2 ms: the gateway runs it in its thread pool
    files = {"model.onnx": model.SerializeToString(), "sample.json": b'[{"n": 0}, {"n": 2000}]'}
    manifest = _manifest(
        "slow",
        1,
        files,
        task="regression",
        source=Source(estimator="onnx.Loop", converter="onnx.helper", opset=17),
        inputs=[InputSpec(name="n", dtype="float64")],
        onnx_inputs=[OnnxInput(name="X", dtype="float32", features=["n"])],
        outputs=Outputs(value=TensorOutput(onnx_name="variable")),
        sample_file="sample.json",
    )
    return Built(manifest, files, None, np.array([[0.0], [10.0]]))
