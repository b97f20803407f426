"""The four request shapes of ``/v1`` as the schema's slow path reads them (DESIGN.md §4).

When the vectorised fast path of ``CompiledSchema`` cannot explain a request, the slow path walks every
value through a ``Source``: one record, many records, positional rows or columns. A source reports what
is wrong with the request's structure (a missing or unknown feature, a row of the wrong width, columns
of unequal length) and hands out each value by row and feature, or ``MISSING``. ``Problems`` collects
at most ``MAX_DETAILS`` problems, each located the way the client wrote it: ``["inputs", 3, "age"]``
(records), ``["inputs", "age", 3]`` (columns), ``["inputs", 3, 1]`` (rows); the ``*_loc`` functions
make those locations.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bundlegate.errors import MAX_DETAILS, InvalidInput, problem

Loc = tuple[str | int, ...]
MISSING: Any = object()  # a feature absent from a record
_MAX_KEY_ECHO = 64


def json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int | float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list | tuple):
        return "an array"
    if isinstance(v, dict):
        return "an object"
    return "an unsupported value"


def _key(k: object) -> str:
    s = k if isinstance(k, str) else repr(k)
    return s if len(s) <= _MAX_KEY_ECHO else s[:_MAX_KEY_ECHO] + "…"


class Problems:
    """Collects at most ``MAX_DETAILS`` problems; ``full`` tells the slow path to stop looking."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    def add(self, loc: Loc, msg: str, kind: str = "invalid") -> None:
        if len(self.items) < MAX_DETAILS:
            self.items.append(problem(["inputs", *loc], msg, kind))

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_DETAILS

    def raise_if_any(self, what: str = "the inputs do not match the model's schema") -> None:
        if self.items:
            raise InvalidInput(what, self.items)


class Source:
    """The values of one request shape, addressed by row and feature, with its structural problems."""

    n_rows: int | None = None

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        raise NotImplementedError

    def value(self, row: int, index: int, name: str) -> Any:
        raise NotImplementedError


def _check_keys(obj: dict[Any, Any], names: Sequence[str], where: Loc, problems: Problems) -> None:
    for name in names:
        if name not in obj:
            problems.add((*where, name), "missing feature", "missing")
    known = set(names)
    for key in obj:
        if key not in known:
            problems.add((*where, _key(key)), "unknown feature", "extra")


class RecordSource(Source):
    def __init__(self, record: dict[Any, Any]) -> None:
        self.record = record
        self.n_rows = 1

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        _check_keys(self.record, names, (), problems)

    def value(self, row: int, index: int, name: str) -> Any:
        return self.record.get(name, MISSING)


class RecordsSource(Source):
    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.n_rows = len(records)

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        for r, record in enumerate(self.records):
            if not isinstance(record, dict):
                problems.add((r,), f"expected an object of features, got {json_type(record)}", "type")
            else:
                _check_keys(record, names, (r,), problems)
            if problems.full:
                return

    def value(self, row: int, index: int, name: str) -> Any:
        record = self.records[row]
        return record.get(name, MISSING) if isinstance(record, dict) else MISSING


class RowSource(Source):
    def __init__(self, rows: list[Any], width: int) -> None:
        self.rows = rows
        self.width = width
        self.n_rows = len(rows)

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        single = len(self.rows) == 1
        for r, row in enumerate(self.rows):
            where: Loc = () if single else (r,)
            if not isinstance(row, list):
                problems.add(
                    where, f"expected an array of {self.width} numbers, got {json_type(row)}", "type"
                )
            elif len(row) != self.width:
                problems.add(where, f"expected {self.width} values, got {len(row)}", "width")
            if problems.full:
                return

    def value(self, row: int, index: int, name: str) -> Any:
        values = self.rows[row]
        if isinstance(values, list) and len(values) == self.width:
            return values[index]
        return MISSING


class ColumnsSource(Source):
    def __init__(self, columns: dict[Any, Any], names: Sequence[str]) -> None:
        self.columns = columns
        lengths = [len(c) for n in names if isinstance(c := columns.get(n), list)]
        self.n_rows = lengths[0] if lengths else None

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        _check_keys(self.columns, names, (), problems)
        for name in names:
            column = self.columns.get(name, MISSING)
            if column is MISSING:
                continue
            if not isinstance(column, list):
                problems.add((name,), f"expected an array, got {json_type(column)}", "type")
            elif len(column) != self.n_rows:
                problems.add(
                    (name,), f"expected {self.n_rows} values like the first column, got {len(column)}"
                )

    def value(self, row: int, index: int, name: str) -> Any:
        column = self.columns.get(name)
        if isinstance(column, list) and len(column) == self.n_rows:
            return column[row]
        return MISSING


def record_loc(i: int, name: str, j: int) -> Loc:
    return (name,)


def pos_loc(i: int, name: str, j: int) -> Loc:
    return (j,)


def records_loc(i: int, name: str, j: int) -> Loc:
    return (i, name)


def columns_loc(i: int, name: str, j: int) -> Loc:
    return (name, i)


def rows_loc(i: int, name: str, j: int) -> Loc:
    return (i, j)
