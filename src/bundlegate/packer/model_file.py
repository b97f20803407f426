"""The model given to ``bundle pack``: a pickle/joblib/skops file of a fitted estimator, an ``.onnx``
file, or an MLflow model directory (``mlflow_model``).

Pickles load through an allowlist (``unpickle``): a global that is not part of a model is refused by
name before anything in the file runs, unless the user trusts the file (``--trust-pickle``). A file
that is no model at all (Python source, a CSV, a truncated pickle) is refused with a one-line reason.
The gateway itself never unpickles by default.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bundlegate.errors import ModelFileError, NotAnEstimator, UnsafePath, shorten

ONNX_SUFFIXES = (".onnx",)
SKOPS_SUFFIXES = (".skops",)
# what a pickle (protocol 2+, or 0/1 text), or a joblib file compressed with zlib, gzip, bz2, xz, lzma,
# lz4 starts with
PICKLE_MAGIC = (b"\x80", b"x", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"]\x00\x00", b"\x04\x22\x4d\x18")
TEXT_KINDS = {
    ".py": "Python source",
    ".csv": "a CSV table",
    ".txt": "text",
    ".json": "JSON",
    ".npy": "an array",
}


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: exactly one of ``estimator`` and ``onnx_bytes`` is set."""

    path: Path
    estimator: Any = None
    onnx_bytes: bytes | None = None
    sample: Any = None  # an MLflow input example (``samples.Sample``), used when --sample is not given
    signature: list[Any] | None = None  # MLflow signature as ``InputSpec``s (names, dtypes, nullable)
    provenance: dict[str, str] = field(default_factory=dict)  # MLflow model uuid, run id


def class_path(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def load_model_file(path: Path, *, trust_pickle: bool = False) -> ModelFile:
    """Load ``path``; ``ModelFileError`` when it is unreadable or not a model file,
    ``NotAnEstimator`` when it holds something other than a fitted classifier or regressor."""
    path = Path(path)
    if path.is_dir():
        return _load_mlflow_dir(path, trust_pickle)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix.lower() in ONNX_SUFFIXES:
        return ModelFile(path, onnx_bytes=_read_onnx(path))
    if path.suffix.lower() in SKOPS_SUFFIXES:
        from bundlegate.packer.unpickle import load_skops

        obj = load_skops(path, trust=trust_pickle)
    else:
        obj = load_estimator_file(path, trust_pickle=trust_pickle)
    check_estimator(obj, path.name)
    return ModelFile(path, estimator=obj)


def _load_mlflow_dir(path: Path, trust_pickle: bool) -> ModelFile:
    from bundlegate.packer.mlflow_model import read_mlflow_dir
    from bundlegate.packer.unpickle import load_skops

    found = read_mlflow_dir(path)
    extra: dict[str, Any] = {
        "sample": found.sample,
        "signature": found.signature,
        "provenance": found.provenance,
    }
    if found.kind == "onnx":
        return ModelFile(found.file, onnx_bytes=_read_onnx(found.file), **extra)
    if found.kind == "skops":
        obj = load_skops(found.file, trust=trust_pickle)
    else:
        obj = load_estimator_file(found.file, trust_pickle=trust_pickle)
    check_estimator(obj, found.file.name)
    return ModelFile(found.file, estimator=obj, **extra)


def load_estimator_file(path: Path, *, trust_pickle: bool = False) -> Any:
    """The object in the pickle/joblib file ``path``, after a look at its first bytes."""
    with path.open("rb") as f:
        head = f.read(8)
    pickled = head.startswith(PICKLE_MAGIC) or head.startswith((b"(", b"c", b"]", b"}"))
    if path.suffix.lower() in TEXT_KINDS or not pickled:
        kind = TEXT_KINDS.get(path.suffix.lower())
        what = f"it holds {kind}" if kind else f"it starts with {head[:8]!r}"
        raise ModelFileError(
            f"{path.name} is not a model file ({what}); bundle pack takes a .pkl, .joblib, .skops or "
            ".onnx file or an MLflow model directory"
        )
    return _unpickle(path, trust_pickle)


def _read_onnx(path: Path) -> bytes:
    import onnx

    data = path.read_bytes()
    try:
        model = onnx.load_model_from_string(data)
        onnx.checker.check_model(model)
    except Exception as exc:  # onnx raises DecodeError, ValidationError, ...
        raise ModelFileError(f"{path.name} is not a valid ONNX model: {shorten(str(exc), 200)}") from None
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.external_data:
            raise UnsafePath(f"{path.name} keeps weights in external data files; bundles need one file")
    return data


def _unpickle(path: Path, trust: bool) -> Any:
    from bundlegate.packer.unpickle import load_pickle

    try:
        return load_pickle(path, trust=trust)
    except ModuleNotFoundError as exc:
        raise ModelFileError(
            f"{path.name} needs the Python module {exc.name!r}, which is not installed here"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
        ImportError,
        zipfile.BadZipFile,
        OSError,
    ) as exc:
        cut = isinstance(exc, EOFError) or any(w in str(exc) for w in ("EOF", "truncated"))
        what = "truncated" if cut else "not a pickle or joblib file of a model"
        raise ModelFileError(
            f"{path.name} is {what} ({type(exc).__name__}: {shorten(str(exc), 200)})"
        ) from None


def check_estimator(obj: Any, file_name: str) -> None:
    """Refuse anything but a fitted scikit-learn classifier or regressor (plain or a Pipeline)."""
    from sklearn.base import BaseEstimator, is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    from bundlegate.packer.converters import is_fitted_catboost

    catboost = is_fitted_catboost(obj)
    if catboost is not None:
        if not catboost:
            raise NotAnEstimator(f"{file_name} holds an unfitted {type(obj).__name__}; fit it first")
        return
    if not isinstance(obj, BaseEstimator):
        raise NotAnEstimator(f"{file_name} holds a {class_path(obj)}, not a scikit-learn estimator")
    if not (is_classifier(obj) or is_regressor(obj)):
        raise NotAnEstimator(
            f"{file_name} holds a {type(obj).__name__}, which is neither a classifier nor a regressor"
        )
    try:
        check_is_fitted(obj)
    except NotFittedError:
        raise NotAnEstimator(f"{file_name} holds an unfitted {type(obj).__name__}; fit it first") from None
    except TypeError as exc:
        raise NotAnEstimator(f"{file_name}: {shorten(str(exc), 200)}") from None
