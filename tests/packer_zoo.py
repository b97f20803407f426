"""The packer zoo: estimators a user brings to ``bundle pack``, fitted on small sklearn datasets.

Each ``ZooCase`` fits its estimator and returns the training frame used as the ``--sample``. The
``expect`` field says what the packer should produce: ``"onnx"`` (parity passes, maybe only in
float64) or ``"fallback"`` (no converter or parity fails: a runtime sklearn bundle with the flag).
``needs`` names an optional package (the ``boost`` extra) the case skips without, except under CI;
``mlflow`` cases are packed from a hand-written MLflow model directory instead of a joblib file.
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
    needs: str | None = None  # an optional package the case needs (xgboost, lightgbm)
    mlflow: bool = False  # packed from an MLflow model directory (signature, input example)

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


@cache
def cancer_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """The breast cancer table with its own column names (spaces) and gaps in two columns."""
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer(as_frame=True)
    frame = d.data.iloc[:300].copy()
    frame.loc[frame.index[::7], "mean texture"] = np.nan
    frame.loc[frame.index[::11], "worst area"] = np.nan
    return frame, d.target.to_numpy()[:300]


@cache
def diabetes_gaps() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = diabetes()
    frame = X.copy()
    frame.loc[frame.index[::6], "bmi"] = np.nan
    frame.loc[frame.index[::9], "s3"] = np.nan
    return frame, y


AWKWARD = {
    "malic_acid": "malic acid",
    "ash": "ash.total",
    "magnesium": "magnesium-mg",
    "hue": "hue:visual",
    "proline": "prolin ü",
}


@cache
def wine_awkward() -> tuple[pd.DataFrame, np.ndarray]:
    """load_wine's own ``od280/od315_of_diluted_wines`` and names with spaces . - : and non-ASCII, plus a
    text column whose name holds a slash and a space."""
    from sklearn.datasets import load_wine

    d = load_wine(as_frame=True)
    frame = d.data.rename(columns=AWKWARD)
    rng = np.random.default_rng(0)
    frame["region/zone a"] = rng.choice(["north", "south", "ö-coast"], size=len(frame)).astype(object)
    return frame, d.target_names[d.target]


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


UNICODE_TEXTS = [
    "Über gut, a Lieferung schnell",
    "ÉCOLE mal à l'heure, très lent",
    "straße OK ß naïve Café günstig",
    "Ärger: Paket kaputt, x Rückgabe",
    "Ελληνικά καλό προϊόν α",  # noqa: RUF001 (Greek on purpose)
    "CAFÉ froid, service lent",
]


@cache
def unicode_texts() -> tuple[pd.DataFrame, np.ndarray]:
    """Accents, capitals beyond ASCII, Greek, one-letter words between the words of a bigram."""
    rng = np.random.default_rng(1)
    rows, labels = [], []
    for i in range(90):
        base = UNICODE_TEXTS[i % len(UNICODE_TEXTS)].split()
        rng.shuffle(base)
        rows.append(" ".join(base))
        labels.append("pos" if i % len(UNICODE_TEXTS) in (0, 2, 4) else "neg")
    return pd.DataFrame({"review text": rows}), np.asarray(labels)


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


def _text_with(
    vectorizer: Callable[[], Any],
    clf: Callable[[], Any],
    data: Callable[[], tuple[pd.DataFrame, np.ndarray]] = texts,
) -> Callable[[], tuple[Any, pd.DataFrame]]:
    def fit() -> tuple[Any, pd.DataFrame]:
        from sklearn.pipeline import Pipeline

        X, y = data()
        return Pipeline([("vectorize", vectorizer()), ("clf", clf())]).fit(X.iloc[:, 0], y), X

    return fit


def _frame(
    data: Callable[[], tuple[pd.DataFrame, np.ndarray]], est: Callable[[], Any]
) -> Callable[[], tuple[Any, pd.DataFrame]]:
    def fit() -> tuple[Any, pd.DataFrame]:
        X, y = data()
        return est().fit(X, y), X

    return fit


def _wine_pipeline(clf: Callable[[], Any]) -> Callable[[], Any]:
    def make() -> Any:
        from sklearn.compose import ColumnTransformer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        frame, _ = wine_awkward()
        numbers = [c for c in frame.columns if c != "region/zone a"]
        columns = ColumnTransformer(
            [
                ("num", StandardScaler(), numbers),
                ("cat", OneHotEncoder(handle_unknown="ignore"), ["region/zone a"]),
            ]
        )
        return Pipeline([("columns", columns), ("clf", clf())])

    return make


def _framed_function_transformer() -> Any:
    """A DataFrame pipeline with a custom step (log1p on the numbers): served by the sklearn fallback."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), FunctionTransformer(np.log1p)), ["bmi", "bp", "s5"]),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                ["band", "sex"],
            ),
        ]
    )
    return make_pipeline(columns, LogisticRegression(max_iter=1000))


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


