"""Loaded models answer like the sklearn estimators they came from; unsafe bundles never load."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle_factory import (
    Built,
    iris_model,
    mixed_model,
    pickled_model,
    regressor_model,
    with_files,
    write,
)
from bundlegate.answers import Answers
from bundlegate.bundle import Bundle, read_bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import BundleError, DigestMismatch, UnsafePath
from bundlegate.loader import warm_up
from bundlegate.runtime import OnnxModel, SklearnModel, load_model, refuse_external_data


def _bundle(tmp_path: Path, built: Built) -> Bundle:
    return read_bundle(write(tmp_path, built))


def _load(tmp_path: Path, built: Built, **kwargs: object) -> OnnxModel | SklearnModel:
    return load_model(_bundle(tmp_path, built), **kwargs)  # type: ignore[arg-type]


def test_onnx_classifier_matches_sklearn(tmp_path: Path) -> None:
    built = iris_model()
    model = _load(tmp_path, built)
    assert isinstance(model, OnnxModel)
    schema = CompiledSchema(built.manifest)
    prediction = model.predict(schema.from_rows(built.X.tolist()))
    assert prediction.labels is not None
    assert prediction.probabilities is not None
    assert prediction.labels.tolist() == built.estimator.predict(built.X).tolist()
    np.testing.assert_allclose(prediction.probabilities, built.estimator.predict_proba(built.X), atol=1e-5)


def test_mixed_pipeline_with_missing_values_matches_sklearn(tmp_path: Path) -> None:
    built = mixed_model()
    model = _load(tmp_path, built)
    schema = CompiledSchema(built.manifest)
    X = built.X
    columns = {
        "age": [None if np.isnan(a) else a for a in X["age"]],
        "income": X["income"].tolist(),
        "city": [c or None for c in X["city"]],
    }
    out = Answers(schema.manifest).decode_batch(model.predict(schema.from_columns(columns)))
    assert out["predictions"] == built.estimator.predict(X).tolist()


def test_regressor_values(tmp_path: Path) -> None:
    built = regressor_model()
    model = _load(tmp_path, built)
    schema = CompiledSchema(built.manifest)
    rows = [[0.5, -1.0, 2], [1.0, 2.0, 0]]
    prediction = model.predict(schema.from_rows(rows))
    assert prediction.values is not None
    np.testing.assert_allclose(prediction.values.ravel(), built.estimator.predict(rows), rtol=1e-5)


def test_zipmap_probabilities_become_an_array_in_class_order(tmp_path: Path) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    built = iris_model()
    onx = convert_sklearn(
        built.estimator, initial_types=[("input", FloatTensorType([None, 4]))], target_opset=17
    )
    outputs = built.manifest.outputs.model_copy(
        update={
            "probabilities": built.manifest.outputs.probabilities.model_copy(  # type: ignore[union-attr]
                update={"onnx_name": "output_probability"}
            ),
            "label": built.manifest.outputs.label.model_copy(update={"onnx_name": "output_label"}),
        }  # type: ignore[union-attr]
    )
    zipped = with_files(
        replace(built, manifest=built.manifest.model_copy(update={"outputs": outputs})),
        {"model.onnx": onx.SerializeToString()},
    )
    model = _load(tmp_path, zipped)
    prediction = model.predict(CompiledSchema(zipped.manifest).from_rows(built.X[:3].tolist()))
    assert prediction.probabilities is not None
    np.testing.assert_allclose(
        prediction.probabilities, built.estimator.predict_proba(built.X[:3]), atol=1e-5
    )


def test_a_changed_model_file_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, iris_model())  # verified; then the file changes before the load
    data = bytearray((bundle.path / "model.onnx").read_bytes())
    data[-1] ^= 1
    (bundle.path / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(DigestMismatch):
        load_model(bundle)


def test_a_symlinked_model_file_is_refused(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, iris_model())
    real = tmp_path / "elsewhere.onnx"
    (bundle.path / "model.onnx").rename(real)
    (bundle.path / "model.onnx").symlink_to(real)
    with pytest.raises(UnsafePath):
        load_model(bundle)


def _model_with_initializer(external: bool) -> bytes:
    from onnx import TensorProto, helper, numpy_helper
    from onnx.external_data_helper import convert_model_to_external_data

    weights = numpy_helper.from_array(np.ones((1, 3), dtype=np.float32), name="W")
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W"], ["variable"])],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])],
        initializer=[weights],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    if external:
        convert_model_to_external_data(proto, location="weights.bin", size_threshold=0)
    return bytes(proto.SerializeToString())


def test_external_data_is_refused(tmp_path: Path) -> None:
    refuse_external_data(_model_with_initializer(external=False))
    with pytest.raises(UnsafePath):
        refuse_external_data(_model_with_initializer(external=True))
    with pytest.raises(UnsafePath):
        _load(tmp_path, with_files(regressor_model(), {"model.onnx": _model_with_initializer(external=True)}))
    model = _load(
        tmp_path / "ok", with_files(regressor_model(), {"model.onnx": _model_with_initializer(False)})
    )
    assert model.predict(
        CompiledSchema(regressor_model().manifest).from_rows([[1, 2, 3]])
    ).values.tolist() == [[2.0, 3.0, 4.0]]


def test_bytes_that_are_not_onnx_are_a_bundle_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a valid ONNX protobuf"):
        _load(tmp_path, with_files(iris_model(), {"model.onnx": b"\xff" * 64}))
    with pytest.raises(BundleError, match="not a valid ONNX"):
        refuse_external_data(b"\xff" * 64 + b"location")


def test_inputs_that_disagree_with_the_manifest_are_a_bundle_error(tmp_path: Path) -> None:
    built = iris_model()
    onnx_inputs = [built.manifest.onnx_inputs[0].model_copy(update={"name": "X"})]
    wrong = replace(built, manifest=built.manifest.model_copy(update={"onnx_inputs": onnx_inputs}))
    with pytest.raises(BundleError, match="declares"):
        _load(tmp_path, wrong)


def test_an_input_type_that_disagrees_with_the_manifest_is_a_bundle_error(tmp_path: Path) -> None:
    built = iris_model()
    onnx_inputs = [built.manifest.onnx_inputs[0].model_copy(update={"dtype": "float64"})]
    wrong = replace(built, manifest=built.manifest.model_copy(update={"onnx_inputs": onnx_inputs}))
    with pytest.raises(BundleError, match="tensor"):
        _load(tmp_path, wrong)


def test_pickles_are_refused_without_opt_in(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="allow-pickle"):
        _load(tmp_path, pickled_model())


def test_pickles_are_refused_for_another_sklearn_version(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"scikit-learn 0\.1\.0"):
        _load(tmp_path, pickled_model(sklearn_version="0.1.0"), allow_pickle=True)


def test_pickle_loads_with_opt_in_and_matching_version(tmp_path: Path) -> None:
    built = pickled_model()
    model = _load(tmp_path, built, allow_pickle=True)
    assert isinstance(model, SklearnModel)
    schema = CompiledSchema(built.manifest)
    prediction = model.predict(schema.from_rows(built.X[:10].tolist()))
    assert prediction.labels is not None
    assert prediction.labels.tolist() == built.estimator.predict(built.X[:10]).tolist()


def test_warm_up_runs_the_sample_rows(tmp_path: Path) -> None:
    built = iris_model()
    bundle = _bundle(tmp_path, built)
    model = load_model(bundle)
    rows, seconds = warm_up(model, bundle, CompiledSchema(built.manifest))
    assert rows == 5
    assert seconds > 0
    assert warm_up(model, _bundle(tmp_path, regressor_model()), CompiledSchema(built.manifest)) == (0, 0.0)


def _framed_pickle(**source: Any) -> Built:
    """The mixed (DataFrame) classifier as a ``runtime: sklearn`` bundle."""
    import io

    import joblib

    mixed = mixed_model()
    buf = io.BytesIO()
    joblib.dump(mixed.estimator, buf)
    files = {"model.joblib": buf.getvalue()}
    manifest = pickled_model().manifest.model_copy(
        update={
            "inputs": mixed.manifest.inputs,
            "outputs": mixed.manifest.outputs,
            "source": pickled_model().manifest.source.model_copy(update=source),
        }
    )
    return with_files(
        replace(pickled_model(), manifest=manifest, estimator=mixed.estimator, X=mixed.X), files
    )


def test_pickles_fitted_on_dataframes_get_a_dataframe(tmp_path: Path) -> None:
    import pandas as pd

    built = _framed_pickle(numpy_version=np.__version__, libraries={"pandas": pd.__version__})
    model = _load(tmp_path, built, allow_pickle=True)
    frame = built.X[built.X["city"] != ""].head(30)  # "" is how the gateway feeds a missing string
    records = [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
        for r in frame.to_dict("records")
    ]
    prediction = model.predict(CompiledSchema(built.manifest).from_records(records))
    assert prediction.labels is not None
    assert prediction.labels.tolist() == built.estimator.predict(frame).tolist()
    assert prediction.probabilities is not None
    np.testing.assert_allclose(prediction.probabilities, built.estimator.predict_proba(frame))


@pytest.mark.parametrize(
    ("source", "named"),
    [({"numpy_version": "1.0.0"}, "numpy 1.0.0"), ({"libraries": {"pandas": "0.1"}}, "pandas 0.1")],
)
def test_pickles_need_the_exact_library_versions(tmp_path: Path, source: dict[str, Any], named: str) -> None:
    with pytest.raises(BundleError, match=f"bundle made with {named}, installed"):
        _load(tmp_path, _framed_pickle(**source), allow_pickle=True)
