"""``CompiledSchema``: request values → the model's feed, built once per bundle version.

It takes the four shapes a request can hold its values in and returns a ``Feed`` (one array per
ONNX input, shape ``[n_rows, n_features]``):

    from_record({"age": 41, "city": "Berlin"})          one record (or a positional list, numeric models)
    from_records([{...}, {...}])                        many records
    from_columns({"age": [41, 35], "city": [...]})      columns
    from_rows([[5.1, 3.5, 1.4, 0.2], ...])              positional rows (numeric models only)
    from_flat(numbers, n)                               n positional rows already as one float array

Each first tries a vectorised path (``_vectorised``: one ``np.asarray`` per tensor, bulk checks).
Only when that path cannot explain the request does the checked path (``_checked``) walk every value
and raise ``InvalidRows`` with up to 20 problems, each a ``Problem(row, feature, what)`` that the
protocol which received the request locates in its own body. The checked path is the authority: the
vectorised one accepts a subset of what it accepts and produces the same arrays.

Encodings: a null for a nullable numeric feature becomes NaN; a null for a nullable string feature
becomes ``MISSING_STRING`` (the empty string), which is what the packer's imputers treat as missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from bundlegate.decoding._checked import MISSING_STRING, ValueRules, walk
from bundlegate.decoding._shapes import ColumnsSource, RecordSource, RecordsSource, RowSource
from bundlegate.decoding._vectorised import NONE_TYPE, NUMBER_TYPES, TensorPlan, numeric_block, one_row
from bundlegate.dtypes import NUMERIC
from bundlegate.errors import InvalidRows, Problem
from bundlegate.feed import Array, Feed
from bundlegate.manifest import InputSpec, Manifest, OnnxInput

DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_STRING_LENGTH = 1024
__all__ = ["DEFAULT_MAX_ROWS", "DEFAULT_MAX_STRING_LENGTH", "MISSING_STRING", "CompiledSchema"]

# one feature of a one-tensor-per-feature model: tensor name, feature index, numpy dtype, manifest
# dtype of the tensor, nullable, largest magnitude, int64 feature, categories when unknown ones are refused
_Scalar = tuple[str, int, npt.DTypeLike, str, bool, float, bool, frozenset[Any] | None]


class CompiledSchema:
    """The request schema of one bundle version, compiled for fast conversion (see module docstring)."""

    def __init__(
        self,
        manifest: Manifest,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    ) -> None:
        self.manifest = manifest
        self.inputs: tuple[InputSpec, ...] = tuple(manifest.inputs)
        self.names: tuple[str, ...] = tuple(i.name for i in self.inputs)
        self.max_rows = max_rows
        self.max_string_length = max_string_length
        self.numeric = all(i.dtype in NUMERIC for i in self.inputs)
        n = len(self.names)
        if n == 1:
            only = self.names[0]
            self._get: Callable[[Any], tuple[Any, ...]] = lambda r: (r[only],)
        else:
            self._get = itemgetter(*self.names)
        self._categories: dict[int, frozenset[Any]] = {
            i: frozenset(s.categories)
            for i, s in enumerate(self.inputs)
            if s.categories is not None and not s.allow_unknown
        }
        self._tensors = tuple(self._plan(manifest))
        self._singles = {
            i: TensorPlan.build(t.name, t.kind, (i,), self.inputs) for t in self._tensors for i in t.features
        }
        whole = self._tensors[0] if len(self._tensors) == 1 else None
        # the common numeric model: one float tensor fed by every feature in order
        self._rows_direct = (
            whole is not None and whole.block and whole.features == tuple(range(n)) and whole.kind != "int64"
        )
        # positional rows as one flat array of numbers (``from_flat``): that float tensor, no int features
        flat = whole is not None and self._rows_direct and not whole.int_cols
        self.flat_width = whole.width if flat and whole is not None else None
        self._scalar_plan = self._scalars()
        self._rules = ValueRules(self.inputs, self._tensors, max_string_length, self._categories)

    def _plan(self, manifest: Manifest) -> Iterator[TensorPlan]:
        index = {name: i for i, name in enumerate(self.names)}
        specs: Sequence[OnnxInput] = manifest.onnx_inputs
        if not specs:  # runtime sklearn: one 2-D array (numeric) or one column per feature
            if self.numeric:
                specs = [OnnxInput(name="X", dtype="float64", features=list(self.names))]
            else:
                specs = [OnnxInput(name=s.name, dtype=s.dtype, features=[s.name]) for s in self.inputs]
        for spec in specs:
            yield TensorPlan.build(spec.name, spec.dtype, tuple(index[f] for f in spec.features), self.inputs)

    def _scalars(self) -> list[_Scalar] | None:
        """The one-record plan when every tensor holds one string or number feature, else None."""
        plan: list[_Scalar] = []
        for t in self._tensors:
            if len(t.features) != 1:
                return None
            i = t.features[0]
            spec = self.inputs[i]
            string = t.kind == "string" and spec.dtype == "string"
            number = t.kind in ("float32", "float64") and spec.dtype in NUMERIC
            if not (string or number):
                return None
            limit = self._singles[i].limit
            cats = self._categories.get(i)
            plan.append((t.name, i, t.dtype, t.kind, spec.nullable, limit, spec.dtype == "int64", cats))
        return plan

    # ------------------------------------------------------------------ public conversions

    def from_record(self, obj: Any) -> Feed:
        """One record: an object of features, or (numeric models) a positional list of values."""
        if isinstance(obj, dict):
            if len(obj) == len(self.names):
                try:
                    feed = self._from_tuples([self._get(obj)])
                except KeyError:
                    feed = None
                if feed is not None:
                    return feed
            return walk(RecordSource(obj), self._rules)
        if isinstance(obj, list) and self.numeric:
            feed = self._rows_fast([obj])
            return (
                feed if feed is not None else walk(RowSource([obj], len(self.names), "values"), self._rules)
            )
        expected = "an object of features" + (" or an array of numbers" if self.numeric else "")
        raise _whole("a record must be " + expected, "expected " + expected, shape="record")

    def from_records(self, records: Any) -> Feed:
        """Many records: a list of objects of features."""
        self._check_batch(records)
        n = len(self.names)
        try:
            tuples = [self._get(r) for r in records]
            exact = sum(map(len, records)) == n * len(records)
        except (KeyError, TypeError):
            exact = False
        feed = self._from_tuples(tuples) if exact else None
        return feed if feed is not None else walk(RecordsSource(records), self._rules)

    def from_columns(self, columns: Any) -> Feed:
        """Columns: an object mapping every feature to a list of values of equal length."""
        if not isinstance(columns, dict):
            raise _whole("columns must be an object", "expected an object", shape="columns")
        try:
            cols = self._get(columns) if len(columns) == len(self.names) else None
        except KeyError:
            cols = None
        if cols is not None and all(type(c) is list for c in cols):
            n_rows = len(cols[0])
            if all(len(c) == n_rows for c in cols):
                self._check_count(n_rows)
                feed = self._columns_fast(cols, n_rows)
                if feed is not None:
                    return feed
        source = ColumnsSource(columns, self.names)
        if source.n_rows is not None:
            self._check_count(source.n_rows)
        return walk(source, self._rules)

    def from_rows(self, rows: Any) -> Feed:
        """Positional rows (numeric models only): a list of lists of numbers in feature order. (A
        request body of such rows usually arrives through ``from_flat`` instead.)"""
        if not self.numeric:
            raise _whole(
                "positional rows need a purely numeric model; send records or columns",
                "expected records or columns: this model has non-numeric features",
                shape="rows",
            )
        self._check_batch(rows)
        feed = self._rows_fast(rows)
        return feed if feed is not None else walk(RowSource(rows, len(self.names)), self._rules)

    def from_batch(self, obj: Any) -> Feed:
        """A ``/v1`` batch body's ``inputs``: records, positional rows (list of lists) or columns."""
        if isinstance(obj, dict):
            return self.from_columns(obj)
        if isinstance(obj, list) and obj and isinstance(obj[0], list):
            return self.from_rows(obj)
        return self.from_records(obj)

    # ------------------------------------------------------------------ vectorised paths

    def _check_batch(self, obj: Any) -> None:
        if not isinstance(obj, list):
            raise _whole("a batch must be a list", "expected an array")
        self._check_count(len(obj))

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise _whole("the batch is empty", "expected at least one row")
        if n > self.max_rows:
            raise _whole(
                f"the batch has {n} rows, more than the limit of {self.max_rows}",
                f"at most {self.max_rows} rows per request",
                "too_many_rows",
            )

    def from_flat(self, numbers: npt.NDArray[np.floating[Any]], n: int) -> Feed | None:
        """``n`` positional rows given as one flat array of floats (``flat_width`` values per row: the
        doubles a body parser wrote, or binary tensor data) as the one float tensor, without a copy
        when the dtype is already the tensor's; None when a value does not fit the dtype (the checked
        paths then decide and word the error)."""
        self._check_count(n)
        t = self._tensors[0]
        if numbers.size != n * t.width:
            return None
        with np.errstate(over="ignore", invalid="ignore"):
            values = numbers.astype(t.dtype, copy=False)
        if not np.isfinite(values).all():  # too large for float32 became inf
            return None
        return Feed({t.name: values.reshape(n, t.width)}, n)

    def _rows_fast(self, rows: list[Any]) -> Feed | None:
        if self._rows_direct:
            arr = numeric_block(rows, self._tensors[0], len(rows))
            return None if arr is None else Feed({self._tensors[0].name: arr}, len(rows))
        width = len(self.names)
        try:
            if any(len(r) != width for r in rows):
                return None
            return self._from_tuples(rows)
        except TypeError:
            return None

    def _from_tuples(self, tuples: list[Any]) -> Feed | None:
        """Rows of values in feature order (tuples from records or positional lists); None → checked path."""
        n_rows = len(tuples)
        if self._rows_direct:
            arr = numeric_block(tuples, self._tensors[0], n_rows)
            return None if arr is None else Feed({self._tensors[0].name: arr}, n_rows)
        if n_rows == 1 and self._scalar_plan is not None:
            feed = self._one_record(tuples[0], self._scalar_plan)
            if feed is not None:
                return feed
        return self._columns_fast(list(zip(*tuples, strict=True)), n_rows)

    def _one_record(self, values: Sequence[Any], plan: list[_Scalar]) -> Feed | None:
        """One record for a model with one tensor per feature (mixed pipelines): plain Python checks
        and one tiny array per feature beat the column machinery for a single row."""
        arrays: dict[str, Array] = {}
        for tensor, index, dtype, kind, nullable, limit, integer, categories in plan:
            v = values[index]
            tv = type(v)
            if kind == "string":
                if tv is str:
                    if len(v) > self.max_string_length or (categories is not None and v not in categories):
                        return None
                elif v is None and nullable:
                    v = MISSING_STRING
                else:
                    return None
            elif tv is float or tv is int:
                if not -limit <= v <= limit or (integer and tv is float and not v.is_integer()):
                    return None
            elif v is None and nullable:
                v = math.nan
            else:
                return None
            arrays[tensor] = np.array([[v]], dtype=dtype)
        return Feed(arrays, 1)

    def _columns_fast(self, cols: Sequence[Sequence[Any]], n_rows: int) -> Feed | None:
        arrays: dict[str, Array] = {}
        for t in self._tensors:
            if t.block:
                arr = numeric_block([cols[i] for i in t.features], t, n_rows, transposed=True)
            else:
                parts = [self._column(cols[i], i, t) for i in t.features]
                if any(p is None for p in parts):
                    return None
                arr = parts[0] if len(parts) == 1 else np.hstack(parts)  # type: ignore[arg-type]
            if arr is None:
                return None
            arrays[t.name] = arr
        return Feed(arrays, n_rows)

    def _column(self, values: Sequence[Any], i: int, t: TensorPlan) -> Array | None:
        """One feature's values as an ``[n, 1]`` array of the tensor's dtype; None → checked path."""
        if len(values) == 1 and t.kind in ("float32", "float64") and self.inputs[i].dtype != "bool":
            arr = one_row((values,), self._singles[i])
            if arr is not None:
                return arr
        spec = self.inputs[i]
        types = set(map(type, values))
        if NONE_TYPE in types and not spec.nullable:
            return None
        kind = t.kind
        if kind == "string":
            if spec.dtype != "string" or not (types - {NONE_TYPE}) <= {str}:
                return None
            present = [v for v in values if v is not None] if NONE_TYPE in types else values
            if present and max(map(len, present)) > self.max_string_length:
                return None
            cats = self._categories.get(i)
            if cats is not None and not set(present) <= cats:
                return None
            if NONE_TYPE in types:
                values = [MISSING_STRING if v is None else v for v in values]
            arr = np.empty((len(values), 1), dtype=object)
            arr[:, 0] = values
            return arr
        if kind == "bool":
            return np.asarray(values, dtype=np.bool_).reshape(-1, 1) if types == {bool} else None
        allowed = {bool} if spec.dtype == "bool" else set(NUMBER_TYPES)
        if not (types - {NONE_TYPE}) <= allowed:
            return None
        if kind == "int64" and NONE_TYPE in types:
            return None
        if spec.dtype == "bool":
            return np.asarray(values, dtype=t.dtype).reshape(-1, 1)
        return numeric_block([values], self._singles[i], len(values), transposed=True)


def _whole(message: str, msg: str, kind: str = "invalid", shape: str = "records") -> InvalidRows:
    """A problem with the request's values as a whole (no row, no feature)."""
    return InvalidRows(message, [Problem(None, None, msg, kind)], shape)
