"""The Open Inference Protocol envelope: tensors ↔ the gateway's feeds and predictions.

- ``tensor_metadata(manifest)``: the ``inputs``/``outputs`` of model metadata, with datatype and shape.
- ``feed_from_tensors(loaded, tensors)``: infer ``inputs`` → a ``Feed``, through the version's
  ``CompiledSchema``, so a value is judged as on ``/v1``; a problem is located at its tensor and
  element (``["inputs", 1, "data", 7]``). Two layouts: one tensor per feature, named as the feature
  (shape ``[N]`` or ``[N, 1]``), or, for purely numeric models, one ``[N, n_features]`` tensor under
  any name. ``data`` may be flat or nested, or a numpy array decoded from binary tensor data
  (``binary``); a float ``[N, n_features]`` array for a model that takes flat rows goes straight to
  its input tensor (``CompiledSchema.from_flat``: no Python object per value).
- ``infer_outputs(...)``: a ``Prediction`` → infer ``outputs``, numeric data left as numpy arrays
  (``Answers.encode_batch``) for ``orjson.dumps(..., option=OPT_SERIALIZE_NUMPY)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from bundlegate.decoding import CompiledSchema
from bundlegate.dtypes import OIP as DATATYPE
from bundlegate.errors import InvalidInput, InvalidRows, Problem, problem
from bundlegate.feed import Feed, Prediction
from bundlegate.manifest import Manifest
from bundlegate.registry import LoadedVersion

_NUMERIC_TYPES = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)
_ACCEPTED = {
    "float32": _NUMERIC_TYPES,
    "float64": _NUMERIC_TYPES,
    "int64": _NUMERIC_TYPES,
    "bool": frozenset({"BOOL"}),
    "string": frozenset({"BYTES"}),
}
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})


def datatype_of(array: np.ndarray[Any, Any]) -> str:
    kind = array.dtype.kind
    if kind == "f":
        return "FP64" if array.dtype.itemsize == 8 else "FP32"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def label_datatype(classes: Sequence[Any]) -> str:
    if classes and isinstance(classes[0], bool):
        return "BOOL"
    if classes and isinstance(classes[0], int):
        return "INT64"
    return "BYTES"


def matrix_input(manifest: Manifest) -> tuple[str, str] | None:
    """(name, datatype) of the single ``[N, n_features]`` tensor a numeric model accepts, or None."""
    dtypes = {i.dtype for i in manifest.inputs}
    if not dtypes <= {"float32", "float64", "int64"}:
        return None
    name = manifest.onnx_inputs[0].name if len(manifest.onnx_inputs) == 1 else "input"
    if name in manifest.feature_names and len(manifest.inputs) > 1:
        name = "input"
    return name, DATATYPE[dtypes.pop()] if len(dtypes) == 1 else "FP64"


def value_width(loaded: LoadedVersion) -> int:
    """How many values a regressor answers per row: its named targets, else the width of the ONNX
    output (1 where unknown, as for a pickled model)."""
    value = loaded.manifest.outputs.value
    if value is None:
        return 1
    if value.targets:
        return len(value.targets)
    session = getattr(loaded.model, "session", None)
    for node in session.get_outputs() if session is not None else []:
        if node.name == value.onnx_name and len(node.shape) == 2 and isinstance(node.shape[1], int):
            return max(1, node.shape[1])
    return 1


def tensor_metadata(
    manifest: Manifest, values_per_row: int = 1
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``inputs`` and ``outputs`` of model metadata. Numeric models with several features list the
    one matrix tensor (what Triton clients send); others list one ``[-1, 1]`` tensor per feature. A
    multi-output regressor (``values_per_row`` > 1) declares ``value`` as ``[-1, values_per_row]``."""
    matrix = matrix_input(manifest)
    if matrix is not None and len(manifest.inputs) > 1:
        inputs = [{"name": matrix[0], "datatype": matrix[1], "shape": [-1, len(manifest.inputs)]}]
    else:
        inputs = [{"name": i.name, "datatype": DATATYPE[i.dtype], "shape": [-1, 1]} for i in manifest.inputs]
    float_type = "FP32" if manifest.runtime == "onnx" else "FP64"
    outputs: list[dict[str, Any]] = []
    label = manifest.outputs.label
    if label is not None:
        outputs.append({"name": "label", "datatype": label_datatype(label.classes), "shape": [-1]})
        if manifest.outputs.probabilities is not None:
            outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, len(label.classes)]})
    elif manifest.outputs.value is not None:
        shape = [-1, values_per_row] if values_per_row > 1 else [-1]
        outputs.append({"name": "value", "datatype": float_type, "shape": shape})
    return inputs, outputs


