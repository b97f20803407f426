"""Positional rows parsed straight into one float64 buffer, without a Python object per number.

A numeric model's batch ``{"inputs": [[5.1, 3.5, 1.4, 0.2], ...]}`` is the one body where parsing is
most of the request: orjson builds a Python float for every number and a list for every row, and
numpy then walks them again. ``flat_rows`` lets simdjson (a validating, RFC 8259 strict parser) write
the numbers into one buffer of doubles instead, after two checks that make the result exactly what
the strict general path (``http.body.parse_json_body`` + ``CompiledSchema.from_rows``) would build:

- the document is an object with one key, ``inputs`` (simdjson keeps repeated keys, so a body that
  repeats ``inputs`` has two and goes to the general path, which refuses it);
- ``inputs`` holds ``n`` rows, each of ``len`` ``width``, and the body holds exactly ``n + 1`` ``[``
  bytes. simdjson flattens ragged or deeper rows without complaint, so the shape is proven from
  counts: ``as_buffer`` refuses strings, objects, booleans and null, so the only strings are the key
  and every ``[`` opens an array; ``n + 1`` arrays are the outer one and the ``n`` rows (a row that
  is a number has no ``len``), so no row holds an array and each holds ``width`` numbers.

Anything else returns None and the caller takes the general path, which also words the errors: any
other shape, a body simdjson refuses (malformed, invalid UTF-8, a number out of double range, an
integer beyond 64 bits), ``true``/``null``/strings among the numbers.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import simdjson

_OPEN_BRACKET = ord("[")
_BOM = b"\xef\xbb\xbf"  # UTF-8 byte order mark: refused on every body path (jsonbody.parse_json_body)
# bodies up to this size are parsed by a parser each thread keeps (``_parser``)
_KEPT_PARSER_MAX_BYTES = 2 * 1024 * 1024
_local = threading.local()


class FlatRows(NamedTuple):
    """``n_rows`` rows of ``numbers.size // n_rows`` values, row after row, as doubles (read-only)."""

    numbers: npt.NDArray[np.float64]
    n_rows: int


def flat_rows(body: bytes, width: int, max_rows: int) -> FlatRows | None:
    """The numbers of a body ``{"inputs": [[...], ...]}`` of ``1..max_rows`` rows of exactly ``width``
    JSON numbers each; None for any other body (see the module docstring)."""
    if width < 1 or body.startswith(_BOM):  # simdjson skips a byte order mark; the general path refuses it
        return None
    try:
        doc = _parse(body)
        if not isinstance(doc, simdjson.Object) or len(doc) != 1 or "inputs" not in doc:
            return None
        inputs = doc["inputs"]
        if not isinstance(inputs, simdjson.Array):
            return None
        n = len(inputs)
        if n < 1 or n > max_rows:
            return None
        # n + 1 arrays in the body: the outer one and n rows with no array inside them
        if np.count_nonzero(np.frombuffer(body, dtype=np.uint8) == _OPEN_BRACKET) != n + 1:
            return None
        if set(map(len, inputs)) != {width}:  # type: ignore[arg-type]  # a number has no len: TypeError
            return None
        buffer = inputs.as_buffer(of_type="d")  # strings, booleans, null, objects: RuntimeError/TypeError
    except (ValueError, TypeError, RuntimeError, KeyError):  # UnicodeDecodeError is a ValueError
        return None
    numbers = np.frombuffer(buffer, dtype=np.float64)
    if numbers.size != n * width:
        return None
    return FlatRows(numbers, n)


def _parser(size: int) -> simdjson.Parser:
    """A parser for a document of ``size`` bytes. simdjson sizes a parser's buffers to the largest
    document it has parsed and keeps them, so each thread keeps one for bodies up to
    ``_KEPT_PARSER_MAX_BYTES`` (only the event loop's thread parses), and larger bodies get a parser
    of their own that dies with the call: a parser per call would allocate its buffers afresh for
    every batch, a kept one for any size would hold the largest body's buffers for ever."""
    if size > _KEPT_PARSER_MAX_BYTES:
        return simdjson.Parser()
    parser: simdjson.Parser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = simdjson.Parser()
    return parser


def _parse(body: bytes) -> object:
    parser = _parser(len(body))
    try:
        return parser.parse(body)
    except RuntimeError:  # a document of an earlier call still holds the kept parser: let it have it
        _local.parser = parser = simdjson.Parser()
        return parser.parse(body)
