"""The one table of value types: a manifest dtype and what numpy, ONNX and the Open Inference Protocol
call it.

    manifest  numpy     ONNX type        ONNX element  Open Inference Protocol
    float32   float32   tensor(float)    1             FP32
    float64   float64   tensor(double)   11            FP64
    int64     int64     tensor(int64)    7             INT64
    bool      bool_     tensor(bool)     9             BOOL
    string    object    tensor(string)   8             BYTES
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt


class ValueType(NamedTuple):
    manifest: str
    numpy: npt.DTypeLike
    onnx: str  # as onnxruntime's NodeArg.type says it
    onnx_element: int  # TensorProto.DataType
    oip: str  # Open Inference Protocol datatype


TYPES: tuple[ValueType, ...] = (
    ValueType("float32", np.float32, "tensor(float)", 1, "FP32"),
    ValueType("float64", np.float64, "tensor(double)", 11, "FP64"),
    ValueType("int64", np.int64, "tensor(int64)", 7, "INT64"),
    ValueType("bool", np.bool_, "tensor(bool)", 9, "BOOL"),
    ValueType("string", object, "tensor(string)", 8, "BYTES"),
)

NUMPY: dict[str, npt.DTypeLike] = {t.manifest: t.numpy for t in TYPES}
ONNX: dict[str, str] = {t.manifest: t.onnx for t in TYPES}
OIP: dict[str, str] = {t.manifest: t.oip for t in TYPES}
BY_ONNX_ELEMENT: dict[int, str] = {t.onnx_element: t.manifest for t in TYPES}
NUMERIC = frozenset({"float32", "float64", "int64"})
