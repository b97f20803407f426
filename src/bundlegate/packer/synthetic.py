"""Rows synthesized from what a fitted model knows, for the parity gate when no sample is given.

Numbers are drawn uniformly over a range the model reveals: a leading ``StandardScaler`` (mean ± 3 std),
``MinMaxScaler`` (the fitted range), tree split thresholds (their range, widened), else [-3, 3].
Strings are drawn from the categories an encoder saw; text from a vectorizer's vocabulary. Nullable
features get a missing value in every 7th row. Deterministic (seed 0). The manifest says
``parity.sample = "synthesized"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bundlegate.packer.schema_inference import ModelSchema, steps_of

if TYPE_CHECKING:
    import pandas as pd

SYNTHETIC_ROWS = 200


def synthesize(est: Any, schema: ModelSchema, rows: int = SYNTHETIC_ROWS) -> pd.DataFrame:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    steps = steps_of(est)
    if schema.mode == "text":
        vocab = sorted(getattr(steps[0], "vocabulary_", {}) or ["alpha", "beta", "gamma"])
        texts = [" ".join(rng.choice(vocab, size=8).tolist()) for _ in range(rows)]
        return pd.DataFrame({schema.names[0]: texts})
    ranges = _numeric_ranges(steps, len(schema.inputs)) if schema.mode == "numeric" else {}
    data: dict[str, Any] = {}
    for i, spec in enumerate(schema.inputs):
        if spec.dtype == "string":
            cats = [str(c) for c in spec.categories or ["a", "b", "c"]]
            col: Any = pd.Series(rng.choice(cats, size=rows), dtype=object)
        elif spec.dtype == "bool":
            col = pd.Series(rng.integers(0, 2, size=rows).astype(bool))
        else:
            lo, hi = ranges.get(i, (-3.0, 3.0))
            col = pd.Series(rng.uniform(lo, hi, size=rows))
            if spec.dtype == "int64":
                col = col.round()
        if spec.nullable:
            col = col.astype(object) if spec.dtype == "string" else col.astype(float)
            col[::7] = None if spec.dtype == "string" else np.nan
        data[spec.name] = col
    return pd.DataFrame(data)


def _numeric_ranges(steps: list[Any], n: int) -> dict[int, tuple[float, float]]:
    import numpy as np

    first = steps[0]
    if hasattr(first, "mean_") and hasattr(first, "scale_") and first.mean_ is not None:
        scale = first.scale_ if first.scale_ is not None else np.ones(n)
        return {
            i: (float(m - 3 * s), float(m + 3 * s))
            for i, (m, s) in enumerate(zip(first.mean_, scale, strict=False))
        }
    if hasattr(first, "data_min_") and hasattr(first, "data_max_"):
        return {
            i: (float(a), float(b))
            for i, (a, b) in enumerate(zip(first.data_min_, first.data_max_, strict=False))
        }
    thresholds: dict[int, list[float]] = {}
    for tree in _trees(steps[-1]):
        t = tree.tree_
        for f, thr in zip(t.feature, t.threshold, strict=True):
            if f >= 0:
                thresholds.setdefault(int(f), []).append(float(thr))
    out = {}
    for f, values in thresholds.items():
        lo, hi = min(values), max(values)
        pad = max(1e-3, (hi - lo) * 0.25)
        out[f] = (lo - pad, hi + pad)
    return out


def _trees(est: Any) -> list[Any]:
    if hasattr(est, "tree_"):
        return [est]
    estimators = getattr(est, "estimators_", None)
    if estimators is None:
        return []
    import numpy as np

    return [t for t in np.asarray(estimators, dtype=object).ravel().tolist() if hasattr(t, "tree_")]
