"""One sampled request as payload log lines (``lines_of``), one JSON line per row::

    {"time": "2026-12-03T10:00:00.123Z", "request_id": "…", "model": "iris", "version": 1, "row": 0,
     "inputs": {"sepal_length": 5.1, …}, "outputs": {"prediction": "setosa", "probabilities": [0.97, …]}}

``probabilities`` are in the manifest's class order; ``value`` holds a regressor's answer. Inputs named
in the mask are written as ``"***"``. Each column is encoded once for the whole request (orjson on
the array, then split into its values) and each line is one ``bytes %`` of a template built per
request, so a 1000-row request costs one formatting call per row, not a dict and an encoder per row.
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


@dataclass(frozen=True, slots=True)
class PayloadEntry:
    """What the request path hands the payload log: references, nothing encoded yet."""

    at: float  # time.time()
    request_id: str
    model: str
    version: int
    columns: dict[str, Array]  # feature -> values (views into the feed)
    prediction: Prediction
    mask: frozenset[str]
    bool_classes: bool = False


def lines_of(entry: PayloadEntry) -> bytes:
    """The entry's lines, newline-terminated."""
    n = _rows(entry)
    head = orjson.dumps(
        {
            "time": _timestamp(entry.at),
            "request_id": entry.request_id,
            "model": entry.model,
            "version": entry.version,
        }
    )
    parts: list[bytes] = [_escape(head[:-1]) + b',"row":%b,"inputs":{']
    columns: list[list[bytes]] = [list(map(b"%d".__mod__, range(n)))]
    fields = []
    for name, values in entry.columns.items():
        fields.append(_escape(orjson.dumps(name)) + b":%b")
        columns.append([MASKED] * n if name in entry.mask else _tokens(values))
    parts.append(b",".join(fields) + b'},"outputs":{')
    outputs = []
    p = entry.prediction
    if p.labels is not None:
        outputs.append(b'"prediction":%b')
        labels = p.labels.ravel()
        if entry.bool_classes:
            columns.append([b"true" if v else b"false" for v in labels.tolist()])
        else:
            columns.append(_tokens(labels))
    if p.probabilities is not None:
        outputs.append(b'"probabilities":[%b]')
        columns.append(_row_tokens(p.probabilities))
    if p.values is not None:
        values = p.values.reshape(n, -1)
        if values.shape[1] == 1:
            outputs.append(b'"value":%b')
            columns.append(_tokens(values[:, 0]))
        else:
            outputs.append(b'"value":[%b]')
            columns.append(_row_tokens(values))
    parts.append(b",".join(outputs) + b"}}\n")
    template = b"".join(parts)
    return b"".join(template % row for row in zip(*columns, strict=True))


def _rows(entry: PayloadEntry) -> int:
    for values in entry.columns.values():
        return len(values)
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
    return [orjson.dumps(_plain(v)) for v in values.tolist()]


def _row_tokens(values: Array) -> list[bytes]:
    """Each row of a 2-D numeric array as its values' JSON text, comma-separated, without brackets."""
    if values.dtype.kind in "fiub" and values.shape[1] > 0:
        text = orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)
        return text[2:-2].split(b"],[") if len(values) else []
    return [orjson.dumps(row)[1:-1] for row in values.tolist()]


def _plain(v: Any) -> Any:
    return v if isinstance(v, str | int | float | bool) or v is None else str(v)


def _escape(template_part: bytes) -> bytes:
    """Literal text for a ``bytes %`` template (a ``%`` in a name or id must not format)."""
    return template_part.replace(b"%", b"%%")


def _timestamp(at: float) -> str:
    seconds = int(at)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int((at - seconds) * 1000):03d}Z"
