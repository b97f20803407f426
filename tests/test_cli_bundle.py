"""``bundle pack|inspect|verify|list`` as a user runs them (click's CliRunner on the real group)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from bundlegate.bundle import manifest_digest
from bundlegate.cli import cli
from packer_zoo import IRIS_FEATURES, iris, mixed

EXAMPLES = Path(__file__).resolve().parent.parent / "bundles"


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for f in fragments:
        assert f in errors[0], errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A fitted iris model (array), a mixed pipeline (DataFrame) and their samples."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    d = tmp_path_factory.mktemp("inputs")
    X, y = iris()
    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), d / "iris.pkl")
    np.save(d / "iris.npy", X)
    M, my = mixed()
    pipe = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        ("num", SimpleImputer(), ["bmi", "bp", "s5"]),
                        (
                            "cat",
                            make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder()),
                            ["band"],
                        ),
                        ("sex", OneHotEncoder(handle_unknown="ignore"), ["sex"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(M, my)
    joblib.dump(pipe, d / "risk.joblib")
    M.to_csv(d / "risk.csv", index=False)
    return {
        "iris": d / "iris.pkl",
        "iris_sample": d / "iris.npy",
        "risk": d / "risk.joblib",
        "risk_sample": d / "risk.csv",
    }


def pack_iris(files: dict[str, Path], out: Path, *extra: str) -> Result:
    return run(
        "pack", files["iris"], "--name", "iris", "--sample", files["iris_sample"], "--features",
        ",".join(IRIS_FEATURES), "--out", out, *extra,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------- pack


def test_pack_writes_the_next_version_and_says_so(files: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "bundles"
    first = pack_iris(files, out, "--description", "flowers", "--tag", "team=ml", "--metric", "accuracy=0.97")
    assert first.exit_code == 0, first.output
    assert f"packed iris version 1 (onnx): {out / 'iris' / '1'}" in first.output
    assert "passed on 150 provided rows" in first.output
    second = pack_iris(files, out, "--metric", "owner=ana")
    assert second.exit_code == 0, second.output
    assert "packed iris version 2" in second.output
    m = json.loads((out / "iris" / "1" / "bundle.json").read_text())
    assert m["description"] == "flowers"
    assert m["tags"] == {"team": "ml"}
    assert m["metrics"] == {"accuracy": 0.97}
    assert json.loads((out / "iris" / "2" / "bundle.json").read_text())["metrics"] == {"owner": "ana"}


def test_pack_mixed_pipeline_from_csv(files: dict[str, Path], tmp_path: Path) -> None:
    result = run("pack", files["risk"], "--name", "risk", "--sample", files["risk_sample"], "--out", tmp_path)
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "risk" / "1" / "bundle.json").read_text())
    assert [i["name"] for i in m["inputs"]] == ["band", "sex", "bmi", "bp", "s5"]
    assert m["inputs"][1]["categories"] == ["a", "b"]


def test_pack_explicit_existing_version_is_refused(files: dict[str, Path], tmp_path: Path) -> None:
    assert pack_iris(files, tmp_path, "--version", "3").exit_code == 0
    again = pack_iris(files, tmp_path, "--version", "3")
    assert_one_line_error(again, "iris version 3 already exists")
    assert sorted(p.name for p in (tmp_path / "iris").iterdir()) == ["3"]


@pytest.mark.parametrize("name", ["Iris", "../iris", "has space"])
def test_pack_invalid_name(files: dict[str, Path], tmp_path: Path, name: str) -> None:
    result = run("pack", files["iris"], "--name", name, "--out", tmp_path / "out")
    assert_one_line_error(result, "invalid bundle name")
    assert not (tmp_path / "out").exists()


def test_pack_not_a_pickle(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"\x89PNG\r\n\x1a\n not a model")
    result = run("pack", tmp_path / "model.pkl", "--name", "x", "--out", tmp_path / "out")
    assert_one_line_error(result, "model.pkl is not a model file")


def test_pack_pickle_of_a_non_estimator(tmp_path: Path) -> None:
    joblib.dump([1, 2, 3], tmp_path / "model.joblib")
    result = run("pack", tmp_path / "model.joblib", "--name", "x", "--out", tmp_path / "out")
    assert_one_line_error(result, "holds a builtins.list, not a scikit-learn estimator")


def test_pack_sample_that_does_not_match(files: dict[str, Path], tmp_path: Path) -> None:
    frame = pd.read_csv(files["risk_sample"]).rename(columns={"bp": "blood_pressure"})
    frame.to_csv(tmp_path / "s.csv", index=False)
    result = run("pack", files["risk"], "--name", "risk", "--sample", tmp_path / "s.csv", "--out", tmp_path)
    assert_one_line_error(result, "missing columns ['bp']", "unexpected columns ['blood_pressure']")
    assert not (tmp_path / "risk").exists()


def test_pack_into_a_file_is_an_error(files: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    result = pack_iris(files, tmp_path / "out")
    assert result.exit_code in (1, 2)
    assert "Traceback" not in result.output
    assert result.output.startswith(("Error: ", "Usage: "))


def test_pack_full_disk_leaves_nothing(
    files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import os

    import bundlegate.bundle as bundle_module

    def full(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(bundle_module, "_write_synced", full)
    result = pack_iris(files, tmp_path)
    assert_one_line_error(result, "No space left on device")
    assert list((tmp_path / "iris").iterdir()) == []


def test_pack_fallback_flag(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris()
    joblib.dump(
        make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=500)).fit(X, y),
        tmp_path / "m.pkl",
    )
    np.save(tmp_path / "x.npy", X)
    base = (
        "pack",
        tmp_path / "m.pkl",
        "--name",
        "logiris",
        "--sample",
        tmp_path / "x.npy",
        "--out",
        tmp_path / "out",
    )
    refused = run(*base)
    assert_one_line_error(
        refused, "Pipeline(FunctionTransformer → LogisticRegression)", "--allow-pickle-fallback"
    )
    assert not (tmp_path / "out" / "logiris").exists()
    packed = run(*base, "--allow-pickle-fallback")
    assert packed.exit_code == 0, packed.output
    assert "packed logiris version 1 (sklearn)" in packed.output
    verified = run("verify", tmp_path / "out" / "logiris" / "1")
    assert verified.exit_code == 0
    assert "model not run: runtime sklearn" in verified.output
    replayed = run("verify", tmp_path / "out" / "logiris" / "1", "--allow-pickle")
    assert replayed.exit_code == 0, replayed.output
    assert "20 stored sample rows reproduce the pack-time predictions" in replayed.output


def test_pack_bad_tag_is_a_usage_error(files: dict[str, Path], tmp_path: Path) -> None:
    result = pack_iris(files, tmp_path, "--tag", "no-equals-sign")
    assert result.exit_code == 2
    assert "expected KEY=VALUE" in result.output


# ------------------------------------------------------------------------------------- inspect / verify


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the committed example bundles."""
    shutil.copytree(EXAMPLES, tmp_path / "bundles", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return tmp_path / "bundles"


def test_inspect_shows_what_the_bundle_expects_and_answers(repo: Path) -> None:
    result = run("inspect", repo / "diabetes-risk" / "1")
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("diabetes-risk version 1  (classification, runtime onnx")
    assert "age_band  string   nullable; categories 40-49, 50-59, 60+, <40" in out
    assert "label: one of high, low" in out
    assert "parity: passed on 442 provided rows: labels agree 100.00%" in out


def test_inspect_json_is_the_manifest(repo: Path) -> None:
    result = run("inspect", repo / "iris" / "1", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.output)
    assert doc == json.loads((repo / "iris" / "1" / "bundle.json").read_text())
    assert doc["outputs"]["label"]["classes"] == ["setosa", "versicolor", "virginica"]


@pytest.mark.parametrize("command", ["inspect", "verify"])
def test_corrupted_bundles_are_refused(repo: Path, command: str) -> None:
    path = repo / "iris" / "1"
    (path / "model.onnx").write_bytes((path / "model.onnx").read_bytes()[:-4])
    assert_one_line_error(run(command, path), "model.onnx does not match its size/sha256")
    (path / "bundle.json").write_text("{ broken")
    assert_one_line_error(run(command, path), "bundle.json is not valid JSON")
    assert_one_line_error(run(command, repo / "nope" / "1"), "no such bundle directory")


def test_verify_replays_the_stored_rows(repo: Path) -> None:
    for name in ("iris", "diabetes-risk", "diabetes"):
        result = run("verify", repo / name / "1")
        assert result.exit_code == 0, result.output
        assert "files match their sha256" in result.output
        assert "20 stored sample rows reproduce the pack-time predictions" in result.output


def _rewrite(path: Path, name: str, doc: Any) -> None:
    """Replace a bundle file and fix its digest, as a careless edit that keeps the manifest consistent."""
    import hashlib

    data = json.dumps(doc).encode()
    (path / name).write_bytes(data)
    manifest = json.loads((path / "bundle.json").read_text())
    for f in manifest["files"]:
        if f["name"] == name:
            f["size"], f["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (path / "bundle.json").write_text(json.dumps(manifest))
    (path / "bundle.json.sha256").write_bytes(manifest_digest((path / "bundle.json").read_bytes()))


def test_verify_notices_answers_that_changed(repo: Path) -> None:
    path = repo / "iris" / "1"
    expected = json.loads((path / "expected.json").read_text())
    expected["labels"][0] = "virginica"
    _rewrite(path, "expected.json", expected)
    assert_one_line_error(run("verify", path), "verification failed: 1 of 20 sample labels differ")

    path = repo / "diabetes" / "1"
    expected = json.loads((path / "expected.json").read_text())
    expected["values"][3][0] += 1.0
    _rewrite(path, "expected.json", expected)
    assert_one_line_error(run("verify", path), "verification failed: values differ")


def test_verify_notices_a_moved_bundle(repo: Path) -> None:
    (repo / "iris" / "1").rename(repo / "iris" / "7")
    assert_one_line_error(run("verify", repo / "iris" / "7"), "bundle.json says iris version 1")


# ------------------------------------------------------------------------------------------------- list


def test_list_names_versions_runtime_parity_and_time(repo: Path) -> None:
    result = run("list", repo)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "VERSION", "RUNTIME", "PARITY", "CREATED"]
    rows = [line.split() for line in lines[1:]]
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("diabetes", "1", "onnx", "passed"),
        ("diabetes-risk", "1", "onnx", "passed"),
        ("iris", "1", "onnx", "passed"),
    ]
    assert all(r[4].endswith("Z") for r in rows)


def test_list_json_and_broken_bundles(repo: Path) -> None:
    (repo / "iris" / "1" / "bundle.json").write_text("[]")
    result = run("list", repo, "--json")
    assert result.exit_code == 0
    docs = [json.loads(line) for line in result.output.splitlines()]
    assert [d["name"] for d in docs] == ["diabetes", "diabetes-risk", "iris"]
    assert docs[0]["runtime"] == "onnx"
    assert "not a format v1 manifest" in docs[2]["error"]
    table = run("list", repo)
    assert "invalid:" in table.output.splitlines()[-1]


def test_list_of_a_missing_repository(tmp_path: Path) -> None:
    assert_one_line_error(run("list", tmp_path / "missing"), "bundle repository is not a directory")


def test_list_of_an_empty_repository(tmp_path: Path) -> None:
    result = run("list", tmp_path)
    assert result.exit_code == 0
    assert result.output.strip() == f"no bundles in {tmp_path}"
