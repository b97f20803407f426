"""The buckets drift is counted in, each with its share in the bundle's reference, and the PSI.

``NumericBins`` counts k numeric columns at once in the reference's equal-width bins (the packer
stores ``np.histogram`` edges over the sample's range), plus a bucket below the range, one above it
and one for nulls (NaN): a handful of array operations per batch, no Python per value.
``CategoryBuckets`` counts one column of categories (or predicted classes): the reference's values,
``__other__`` where the reference folded rare values into it, ``__unseen__`` and ``__null__``; values
are counted in C and the Python work is one lookup per distinct value of a chunk.

    psi(counts, expected) = sum((a - e) * ln(a / e))   over buckets, shares floored at 1e-4

PSI reads as: below 0.1 no shift, 0.1-0.2 a moderate one, above 0.2 a shift worth acting on.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
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
        # t = (x - lo) * scale + 1 is 1 + the bin of x: below 1 under the range, over bins + 1 above it;
        # the scale is a hair short so the upper edge falls in the last bin, as in np.histogram
        scale = bins / (self.hi - self.lo) * (1.0 - 1e-9)
        self._scale = scale[:, None]
        self._lo = self.lo[:, None]
        self._top: Any = bins[0] + 1.0 if len(set(bins.tolist())) == 1 else (bins + 1.0)[:, None]
        self.sizes = [int(b) + 3 for b in bins]
        self._null = np.array([s - 1 for s in self.sizes], dtype=np.float64)[:, None]
        self._offsets = np.cumsum([0, *self.sizes[:-1]]).astype(np.intp)[:, None]
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
        # a [k, n] copy worked on in place: one long inner loop per feature, not n loops of k
        t = np.array(values.T, dtype=np.float64, order="C")
        t -= self._lo
        t *= self._scale
        t += 1.0
        np.clip(t, 0.0, self._top, out=t)
        nulls = np.isnan(t)
        if nulls.any():
            t[nulls] = np.broadcast_to(self._null, t.shape)[nulls]
        idx = t.astype(np.intp)
        idx += self._offsets
        return np.bincount(idx.ravel(), minlength=self.total)

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
        """Bucket counts of one column (any dtype): counted by value (``np.unique`` for numbers,
        ``collections.Counter`` for strings, both in C), then one lookup per distinct value."""
        if values.dtype.kind in "biuf":
            uniq, n = np.unique(values, return_counts=True)
            distinct: Iterable[tuple[Any, int]] = zip(uniq.tolist(), n.tolist(), strict=True)
        else:
            distinct = Counter(values.tolist()).items()
        out = np.zeros(self.size, dtype=np.int64)
        for value, count in distinct:
            out[self._bucket(value)] += count
        return out

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
