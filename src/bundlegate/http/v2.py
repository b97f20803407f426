"""``/v2``: the Open Inference Protocol (KServe V2), so Triton and KServe clients work unchanged.

    GET  /v2                                             server metadata (no key)
    GET  /v2/health/live, /v2/health/ready               probes (no key)
    GET  /v2/models/{name}[/versions/{v}]                model metadata: inputs and outputs with
                                                         datatype and shape
    GET  /v2/models/{name}[/versions/{v}]/ready          200 when that version answers
    POST /v2/models/{name}[/versions/{v}]/infer          inference
    POST /v2/repository/index                            every model version and its state (admin)
    POST /v2/repository/models/{name}/load|unload        (admin; 404 for other keys)

Infer accepts either one tensor per feature, named as the feature (shape ``[N]`` or ``[N, 1]``), or,
for purely numeric models, one tensor of shape ``[N, n_features]`` under any name. Tensor data comes
as JSON (flat or nested) or, with ``Inference-Header-Content-Length``, in the binary tensor data
extension that tritonclient uses by default. The response holds ``label`` (BYTES, INT64 or BOOL, the
original classes) and ``probabilities`` (FP32 ``[N, n_classes]``) for classifiers, ``value`` for
regressors; ``outputs`` in the request selects among them; ``id`` and ``parameters`` are echoed.
Answers are JSON (a server may ignore ``binary_data_output``). Errors use the gateway's one error body.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np
import orjson
from starlette.routing import Route

from bundlegate import __version__
from bundlegate.errors import InvalidInput, MalformedRequest, NotFound, Unavailable, problem
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access, require_admin
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.jsonbody import parse_json
from bundlegate.http.models import public_error, status_of
from bundlegate.http.routing import Call, json_reply, route
from bundlegate.manifest import Manifest
from bundlegate.registry import LoadedVersion

SERVER_NAME = "bundlegate"
EXTENSIONS = ["model_repository", "binary_tensor_data"]

DATATYPE = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "bool": "BOOL", "string": "BYTES"}
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
_STATE = {"loaded": "READY", "loading": "LOADING"}


def _datatype_of(array: np.ndarray[Any, Any]) -> str:
    kind = array.dtype.kind
    if kind == "f":
        return "FP64" if array.dtype.itemsize == 8 else "FP32"
    if kind in "iu":
        return "INT64"
    if kind == "b":
        return "BOOL"
    return "BYTES"


def _label_datatype(classes: Sequence[Any]) -> str:
    if classes and isinstance(classes[0], bool):
        return "BOOL"
    if classes and isinstance(classes[0], int):
        return "INT64"
    return "BYTES"


def _matrix_input(manifest: Manifest) -> tuple[str, str] | None:
    """(name, datatype) of the single ``[N, n_features]`` tensor a numeric model accepts, or None."""
    dtypes = {i.dtype for i in manifest.inputs}
    if not dtypes <= {"float32", "float64", "int64"}:
        return None
    name = manifest.onnx_inputs[0].name if len(manifest.onnx_inputs) == 1 else "input"
    if name in manifest.feature_names and len(manifest.inputs) > 1:
        name = "input"
    return name, DATATYPE[dtypes.pop()] if len(dtypes) == 1 else "FP64"


def tensor_metadata(manifest: Manifest) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The ``inputs`` and ``outputs`` of model metadata. Numeric models with several features list the
    one matrix tensor (what Triton clients send); others list one ``[-1, 1]`` tensor per feature."""
    matrix = _matrix_input(manifest)
    if matrix is not None and len(manifest.inputs) > 1:
        inputs = [{"name": matrix[0], "datatype": matrix[1], "shape": [-1, len(manifest.inputs)]}]
    else:
        inputs = [{"name": i.name, "datatype": DATATYPE[i.dtype], "shape": [-1, 1]} for i in manifest.inputs]
    float_type = "FP32" if manifest.runtime == "onnx" else "FP64"
    outputs: list[dict[str, Any]] = []
    label = manifest.outputs.label
    if label is not None:
        outputs.append({"name": "label", "datatype": _label_datatype(label.classes), "shape": [-1]})
        if manifest.outputs.probabilities is not None:
            outputs.append({"name": "probabilities", "datatype": "FP32", "shape": [-1, len(label.classes)]})
    elif manifest.outputs.value is not None:
        outputs.append({"name": "value", "datatype": float_type, "shape": [-1]})
    return inputs, outputs


