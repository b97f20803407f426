"""Positional rows parsed straight into one float64 buffer, without a Python object per number.

A numeric model's batch ``{"inputs": [[5.1, 3.5, 1.4, 0.2], ...]}`` is the one body where parsing is
most of the request: orjson builds a Python float for every number and a list for every row, and
numpy then walks them again. ``flat_rows`` lets simdjson (a validating, RFC 8259 strict parser) write
the numbers into one buffer of doubles instead, after two checks that make the result exactly what
the strict general path (``jsonbody.parse_json_body`` + ``CompiledSchema.from_rows``) would build:

- the document is an object with one key, ``inputs`` (simdjson keeps repeated keys, so a body that
  repeats ``inputs`` has two and goes to the general path, which refuses it);
- inside the outer ``[...]``, the bytes that are not number characters or whitespace are exactly
  ``[,,,],[,,,],...``: ``n`` rows of ``width`` values each (simdjson flattens ragged or deeper rows
  without complaint, so the shape is proven from the bytes: one ``bytes.translate``, one compare).

Anything else returns None and the caller takes the general path, which also words the errors: any
other shape, a body simdjson refuses (malformed, invalid UTF-8, a number out of double range, an
integer beyond 64 bits), ``true``/``null``/strings among the numbers. Measured on one core of the
bench machine: 1000 iris rows (18 KB) ~0.2 ms here against ~0.65 ms through orjson lists and
``np.fromiter``; 1000 rows of 20 long floats (390 KB) ~2.2 ms against ~3.8 ms.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import simdjson

# JSON number characters and whitespace: what the shape check removes
_NUMBER_OR_SPACE = b"0123456789.eE+- \t\r\n"


class FlatRows(NamedTuple):
    """``n_rows`` rows of ``numbers.size // n_rows`` values, row after row, as doubles (read-only)."""

    numbers: npt.NDArray[np.float64]
    n_rows: int


def flat_rows(body: bytes, width: int, max_rows: int) -> FlatRows | None:
    """The numbers of a body ``{"inputs": [[...], ...]}`` of ``1..max_rows`` rows of exactly ``width``
    JSON numbers each; None for any other body (see the module docstring)."""
    start = body.find(b"[")
    end = body.rfind(b"]")
    if start < 0 or end <= start or width < 1:
        return None
    shape = body[start + 1 : end].translate(None, _NUMBER_OR_SPACE)
    n = shape.count(b"[")
    if n < 1 or n > max_rows:
        return None
    row = b"[" + b"," * (width - 1) + b"]"
    if len(shape) != n * (len(row) + 1) - 1 or shape != b",".join([row] * n):
        return None
    numbers = _numbers(body)
    if numbers is None or numbers.size != n * width:
        return None
    return FlatRows(numbers, n)


def _numbers(body: bytes) -> npt.NDArray[np.float64] | None:
    """``inputs`` of a one-key object as doubles, or None. A parser per call: it costs nothing next
    to the parse, and no document of a previous call can pin a shared one."""
    try:
        doc = simdjson.Parser().parse(body)
        if not isinstance(doc, simdjson.Object) or len(doc) != 1 or "inputs" not in doc:
            return None
        inputs = doc["inputs"]
        if not isinstance(inputs, simdjson.Array):
            return None
        buffer = inputs.as_buffer(of_type="d")
    except (ValueError, TypeError, RuntimeError, KeyError):  # UnicodeDecodeError is a ValueError
        return None
    return np.frombuffer(buffer, dtype=np.float64)
