"""The vectorised paths of ``CompiledSchema``: plain numbers into arrays with bulk checks.

``TensorPlan`` is one ONNX input and what these paths need to know about it, decided once per
version; ``numeric_block`` turns rows (or columns) of plain numbers into one 2-D array of the
tensor's dtype, ``one_row`` does one row with plain Python checks (cheaper than numpy's for a single
row). Both return None for anything they cannot explain: the checked path (``_checked``) then
decides and words the problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import numpy.typing as npt

from bundlegate.dtypes import NUMPY
from bundlegate.feed import Array
from bundlegate.manifest import InputSpec

NUMERIC = frozenset({"float32", "float64", "int64"})
NUMBER_TYPES = frozenset({int, float})
NONE_TYPE = type(None)


@dataclass(frozen=True, slots=True)
class TensorPlan:
    """One ONNX input and what the vectorised paths need to know about it, computed once."""

    name: str
    dtype: npt.DTypeLike
    kind: str  # the manifest dtype of the tensor
    features: tuple[int, ...]  # indices into the manifest's inputs
    block: bool  # several numeric features converted as one 2-D array
    nullable: npt.NDArray[np.bool_] | None  # per column; None when no feature is nullable
    int_cols: list[int]  # columns of int64 features (floats there must be integral)
    limit: float  # largest magnitude the dtype holds

    @property
    def width(self) -> int:
        return len(self.features)

    @staticmethod
    def build(name: str, kind: str, features: tuple[int, ...], specs: Sequence[InputSpec]) -> TensorPlan:
        cols = [specs[i] for i in features]
        block = len(cols) > 1 and kind in NUMERIC and all(s.dtype in NUMERIC for s in cols)
        nullable = np.array([s.nullable for s in cols]) if any(s.nullable for s in cols) else None
        ints = [j for j, s in enumerate(cols) if s.dtype == "int64"]
        limit = float(np.finfo(np.float32).max) if kind == "float32" else float(np.finfo(np.float64).max)
        return TensorPlan(name, NUMPY[kind], kind, features, block, nullable, ints, limit)


def one_row(rows: Sequence[Any], t: TensorPlan) -> Array | None:
    """One row of plain numbers into a float tensor: plain Python is cheaper than numpy's bulk checks."""
    row = rows[0]
    if not isinstance(row, list | tuple) or len(row) != t.width:
        return None
    limit = t.limit
    for v in row:
        tv = type(v)
        if (tv is not float and tv is not int) or not -limit <= v <= limit:
            return None
    if t.int_cols and any(type(row[j]) is float and not row[j].is_integer() for j in t.int_cols):
        return None
    return np.array(rows, dtype=t.dtype)


def numeric_block(rows: Sequence[Any], t: TensorPlan, n: int, transposed: bool = False) -> Array | None:
    """A 2-D numeric array from rows (or columns, ``transposed``) of numbers; None → checked path."""
    if n == 1 and not transposed and t.kind != "int64":
        arr = one_row(rows, t)
        if arr is not None:
            return arr
    try:
        types = set(map(type, chain.from_iterable(rows)))
    except TypeError:
        return None
    has_null = NONE_TYPE in types
    if has_null:
        types.discard(NONE_TYPE)
        if t.nullable is None:
            return None
    if not types <= NUMBER_TYPES:
        return None
    expected = (t.width, n) if transposed else (n, t.width)
    if t.kind == "int64":
        if has_null or float in types:
            return None
        try:
            arr = np.asarray(rows, dtype=np.int64)
        except (ValueError, OverflowError):
            return None
        if arr.shape != expected:
            return None
        return np.ascontiguousarray(arr.T) if transposed else arr
    try:
        arr = np.asarray(rows, dtype=np.float64)
    except (ValueError, OverflowError):
        return None
    if arr.shape != expected:
        return None
    if transposed:
        arr = arr.T
    # in range for the tensor's dtype: also false for inf and NaN, so nulls are allowed back below
    ok = np.abs(arr) <= t.limit
    if has_null:
        ok |= np.isnan(arr) & t.nullable
    if not ok.all():
        return None
    if t.int_cols and float in types:
        sub = arr[:, t.int_cols]
        fractional = np.trunc(sub) != sub  # NaN (a null) compares unequal: masked next
        if has_null:
            fractional &= ~np.isnan(sub)
        if fractional.any():
            return None
    return arr if t.kind == "float64" and not transposed else np.asarray(arr, dtype=t.dtype, order="C")
