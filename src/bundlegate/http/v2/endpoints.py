"""``/v2``: the Open Inference Protocol (KServe V2), so Triton and KServe clients work unchanged.

    GET  /v2                                             server metadata (no key)
    GET  /v2/health/live, /v2/health/ready               probes (no key)
    GET  /v2/models/{name}[/versions/{v}]                model metadata: inputs and outputs with
                                                         datatype and shape
    GET  /v2/models/{name}[/versions/{v}]/ready          200 when that version answers
    POST /v2/models/{name}[/versions/{v}]/infer          inference
    POST /v2/repository/index                            every model version and its state (admin)
    POST /v2/repository/models/{name}/load|unload        (admin; 404 for other keys)

Without ``/versions/{v}``, metadata and readiness are the default version's, and infer follows the
model's ``serving.json`` traffic split as ``/v1`` predict does (a shadow scores ``/v1`` requests only).

Infer accepts either one tensor per feature, named as the feature (shape ``[N]`` or ``[N, 1]``), or,
for purely numeric models, one tensor of shape ``[N, n_features]`` under any name (``codec``).
Tensor data comes as JSON (flat or nested) or, with ``Inference-Header-Content-Length``, in the binary
tensor data extension that tritonclient uses by default (``binary``). The response holds ``label``
(BYTES, INT64 or BOOL, the original classes) and ``probabilities`` (FP32 ``[N, n_classes]``) for
classifiers, ``value`` for regressors; ``outputs`` in the request selects among them; ``id`` and
``parameters`` are echoed. Answers are JSON (a server may ignore ``binary_data_output``). Errors use
the gateway's one error body.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from starlette.routing import Route

from bundlegate import __version__
from bundlegate.errors import InvalidInput, MalformedRequest, ModelNotReady, NotFound, problem
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access, require_admin
from bundlegate.http.body import parse_json
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.models import public_error, status_of
from bundlegate.http.readiness import check_ready
from bundlegate.http.routing import Call, json_reply, route
from bundlegate.http.v2.binary import decode_binary_inputs
from bundlegate.http.v2.codec import (
    feed_from_tensors,
    infer_outputs,
    requested_outputs,
    tensor_metadata,
    value_width,
)
from bundlegate.status import ModelStatus

SERVER_NAME = "bundlegate"
EXTENSIONS = ["model_repository", "binary_tensor_data"]

_STATE = {"loaded": "READY", "loading": "LOADING"}


# --------------------------------------------------------------------------------- server


async def server_metadata(call: Call) -> Reply:
    return json_reply({"name": SERVER_NAME, "version": __version__, "extensions": EXTENSIONS})


async def live(call: Call) -> Reply:
    return json_reply({"live": True})


async def ready(call: Call) -> Reply:
    check_ready(call.ctx)  # the same check as /readyz
    return json_reply({"ready": True})


# --------------------------------------------------------------------------------- models


async def model_metadata(call: Call) -> Reply:
    params = call.params
    loaded = call.model(params["name"], params.get("version"), routed=False)
    manifest = loaded.manifest
    status = status_of(call.ctx.registry, manifest.name)
    versions = [str(v.version) for v in status.versions if v.state == "loaded"] if status else []
    inputs, outputs = tensor_metadata(manifest, value_width(loaded))
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
    loaded = call.model(params["name"], params.get("version"), routed=False)
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
    requested = requested_outputs(doc.get("outputs"), loaded.manifest)
    feed = feed_from_tensors(loaded, tensors)
    prediction = await call.predict(loaded, feed)
    body: dict[str, Any] = {"model_name": loaded.manifest.name, "model_version": str(loaded.version)}
    if "id" in doc:
        body["id"] = doc["id"]
    if isinstance(doc.get("parameters"), dict):
        body["parameters"] = doc["parameters"]
    body["outputs"] = infer_outputs(loaded, prediction, feed.n_rows, requested)
    return Reply(200, orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY))


async def _infer_document(call: Call) -> Any:
    """The infer request as JSON, with binary tensor data (if any) decoded into each input's ``data``."""
    header_length = call.header(b"inference-header-content-length")
    if header_length is None:
        return await call.json(allow_missing_content_type=True)
    body = await call.body()
    if not header_length.isdigit():  # bytes: ASCII digits only (int() also takes " 1_0" and "+1")
        raise MalformedRequest("invalid Inference-Header-Content-Length")
    n = int(header_length)
    if not 0 < n <= len(body):
        raise MalformedRequest("Inference-Header-Content-Length does not fit the body")
    doc = parse_json(body[:n], call.ctx.settings.max_json_depth)
    decode_binary_inputs(doc, memoryview(body)[n:])
    return doc


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
    name = _admin_model(call, known=False)  # a model that appeared on disk since the last scan too
    try:
        status = await call.ctx.registry.load(name)
    except NotFound:
        raise NotFound(NOT_FOUND_MESSAGE) from None
    call.known_model(name)
    return json_reply({}) if status.default is not None else _not_loaded(status, call.ctx.registry.repo)


async def repository_unload(call: Call) -> Reply:
    name = _admin_model(call)
    await call.ctx.registry.unload(name)
    return json_reply({})


def _admin_model(call: Call, known: bool = True) -> str:
    key = call.authenticate()
    require_admin(key)
    name = call.params["name"]
    check_model_access(key, name)
    if known:
        if status_of(call.ctx.registry, name) is None:
            raise NotFound(NOT_FOUND_MESSAGE)
        call.known_model(name)
    return name


def _not_loaded(status: ModelStatus, repo: Path) -> Reply:
    """The load found the model but no version could be loaded: 503 with the reasons."""
    reasons = [f"version {v.version}: {public_error(v.error, repo)}" for v in status.versions if v.error]
    raise ModelNotReady(f"model {status.name!r} did not load: " + "; ".join(reasons)[:300], retry_after=5)


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
