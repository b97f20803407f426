"""The buckets drift is counted in, each with its share in the bundle's reference, and the PSI.

``NumericBins`` counts k numeric columns at once in the reference's equal-width bins (the packer
stores ``np.histogram`` edges over the sample's range), plus a bucket below the range, one above it
and one for nulls (NaN): a handful of array operations per batch, no Python per value.
``CategoryBuckets`` counts one column of categories (or predicted classes): the reference's values,
``__other__`` where the reference folded rare values into it, ``__unseen__`` and ``__null__``; its
Python work is one dict lookup per distinct value of a batch.

    psi(counts, expected) = sum((a - e) * ln(a / e))   over buckets, shares floored at 1e-4

PSI reads as: below 0.1 no shift, 0.1-0.2 a moderate one, above 0.2 a shift worth acting on.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from bundlegate.feed import Array

EPS = 1e-4  # the floor of a share: an empty bucket on either side keeps the logarithm finite
UNSEEN = "__unseen__"
OTHER = "__other__"
NULL = "__null__"
_BOOL_KEYS = {"0": "false", "1": "true", "False": "false", "True": "true"}


def psi(counts: Array, expected: Array) -> float | None:
    """The population stability index of ``counts`` against the ``expected`` shares (None: no rows)."""
    total = float(counts.sum())
    if total <= 0:
        return None
    actual = np.maximum(counts / total, EPS)
    e = np.maximum(expected, EPS)
    return float(np.sum((actual - e) * np.log(actual / e)))


class NumericBins:
    """The reference bins of k numeric features; ``counts(X)`` for an ``[n, k]`` array gives the k
    features' bucket counts one after another (``size`` buckets each: below, the bins, above, null)."""

    def __init__(self, edges: Sequence[Sequence[float]], null_rates: Sequence[float], counts: Sequence[Any]):
        self.k = len(edges)
        bins = np.array([len(e) - 1 for e in edges], dtype=np.float64)
        self.lo = np.array([e[0] for e in edges], dtype=np.float64)
        self.hi = np.array([e[-1] for e in edges], dtype=np.float64)
        self.bins = bins
        self.width = (self.hi - self.lo) / bins
        self.sizes = [int(b) + 3 for b in bins]
        self.offsets = np.cumsum([0, *self.sizes[:-1]]).astype(np.float64)
        self.total = int(sum(self.sizes))
        self.labels: list[list[str]] = []
        self.expected: list[Array] = []
        for e, null_rate, c in zip(edges, null_rates, counts, strict=True):
            c = np.asarray(c, dtype=np.float64)
            shares = c / c.sum() * (1.0 - null_rate) if c.sum() > 0 else np.zeros(len(c))
            self.expected.append(np.concatenate([[0.0], shares, [0.0, null_rate]]))
            self.labels.append(
                [f"< {_num(e[0])}"]
                + [f"{_num(a)} .. {_num(b)}" for a, b in itertools.pairwise(e)]
                + [f"> {_num(e[-1])}", NULL]
            )

    def counts(self, values: Array) -> Array:
        """Bucket counts of an ``[n, k]`` array (one flat vector, the k features in order)."""
        x = values.astype(np.float64, copy=False)
        idx = np.floor((x - self.lo) / self.width)
        np.clip(idx, -1.0, self.bins, out=idx)
        idx = np.where(x == self.hi, self.bins - 1.0, idx) + 1.0  # the last bin holds its upper edge
        idx = np.where(np.isnan(x), self.bins + 2.0, idx) + self.offsets
        return np.bincount(idx.astype(np.intp).ravel(), minlength=self.total)

    def split(self, flat: Array) -> list[Array]:
        """``counts``' flat vector as one array per feature."""
        return np.split(flat, np.cumsum(self.sizes)[:-1])


class CategoryBuckets:
    """The reference values of one categorical feature (or the predicted classes) as buckets."""

    def __init__(self, frequencies: dict[str, float], null_rate: float, *, empty_is_null: bool) -> None:
        keys = [k for k in frequencies if k != OTHER]
        self.labels = [*keys, OTHER, UNSEEN, NULL]
        seen = 1.0 - null_rate
        self.expected = np.array(
            [frequencies[k] * seen for k in keys] + [frequencies.get(OTHER, 0.0) * seen, 0.0, null_rate]
        )
        total = self.expected.sum()
        if total > 0:
            self.expected = self.expected / total
        self.size = len(self.labels)
        self._index = {k: i for i, k in enumerate(keys)}
        # values the reference did not list: rare ones it folded into __other__, else unseen
        self._unlisted = len(keys) + (0 if OTHER in frequencies else 1)
        self._null = self.size - 1
        self._empty_is_null = empty_is_null
        self._bools = set(keys) <= {"true", "false"}

    def counts(self, values: Array) -> Array:
        """Bucket counts of one column (any dtype): one lookup per distinct value."""
        if values.dtype == object:
            values = values.astype(str)
        uniq, inverse = np.unique(values, return_inverse=True)
        ids = np.fromiter((self._bucket(u) for u in uniq.tolist()), dtype=np.intp, count=len(uniq))
        return np.bincount(ids[inverse.ravel()], minlength=self.size)

    def _bucket(self, value: Any) -> int:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self._null
        key = ("true" if value else "false") if isinstance(value, bool) else str(value)
        if key == "" and self._empty_is_null:
            return self._null
        if self._bools:
            key = _BOOL_KEYS.get(key, key)
        return self._index.get(key, self._unlisted)


def _num(x: float) -> str:
    return f"{x:.6g}"
