"""The checked path of ``CompiledSchema``: every value of a request converted, or what is wrong with it.

The vectorised paths (``_vectorised``) accept a subset of what this path accepts and build the same
arrays; this path is the authority. ``walk`` visits the values of a request shape (``_shapes``),
``ValueRules.convert`` judges one value against its feature's spec and its tensor, and up to 20
problems come back in one ``InvalidRows`` (DESIGN.md §4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bundlegate.decoding._shapes import MISSING, Problems, Source, json_type
from bundlegate.decoding._vectorised import TensorPlan
from bundlegate.feed import Array, Feed
from bundlegate.manifest import InputSpec

MISSING_STRING = ""
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class ValueRules:
    """What the checked path checks a value against: the features, the tensors they feed, the string
    limit and the closed category sets (feature index → categories)."""

    inputs: tuple[InputSpec, ...]
    tensors: Sequence[TensorPlan]
    max_string_length: int
    categories: dict[int, frozenset[Any]]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    def convert(self, value: Any, i: int, t: TensorPlan) -> tuple[Any, str | None]:
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
            cats = self.categories.get(i)
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


def walk(source: Source, values: ValueRules) -> Feed:
    """Walk every value of ``source``: convert it, or say exactly what is wrong with it (up to the
    limit of ``Problems``); ``InvalidRows`` if anything is."""
    problems = Problems(source.shape)
    source.structure(values.names, problems)
    n_rows = source.n_rows or 0
    arrays: dict[str, Array] = {}
    for t in values.tensors:
        columns: list[list[Any]] = []
        for i in t.features:
            spec = values.inputs[i]
            column: list[Any] = []
            for r in range(n_rows):
                if problems.full:
                    break
                value = source.value(r, i, spec.name)
                if value is MISSING:
                    column.append(None)
                    continue
                converted, msg = values.convert(value, i, t)
                if msg is not None:
                    problems.add(r, spec.name, msg, "type" if msg.startswith("expected") else "value")
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
