"""What ``bundle pack`` is handed, as a user runs it: hostile pickles, files that are no model, skops
files, MLflow model directories, Ctrl-C, and fallbacks the gateway could not serve."""

from __future__ import annotations

import json
import operator
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner, Result

from bundlegate.bundle import read_bundle
from bundlegate.cli import cli
from bundlegate.errors import ConversionFailed, ModelFileError, ParityFailed
from bundlegate.packer import PackOptions, pack_bundle
from packer_zoo import IRIS_FEATURES, iris


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    return errors[0]


class WritesMarker:
    """A pickle whose loading would run ``os.system`` (``posix.system``) and create a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


class EvalsMarker:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (f"open({str(self.marker)!r}, 'w').close()",))


def calls_global(module: str, name: str, *args: Any) -> bytes:
    """A pickle that calls the global ``module`` ``name``, spelt as given, with ``args`` as it loads."""
    return b"\x80\x02c" + f"{module}\n{name}\n".encode() + pickle.dumps(args, protocol=2)[2:-1] + b"R."


@pytest.fixture(scope="module")
def iris_model() -> Any:
    from sklearn.linear_model import LogisticRegression

    X, y = iris()
    return LogisticRegression(max_iter=500).fit(X, y)


# ------------------------------------------------------------------------------------------ unpickling


@pytest.mark.parametrize(
    ("payload", "named"), [(WritesMarker, "posix.system"), (EvalsMarker, "builtins.eval")]
)
def test_a_hostile_pickle_is_refused_by_name_before_it_runs(tmp_path: Path, payload: Any, named: str) -> None:
    marker = tmp_path / "marker"
    with (tmp_path / "evil.pkl").open("wb") as f:
        pickle.dump(payload(marker), f)
    error = one_line_error(run("pack", tmp_path / "evil.pkl", "--name", "evil", "--out", tmp_path / "out"))
    assert named in error
    assert "--trust-pickle" in error
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_hostile_pickle_inside_a_model_is_refused_too(tmp_path: Path, iris_model: Any) -> None:
    marker = tmp_path / "marker"
    iris_model.evil = WritesMarker(marker)  # an attribute of a real estimator
    try:
        joblib.dump(iris_model, tmp_path / "model.joblib")
    finally:
        del iris_model.evil
    with pytest.raises(ModelFileError, match=r"posix\.system"):
        pack_bundle(tmp_path / "model.joblib", PackOptions(name="x", repo=tmp_path / "out"))
    assert not marker.exists()


def test_trust_pickle_loads_as_it_is_and_warns(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with (tmp_path / "evil.pkl").open("wb") as f:
        pickle.dump(WritesMarker(marker), f)
    result = run("pack", tmp_path / "evil.pkl", "--name", "evil", "--out", tmp_path / "out", "--trust-pickle")
    assert "warning: --trust-pickle" in result.output
    assert marker.exists()  # what the allowlist stops is real
    assert "not a scikit-learn estimator" in one_line_error(result)


def test_models_of_the_scientific_stack_load_through_the_allowlist(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_diabetes(return_X_y=True, as_frame=True)
    for i, est in enumerate(
        [
            RandomForestRegressor(n_estimators=5, random_state=0),
            make_pipeline(FunctionTransformer(np.tanh), KNeighborsRegressor()),
        ]
    ):
        est.fit(X, y)
        with (tmp_path / f"m{i}.pkl").open("wb") as f:
            pickle.dump(est, f, protocol=2)  # an old protocol: copyreg and _codecs globals
        from bundlegate.packer.model_file import load_model_file

        loaded = load_model_file(tmp_path / f"m{i}.pkl").estimator
        np.testing.assert_array_equal(loaded.predict(X.head(20)), est.predict(X.head(20)))


@pytest.mark.parametrize(
    ("module", "name", "args"),
    [
        ("pandas._config.localization", "subprocess.Popen", lambda m: (["touch", m],)),  # a dotted name
        ("sklearn", "logging.FileHandler", lambda m: (m,)),
        ("pandas", "HDFStore", lambda m: (m, "w")),  # re-exported from pandas.io
        ("pandas", "ExcelWriter", lambda m: (m,)),
        ("sklearn.callback._transport", "Listener", lambda m: (m, "AF_UNIX")),  # multiprocessing's
        ("joblib.numpy_pickle", "BinaryZlibFile", lambda m: (m, "wb")),  # joblib.compressor's
        ("numpy", "memmap", lambda m: (m, "uint8", "w+", 0, (1,))),
        ("numpy", "save", lambda m: (m, [1])),
        ("functools", "partial", lambda m: (os.system, f"touch {m}")),
    ],
)
def test_a_global_reached_through_a_safe_module_is_refused_before_it_runs(
    tmp_path: Path, module: str, name: str, args: Any
) -> None:
    marker = tmp_path / "marker.npy"
    (tmp_path / "evil.pkl").write_bytes(calls_global(module, name, *args(str(marker))))
    error = one_line_error(run("pack", tmp_path / "evil.pkl", "--name", "evil", "--out", tmp_path / "out"))
    assert f"names {module}.{name}" in error
    assert "not part of a model" in error
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_a_joblib_array_file_beside_the_model_is_not_loaded(tmp_path: Path) -> None:
    """joblib's old array wrapper loads the ``.npy`` file it names with pickles allowed."""
    from joblib.numpy_pickle_compat import NDArrayWrapper

    marker = tmp_path / "marker"
    np.save(tmp_path / "arr.npy", np.array([WritesMarker(marker)], dtype=object), allow_pickle=True)
    data = pickle.dumps(NDArrayWrapper("arr.npy", np.ndarray), protocol=2)
    data = data.replace(b"joblib.numpy_pickle_compat\n", b"joblib.numpy_pickle\n")
    (tmp_path / "m.pkl").write_bytes(data)
    error = one_line_error(run("pack", tmp_path / "m.pkl", "--name", "m", "--out", tmp_path / "out"))
    assert "names joblib.numpy_pickle.NDArrayWrapper" in error
    assert not marker.exists()


