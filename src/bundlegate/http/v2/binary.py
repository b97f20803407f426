"""The binary tensor data extension of the Open Inference Protocol (tritonclient's default).

The JSON header of an infer request is followed by raw data; each input that has some declares its
``parameters.binary_data_size``, in input order. Numbers are little-endian values, BYTES are 4-byte
length-prefixed UTF-8 strings. ``decode_binary_inputs`` moves each input's data into its ``data``:
numeric data as a 1-D numpy array (no infinity; NaN is a missing value, see ``codec.with_gaps``),
BYTES as a list of strings.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from bundlegate.errors import InvalidInput, problem

_NUMPY = {
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "BOOL": "?",
}


def decode_binary_inputs(doc: Any, binary: memoryview) -> None:
    """Move the binary tensor data that follows the JSON header into each input's ``data``, in input
    order, by each input's ``parameters.binary_data_size``."""
    offset = 0
    tensors = doc.get("inputs") if isinstance(doc, dict) else None
    for i, tensor in enumerate(tensors if isinstance(tensors, list) else []):
        size = _binary_size(tensor)
        if size is None:
            continue
        if offset + size > len(binary):
            raise InvalidInput(
                "binary tensor data shorter than declared",
                [problem(["inputs", i, "parameters", "binary_data_size"], "larger than the data sent")],
            )
        tensor["data"] = _decode_binary(binary[offset : offset + size], tensor.get("datatype"), i)
        offset += size
    if offset != len(binary):
        raise InvalidInput("binary tensor data longer than declared", [problem(["inputs"], "unused bytes")])


def _binary_size(tensor: Any) -> int | None:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("parameters"), dict):
        return None
    size = tensor["parameters"].get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise InvalidInput("invalid binary_data_size", [problem(["inputs", "parameters"], "not a size")])
    return size


def _decode_binary(raw: memoryview, datatype: Any, i: int) -> list[Any] | npt.NDArray[Any]:
    if datatype == "BYTES":
        values: list[Any] = []
        offset = 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                break
            (length,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + length > len(raw):
                break
            try:
                values.append(bytes(raw[offset : offset + length]).decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidInput(
                    "BYTES data is not UTF-8", [problem(["inputs", i, "data"], "not UTF-8 text")]
                ) from None
            offset += length
        if offset != len(raw):
            raise InvalidInput(
                "malformed BYTES tensor data", [problem(["inputs", i, "data"], "bad length prefixes")]
            )
        return values
    dtype = _NUMPY.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or len(raw) % np.dtype(dtype).itemsize:
        raise InvalidInput(
            "binary data does not match the datatype", [problem(["inputs", i, "datatype"], "unsupported")]
        )
    array = np.frombuffer(raw, dtype=dtype)
    if array.dtype.kind == "f" and np.isinf(array).any():  # NaN is a missing value (codec.with_gaps)
        raise InvalidInput(
            "tensor data is not finite", [problem(["inputs", i, "data"], "infinity is not a number")]
        )
    return array
