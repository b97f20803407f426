"""The model file given to ``bundle pack``: a pickle/joblib of a fitted estimator, or an ``.onnx`` file.

Unpickling runs code from the file: ``bundle pack`` is meant for the user's own training output, the
same trust as ``joblib.load`` in their notebook. The gateway itself never unpickles by default.
"""

from __future__ import annotations

import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bundlegate.errors import ModelFileError, NotAnEstimator, UnsafePath, shorten

ONNX_SUFFIXES = (".onnx",)


@dataclass(frozen=True)
class ModelFile:
    """A loaded model file: exactly one of ``estimator`` and ``onnx_bytes`` is set."""

    path: Path
    estimator: Any = None
    onnx_bytes: bytes | None = None

    @property
    def is_onnx(self) -> bool:
        return self.onnx_bytes is not None


def class_path(obj: Any) -> str:
    t = type(obj)
    return f"{t.__module__}.{t.__qualname__}"


def load_model_file(path: Path) -> ModelFile:
    """Load ``path``; ``ModelFileError`` when it is unreadable or not a model file,
    ``NotAnEstimator`` when it holds something other than a fitted classifier or regressor."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such model file")
    if path.suffix.lower() in ONNX_SUFFIXES:
        return ModelFile(path, onnx_bytes=_read_onnx(path))
    obj = _unpickle(path)
    check_estimator(obj, path.name)
    return ModelFile(path, estimator=obj)


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


def _unpickle(path: Path) -> Any:
    import joblib

    try:
        return joblib.load(path)
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
        raise ModelFileError(
            f"{path.name} is not a pickle or joblib file of a model "
            f"({type(exc).__name__}: {shorten(str(exc), 200)})"
        ) from None


def check_estimator(obj: Any, file_name: str) -> None:
    """Refuse anything but a fitted scikit-learn classifier or regressor (plain or a Pipeline)."""
    from sklearn.base import BaseEstimator, is_classifier, is_regressor
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

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