def test_an_object_array_in_a_joblib_file_goes_through_the_allowlist(tmp_path: Path, iris_model: Any) -> None:
    """joblib writes object arrays as a pickle of their own; older joblib read it with pickle.load."""
    marker = tmp_path / "marker"
    iris_model.evil = np.array([WritesMarker(marker)], dtype=object)
    try:
        joblib.dump(iris_model, tmp_path / "model.joblib")
    finally:
        del iris_model.evil
    with pytest.raises(ModelFileError, match=r"names posix\.system"):
        pack_bundle(tmp_path / "model.joblib", PackOptions(name="x", repo=tmp_path / "out"))
    assert not marker.exists()


def test_a_pickle_cannot_set_attributes_of_a_class(tmp_path: Path) -> None:
    """``BUILD`` on a global would change the class for the whole process (``predict`` of every model)."""
    from sklearn.base import BaseEstimator

    state = pickle.dumps((None, {"bundlegate_test_marker": 1}), protocol=2)[2:-1]
    (tmp_path / "m.pkl").write_bytes(b"\x80\x02csklearn.base\nBaseEstimator\n" + state + b"b.")
    try:
        error = one_line_error(run("pack", tmp_path / "m.pkl", "--name", "m", "--out", tmp_path / "out"))
        assert "sets attributes of sklearn.base.BaseEstimator" in error
        assert not hasattr(BaseEstimator, "bundlegate_test_marker")
    finally:
        if hasattr(BaseEstimator, "bundlegate_test_marker"):
            del BaseEstimator.bundlegate_test_marker


