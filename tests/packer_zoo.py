"""The packer zoo: estimators a user brings to ``bundle pack``, fitted on small sklearn datasets.

Each ``ZooCase`` fits its estimator and returns the training frame used as the ``--sample``. The
``expect`` field says what the packer should produce: ``"onnx"`` (parity passes, maybe only in
float64) or ``"fallback"`` (no converter or parity fails: a runtime sklearn bundle with the flag).
Everything is deterministic (fixed seeds, fixed data).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import numpy as np
import pandas as pd

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@dataclass(frozen=True)
class ZooCase:
    id: str
    fit_model: Callable[[], tuple[Any, pd.DataFrame | np.ndarray]]  # (fitted estimator, sample rows)
    expect: Literal["onnx", "fallback"]
    features: list[str] | None = None  # --features for array-trained models

    def fit(self) -> tuple[Any, pd.DataFrame | np.ndarray]:
        """The fitted estimator and its sample; convergence warnings are not what the zoo tests."""
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return self.fit_model()


@cache
def iris() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_iris

    d = load_iris()
    return d.data, d.target_names[d.target]


@cache
def diabetes() -> tuple[pd.DataFrame, np.ndarray]:
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True)
    return d.data, d.target.to_numpy()


@cache
def cancer() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    return d.data[:300], d.target[:300]


@cache
def mixed() -> tuple[pd.DataFrame, np.ndarray]:
    """Strings with gaps and numbers with gaps, from the diabetes table (as bundles/build_examples.py)."""
    from sklearn.datasets import load_diabetes

    d = load_diabetes(as_frame=True, scaled=False)
    raw = d.frame
    frame = pd.DataFrame(
        {
            "band": pd.cut(raw["age"], [0, 39, 49, 59, 200], labels=["<40", "40s", "50s", "60+"])
            .astype(str)
            .astype(object),
            "sex": raw["sex"].map({1.0: "a", 2.0: "b"}).astype(object),
            "bmi": raw["bmi"].astype(float),
            "bp": raw["bp"].astype(float),
            "s5": raw["s5"].astype(float),
        }
    )
    frame.loc[::9, "bmi"] = np.nan
    frame.loc[::7, "band"] = np.nan  # as read_csv gives it; None would be a category of its own
    y = np.where(d.target > np.median(d.target), "high", "low")
    return frame, y


TEXTS = [
    "great product fast delivery",
    "terrible support never again",
    "excellent quality would buy again",
    "broken on arrival refund please",
    "love it works great",
    "awful experience slow delivery",
    "good value nice quality",
    "bad packaging product broken",
]


@cache
def texts() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(120):
        base = TEXTS[i % len(TEXTS)].split()
        rng.shuffle(base)
        rows.append(" ".join(base))
        labels.append("pos" if (i % len(TEXTS)) % 2 == 0 else "neg")
    return pd.DataFrame({"review": rows}), np.asarray(labels)


def _iris(est: Any) -> Callable[[], tuple[Any, np.ndarray]]:
    def fit() -> tuple[Any, np.ndarray]:
        X, y = iris()
        return est().fit(X, y), X

    return fit


def _cancer(est: Any) -> Callable[[], tuple[Any, np.ndarray]]:
    def fit() -> tuple[Any, np.ndarray]:
        X, y = cancer()
        return est().fit(X, y), X

    return fit


def _diabetes(est: Any) -> Callable[[], tuple[Any, pd.DataFrame]]:
    def fit() -> tuple[Any, pd.DataFrame]:
        X, y = diabetes()
        return est().fit(X, y), X

    return fit


def _mixed(clf: Any) -> Callable[[], tuple[Any, pd.DataFrame]]:
    def fit() -> tuple[Any, pd.DataFrame]:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        X, y = mixed()
        pipe = Pipeline(
            [
                (
                    "columns",
                    ColumnTransformer(
                        [
                            (
                                "num",
                                Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())]),
                                ["bmi", "bp", "s5"],
                            ),
                            (
                                "cat",
                                Pipeline(
                                    [
                                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                                    ]
                                ),
                                ["band", "sex"],
                            ),
                        ]
                    ),
                ),
                ("clf", clf()),
            ]
        ).fit(X, y)
        return pipe, X

    return fit


def _text() -> tuple[Any, pd.DataFrame]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    X, y = texts()
    pipe = Pipeline([("tfidf", TfidfVectorizer()), ("clf", LogisticRegression())]).fit(X["review"], y)
    return pipe, X


def _scaled_logistic() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))


def _scaled_knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=5))


def _imputed_svr() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR

    return make_pipeline(SimpleImputer(), StandardScaler(), SVR())


def _calibrated_svc() -> Any:
    """An SVC with probabilities (``SVC(probability=True)`` is deprecated since scikit-learn 1.9)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC

    return CalibratedClassifierCV(SVC(), ensemble=False)


