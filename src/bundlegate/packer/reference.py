"""Reference statistics of the sample (DESIGN.md §2 ``reference``) and the rows stored in the bundle.

Numeric features: 10-bin histogram over the observed range, quantiles, mean, std, null rate.
String and bool features: frequencies of the 20 most common values plus ``__other__``, null rate.
Predictions: class frequencies (classifiers) or a histogram and quantiles (regressors).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from bundlegate.manifest import FeatureReference, PredictionReference, Reference
from bundlegate.packer.predictions import Predictions
from bundlegate.packer.schema_inference import ModelSchema

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BINS = 10
TOP_VALUES = 20
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
STORED_ROWS = 20


def build_reference(schema: ModelSchema, frame: pd.DataFrame, predictions: Predictions) -> Reference:
    features = []
    for spec in schema.inputs:
        col = frame[spec.name]
        n = len(col)
        null_rate = _r(float(col.isna().mean())) if n else 0.0
        values = col.dropna()
        if spec.dtype in ("float32", "float64", "int64") and len(values):
            arr = values.to_numpy(dtype=float)
            counts, edges = _histogram(arr)
            features.append(
                FeatureReference(
                    name=spec.name,
                    kind="numeric",
                    count=n,
                    null_rate=null_rate,
                    bins=edges,
                    counts=counts,
                    quantiles=_quantiles(arr),
                    mean=_r(float(arr.mean())),
                    std=_r(float(arr.std())),
                )
            )
        else:
            features.append(
                FeatureReference(
                    name=spec.name,
                    kind="categorical" if spec.dtype in ("string", "bool") else "numeric",
                    count=n,
                    null_rate=null_rate,
                    frequencies=_frequencies([_key(v) for v in values.tolist()], n - int(col.isna().sum()))
                    if spec.dtype in ("string", "bool")
                    else None,
                )
            )
    return Reference(rows=len(frame), features=features, predictions=_predictions(predictions))


def _predictions(p: Predictions) -> PredictionReference | None:
    if p.labels is not None:
        return PredictionReference(
            kind="classes", frequencies=_frequencies([_key(v) for v in p.labels.tolist()], len(p.labels))
        )
    if p.values is not None and p.values.shape[1] == 1:
        arr = p.values[:, 0]
        counts, edges = _histogram(arr)
        return PredictionReference(kind="values", bins=edges, counts=counts, quantiles=_quantiles(arr))
    return None


def _histogram(arr: np.ndarray) -> tuple[list[int], list[float]]:
    import numpy as np

    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    counts, edges = np.histogram(arr, bins=BINS, range=(lo, hi))
    return [int(c) for c in counts], [_r(float(e)) for e in edges]


def _quantiles(arr: np.ndarray) -> dict[str, float]:
    import numpy as np

    return {str(q): _r(float(v)) for q, v in zip(QUANTILES, np.quantile(arr, QUANTILES), strict=True)}


def _frequencies(values: list[str], total: int) -> dict[str, float]:
    from collections import Counter

    if total == 0:
        return {}
    counts = Counter(values).most_common()
    top = dict(counts[:TOP_VALUES])
    out = {k: _r(v / total) for k, v in top.items()}
    rest = sum(v for _, v in counts[TOP_VALUES:])
    if rest:
        out["__other__"] = _r(rest / total)
    return out


def _key(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _r(x: float) -> float:
    """Rounded for a stable, readable manifest (statistics, not parity figures)."""
    return float(f"{x:.6g}") if math.isfinite(x) else x


def stored_rows(schema: ModelSchema, frame: pd.DataFrame, rows: int = STORED_ROWS) -> list[dict[str, Any]]:
    """The first ``rows`` sample rows as JSON records (missing values as null)."""
    records = []
    for row in frame.head(rows).itertuples(index=False, name=None):
        record: dict[str, Any] = {}
        for spec, v in zip(schema.inputs, row, strict=True):
            record[spec.name] = _json_value(v, spec.dtype)
        records.append(record)
    return records


def _json_value(v: Any, dtype: str) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    if dtype == "string":
        return str(v)
    if dtype == "bool":
        return bool(v)
    if dtype == "int64":
        return int(v)
    return float(v)


def expected_document(p: Predictions) -> dict[str, Any]:
    """The original model's answers for the stored rows (``expected.json``), for ``bundle verify``."""
    doc: dict[str, Any] = {}
    if p.labels is not None:
        doc["labels"] = p.labels.tolist()
    if p.probabilities is not None:
        doc["probabilities"] = p.probabilities.tolist()
    if p.values is not None:
        doc["values"] = p.values.tolist()
    return doc
