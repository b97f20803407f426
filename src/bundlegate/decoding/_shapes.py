"""The request shapes as the checked path reads them: one record, records, positional rows, columns.

A ``Source`` reports what is wrong with a request's structure (a missing or unknown feature, a row of
the wrong width, columns of unequal length) and hands out each value by row and feature, or
``MISSING``. ``Problems`` collects at most ``MAX_DETAILS`` of them as ``Problem(row, feature, what)``;
the protocol that received the request says where that is in its own body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bundlegate.errors import MAX_DETAILS, InvalidRows, Problem, shorten

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
    return shorten(k if isinstance(k, str) else repr(k), _MAX_KEY_ECHO)


class Problems:
    """Collects at most ``MAX_DETAILS`` problems; ``full`` tells the checked path to stop looking."""

    def __init__(self, shape: str) -> None:
        self.shape = shape
        self.items: list[Problem] = []

    def add(self, row: int | None, feature: str | None, msg: str, kind: str = "invalid") -> None:
        if len(self.items) < MAX_DETAILS:
            self.items.append(Problem(row, feature, msg, kind))

    @property
    def full(self) -> bool:
        return len(self.items) >= MAX_DETAILS

    def raise_if_any(self, what: str = "the inputs do not match the model's schema") -> None:
        if self.items:
            raise InvalidRows(what, self.items, self.shape)


class Source:
    """The values of one request shape, addressed by row and feature, with its structural problems."""

    shape = "records"
    n_rows: int | None = None

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        raise NotImplementedError

    def value(self, row: int, index: int, name: str) -> Any:
        raise NotImplementedError


def _check_keys(obj: dict[Any, Any], names: Sequence[str], row: int | None, problems: Problems) -> None:
    for name in names:
        if name not in obj:
            problems.add(row, name, "missing feature", "missing")
    known = set(names)
    for key in obj:
        if key not in known:
            problems.add(row, _key(key), "unknown feature", "extra")


class RecordSource(Source):
    shape = "record"

    def __init__(self, record: dict[Any, Any]) -> None:
        self.record = record
        self.n_rows = 1

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        _check_keys(self.record, names, 0, problems)

    def value(self, row: int, index: int, name: str) -> Any:
        return self.record.get(name, MISSING)


class RecordsSource(Source):
    def __init__(self, records: list[Any]) -> None:
        self.records = records
        self.n_rows = len(records)

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        for r, record in enumerate(self.records):
            if not isinstance(record, dict):
                problems.add(r, None, f"expected an object of features, got {json_type(record)}", "type")
            else:
                _check_keys(record, names, r, problems)
            if problems.full:
                return

    def value(self, row: int, index: int, name: str) -> Any:
        record = self.records[row]
        return record.get(name, MISSING) if isinstance(record, dict) else MISSING


class RowSource(Source):
    shape = "rows"

    def __init__(self, rows: list[Any], width: int, shape: str = "rows") -> None:
        self.rows = rows
        self.width = width
        self.n_rows = len(rows)
        self.shape = shape  # "values": the one positional row of a single-record request

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        for r, row in enumerate(self.rows):
            if not isinstance(row, list):
                problems.add(
                    r, None, f"expected an array of {self.width} numbers, got {json_type(row)}", "type"
                )
            elif len(row) != self.width:
                problems.add(r, None, f"expected {self.width} values, got {len(row)}", "width")
            if problems.full:
                return

    def value(self, row: int, index: int, name: str) -> Any:
        values = self.rows[row]
        if isinstance(values, list) and len(values) == self.width:
            return values[index]
        return MISSING


class ColumnsSource(Source):
    shape = "columns"

    def __init__(self, columns: dict[Any, Any], names: Sequence[str]) -> None:
        self.columns = columns
        lengths = [len(c) for n in names if isinstance(c := columns.get(n), list)]
        self.n_rows = lengths[0] if lengths else None

    def structure(self, names: Sequence[str], problems: Problems) -> None:
        _check_keys(self.columns, names, None, problems)
        for name in names:
            column = self.columns.get(name, MISSING)
            if column is MISSING:
                continue
            if not isinstance(column, list):
                problems.add(None, name, f"expected an array, got {json_type(column)}", "type")
            elif len(column) != self.n_rows:
                problems.add(
                    None, name, f"expected {self.n_rows} values like the first column, got {len(column)}"
                )

    def value(self, row: int, index: int, name: str) -> Any:
        column = self.columns.get(name)
        if isinstance(column, list) and len(column) == self.n_rows:
            return column[row]
        return MISSING