def _log_logistic() -> Any:
    """A custom step (FunctionTransformer) skl2onnx has no converter for: needs the fallback."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=1000))


def _cases() -> list[ZooCase]:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    def seeded(cls: Any, **kw: Any) -> Callable[[], Any]:
        return lambda: cls(random_state=0, **kw)

    return [
        ZooCase("linear_regression", _diabetes(LinearRegression), "onnx"),
        ZooCase("ridge", _diabetes(Ridge), "onnx"),
        ZooCase(
            "logistic_regression", _iris(lambda: LogisticRegression(max_iter=500)), "onnx", IRIS_FEATURES
        ),
        ZooCase("svc_calibrated_probabilities", _iris(_calibrated_svc), "onnx", IRIS_FEATURES),
        ZooCase("knn_scaled", _cancer(_scaled_knn), "onnx"),
        ZooCase(
            "knn_iris_distance_ties",
            _iris(lambda: KNeighborsClassifier(n_neighbors=5)),
            "fallback",
            IRIS_FEATURES,
        ),
        ZooCase("decision_tree_classifier", _cancer(seeded(DecisionTreeClassifier)), "onnx"),
        ZooCase("decision_tree_regressor", _diabetes(seeded(DecisionTreeRegressor, max_depth=6)), "onnx"),
        ZooCase("random_forest_classifier", _cancer(seeded(RandomForestClassifier, n_estimators=20)), "onnx"),
        ZooCase("random_forest_regressor", _diabetes(seeded(RandomForestRegressor, n_estimators=20)), "onnx"),
        ZooCase(
            "gradient_boosting_classifier",
            _cancer(seeded(GradientBoostingClassifier, n_estimators=30)),
            "onnx",
        ),
        ZooCase(
            "gradient_boosting_regressor",
            _diabetes(seeded(GradientBoostingRegressor, n_estimators=30)),
            "onnx",
        ),
        ZooCase(
            "hist_gradient_boosting", _cancer(seeded(HistGradientBoostingClassifier, max_iter=30)), "fallback"
        ),
        ZooCase(
            "mlp_classifier",
            _iris(seeded(MLPClassifier, max_iter=300, hidden_layer_sizes=(16,))),
            "onnx",
            IRIS_FEATURES,
        ),
        ZooCase("scaler_logistic_pipeline", _cancer(_scaled_logistic), "onnx"),
        ZooCase("imputer_scaler_svr_pipeline", _diabetes(_imputed_svr), "onnx"),
        ZooCase("column_transformer_logistic", _mixed(lambda: LogisticRegression(max_iter=500)), "onnx"),
        ZooCase("column_transformer_forest", _mixed(seeded(RandomForestClassifier, n_estimators=20)), "onnx"),
        ZooCase("tfidf_text_pipeline", _text, "onnx"),
        ZooCase("gaussian_process_regressor", _diabetes(GaussianProcessRegressor), "onnx"),
        ZooCase("function_transformer_pipeline", _cancer(_log_logistic), "fallback"),
    ]


CASES = _cases()