# --------------------------------------------------------------------------------- server


async def server_metadata(call: Call) -> Reply:
    return json_reply({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


async def live(call: Call) -> Reply:
    return json_reply({"live": True})


async def ready(call: Call) -> Reply:
    state = call.ctx.state
    if state.draining or not call.ctx.registry.ready:
        reason = "shutting down" if state.draining else "loading models"
        raise Unavailable(f"the server is not ready: {reason}")
    return json_reply({"ready": True})


# --------------------------------------------------------------------------------- models


async def model_metadata(call: Call) -> Reply:
    params = call.params
    loaded = call.model(params["name"], params.get("version"))
    manifest = loaded.manifest
    status = status_of(call.ctx.registry, manifest.name)
    versions = [str(v.version) for v in status.versions if v.state == "loaded"] if status else []
    inputs, outputs = tensor_metadata(manifest)
    return json_reply(
        {
            "name": manifest.name,
            "versions": versions or [str(loaded.version)],
            "platform": "onnxruntime_onnx" if manifest.runtime == "onnx" else "sklearn",
            "inputs": inputs,
            "outputs": outputs,
        }
    )


async def model_ready(call: Call) -> Reply:
    params = call.params
    loaded = call.model(params["name"], params.get("version"))
    return json_reply({"name": params["name"], "version": str(loaded.version), "ready": True})


async def infer(call: Call) -> Reply:
    params = call.params
    loaded = call.model(params["name"], params.get("version"))
    doc = await _infer_document(call)
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object", [problem([], "expected an object", "type")])
    tensors = doc.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise InvalidInput(
            'the body needs "inputs": a list of tensors', [problem(["inputs"], "expected a list of tensors")]
        )
    requested = _requested_outputs(doc.get("outputs"), loaded.manifest)
    feed = _feed(loaded, tensors)
    prediction = await loaded.queue.submit(feed, call.deadline())
    out = loaded.schema.decode_batch(prediction)
    n = feed.n_rows
    outputs: list[dict[str, Any]] = []
    manifest = loaded.manifest
    if manifest.outputs.label is not None and "predictions" in out:
        outputs.append(
            {
                "name": "label",
                "datatype": _label_datatype(manifest.outputs.label.classes),
                "shape": [n],
                "data": out["predictions"],
            }
        )
    elif prediction.values is not None:
        outputs.append(
            {
                "name": "value",
                "datatype": _datatype_of(prediction.values),
                "shape": [n],
                "data": out["predictions"],
            }
        )
    if prediction.probabilities is not None:
        probabilities = prediction.probabilities
        outputs.append(
            {
                "name": "probabilities",
                "datatype": "FP32",
                "shape": [n, probabilities.shape[1]],
                "data": [p for row in out["probabilities"] for p in row],
            }
        )
    if requested is not None:
        outputs = [o for o in outputs if o["name"] in requested]
    body: dict[str, Any] = {"model_name": manifest.name, "model_version": str(loaded.version)}
    if "id" in doc:
        body["id"] = doc["id"]
    if isinstance(doc.get("parameters"), dict):
        body["parameters"] = doc["parameters"]
    body["outputs"] = outputs
    return Reply(200, orjson.dumps(body))


def _requested_outputs(outputs: Any, manifest: Manifest) -> set[str] | None:
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


async def _infer_document(call: Call) -> Any:
    """The infer request as JSON, with binary tensor data (if any) decoded into each input's ``data``."""
    header_length = call.header(b"inference-header-content-length")
    if header_length is None:
        return await call.json(allow_missing_content_type=True)
    body = await call.body()
    try:
        n = int(header_length)
    except ValueError:
        raise MalformedRequest("invalid Inference-Header-Content-Length") from None
    if not 0 < n <= len(body):
        raise MalformedRequest("Inference-Header-Content-Length does not fit the body")
    doc = parse_json(body[:n], call.ctx.settings.max_json_depth)
    binary = memoryview(body)[n:]
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
    return doc


def _binary_size(tensor: Any) -> int | None:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("parameters"), dict):
        return None
    size = tensor["parameters"].get("binary_data_size")
    if size is None:
        return None
    if type(size) is not int or size < 0:
        raise InvalidInput("invalid binary_data_size", [problem(["inputs", "parameters"], "not a size")])
    return size


def _decode_binary(raw: memoryview, datatype: Any, i: int) -> list[Any]:
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
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            "tensor data is not finite", [problem(["inputs", i, "data"], "not a finite number")]
        )
    result: list[Any] = array.tolist()
    return result


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


