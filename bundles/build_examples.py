"""Rebuild the example bundles (``make bundles``): deterministic, from datasets that ship with sklearn.

    python bundles/build_examples.py bundles/

- ``iris``: LogisticRegression on the plain iris array (numeric, named with ``--features``), string
  classes ``setosa``/``versicolor``/``virginica``.
- ``diabetes-risk``: a tabular classifier over mixed columns: the diabetes dataset with ``sex`` as the
  strings ``group_a``/``group_b``, an ``age_band`` string column, missing values injected at fixed rows
  (every 11th ``bmi``, 13th ``age_band``, 17th ``sex``), and the target split at its median into
  ``high``/``low``; a ColumnTransformer (impute + scale numbers, impute + one-hot strings) and a
  LogisticRegression.
- ``diabetes``: a GradientBoostingRegressor (50 trees, depth 3) on the diabetes DataFrame.

Each is written as version 1, replacing the previous build; the same scikit-learn version gives the
same predictions (only ``created_at`` changes).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_iris
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from bundlegate.packer import PackOptions, pack_bundle

IRIS_FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


def diabetes_risk_frame() -> tuple[pd.DataFrame, np.ndarray]:
    """The mixed-column diabetes table and its string target (deterministic)."""
    data = load_diabetes(as_frame=True, scaled=False)
    raw = data.frame
    bands = pd.cut(raw["age"], bins=[0, 39, 49, 59, 200], labels=["<40", "40-49", "50-59", "60+"])
    frame = pd.DataFrame(
        {
            "age_band": bands.astype(str).astype(object),
            "sex": raw["sex"].map({1.0: "group_a", 2.0: "group_b"}).astype(object),
            "bmi": raw["bmi"].astype(float),
            "bp": raw["bp"].astype(float),
            "s1": raw["s1"].astype(float),
            "s3": raw["s3"].astype(float),
            "s5": raw["s5"].astype(float),
        }
    )
    frame.loc[::11, "bmi"] = np.nan
    # NaN, as read_csv gives missing strings (scikit-learn's imputers ignore None in object columns)
    frame.loc[::13, "age_band"] = np.nan
    frame.loc[::17, "sex"] = np.nan
    target = np.where(data.target > np.median(data.target), "high", "low")
    return frame, target


def build(out: Path, work: Path) -> list[Path]:
    built = []

    iris = load_iris()
    clf = LogisticRegression(max_iter=1000).fit(iris.data, iris.target_names[iris.target])
    built.append(
        _pack(
            out,
            work,
            "iris",
            clf,
            iris.data,
            "Iris species from flower measurements.",
            features=IRIS_FEATURES,
            tags={"dataset": "iris", "kind": "numeric"},
        )
    )

    frame, target = diabetes_risk_frame()
    numbers = ["bmi", "bp", "s1", "s3", "s5"]
    strings = ["age_band", "sex"]
    pipe = Pipeline(
        [
            (
                "columns",
                ColumnTransformer(
                    [
                        (
                            "num",
                            Pipeline(
                                [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                            ),
                            numbers,
                        ),
                        (
                            "cat",
                            Pipeline(
                                [
                                    ("impute", SimpleImputer(strategy="most_frequent")),
                                    ("onehot", OneHotEncoder(handle_unknown="ignore")),
                                ]
                            ),
                            strings,
                        ),
                    ]
                ),
            ),
            ("clf", LogisticRegression(max_iter=1000)),
        ]
    ).fit(frame, target)
    built.append(
        _pack(
            out,
            work,
            "diabetes-risk",
            pipe,
            frame,
            "Diabetes progression above the median (high/low) from mixed columns with gaps.",
            tags={"dataset": "diabetes", "kind": "mixed"},
        )
    )

    data = load_diabetes(as_frame=True)
    reg = GradientBoostingRegressor(n_estimators=50, max_depth=3, random_state=0).fit(data.data, data.target)
    built.append(
        _pack(
            out,
            work,
            "diabetes",
            reg,
            data.data,
            "Diabetes progression one year after baseline.",
            tags={"dataset": "diabetes", "kind": "regression"},
        )
    )
    return built


def _pack(
    out: Path,
    work: Path,
    name: str,
    est: Any,
    X: Any,
    description: str,
    features: list[str] | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    model_path = work / f"{name}.joblib"
    joblib.dump(est, model_path)
    if isinstance(X, pd.DataFrame):
        sample = work / f"{name}.csv"
        X.to_csv(sample, index=False)
    else:
        sample = work / f"{name}.npy"
        np.save(sample, X)
    if (out / name / "1").exists():
        shutil.rmtree(out / name / "1")
    result = pack_bundle(
        model_path,
        PackOptions(
            name=name,
            repo=out,
            version=1,
            sample=sample,
            features=features,
            description=description,
            tags=tags or {},
        ),
    )
    return result.path


def main(argv: list[str]) -> int:
    out = Path(argv[1] if len(argv) > 1 else "bundles")
    with tempfile.TemporaryDirectory() as tmp:
        for path in build(out, Path(tmp)):
            print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
