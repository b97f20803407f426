"""The committed example bundles: valid, served as packed, and what ``make bundles`` rebuilds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from bundlegate.bundle import read_bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.repository import scan_repository
from bundlegate.runtime import load_model

EXAMPLES = Path(__file__).resolve().parent.parent / "bundles"
NAMES = ["diabetes", "diabetes-risk", "iris"]


def _build_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_examples", EXAMPLES / "build_examples.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_examples_are_the_three_documented_bundles() -> None:
    refs = scan_repository(EXAMPLES)
    assert [(r.name, r.version) for r in refs] == [(n, 1) for n in NAMES]
    kinds = {r.name: read_bundle(r.path).manifest for r in refs}
    assert kinds["iris"].onnx_inputs[0].features == [
        "sepal_length",
        "sepal_width",
        "petal_length",
        "petal_width",
    ]
    assert kinds["diabetes"].task == "regression"
    risk = kinds["diabetes-risk"]
    assert {i.dtype for i in risk.inputs} == {"string", "float64"}
    assert all(i.nullable for i in risk.inputs if i.dtype == "string")
    assert all(m.parity is not None and m.parity.passed and m.runtime == "onnx" for m in kinds.values())
    assert sum(p.stat().st_size for p in EXAMPLES.rglob("*") if p.is_file()) < 400_000


@pytest.mark.parametrize("name", NAMES)
def test_examples_serve_their_stored_answers(name: str) -> None:
    bundle = read_bundle(EXAMPLES / name / "1")
    m = bundle.manifest
    assert m.sample_file is not None
    assert m.expected_file is not None
    rows = json.loads(bundle.read_file(m.sample_file))
    expected = json.loads(bundle.read_file(m.expected_file))
    got = load_model(bundle).predict(CompiledSchema(m).from_records(rows))
    if "labels" in expected:
        assert got.labels is not None
        assert got.labels.tolist() == expected["labels"]
        np.testing.assert_allclose(got.probabilities, expected["probabilities"], atol=1e-5)
    else:
        np.testing.assert_allclose(np.asarray(got.values).reshape(-1, 1), expected["values"], atol=1e-3)


@pytest.mark.slow
def test_make_bundles_rebuilds_the_same_models(tmp_path: Path) -> None:
    _build_script().main(["build_examples.py", str(tmp_path)])
    for name in NAMES:
        committed, rebuilt = EXAMPLES / name / "1", tmp_path / name / "1"
        for fname in ("sample.json", "expected.json"):
            a = json.loads((committed / fname).read_text())
            b = json.loads((rebuilt / fname).read_text())
            if fname == "sample.json":
                assert a == b
            else:
                assert a.get("labels") == b.get("labels")
                for key in ("probabilities", "values"):
                    if key in a:
                        np.testing.assert_allclose(a[key], b[key], rtol=1e-9)
        old = json.loads((committed / "bundle.json").read_text())
        new = json.loads((rebuilt / "bundle.json").read_text())
        for key in ("inputs", "onnx_inputs", "outputs", "task", "runtime"):
            assert old[key] == new[key], (name, key)