def _tensor(tensor: Any, i: int) -> tuple[str, list[int], str, list[Any]]:
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
    data = _flatten(tensor.get("data"))
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


def _feed(loaded: LoadedVersion, raw_tensors: list[Any]) -> Any:
    manifest = loaded.manifest
    schema = loaded.schema
    tensors = [_tensor(t, i) for i, t in enumerate(raw_tensors)]
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
            columns[name] = data
        return schema.from_columns(columns)
    matrix = _matrix_input(manifest)
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
        rows = [data[r * width : (r + 1) * width] for r in range(shape[0])]
        return schema.from_rows(rows)
    expected = ", ".join(features)
    raise InvalidInput(
        f"send one tensor per feature ({expected[:200]})"
        + (" or one [N, n_features] tensor" if matrix is not None else ""),
        [problem(["inputs"], "the tensors do not match the model's inputs", "schema")],
    )


# --------------------------------------------------------------------------------- repository


async def repository_index(call: Call) -> Reply:
    key = call.authenticate()
    require_admin(key)
    entries: list[dict[str, Any]] = []
    for status in call.ctx.registry.models():
        if not key.allows(status.name):
            continue
        for v in status.versions:
            entries.append(
                {
                    "name": status.name,
                    "version": str(v.version),
                    "state": _STATE.get(v.state, "UNAVAILABLE"),
                    "reason": public_error(v.error, call.ctx.registry.repo)
                    if v.error
                    else ("" if v.state in _STATE else v.state),
                }
            )
    return json_reply(entries)


async def repository_load(call: Call) -> Reply:
    name = _admin_model(call)
    await call.ctx.registry.load(name)
    return json_reply({})


async def repository_unload(call: Call) -> Reply:
    name = _admin_model(call)
    await call.ctx.registry.unload(name)
    return json_reply({})


def _admin_model(call: Call) -> str:
    key = call.authenticate()
    require_admin(key)
    name = call.params["name"]
    check_model_access(key, name)
    if status_of(call.ctx.registry, name) is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    call.known_model(name)
    return name


def routes(ctx: GatewayContext) -> list[Route]:
    model = "/v2/models/{name}"
    pinned = model + "/versions/{version}"
    result = [
        route(ctx, "/v2", server_metadata, ["GET"], "v2_server"),
        route(ctx, "/v2/health/live", live, ["GET"], "v2_server"),
        route(ctx, "/v2/health/ready", ready, ["GET"], "v2_server"),
        route(ctx, "/v2/repository/index", repository_index, ["POST"], "v2_repository"),
        route(ctx, "/v2/repository/models/{name}/load", repository_load, ["POST"], "v2_repository"),
        route(ctx, "/v2/repository/models/{name}/unload", repository_unload, ["POST"], "v2_repository"),
    ]
    for base in (model, pinned):
        result += [
            route(ctx, base, model_metadata, ["GET"], "v2_model"),
            route(ctx, base + "/ready", model_ready, ["GET"], "v2_model_ready"),
            route(ctx, base + "/infer", infer, ["POST"], "v2_infer"),
        ]
    return result
