"""Requests → numpy feeds (DESIGN.md §3, §4).

``CompiledSchema(manifest)`` is built once per bundle version. It accepts the four request shapes of
the ``/v1`` API and returns a ``Feed`` (one array per ONNX input, shape ``[n_rows, n_features]``):

    from_record({"age": 41, "city": "Berlin"})          one record (or a positional list, numeric models)
    from_records([{...}, {...}])                        many records
    from_columns({"age": [41, 35], "city": [...]})      columns
    from_rows([[5.1, 3.5, 1.4, 0.2], ...])              positional rows (numeric models only)

Every conversion first tries a vectorised fast path (one ``np.asarray`` per tensor, bulk checks). Only
when that path cannot explain the request does the slow path walk every value, collect up to 20
problems located as ``["inputs", 3, "age"]`` (records), ``["inputs", "age", 3]`` (columns) or
``["inputs", 3, 1]`` (rows), and raise ``InvalidInput``. The slow path is the authority: the fast path
accepts a subset of what it accepts and produces the same arrays.

The request shapes the slow path walks, and how it locates problems, are ``bundlegate.request_shapes``;
``Feed`` and ``Prediction`` are ``bundlegate.feed``; predictions become JSON answers in
``bundlegate.answers`` (``CompiledSchema`` is an ``Answers``).

Encodings: a null for a nullable numeric feature becomes NaN; a null for a nullable string feature
becomes ``MISSING_STRING`` (the empty string), which is what the packer's imputers treat as missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np
import numpy.typing as npt

from bundlegate.answers import Answers
from bundlegate.errors import InvalidInput, problem
from bundlegate.feed import Array, Feed
from bundlegate.manifest import InputSpec, Manifest, OnnxInput
from bundlegate.request_shapes import (
    MISSING,
    ColumnsSource,
    Loc,
    Problems,
    RecordSource,
    RecordsSource,
    RowSource,
    Source,
    columns_loc,
    json_type,
    pos_loc,
    record_loc,
    records_loc,
    rows_loc,
)

MISSING_STRING = ""
DEFAULT_MAX_ROWS = 10_000
DEFAULT_MAX_STRING_LENGTH = 1024

_NUMERIC = frozenset({"float32", "float64", "int64"})
_NP_DTYPES: dict[str, npt.DTypeLike] = {
    "float32": np.float32,
    "float64": np.float64,
    "int64": np.int64,
    "bool": np.bool_,
    "string": object,
}
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_NUMBER_TYPES = frozenset({int, float})
_NONE = type(None)

# one feature of a one-tensor-per-feature model: tensor name, feature index, numpy dtype, manifest
# dtype of the tensor, nullable, largest magnitude, int64 feature, categories when unknown ones are refused
_Scalar = tuple[str, int, npt.DTypeLike, str, bool, float, bool, frozenset[Any] | None]


@dataclass(frozen=True, slots=True)
class _Tensor:
    """One ONNX input and what the fast path needs to know about it, computed once."""

    name: str
    dtype: npt.DTypeLike
    kind: str  # the manifest dtype of the tensor
    features: tuple[int, ...]  # indices into CompiledSchema.inputs
    block: bool  # several numeric features converted as one 2-D array
    nullable: npt.NDArray[np.bool_] | None  # per column; None when no feature is nullable
    int_cols: list[int]  # columns of int64 features (floats there must be integral)
    limit: float  # largest magnitude the dtype holds

    @property
    def width(self) -> int:
        return len(self.features)

    @staticmethod
    def build(name: str, kind: str, features: tuple[int, ...], specs: Sequence[InputSpec]) -> _Tensor:
        cols = [specs[i] for i in features]
        block = len(cols) > 1 and kind in _NUMERIC and all(s.dtype in _NUMERIC for s in cols)
        nullable = np.array([s.nullable for s in cols]) if any(s.nullable for s in cols) else None
        ints = [j for j, s in enumerate(cols) if s.dtype == "int64"]
        limit = float(np.finfo(np.float32).max) if kind == "float32" else float(np.finfo(np.float64).max)
        return _Tensor(name, _NP_DTYPES[kind], kind, features, block, nullable, ints, limit)


def _one_row(rows: Sequence[Any], t: _Tensor) -> Array | None:
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


class CompiledSchema(Answers):
    """The request schema of one bundle version, compiled for fast conversion (see module docstring);
    it writes the answers of its version too (``Answers``)."""

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
        self.numeric = all(i.dtype in _NUMERIC for i in self.inputs)
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
            i: _Tensor.build(t.name, t.kind, (i,), self.inputs) for t in self._tensors for i in t.features
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
        Answers.__init__(self, manifest)

    def _plan(self, manifest: Manifest) -> Iterator[_Tensor]:
        index = {name: i for i, name in enumerate(self.names)}
        specs: Sequence[OnnxInput] = manifest.onnx_inputs
        if not specs:  # runtime sklearn: one 2-D array (numeric) or one column per feature
            if self.numeric:
                specs = [OnnxInput(name="X", dtype="float64", features=list(self.names))]
            else:
                specs = [OnnxInput(name=s.name, dtype=s.dtype, features=[s.name]) for s in self.inputs]
        for spec in specs:
            yield _Tensor.build(spec.name, spec.dtype, tuple(index[f] for f in spec.features), self.inputs)

    def _scalars(self) -> list[_Scalar] | None:
        """The one-record plan when every tensor holds one string or number feature, else None."""
        plan: list[_Scalar] = []
        for t in self._tensors:
            if len(t.features) != 1:
                return None
            i = t.features[0]
            spec = self.inputs[i]
            string = t.kind == "string" and spec.dtype == "string"
            number = t.kind in ("float32", "float64") and spec.dtype in _NUMERIC
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
            return self._slow(RecordSource(obj), record_loc)
        if isinstance(obj, list) and self.numeric:
            feed = self._rows_fast([obj])
            return feed if feed is not None else self._slow(RowSource([obj], len(self.names)), pos_loc)
        expected = "an object of features" + (" or an array of numbers" if self.numeric else "")
        raise InvalidInput("a record must be " + expected, [problem(["inputs"], "expected " + expected)])

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
        return feed if feed is not None else self._slow(RecordsSource(records), records_loc)

    def from_columns(self, columns: Any) -> Feed:
        """Columns: an object mapping every feature to a list of values of equal length."""
        if not isinstance(columns, dict):
            raise InvalidInput("columns must be an object", [problem(["inputs"], "expected an object")])
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
        return self._slow(source, columns_loc)

    def from_rows(self, rows: Any) -> Feed:
        """Positional rows (numeric models only): a list of lists of numbers in feature order. (A
        request body of such rows usually arrives through ``from_flat`` instead, see ``http.flatrows``.)"""
        if not self.numeric:
            raise InvalidInput(
                "positional rows need a purely numeric model; send records or columns",
                [problem(["inputs"], "expected records or columns: this model has non-numeric features")],
            )
        self._check_batch(rows)
        feed = self._rows_fast(rows)
        return feed if feed is not None else self._slow(RowSource(rows, len(self.names)), rows_loc)

    def from_batch(self, obj: Any) -> Feed:
        """A ``/v1`` batch body's ``inputs``: records, positional rows (list of lists) or columns."""
        if isinstance(obj, dict):
            return self.from_columns(obj)
        if isinstance(obj, list) and obj and isinstance(obj[0], list):
            return self.from_rows(obj)
        return self.from_records(obj)

    # ------------------------------------------------------------------ fast paths

    def _check_batch(self, obj: Any) -> None:
        if not isinstance(obj, list):
            raise InvalidInput("a batch must be a list", [problem(["inputs"], "expected an array")])
        self._check_count(len(obj))

    def _check_count(self, n: int) -> None:
        if n == 0:
            raise InvalidInput("the batch is empty", [problem(["inputs"], "expected at least one row")])
        if n > self.max_rows:
            raise InvalidInput(
                f"the batch has {n} rows, more than the limit of {self.max_rows}",
                [problem(["inputs"], f"at most {self.max_rows} rows per request", "too_many_rows")],
            )

    def from_flat(self, numbers: npt.NDArray[np.floating[Any]], n: int) -> Feed | None:
        """``n`` positional rows given as one flat array of floats (``flat_width`` values per row: the
        doubles of ``http.flatrows``, or binary tensor data) as the one float tensor, without a copy
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
            arr = self._block(rows, self._tensors[0], len(rows))
            return None if arr is None else Feed({self._tensors[0].name: arr}, len(rows))
        width = len(self.names)
        try:
            if any(len(r) != width for r in rows):
                return None
            return self._from_tuples(rows)
        except TypeError:
            return None

    def _from_tuples(self, tuples: list[Any]) -> Feed | None:
        """Rows of values in feature order (tuples from records or positional lists); None → slow path."""
        n_rows = len(tuples)
        if self._rows_direct:
            arr = self._block(tuples, self._tensors[0], n_rows)
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
                arr = self._block([cols[i] for i in t.features], t, n_rows, transposed=True)
            else:
                parts = [self._column(cols[i], i, t) for i in t.features]
                if any(p is None for p in parts):
                    return None
                arr = parts[0] if len(parts) == 1 else np.hstack(parts)  # type: ignore[arg-type]
            if arr is None:
                return None
            arrays[t.name] = arr
        return Feed(arrays, n_rows)

    def _block(self, rows: Sequence[Any], t: _Tensor, n: int, transposed: bool = False) -> Array | None:
        """A 2-D numeric array from rows (or columns, ``transposed``) of numbers; None → slow path."""
        if n == 1 and not transposed and t.kind != "int64":
            arr = _one_row(rows, t)
            if arr is not None:
                return arr
        try:
            types = set(map(type, chain.from_iterable(rows)))
        except TypeError:
            return None
        has_null = _NONE in types
        if has_null:
            types.discard(_NONE)
            if t.nullable is None:
                return None
        if not types <= _NUMBER_TYPES:
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

    def _column(self, values: Sequence[Any], i: int, t: _Tensor) -> Array | None:
        """One feature's values as an ``[n, 1]`` array of the tensor's dtype; None → slow path."""
        if len(values) == 1 and t.kind in ("float32", "float64") and self.inputs[i].dtype != "bool":
            arr = _one_row((values,), self._singles[i])
            if arr is not None:
                return arr
        spec = self.inputs[i]
        types = set(map(type, values))
        if _NONE in types and not spec.nullable:
            return None
        kind = t.kind
        if kind == "string":
            if spec.dtype != "string" or not (types - {_NONE}) <= {str}:
                return None
            present = [v for v in values if v is not None] if _NONE in types else values
            if present and max(map(len, present)) > self.max_string_length:
                return None
            cats = self._categories.get(i)
            if cats is not None and not set(present) <= cats:
                return None
            if _NONE in types:
                values = [MISSING_STRING if v is None else v for v in values]
            arr = np.empty((len(values), 1), dtype=object)
            arr[:, 0] = values
            return arr
        if kind == "bool":
            return np.asarray(values, dtype=np.bool_).reshape(-1, 1) if types == {bool} else None
        allowed = {bool} if spec.dtype == "bool" else set(_NUMBER_TYPES)
        if not (types - {_NONE}) <= allowed:
            return None
        if kind == "int64" and _NONE in types:
            return None
        if spec.dtype == "bool":
            return np.asarray(values, dtype=t.dtype).reshape(-1, 1)
        return self._block([values], self._singles[i], len(values), transposed=True)

    # ------------------------------------------------------------------ slow path

    def _slow(self, source: Source, loc: Callable[[int, str, int], Loc]) -> Feed:
        """Walk every value: convert it or say exactly what is wrong with it."""
        problems = Problems()
        source.structure(self.names, problems)
        n_rows = source.n_rows or 0
        arrays: dict[str, Array] = {}
        for t in self._tensors:
            columns: list[list[Any]] = []
            for i in t.features:
                spec = self.inputs[i]
                column: list[Any] = []
                for r in range(n_rows):
                    if problems.full:
                        break
                    value = source.value(r, i, spec.name)
                    if value is MISSING:
                        column.append(None)
                        continue
                    converted, msg = self._convert(value, i, t)
                    if msg is not None:
                        problems.add(
                            loc(r, spec.name, i), msg, "type" if msg.startswith("expected") else "value"
                        )
                    column.append(converted)
                columns.append(column)
            if not problems.items:
                with np.errstate(over="ignore", invalid="ignore"):
                    arr = np.empty((n_rows, len(columns)), dtype=t.dtype)
                    for j, column in enumerate(columns):
                        arr[:, j] = column
                arrays[t.name] = arr
        problems.raise_if_any()
        return Feed(arrays, n_rows)

    def _convert(self, value: Any, i: int, t: _Tensor) -> tuple[Any, str | None]:
        """One value → (what goes into the tensor, None) or (None, what is wrong)."""
        spec = self.inputs[i]
        if value is None:
            if not spec.nullable:
                return None, "null is not allowed for this feature"
            if t.kind == "string":
                return MISSING_STRING, None
            if t.kind in ("float32", "float64"):
                return math.nan, None
            return None, "null cannot be encoded for this feature"
        if spec.dtype == "string":
            if not isinstance(value, str):
                return None, f"expected a string, got {json_type(value)}"
            if len(value) > self.max_string_length:
                return None, f"string longer than {self.max_string_length} characters"
            cats = self._categories.get(i)
            if cats is not None and value not in cats:
                return None, "unknown category"
            return value, None
        if spec.dtype == "bool":
            if not isinstance(value, bool):
                return None, f"expected a boolean, got {json_type(value)}"
            return value, None
        # numeric features
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None, f"expected a number, got {json_type(value)}"
        if spec.dtype == "int64" or t.kind == "int64":
            if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
                return None, "expected an integer"
            if t.kind == "int64":
                if not _INT64_MIN <= int(value) <= _INT64_MAX:
                    return None, "integer out of the 64-bit range"
                return int(value), None
        try:
            with np.errstate(over="ignore"):
                cast = np.asarray(float(value), dtype=t.dtype)
        except OverflowError:
            return None, f"number out of range for {t.kind}"
        if not np.isfinite(cast):
            return None, f"number out of range for {t.kind}" if math.isfinite(
                value
            ) else "not a finite number"
        return cast.item(), None