def requested_outputs(outputs: Any, manifest: Manifest) -> set[str] | None:
    if outputs is None:
        return None
    available = {o["name"] for o in tensor_metadata(manifest)[1]}
    if not isinstance(outputs, list):
        raise InvalidInput('"outputs" must be a list', [problem(["outputs"], "expected a list")])
    names: set[str] = set()
    for i, o in enumerate(outputs):
        name = o.get("name") if isinstance(o, dict) else None
        if not isinstance(name, str) or name not in available:
            raise InvalidInput(
                f"unknown output; this model has {', '.join(sorted(available))}",
                [problem(["outputs", i, "name"], "unknown output", "value")],
            )
        names.add(name)
    return names


def infer_outputs(
    loaded: LoadedVersion, prediction: Prediction, n_rows: int, requested: set[str] | None
) -> list[dict[str, Any]]:
    """The ``outputs`` of an infer response: ``label`` (original classes) and ``probabilities``
    (FP32 ``[N, n_classes]``) for classifiers, ``value`` for regressors; only ``requested`` ones.
    Write it with ``orjson.OPT_SERIALIZE_NUMPY``: numeric data stays numpy arrays."""
    out = loaded.answers.encode_batch(prediction)
    manifest = loaded.manifest
    outputs: list[dict[str, Any]] = []
    if manifest.outputs.label is not None and "predictions" in out:
        outputs.append(
            {
                "name": "label",
                "datatype": label_datatype(manifest.outputs.label.classes),
                "shape": [n_rows],
                "data": out["predictions"],
            }
        )
    elif prediction.values is not None:
        values = prediction.values
        multi = values.ndim == 2 and values.shape[1] > 1  # a multi-output regressor: [N, k], flat data
        outputs.append(
            {
                "name": "value",
                "datatype": datatype_of(values),
                "shape": [n_rows, values.shape[1]] if multi else [n_rows],
                "data": _flat(out["predictions"]) if multi else out["predictions"],
            }
        )
    if prediction.probabilities is not None:
        outputs.append(
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [n_rows, prediction.probabilities.shape[1]],
                "data": _flat(out["probabilities"]),
            }
        )
    if requested is not None:
        outputs = [o for o in outputs if o["name"] in requested]
    return outputs


def _flat(rows: Any) -> Any:
    if isinstance(rows, np.ndarray):
        return rows.ravel()
    return [p for row in rows for p in row]


def with_gaps(data: npt.NDArray[Any]) -> list[Any]:
    """Binary tensor data as Python values, NaN as None: the Open Inference Protocol has no null, so a
    missing value of a nullable numeric feature comes as NaN, and the schema then treats it exactly as
    ``/v1`` treats ``null`` (a feature that is not nullable refuses it with the same 422)."""
    values: list[Any] = data.tolist()
    if data.dtype.kind == "f":
        for j in np.flatnonzero(np.isnan(data)).tolist():
            values[j] = None
    return values


def _flatten(data: Any) -> list[Any] | None:
    if not isinstance(data, list):
        return None
    if not data or not isinstance(data[0], list):
        return data
    flat: list[Any] = []
    stack = [iter(data)]  # depth bounded by the JSON depth limit; every element visited once
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            flat.append(v)
        else:
            stack.pop()
    return flat


Data = list[Any] | npt.NDArray[Any]  # a numpy array only from binary tensor data (1-D, no infinity)


def _tensor(tensor: Any, i: int) -> tuple[str, list[int], str, Data]:
    loc: list[str | int] = ["inputs", i]
    if not isinstance(tensor, dict):
        raise InvalidInput("a tensor must be an object", [problem(loc, "expected an object", "type")])
    name, shape, datatype = tensor.get("name"), tensor.get("shape"), tensor.get("datatype")
    problems = []
    if not isinstance(name, str):
        problems.append(problem([*loc, "name"], "field required", "missing"))
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        problems.append(problem([*loc, "shape"], "expected a list of non-negative integers"))
    if not isinstance(datatype, str):
        problems.append(problem([*loc, "datatype"], "field required", "missing"))
    raw = tensor.get("data")
    data: Data | None = raw if isinstance(raw, np.ndarray) else _flatten(raw)
    if data is None:
        problems.append(problem([*loc, "data"], "expected an array", "type"))
    if problems:
        raise InvalidInput("invalid tensor", problems)
    assert isinstance(name, str)
    assert isinstance(shape, list)
    assert isinstance(datatype, str)
    assert data is not None
    size = 1
    for d in shape:
        size *= d
    if size != len(data):
        raise InvalidInput(
            f"tensor {name[:64]!r} has {len(data)} values, its shape needs {size}",
            [problem([*loc, "data"], "the number of values does not match the shape", "shape")],
        )
    return name, shape, datatype, data


