"""Bundle admission: a model of non-standard operators, one whose outputs disagree with the manifest's
classes, or one that no longer reproduces its stored answers is refused at load, with the reason;
the ONNX check runs in a child process whose memory is capped (real onnxruntime, real processes)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bundle_factory import Built, iris_model, regressor_model, with_files, write
from bundlegate import admission, onnx_check
from bundlegate.bundle import read_bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import BundleError, UnsafePath
from bundlegate.loader import warm_up
from bundlegate.registry import ModelRegistry
from bundlegate.runtime import load_model
from bundlegate.settings import Settings


def _custom_domain_model(domain: str) -> bytes:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["X"], ["variable"], domain=domain)],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("variable", TensorProto.FLOAT, [None, 3])],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    proto = helper.make_model(graph, opset_imports=opsets)
    proto.ir_version = 8
    return bytes(proto.SerializeToString())


def _load_and_warm(tmp_path: Path, built: Built) -> None:
    bundle = read_bundle(write(tmp_path, built))
    model = load_model(bundle)
    warm_up(model, bundle, CompiledSchema(bundle.manifest))


def test_standard_domains_are_admitted_and_others_refused(tmp_path: Path) -> None:
    admission.admit_onnx(_custom_domain_model(""))
    assert onnx_check.problems(_custom_domain_model("ai.onnx")) == []
    with pytest.raises(BundleError, match=r"domain 'com\.example'"):
        admission.admit_onnx(_custom_domain_model("com.example"))
    with pytest.raises(BundleError, match=r"domain 'com\.microsoft'"):
        _load_and_warm(
            tmp_path, with_files(regressor_model(), {"model.onnx": _custom_domain_model("com.microsoft")})
        )


def test_real_models_pass_the_check(tmp_path: Path) -> None:
    for built in (iris_model(), regressor_model()):
        assert onnx_check.problems(built.files["model.onnx"]) == []


def test_a_check_that_runs_out_of_memory_refuses_the_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # no room beyond twice the file: the interpreter itself (~13 MB) and the 8 MiB it reads pass it
    monkeypatch.setattr(admission, "CHECK_BASE_BYTES", 0)
    with pytest.raises(BundleError, match="out of memory or crashed"):
        admission.admit_onnx(b"\x00" * (8 * 1024 * 1024))


def test_external_data_is_refused_by_the_check() -> None:
    from test_runtime import _model_with_initializer

    with pytest.raises(UnsafePath, match="external data"):
        admission.admit_onnx(_model_with_initializer(external=True))


def test_classes_that_disagree_with_the_model_output_refuse_the_version(tmp_path: Path) -> None:
    built = iris_model()
    label = built.manifest.outputs.label
    assert label is not None
    two = label.model_copy(update={"classes": label.classes[:2]})
    outputs = built.manifest.outputs.model_copy(update={"label": two})
    wrong = Built(
        built.manifest.model_copy(update={"outputs": outputs}), built.files, built.estimator, built.X
    )
    with pytest.raises(BundleError, match=r"3 columns, bundle\.json declares 2 classes"):
        _load_and_warm(tmp_path, wrong)


def _with_expected(built: Built, expected: dict[str, object]) -> Built:
    with_file = with_files(built, {"expected.json": json.dumps(expected).encode()})
    manifest = with_file.manifest.model_copy(update={"expected_file": "expected.json"})
    return Built(manifest, with_file.files, built.estimator, built.X)


def _iris_expected() -> dict[str, object]:
    built = iris_model()
    rows = built.X[::30]
    return {
        "labels": built.estimator.predict(rows).tolist(),
        "probabilities": built.estimator.predict_proba(rows).tolist(),
    }


def test_expected_answers_are_replayed_at_warm_up(tmp_path: Path) -> None:
    _load_and_warm(tmp_path / "good", _with_expected(iris_model(), _iris_expected()))
    expected = _iris_expected()
    labels = list(expected["labels"])  # type: ignore[call-overload]
    expected["labels"] = [labels[-1], *labels[1:]]  # the first sample row now "expects" another class
    with pytest.raises(BundleError, match="sample labels differ"):
        _load_and_warm(tmp_path / "labels", _with_expected(iris_model(), expected))
    expected = _iris_expected()
    expected["probabilities"] = (np.asarray(expected["probabilities"]) + 0.01).tolist()
    with pytest.raises(BundleError, match="probabilities differ"):
        _load_and_warm(tmp_path / "probabilities", _with_expected(iris_model(), expected))


async def test_a_refused_version_fails_alone_with_its_reason(tmp_path: Path) -> None:
    write(tmp_path, iris_model())
    write(tmp_path, with_files(regressor_model(), {"model.onnx": _custom_domain_model("com.example")}))
    registry = ModelRegistry(tmp_path, Settings())
    try:
        await registry.start()
        assert registry.get("iris").version == 1
        (price,) = registry.model("price").versions
        assert price.state == "failed"
        assert price.error is not None
        assert "com.example" in price.error
    finally:
        await registry.drain(timeout=5)