def test_a_scorer_that_calls_a_method_by_name_is_refused(tmp_path: Path) -> None:
    """A scorer calls ``getattr(estimator, response_method)(X)``: with a partial binding an XGBoost
    model and a path, ``save_model`` writes a file while the pipeline transforms the sample."""
    if os.environ.get("CI", "").lower() != "true":
        pytest.importorskip("xgboost")
    import functools

    import xgboost
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics._scorer import _Scorer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris()
    marker = tmp_path / "marker.json"
    booster = xgboost.XGBClassifier(n_estimators=2).fit(X, y == "setosa")
    scorer = _Scorer(np.add, 1, {}, response_method="save_model")
    for func in (functools.partial(scorer, booster, str(marker), None), scorer):
        pipe = make_pipeline(FunctionTransformer(func), LogisticRegression(max_iter=500))
        pipe.steps[-1] = ("logisticregression", LogisticRegression(max_iter=500).fit(X, y))
        joblib.dump(pipe, tmp_path / "m.joblib")
        with pytest.raises(
            ModelFileError, match=r"names (functools\.partial|sklearn\.metrics\._scorer\._Scorer)"
        ):
            pack_bundle(tmp_path / "m.joblib", PackOptions(name="x", repo=tmp_path / "out"))
        assert not marker.exists()


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("posix", "system"),
        ("builtins", "getattr"),
        ("builtins", "exec"),
        ("builtins", "type"),
        ("subprocess", "Popen"),
        ("numpy", "memmap"),  # a class of a safe package whose constructor writes files
        ("numpy.lib.npyio", "NpzFile"),
        ("numpy.lib._npyio_impl", "NpzFile"),  # reads any file it is given
        ("numpy", "load"),
        ("numpy", "fromfile"),
        ("numpy", "ndarray.tofile"),
        ("numpy._pytesttester", "PytestTester"),  # runs pytest when called
        ("pandas", "read_csv"),
        ("pandas", "read_pickle"),
        ("pandas.io.pytables", "HDFStore"),
        ("pandas.core.computation.expr", "Expr"),  # pandas.eval
        ("xgboost.tracker", "RabitTracker"),  # listens on a port
        ("numpy.testing._private.utils", "runstring"),
        ("sklearn.callback._transport", "Thread"),  # threading's
        ("sklearn", "__class__"),  # the module type
        ("sklearn.metrics._scorer", "_Scorer"),
        ("scipy._lib._util", "MapWrapper"),  # starts a process pool
        ("scipy.odr", "ODR"),  # ODR(overwrite=True) deletes files
        ("joblib.numpy_pickle", "NDArrayWrapper"),
        ("joblib.numpy_pickle", "Unpickler"),  # pickle's
        ("operator", "attrgetter"),
        ("_operator", "methodcaller"),
        ("functools", "partial"),
        ("functools", "reduce"),
        ("copyreg", "__newobj__"),
        ("copyreg", "_reconstructor.__globals__"),
    ],
)
def test_globals_outside_what_models_are_made_of_are_refused(module: str, name: str) -> None:
    from bundlegate.packer.unpickle import allowed_global

    with pytest.raises(ModelFileError, match=re.escape(f"names {module}.{name}")) as refused:
        allowed_global(module, name, "m.pkl")
    assert "which is not part of a model" in str(refused.value)


def test_what_models_are_made_of_is_allowed() -> None:
    from bundlegate.packer.unpickle import allowed_global

    for module, name in [
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy", "tanh"),
        ("scipy.special._ufuncs", "expit"),
        ("pandas.core.frame", "DataFrame"),
        ("sklearn.neighbors._kd_tree", "KDTree"),
        ("sklearn.tree._tree", "Tree"),
        ("sklearn.tree._tree", "__pyx_unpickle_TreeBuilder"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("copyreg", "_reconstructor"),
    ]:
        assert allowed_global(module, name, "m.pkl") is not None


# ------------------------------------------------------------------------------------ not a model file


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        (
            "train.py",
            b"import sklearn\nclass Model: ...\n",
            "train.py is not a model file (it holds Python source)",
        ),
        ("data.csv", b"a,b\n1,2\n", "data.csv is not a model file (it holds a CSV table)"),
        ("blob.bin", b"\x00\x01\x02garbage", "blob.bin is not a model file (it starts with"),
    ],
)
def test_files_that_are_no_model_get_a_one_line_reason(
    tmp_path: Path, name: str, content: bytes, reason: str
) -> None:
    (tmp_path / name).write_bytes(content)
    assert reason in one_line_error(run("pack", tmp_path / name, "--name", "x", "--out", tmp_path / "out"))


