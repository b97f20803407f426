"""How payload log runs travel from the serving process to the writer process: ``frames(run)`` and
``read_frame(data)``.

A frame is one message of a ``SOCK_SEQPACKET`` socket pair, so it arrives whole or not at all:
``b"E"``, the length of a JSON header and the number of requests in the frame (4 bytes each,
little-endian), the header, then each array's bytes as they sit in memory (numeric arrays are not
encoded in the serving process; the socket gathers their buffers). The
header holds the run's model, version and requests (time, id, rows, first row) and each array's
dtype and shape, in a fixed order: the inputs (one ``[n, k]`` block, or one column per feature,
``null`` for a masked one), then labels, probabilities and values where the prediction has them.
Arrays of Python objects (string features, string labels) go as a JSON list instead of their bytes.
A run larger than ``max_bytes`` goes as several frames: split between its requests, or one request's
rows into parts, each part saying its first row.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson

from bundlegate.feed import Array, Prediction
from bundlegate.monitoring.payload_lines import Head, PayloadRun

RUN = b"E"
FLUSH = b"F"  # to the writer: answer FLUSH once everything before is written; from it: the answer
# in memory both processes map, kept by the writer: requests done (written or lost), and lost ones
COUNTERS = struct.Struct("<QQ")
_PREFIX = struct.Struct("<II")  # header length, requests
MAX_BUFFERS = 64  # a frame of more arrays goes as one joined buffer (sendmsg takes at most 1024)
_OUTPUTS = ("labels", "probabilities", "values")


def frames(run: PayloadRun, max_bytes: int) -> tuple[list[tuple[list[Any], list[str]]], set[str]]:
    """The frames of one run, each the buffers to send as one message of at most ``max_bytes`` and
    the ids of the requests it holds, and the ids of requests with a row left out (a single row
    larger than that)."""
    out: list[tuple[list[Any], list[str]]] = []
    left_out: set[str] = set()
    todo = [run]
    while todo:  # in order; a part too large is halved, between requests or else between rows
        part = todo.pop()
        frame = _frame(part)
        if sum(b.nbytes if isinstance(b, np.ndarray) else len(b) for b in frame) <= max_bytes:
            out.append((frame, [h.request_id for h in part.heads]))
        elif len(part.heads) > 1:
            half = len(part.heads) // 2
            todo += [_requests(part, half, len(part.heads)), _requests(part, 0, half)]
        elif part.rows > 1:
            half = part.rows // 2
            todo += [_rows(part, half, part.rows), _rows(part, 0, half)]
        else:
            left_out.add(part.heads[0].request_id)
    return out, left_out


def read_frame(data: bytes | memoryview) -> PayloadRun:
    """The run of one frame (``frames``); ValueError when it is not one."""
    view = memoryview(data)
    if len(view) < 1 + _PREFIX.size or view[:1] != RUN:
        raise ValueError("not a payload log frame")
    length, _ = _PREFIX.unpack_from(view, 1)
    start = 1 + _PREFIX.size
    header = orjson.loads(view[start : start + length])
    offset = start + length
    arrays: list[Array | None] = []
    for spec in header["arrays"]:
        if spec is None:
            arrays.append(None)
            continue
        kind, dtype, shape, nbytes = spec
        raw = view[offset : offset + nbytes]
        offset += nbytes
        if kind == "json":
            loaded = orjson.loads(raw)
            values = np.empty(len(loaded), dtype=object)
            values[:] = loaded
            arrays.append(values)
        else:
            arrays.append(np.frombuffer(raw, dtype=np.dtype(dtype)).reshape(shape))
    if offset != len(view):
        raise ValueError("a payload log frame of the wrong length")
    n_inputs = header["inputs"]
    inputs: Any = arrays[0] if n_inputs < 0 else arrays[:n_inputs]
    outputs = dict(zip(header["outputs"], arrays[1 if n_inputs < 0 else n_inputs :], strict=True))
    return PayloadRun(
        header["model"],
        header["version"],
        header["bool"],
        [Head(*h) for h in header["heads"]],
        inputs,
        Prediction(**outputs),
    )


def _frame(run: PayloadRun) -> list[Any]:
    inputs = run.inputs
    arrays: list[Array | None] = [inputs] if isinstance(inputs, np.ndarray) else list(inputs)
    p = run.prediction
    outputs = [name for name in _OUTPUTS if getattr(p, name) is not None]
    arrays += [getattr(p, name) for name in outputs]
    specs: list[Any] = []
    buffers: list[Any] = []
    for array in arrays:
        if array is None:
            specs.append(None)
            continue
        if array.dtype.kind == "O":
            data: Any = orjson.dumps(array.tolist(), default=str)
            specs.append(("json", "", (), len(data)))
        else:
            data = np.ascontiguousarray(array)
            specs.append(("raw", data.dtype.str, data.shape, data.nbytes))
        buffers.append(data)
    header = orjson.dumps(
        {
            "model": run.model,
            "version": run.version,
            "bool": run.bool_classes,
            "heads": [(h.at, h.request_id, h.rows, h.first_row) for h in run.heads],
            "inputs": -1 if isinstance(inputs, np.ndarray) else len(inputs),
            "outputs": outputs,
            "arrays": specs,
        }
    )
    if len(buffers) > MAX_BUFFERS:
        buffers = [b"".join(memoryview(b).cast("B") for b in buffers)]
    return [RUN + _PREFIX.pack(len(header), len(run.heads)), header, *buffers]


def requests_in(data: bytes | memoryview) -> int:
    """The requests a frame holds, read from its prefix (0 when it is no frame)."""
    if len(data) < 1 + _PREFIX.size or data[:1] != RUN:
        return 0
    return int(_PREFIX.unpack_from(data, 1)[1])


def _requests(run: PayloadRun, i: int, j: int) -> PayloadRun:
    """Requests ``i:j`` of a run."""
    start = sum(h.rows for h in run.heads[:i])
    part = _rows(run, start, start + sum(h.rows for h in run.heads[i:j]))
    return PayloadRun(run.model, run.version, run.bool_classes, run.heads[i:j], part.inputs, part.prediction)


def _rows(run: PayloadRun, start: int, stop: int) -> PayloadRun:
    """Rows ``start:stop`` of a run of one request (views); or of any run, for ``_requests``."""
    inputs = run.inputs
    part: Any = (
        inputs[start:stop]
        if isinstance(inputs, np.ndarray)
        else [None if c is None else c[start:stop] for c in inputs]
    )
    h = run.heads[0]
    head = Head(h.at, h.request_id, stop - start, h.first_row + start)
    return PayloadRun(
        run.model, run.version, run.bool_classes, [head], part, run.prediction.rows(start, stop)
    )