def feed_from_tensors(loaded: LoadedVersion, raw_tensors: list[Any]) -> Feed:
    """The feed of an infer request's ``inputs`` (see the module docstring); ``InvalidInput`` (422)
    located at the tensor and element."""
    tensors = [_tensor(t, i) for i, t in enumerate(raw_tensors)]
    names = [t[0] for t in tensors]
    width = len(loaded.manifest.inputs)
    try:
        return _feed(loaded, tensors)
    except InvalidRows as e:
        raise e.locate(lambda p: _location(p, names, loaded.schema.names, width)) from None


def _location(p: Problem, tensors: list[str], features: tuple[str, ...], width: int) -> list[str | int]:
    """Where problem ``p`` is among the request's tensors: the feature's own tensor and the row's
    element, or the element ``row * width + feature`` of the one matrix tensor."""
    if p.feature in tensors:  # one tensor per feature
        loc: list[str | int] = ["inputs", tensors.index(p.feature)]
        return loc if p.row is None else [*loc, "data", p.row]
    if len(tensors) == 1 and p.row is not None:
        if p.feature in features:
            return ["inputs", 0, "data", p.row * width + features.index(p.feature)]
        return ["inputs", 0, "data"]
    return ["inputs"]


def _feed(loaded: LoadedVersion, tensors: list[tuple[str, list[int], str, Data]]) -> Feed:
    manifest = loaded.manifest
    schema = loaded.schema
    features = {i.name: i for i in manifest.inputs}
    names = [t[0] for t in tensors]
    if set(names) == set(features) and len(names) == len(features):
        columns: dict[str, list[Any]] = {}
        n_rows: int | None = None
        for i, (name, shape, datatype, data) in enumerate(tensors):
            spec = features[name]
            if datatype not in _ACCEPTED[spec.dtype]:
                raise InvalidInput(
                    f"tensor {name!r} must be {DATATYPE[spec.dtype]}",
                    [problem(["inputs", i, "datatype"], f"expected {DATATYPE[spec.dtype]}", "type")],
                )
            if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or (
                n_rows is not None and shape[0] != n_rows
            ):
                raise InvalidInput(
                    "per-feature tensors must all have shape [N] or [N, 1]",
                    [problem(["inputs", i, "shape"], "expected [N] or [N, 1] with the same N", "shape")],
                )
            n_rows = shape[0]
            columns[name] = with_gaps(data) if isinstance(data, np.ndarray) else data
        return schema.from_columns(columns)
    matrix = matrix_input(manifest)
    if matrix is not None and len(tensors) == 1:
        name, shape, datatype, data = tensors[0]
        width = len(features)
        if datatype not in _NUMERIC_TYPES:
            raise InvalidInput(
                f"the input tensor must be numeric ({matrix[1]})",
                [problem(["inputs", 0, "datatype"], f"expected {matrix[1]}", "type")],
            )
        if len(shape) == 1 and shape[0] == width:
            shape = [1, width]
        if len(shape) != 2 or shape[1] != width:
            raise InvalidInput(
                f"the input tensor must have shape [N, {width}]",
                [problem(["inputs", 0, "shape"], f"expected [N, {width}]", "shape")],
            )
        if isinstance(data, np.ndarray):
            feed = _binary_rows(schema, data, datatype, shape[0])
            if feed is not None:
                return feed
            data = with_gaps(data)
        rows = [data[r * width : (r + 1) * width] for r in range(shape[0])]
        return schema.from_rows(rows)
    expected = ", ".join(features)
    raise InvalidInput(
        f"send one tensor per feature ({expected[:200]})"
        + (" or one [N, n_features] tensor" if matrix is not None else ""),
        [problem(["inputs"], "the tensors do not match the model's inputs", "schema")],
    )


def _binary_rows(schema: CompiledSchema, data: npt.NDArray[Any], datatype: str, n: int) -> Feed | None:
    """Binary float rows as the model's float tensor, or None (the checked path decides): only for a
    schema that takes flat rows, and only float data, whose conversion to the tensor's dtype is the
    same rounding the checked path does (ints would round differently, as Python ints). NaN (a missing
    value) makes ``from_flat`` decline too, and the checked path judges it per feature."""
    if schema.flat_width is None or datatype not in _FLOAT_TYPES:
        return None
    if not data.flags.aligned:  # the data starts wherever the JSON header ended
        data = data.copy()
    return schema.from_flat(data, n)