def _calibrated_forest() -> Any:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import RandomForestClassifier

    return CalibratedClassifierCV(
        RandomForestClassifier(n_estimators=10, random_state=0), method="sigmoid", cv=3
    )


def _log_logistic() -> Any:
    """A custom step (FunctionTransformer) skl2onnx has no converter for: needs the fallback."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    return make_pipeline(FunctionTransformer(np.log1p), LogisticRegression(max_iter=1000))


def _boost(module: str, cls: str) -> Callable[[], Any]:
    def make() -> Any:
        import importlib

        kwargs: dict[str, Any] = {"n_estimators": 40, "random_state": 0}
        if module == "lightgbm":
            kwargs["verbose"] = -1
        if module == "catboost":
            kwargs = {
                "iterations": 40,
                "random_seed": 0,
                "verbose": 0,
                "thread_count": 1,
                "allow_writing_files": False,
            }
        return getattr(importlib.import_module(module), cls)(**kwargs)

    return make


def _cases() -> list[ZooCase]:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.naive_bayes import MultinomialNB
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
            "hist_gradient_boosting_classifier_nan",
            _frame(cancer_frame, seeded(HistGradientBoostingClassifier, max_iter=30)),
            "onnx",
        ),
        ZooCase(
            "hist_gradient_boosting_regressor_nan",
            _frame(diabetes_gaps, seeded(HistGradientBoostingRegressor, max_iter=30)),
            "onnx",
        ),
        ZooCase(
            "xgboost_classifier",
            _frame(cancer_frame, _boost("xgboost", "XGBClassifier")),
            "onnx",
            needs="xgboost",
        ),
        ZooCase(
            "xgboost_regressor",
            _frame(diabetes_gaps, _boost("xgboost", "XGBRegressor")),
            "onnx",
            needs="xgboost",
        ),
        ZooCase(
            "lightgbm_classifier",
            _frame(cancer_frame, _boost("lightgbm", "LGBMClassifier")),
            "onnx",
            needs="lightgbm",
        ),
        ZooCase(
            "lightgbm_regressor",
            _frame(diabetes_gaps, _boost("lightgbm", "LGBMRegressor")),
            "onnx",
            needs="lightgbm",
        ),
        ZooCase(
            "catboost_classifier",
            _frame(cancer_frame, _boost("catboost", "CatBoostClassifier")),
            "onnx",
            needs="catboost",
        ),
        ZooCase(
            "catboost_regressor",
            _frame(diabetes_gaps, _boost("catboost", "CatBoostRegressor")),
            "onnx",
            needs="catboost",
        ),
        ZooCase("calibrated_forest_sigmoid", _cancer(_calibrated_forest), "onnx"),
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
        ZooCase(
            "count_vectorizer_bigrams_nb",
            _text_with(lambda: CountVectorizer(ngram_range=(1, 2)), MultinomialNB),
            "onnx",
        ),
        ZooCase(
            "unicode_text_bigrams",
            _text_with(lambda: TfidfVectorizer(ngram_range=(1, 2)), LogisticRegression, unicode_texts),
            "onnx",
        ),
        ZooCase(
            "tfidf_char_ngrams_text",
            _text_with(lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 3)), LogisticRegression),
            "fallback",
        ),
        ZooCase(
            "awkward_names_column_transformer",
            _frame(wine_awkward, _wine_pipeline(lambda: LogisticRegression(max_iter=1000))),
            "onnx",
        ),
        ZooCase(
            "awkward_names_forest",
            _frame(wine_awkward, _wine_pipeline(seeded(RandomForestClassifier, n_estimators=20))),
            "onnx",
        ),
        ZooCase(
            "mlflow_sklearn_directory", _mixed(lambda: LogisticRegression(max_iter=500)), "onnx", mlflow=True
        ),
        ZooCase("dataframe_function_transformer", _frame(mixed, _framed_function_transformer), "fallback"),
        ZooCase("gaussian_process_regressor", _diabetes(GaussianProcessRegressor), "onnx"),
        ZooCase("function_transformer_pipeline", _cancer(_log_logistic), "fallback"),
    ]


CASES = _cases()
