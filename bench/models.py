"""The two benchmark models, trained exactly as the peer harness trains them (same recipe, same seeds).

  python bench/models.py OUT_DIR      # m1.pkl, m2.pkl, m1-train.npy, m2-train.npy, samples.json

M1 = LogisticRegression on iris (4 float features)
M2 = RandomForestClassifier(n_estimators=100, max_depth=8) on make_classification(20000, 20, random_state=0)

``train()`` is a copy of the peer harness's ``models.py``: with the same scikit-learn version the fitted
estimators are identical, so our bundles and the peers' pickles answer the same. ``samples.json`` has the
harness's layout (per model: the fixed check row, a 1000-row batch and sklearn's predictions for both), so
the same checks run against every server. The training rows are saved too: ``bundle pack`` infers the
schema and the reference statistics from them.
"""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path
from typing import Any

import numpy as np


def train() -> dict[str, tuple[Any, Any, Any]]:
    """name -> (fitted estimator, the 1000 benchmark rows, the training rows)."""
    from sklearn.datasets import load_iris, make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_iris(return_X_y=True)
    m1 = LogisticRegression(max_iter=1000).fit(X, y)
    rows1 = X[np.random.RandomState(0).randint(0, len(X), 1000)]
    train1 = X

    X, y = make_classification(n_samples=20000, n_features=20, random_state=0)
    Xtr, Xte, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0)
    m2 = RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0, n_jobs=1).fit(Xtr, ytr)
    rows2 = Xte[:1000]
    return {"m1": (m1, rows1, train1), "m2": (m2, rows2, Xtr)}


def write_models(out: Path) -> dict[str, Any]:
    """Train, save the pickles, training rows and ``samples.json`` under ``out``; return the samples."""
    out.mkdir(parents=True, exist_ok=True)
    samples: dict[str, Any] = {}
    for name, (model, rows, train_rows) in train().items():
        with open(out / f"{name}.pkl", "wb") as f:
            pickle.dump(model, f)
        np.save(out / f"{name}-train.npy", train_rows)
        expected = model.predict(rows)
        samples[name] = {
            "n_features": int(rows.shape[1]),
            "row": rows[0].tolist(),
            "expected": int(expected[0]),
            "batch": rows.tolist(),
            "batch_expected": expected.astype(int).tolist(),
        }
    (out / "samples.json").write_text(json.dumps(samples))
    return samples


if __name__ == "__main__":
    write_models(Path(sys.argv[1]))
