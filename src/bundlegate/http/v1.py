"""``/v1``: named features, what a plain application calls (DESIGN.md §3).

    POST /v1/models/{name}/predict                      one record → prediction (+ probabilities)
                                                        (+ classes / targets, see below)
    POST /v1/models/{name}/predict/batch                records, columns or positional rows
    POST /v1/models/{name}/versions/{version}/predict[/batch]   the same, pinned to a version
    GET  /v1/models                                     the models this key may see, their versions
    GET  /v1/models/{name}                              schema, outputs, versions (never file paths)

A request body is ``{"inputs": ...}`` and nothing else; the schema of the model version
(``CompiledSchema``) turns ``inputs`` into the model feed or answers 422 with located details.

Answers name their outputs the same way single and batch: a classifier's answers carry ``classes``
(single: ``probabilities`` keyed by class; batch: each row of ``probabilities`` in ``classes`` order);
a multi-output regressor whose targets were named at pack time carries ``targets`` (single:
``prediction`` keyed by target; batch: each row of ``predictions`` in ``targets`` order).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.routing import Route

from bundlegate.errors import InvalidInput, NotFound, problem
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.flatrows import FlatRows
from bundlegate.http.models import model_description, model_summary, status_of
from bundlegate.http.routing import Call, json_reply, route
from bundlegate.registry import LoadedVersion


def _inputs(doc: Any) -> Any:
    if not isinstance(doc, dict):
        raise InvalidInput(
            'the body must be a JSON object {"inputs": ...}', [problem([], "expected an object", "type")]
        )
    if "inputs" not in doc:
        raise InvalidInput('the body has no "inputs"', [problem(["inputs"], "field required", "missing")])
    if len(doc) > 1:
        extra = [problem([str(k)[:64]], "unknown field", "extra") for k in doc if k != "inputs"]
        raise InvalidInput('the body may only hold "inputs"', extra)
    return doc["inputs"]


async def _run(call: Call, loaded: LoadedVersion, batch: bool) -> Reply:
    schema = loaded.schema
    doc = await call.json_or_rows(schema.flat_width if batch else None)
    feed = None
    if type(doc) is FlatRows:  # positional rows parsed straight into one buffer
        feed = schema.from_flat(doc.numbers, doc.n_rows)
        if feed is None:  # a value the dtype cannot hold: the general path words the error
            doc = await call.json()
    if feed is None:
        inputs = _inputs(doc)
        feed = schema.from_batch(inputs) if batch else schema.from_record(inputs)
    prediction = await loaded.queue.submit(feed, call.deadline())
    info = call.info
    head = {"model": info.model, "version": info.version, "request_id": info.request_id}
    names = _output_names(loaded)
    if batch:
        out = head | schema.encode_batch(prediction)
        return Reply(200, orjson.dumps(out | names if names else out, option=orjson.OPT_SERIALIZE_NUMPY))
    one = schema.decode_one(prediction)
    if "targets" in names:  # a named multi-output regressor: its values keyed by target
        one["prediction"] = dict(zip(names["targets"], one["prediction"], strict=True))
    return Reply(200, orjson.dumps(head | one | names if names else head | one))


def _output_names(loaded: LoadedVersion) -> dict[str, list[Any]]:
    """What every answer of this version names: ``classes`` of a classifier (the order of a batch
    answer's probability rows), ``targets`` of a multi-output regressor whose training data named them
    (the order of a batch answer's value rows)."""
    outputs = loaded.manifest.outputs
    if outputs.label is not None:
        return {"classes": outputs.label.classes}
    if outputs.value is not None and outputs.value.targets:
        return {"targets": outputs.value.targets}
    return {}


async def predict(call: Call) -> Reply:
    params = call.params
    return await _run(call, call.model(params["name"], params.get("version")), batch=False)


async def predict_batch(call: Call) -> Reply:
    params = call.params
    return await _run(call, call.model(params["name"], params.get("version")), batch=True)


async def list_models(call: Call) -> Reply:
    key = call.authenticate()
    statuses = [s for s in call.ctx.registry.models() if key.allows(s.name)]
    repo = call.ctx.registry.repo
    return json_reply({"models": [model_summary(s, repo) for s in sorted(statuses, key=lambda s: s.name)]})


async def describe_model(call: Call) -> Reply:
    key = call.authenticate()
    name = call.params["name"]
    check_model_access(key, name)
    status = status_of(call.ctx.registry, name)
    if status is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    call.known_model(name)
    return json_reply(model_description(call.ctx.registry, status))


def routes(ctx: GatewayContext) -> list[Route]:
    base = "/v1/models/{name}"
    pinned = base + "/versions/{version}"
    return [  # the hot routes first: the router tries them in order
        route(ctx, base + "/predict", predict, ["POST"], "v1_predict"),
        route(ctx, base + "/predict/batch", predict_batch, ["POST"], "v1_predict_batch"),
        route(ctx, pinned + "/predict", predict, ["POST"], "v1_predict"),
        route(ctx, pinned + "/predict/batch", predict_batch, ["POST"], "v1_predict_batch"),
        route(ctx, "/v1/models", list_models, ["GET"], "v1_models"),
        route(ctx, base, describe_model, ["GET"], "v1_model"),
    ]
