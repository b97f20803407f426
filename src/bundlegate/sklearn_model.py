"""``SklearnModel``: a ``runtime: sklearn`` bundle version, the opt-in pickle fallback (DESIGN.md §6).

The pickle is loaded only when every library version the bundle records is installed exactly:
scikit-learn and NumPy (``source.sklearn_version``/``numpy_version``) and the others its classes come
from (``source.libraries``: pandas, XGBoost, LightGBM). scikit-learn, joblib and pandas come from the
gateway's ``sklearn-runtime`` extra and are imported only here.

What the estimator is given, as it was fitted:

- a model fitted on a DataFrame (``feature_names_in_``) gets a DataFrame with the bundle's feature
  names, one column per feature; a missing string (fed as ``""``) is NaN again, as ``read_csv`` gives
  it in training;
- a text pipeline (a vectorizer first) gets the texts as a 1-D array;
- anything else gets the 2-D array of numbers.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from bundlegate.errors import BundleError, InvalidInput, shorten
from bundlegate.feed import Feed, Prediction
from bundlegate.manifest import Manifest

EXTRA = "the gateway's 'sklearn-runtime' extra: pip install 'bundlegate[sklearn-runtime]'"


class SklearnModel:
    """A ``runtime: sklearn`` bundle version: an unpickled estimator (opt-in only, see module docs)."""

    runtime = "sklearn"

    def __init__(self, manifest: Manifest, model_bytes: bytes) -> None:
        try:
            import joblib
            import sklearn
        except ImportError:
            raise BundleError(f"runtime sklearn needs scikit-learn and joblib installed ({EXTRA})") from None
        check_versions(manifest, sklearn.__version__)
        self.manifest = manifest
        try:
            self.estimator: Any = joblib.load(io.BytesIO(model_bytes))
        except Exception as exc:  # unpickling can raise anything
            raise BundleError(f"cannot unpickle {manifest.model_file}: {shorten(str(exc))}") from None
        names = getattr(self.estimator, "feature_names_in_", None)
        self._framed = names is not None and any(isinstance(n, str) for n in names)
        if self._framed:
            try:
                import pandas  # noqa: F401
            except ImportError:
                raise BundleError(
                    f"this model was fitted on a DataFrame and needs pandas ({EXTRA})"
                ) from None
        strings = [i for i in manifest.inputs if i.dtype == "string"]
        self._text = not self._framed and len(manifest.inputs) == 1 and len(strings) == 1
        self._proba = manifest.outputs.probabilities is not None and hasattr(self.estimator, "predict_proba")

    def predict(self, feed: Feed) -> Prediction:
        """Run the estimator on every row of ``feed`` (blocking; holds the GIL more than onnxruntime).

        Values the schema accepts can still be refused by the estimator itself (a custom step meets a
        value it cannot take): that is the request's problem, ``InvalidInput``, not the gateway's.
        """
        X = self._input(feed)
        try:
            if self.manifest.task == "classification":
                return Prediction(
                    labels=np.asarray(self.estimator.predict(X)),
                    probabilities=np.asarray(self.estimator.predict_proba(X)) if self._proba else None,
                )
            return Prediction(values=np.asarray(self.estimator.predict(X)))
        except Exception as exc:  # the estimator's own complaint: scikit-learn raises many types
            raise InvalidInput(
                f"the model refused these rows ({type(exc).__name__}: {shorten(str(exc), 160)})"
            ) from None

    def _input(self, feed: Feed) -> Any:
        arrays = list(feed.arrays.values())
        if self._text:
            return arrays[0].reshape(-1)
        if not self._framed:
            return arrays[0] if len(arrays) == 1 else np.hstack(arrays)
        import pandas as pd

        names = self.manifest.feature_names
        if len(arrays) == 1 and arrays[0].shape[1] == len(names):  # one numeric block
            return pd.DataFrame(arrays[0], columns=names)
        columns = {}
        for name, arr in zip(names, arrays, strict=True):
            col = arr.reshape(-1)
            if col.dtype == object:
                col = np.where(col == "", np.nan, col).astype(object)
            columns[name] = col
        return pd.DataFrame(columns)


def check_versions(manifest: Manifest, sklearn_version: str) -> None:
    """``BundleError`` unless each library the bundle records is installed at exactly that version."""
    from importlib.metadata import PackageNotFoundError, version

    src = manifest.source
    wanted = {"scikit-learn": src.sklearn_version, "numpy": src.numpy_version, **(src.libraries or {})}
    installed: dict[str, str | None] = {"scikit-learn": sklearn_version, "numpy": np.__version__}
    for name in src.libraries or {}:
        try:
            installed[name] = version(name)
        except PackageNotFoundError:
            installed[name] = None
    for name, want in wanted.items():
        if want is not None and want != installed[name]:
            raise BundleError(
                f"refusing to unpickle: bundle made with {name} {want or 'unknown'}, "
                f"installed {installed[name] or 'none'}"
            )
    if src.sklearn_version is None:
        raise BundleError("refusing to unpickle: bundle made with scikit-learn unknown")