def test_a_truncated_pickle_gets_a_one_line_reason(tmp_path: Path, iris_model: Any) -> None:
    joblib.dump(iris_model, tmp_path / "full.joblib")
    data = (tmp_path / "full.joblib").read_bytes()
    (tmp_path / "cut.joblib").write_bytes(data[: len(data) // 2])
    error = one_line_error(run("pack", tmp_path / "cut.joblib", "--name", "x", "--out", tmp_path / "out"))
    assert "cut.joblib is truncated" in error


# ----------------------------------------------------------------------------------------------- skops


def test_skops_files_pack_and_untrusted_types_are_named(tmp_path: Path, iris_model: Any) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X, y = iris()
    np.save(tmp_path / "x.npy", X)
    sio.dump(iris_model, tmp_path / "iris.skops")
    result = run(
        "pack", tmp_path / "iris.skops", "--name", "iris", "--out", tmp_path / "out",
        "--sample", tmp_path / "x.npy", "--features", ",".join(IRIS_FEATURES),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    odd = make_pipeline(FunctionTransformer(operator.neg), LogisticRegression(max_iter=500)).fit(X, y)
    sio.dump(odd, tmp_path / "odd.skops")
    error = one_line_error(run("pack", tmp_path / "odd.skops", "--name", "odd", "--out", tmp_path / "out"))
    assert "_operator.neg" in error
    assert "skops does not trust" in error


# ---------------------------------------------------------------------------------------------- MLflow


def _mlmodel(root: Path, flavors: str, extra: str = "") -> Path:
    root.mkdir(exist_ok=True)
    (root / "MLmodel").write_text(f"flavors:\n{flavors}model_uuid: u-1\nrun_id: r-1\n{extra}")
    return root


def test_mlflow_onnx_flavour_with_an_array_signature(tmp_path: Path, iris_model: Any) -> None:
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, _ = iris()
    onx = convert_sklearn(
        iris_model, initial_types=[("input", FloatTensorType([None, 4]))], options={"zipmap": False}
    )
    root = tmp_path / "m"
    root.mkdir()
    (root / "model.onnx").write_bytes(onx.SerializeToString())
    (root / "input_example.json").write_text(
        json.dumps([dict(zip(IRIS_FEATURES, r, strict=True)) for r in X[:8].tolist()])
    )
    columns = json.dumps([{"type": "double", "name": n, "required": True} for n in IRIS_FEATURES])
    _mlmodel(
        root,
        "  onnx:\n    data: model.onnx\n",
        f"saved_input_example_info:\n  artifact_path: input_example.json\n  type: dataframe\n"
        f"signature:\n  inputs: '{columns}'\n",
    )
    result = run("pack", root, "--name", "iris-onnx", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    m = read_bundle(tmp_path / "out" / "iris-onnx" / "1").manifest
    assert m.feature_names == IRIS_FEATURES
    assert (m.tags["mlflow.model_uuid"], m.tags["mlflow.run_id"]) == ("u-1", "r-1")
    assert m.reference is not None
    assert m.reference.rows == 8  # the input example was the sample


def test_mlflow_signature_names_an_array_model_without_a_sample(tmp_path: Path) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    X, y = iris()
    root = tmp_path / "m"
    root.mkdir()
    joblib.dump(HistGradientBoostingClassifier(max_iter=10).fit(X, y), root / "model.pkl")
    columns = json.dumps(
        [{"type": "double", "name": n, "required": n != "petal_width"} for n in IRIS_FEATURES]
    )
    _mlmodel(
        root,
        "  python_function:\n    loader_module: mlflow.sklearn\n    model_path: model.pkl\n",
        f"signature:\n  inputs: '{columns}'\n",
    )
    m = pack_bundle(root, PackOptions(name="iris", repo=tmp_path / "out")).manifest
    assert m.feature_names == IRIS_FEATURES
    assert [i.nullable for i in m.inputs] == [False, False, False, True]
    assert m.parity is not None
    assert m.parity.sample == "synthesized"


def test_mlflow_sklearn_flavour_saved_with_skops(tmp_path: Path, iris_model: Any) -> None:
    import skops.io as sio

    root = tmp_path / "m"
    root.mkdir()
    sio.dump(iris_model, root / "model.skops")
    columns = json.dumps([{"type": "double", "name": n} for n in IRIS_FEATURES])
    _mlmodel(
        root,
        "  sklearn:\n    pickled_model: model.skops\n    serialization_format: skops\n",
        f"signature:\n  inputs: '{columns}'\n",
    )
    m = pack_bundle(root, PackOptions(name="iris", repo=tmp_path / "out")).manifest
    assert m.runtime == "onnx"
    assert m.feature_names == IRIS_FEATURES
    assert m.source.model_file == "model.skops"


@pytest.mark.parametrize(
    ("flavors", "extra", "reason"),
    [
        (
            "  python_function:\n    loader_module: mlflow.pyfunc.model\n",
            "",
            "python_function via mlflow.pyfunc.model",
        ),
        ("  sklearn:\n    pickled_model: ../outside.pkl\n", "", "names a file outside the model directory"),
        ("  sklearn:\n    pickled_model: /etc/passwd\n", "", "names a file outside the model directory"),
        ("  sklearn:\n    pickled_model: gone.pkl\n", "", "names 'gone.pkl', which is not in the directory"),
        (
            "  sklearn:\n    pickled_model: model.pkl\n",
            'signature:\n  inputs: \'[{"type": "datetime", "name": "when"}]\'\n',
            "has type 'datetime'",
        ),
    ],
)
def test_mlflow_directories_that_cannot_be_packed_say_why(
    tmp_path: Path, iris_model: Any, flavors: str, extra: str, reason: str
) -> None:
    joblib.dump(iris_model, tmp_path / "outside.pkl")
    root = _mlmodel(tmp_path / "m", flavors, extra)
    joblib.dump(iris_model, root / "model.pkl")
    assert reason in one_line_error(run("pack", root, "--name", "x", "--out", tmp_path / "out"))


def test_a_directory_without_mlmodel_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    error = one_line_error(run("pack", tmp_path / "m", "--name", "x", "--out", tmp_path / "out"))
    assert "without an MLmodel file" in error


# ------------------------------------------------------------------------------------------ column names


def test_names_that_sanitise_alike_keep_their_own_columns(tmp_path: Path) -> None:
    """``a b``, ``a_b`` and ``a.b`` are one ONNX identifier once sanitised; each keeps its own tensor."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    names = ["a b", "a_b", "a.b", "1st", "input"]
    frame = pd.DataFrame({n: rng.normal(scale=i + 1, size=120) for i, n in enumerate(names)})
    frame["kind:x"] = rng.choice(["p", "q"], size=120)
    y = np.where(frame["a b"] - frame["a.b"] / 3 > 0, "up", "down")
    pipe = make_pipeline(
        ColumnTransformer([("n", StandardScaler(), names), ("c", OneHotEncoder(), ["kind:x"])]),
        LogisticRegression(),
    ).fit(frame, y)
    joblib.dump(pipe, tmp_path / "m.joblib")
    frame.to_csv(tmp_path / "s.csv", index=False)
    m = pack_bundle(
        tmp_path / "m.joblib", PackOptions(name="alike", repo=tmp_path / "out", sample=tmp_path / "s.csv")
    ).manifest
    assert [i.features for i in m.onnx_inputs] == [[n] for n in [*names, "kind:x"]]
    assert len({i.name for i in m.onnx_inputs}) == len(m.onnx_inputs)
    assert m.parity is not None
    assert m.parity.passed


# ---------------------------------------------------------------------------------- fallback refusals


def test_a_fallback_the_gateway_would_answer_differently_is_not_written(tmp_path: Path) -> None:
    """An empty string that is a category of its own: the gateway feeds a missing string as "", so the
    served fallback cannot tell the two apart, and pack refuses to write it."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"x": rng.normal(size=120), "city": rng.choice(["", "Rome", "Oslo"], size=120)})
    y = np.where((frame["city"] == "") | (frame["x"] > 1), "a", "b")
    pipe = make_pipeline(
        ColumnTransformer([("n", FunctionTransformer(np.tanh), ["x"]), ("c", OneHotEncoder(), ["city"])]),
        LogisticRegression(),
    ).fit(frame, y)
    joblib.dump(pipe, tmp_path / "m.joblib")
    (tmp_path / "s.json").write_text(json.dumps(frame.to_dict("records")))
    options = PackOptions(
        name="empty", repo=tmp_path / "out", sample=tmp_path / "s.json", allow_pickle_fallback=True
    )
    with pytest.raises((ParityFailed, ConversionFailed), match="gateway"):
        pack_bundle(tmp_path / "m.joblib", options)
    assert not (tmp_path / "out" / "empty").exists() or list((tmp_path / "out" / "empty").iterdir()) == []


# ----------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_during_pack_exits_130_and_leaves_nothing(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    X, y = iris()
    joblib.dump(RandomForestClassifier(n_estimators=300, random_state=0).fit(X, y), tmp_path / "f.joblib")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bundlegate.cli", "pack", str(tmp_path / "f.joblib"), "--name", "forest",
         "--out", str(out), "--features", ",".join(IRIS_FEATURES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    watchdog = threading.Timer(120, proc.kill)  # a pack that never says it converts fails, not hangs
    watchdog.start()
    try:
        said = []
        for line in proc.stderr:  # the progress line: the model is loaded and the conversion starts
            said.append(line)
            if "converting RandomForestClassifier to ONNX" in line:
                proc.send_signal(signal.SIGINT)
                break
        _, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
    err = "".join(said) + err
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_ctrl_c_while_writing_the_bundle_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bundlegate.bundle as bundle_module

    X, y = iris()
    from sklearn.linear_model import LogisticRegression

    joblib.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m.joblib")
    written: list[Path] = []
    real = bundle_module._write_synced

    def interrupted(path: Path, data: bytes) -> None:  # Ctrl-C after the first file is on disk
        if written:
            raise KeyboardInterrupt
        real(path, data)
        written.append(path)

    monkeypatch.setattr(bundle_module, "_write_synced", interrupted)
    result = run("pack", tmp_path / "m.joblib", "--name", "m", "--out", tmp_path / "out")
    assert result.exit_code == 130
    assert written
    assert not (tmp_path / "out").exists()


def test_a_fallback_records_the_libraries_inside_a_wrapped_model() -> None:
    """A calibrated XGBoost model is a scikit-learn object outside; the pickle still needs xgboost."""
    if os.environ.get("CI", "").lower() != "true":
        pytest.importorskip("xgboost")
    import xgboost
    from sklearn.calibration import CalibratedClassifierCV

    from bundlegate.packer.fallback import libraries

    X, y = iris()
    model = CalibratedClassifierCV(xgboost.XGBClassifier(n_estimators=5), cv=2).fit(X, y == "setosa")
    assert libraries(model)["xgboost"] == xgboost.__version__
    assert "pandas" in libraries(model)  # the gateway builds DataFrames with it
