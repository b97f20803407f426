"""Sampled requests as payload log lines, one JSON line per row::

    {"time": "2026-12-03T10:00:00.123Z", "request_id": "…", "model": "iris", "version": 1, "row": 0,
     "inputs": [5.1, 3.5, 1.4, 0.2], "outputs": {"prediction": "setosa", "probabilities": [0.97, …]}}

``inputs`` are in the model's feature order (``GET /v1/models/{name}`` lists the features), inputs
named in the mask written as ``"***"``; ``probabilities`` are in the manifest's class order; ``value``
holds a regressor's answer.

The request path keeps each sampled request as a ``PayloadEntry`` (references to its arrays);
``runs`` joins consecutive entries of one shape into a ``PayloadRun`` (one array per input and output
for all their rows, and a ``Head`` per request); ``lines_of`` encodes a run. Positional inputs keep a
line's cost independent of the feature count: a numeric model's rows are encoded by one orjson call
on the run's array and split into rows, each other column is encoded once for the whole run, and the
lines are fixed text and those values interleaved by slice assignment and joined once. No Python
runs per row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from bundlegate.feed import Array, Prediction

MASKED = b'"***"'
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
ALONE_ROWS = 64  # a request of this many rows is a run of its own (its arrays need no joining)


@dataclass(frozen=True, slots=True)
class PayloadEntry:
    """What the request path hands the payload log: references, nothing encoded yet. ``inputs`` is
    the ``[n, k]`` array of a numeric model's features in order, or one column per feature (None for
    a masked one)."""

    at: float  # time.time()
    request_id: str
    model: str
    version: int
    inputs: Array | list[Array | None]
    prediction: Prediction
    bool_classes: bool = False


@dataclass(frozen=True, slots=True)
class Head:
    """One request of a run: its time, id, rows, and the row number of its first row here (not 0
    for the second part of a request split in two)."""

    at: float
    request_id: str
    rows: int
    first_row: int = 0


@dataclass(frozen=True, slots=True)
class PayloadRun:
    """Requests of one shape (``shape_of``) in order, their arrays joined: what lines are made of
    (``lines_of``) and what travels to the writer process (``payload_wire``)."""

    model: str
    version: int
    bool_classes: bool
    heads: list[Head]
    inputs: Array | list[Array | None]
    prediction: Prediction

    @property
    def rows(self) -> int:
        return sum(h.rows for h in self.heads)


def shape_of(entry: PayloadEntry) -> tuple[object, ...]:
    """Entries of the same shape can be joined into one run."""
    p, inputs = entry.prediction, entry.inputs
    layout = -1 if isinstance(inputs, np.ndarray) else tuple(c is None for c in inputs)
    outputs = (p.labels is None, p.probabilities is None, p.values is None)
    return entry.model, entry.version, layout, outputs, entry.bool_classes


def runs(entries: list[PayloadEntry], max_rows: int = 1024) -> list[PayloadRun]:
    """``entries`` in order, as runs of one shape of at most ``max_rows`` rows (a request of
    ``ALONE_ROWS`` or more goes alone)."""
    groups: list[list[PayloadEntry]] = []
    shape: object = None
    rows = max_rows
    for entry in entries:
        n = rows_of(entry)
        this = shape_of(entry)
        if this == shape and rows + n <= max_rows and n < ALONE_ROWS:
            groups[-1].append(entry)
            rows += n
        else:
            groups.append([entry])
            shape, rows = this, (n if n < ALONE_ROWS else max_rows)
    return [join(group) for group in groups]


def join(entries: list[PayloadEntry]) -> PayloadRun:
    """One run holding the rows of ``entries`` (of one shape)."""
    first = entries[0]
    heads = [Head(e.at, e.request_id, rows_of(e)) for e in entries]
    if len(entries) == 1:
        inputs, prediction = first.inputs, first.prediction
    else:
        if isinstance(first.inputs, np.ndarray):
            inputs = np.concatenate([e.inputs for e in entries])
        else:
            columns = zip(*(e.inputs for e in entries), strict=True)
            inputs = [None if c[0] is None else np.concatenate(c) for c in columns]
        p = first.prediction

        def joined(arrays: list[Array | None], present: Array | None) -> Array | None:
            return None if present is None else np.concatenate(arrays)  # type: ignore[arg-type]

        prediction = Prediction(
            joined([e.prediction.labels for e in entries], p.labels),
            joined([e.prediction.probabilities for e in entries], p.probabilities),
            joined([e.prediction.values for e in entries], p.values),
        )
    return PayloadRun(first.model, first.version, first.bool_classes, heads, inputs, prediction)


def lines_of(run: PayloadRun) -> bytes:
    """The run's lines, newline-terminated: its arrays are encoded together, so a run of single-row
    requests costs about what one batch does."""
    n = run.rows
    single = len(run.heads) == 1
    heads: list[bytes] = []
    rows: list[bytes] = []
    for h in run.heads:
        head = orjson.dumps(
            {"time": _timestamp(h.at), "request_id": h.request_id, "model": run.model, "version": run.version}
        )
        heads += [head[:-1]] * h.rows
        rows += _row_numbers(h.first_row, h.rows)
    # a line is text and values in turn: text, values, text, values, ..., text (one request: its head
    # is text)
    texts: list[bytes] = [heads[0] if single and n else b"", b',"row":', b',"inputs":[']
    values: list[list[bytes]] = [heads, rows]
    if single:
        texts[:2] = [texts[0] + texts[1]]
        del values[0]
    inputs = run.inputs
    if isinstance(inputs, np.ndarray):
        values.append(_row_tokens(inputs))
    else:
        for i, column in enumerate(inputs):
            if i:
                texts.append(b",")
            values.append([MASKED] * n if column is None else _tokens(column))
    texts.append(b'],"outputs":{')
    p = run.prediction
    separator = b""
    if p.labels is not None:
        texts[-1] += b'"prediction":'
        labels = p.labels.ravel()
        values.append(
            [b"true" if v else b"false" for v in labels.tolist()] if run.bool_classes else _tokens(labels)
        )
        texts.append(b"")
        separator = b","
    if p.probabilities is not None:
        texts[-1] += separator + b'"probabilities":['
        values.append(_row_tokens(p.probabilities))
        texts.append(b"]")
        separator = b","
    if p.values is not None:
        v = p.values.reshape(n, -1)
        texts[-1] += separator + (b'"value":' if v.shape[1] == 1 else b'"value":[')
        values.append(_tokens(v[:, 0]) if v.shape[1] == 1 else _row_tokens(v))
        texts.append(b"" if v.shape[1] == 1 else b"]")
    texts[-1] += b"}}\n"
    width = len(texts) + len(values)
    parts: list[bytes | None] = [None] * (width * n)
    for i, text in enumerate(texts):
        parts[2 * i :: width] = [text] * n
    for i, tokens in enumerate(values):
        parts[2 * i + 1 :: width] = tokens
    return b"".join(parts)  # type: ignore[arg-type]


_ROW_NUMBERS: list[bytes] = []


def _row_numbers(start: int, n: int) -> list[bytes]:
    """``b"%d" % start``, ... for ``n`` rows (kept, so a request's row numbers are a slice)."""
    if len(_ROW_NUMBERS) < start + n:
        _ROW_NUMBERS.extend(b"%d" % i for i in range(len(_ROW_NUMBERS), start + n))
    return _ROW_NUMBERS[start : start + n]


def rows_of(entry: PayloadEntry | PayloadRun) -> int:
    """The rows of one entry or run."""
    inputs = entry.inputs
    if isinstance(inputs, np.ndarray):
        return len(inputs)
    for column in inputs:
        if column is not None:
            return len(column)
    p = entry.prediction
    for array in (p.labels, p.probabilities, p.values):
        if array is not None:
            return len(array)
    return 0


def _tokens(values: Array) -> list[bytes]:
    """Each value of a 1-D array as its JSON text."""
    if values.dtype.kind in "fiub":
        text = orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)
        return text[1:-1].split(b",") if len(values) else []
    items = values.tolist()
    try:  # strings and other hashable values: each distinct one encoded once, looked up in C
        encoded = {v: orjson.dumps(_plain(v)) for v in set(items)}
    except TypeError:
        return [orjson.dumps(_plain(v)) for v in items]
    return list(map(encoded.__getitem__, items))


def _row_tokens(values: Array) -> list[bytes]:
    """Each row of a 2-D array as its values' JSON text, comma-separated, without brackets."""
    if values.dtype.kind in "fiub" and values.shape[1] > 0:
        text = orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)
        return text[2:-2].split(b"],[") if len(values) else []
    return [orjson.dumps([_plain(v) for v in row])[1:-1] for row in values.tolist()]


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


_SECOND: list[Any] = [None, ""]  # the last second formatted, and its text


def _timestamp(at: float) -> str:
    seconds = int(at)
    if _SECOND[0] != seconds:
        _SECOND[:] = [seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))]
    return f"{_SECOND[1]}.{int((at - seconds) * 1000):03d}Z"
