"""``/v1``: named features, what a plain application calls (DESIGN.md §3).

    POST /v1/models/{name}/predict                      one record → prediction (+ probabilities)
    POST /v1/models/{name}/predict/batch                records, columns or positional rows
    POST /v1/models/{name}/versions/{version}/predict[/batch]   the same, pinned to a version
    POST /v1/models/{name}/aliases/{alias}/predict[/batch]      the version serving.json names
    GET  /v1/models                                     the models this key may see, their versions
    GET  /v1/models/{name}                              schema, outputs, versions (never file paths)

Endpoints do HTTP only: the key, the model version, the body; ``codec`` turns the body into the
model's feed and the prediction into the answer.
"""

from __future__ import annotations

from starlette.routing import Route

from bundlegate.errors import NotFound
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.models import model_description, model_summary, status_of
from bundlegate.http.routing import Call, json_reply, route
from bundlegate.http.v1 import codec
from bundlegate.registry import LoadedVersion


async def _run(call: Call, loaded: LoadedVersion, batch: bool) -> Reply:
    body = await call.json_body()
    settings = call.ctx.settings
    feed = codec.decode(body, loaded.schema, batch, settings)
    prediction = await call.predict(loaded, feed)
    if call.shadow is not None:  # a copy for the shadow version, scored after this answer
        call.shadow.offer(lambda schema: codec.decode(body, schema, batch, settings), prediction)
    return Reply(200, codec.encode(call.info, loaded.answers, prediction, batch))


async def predict(call: Call) -> Reply:
    params = call.params
    return await _run(call, call.model(params["name"], params.get("version")), batch=False)


async def predict_batch(call: Call) -> Reply:
    params = call.params
    return await _run(call, call.model(params["name"], params.get("version")), batch=True)


def _aliased(call: Call) -> LoadedVersion:
    """The version an alias names: authenticated (once: a retry after loading has the key), and 404
    alike for a hidden model or an unknown alias."""
    params = call.params
    name = params["name"]
    check_model_access(call.key or call.authenticate(), name)
    try:
        version = call.ctx.registry.policies.alias(name, params["alias"])
    except NotFound:
        raise NotFound(NOT_FOUND_MESSAGE) from None
    return call.model(name, str(version))


async def predict_alias(call: Call) -> Reply:
    return await _run(call, _aliased(call), batch=False)


async def predict_alias_batch(call: Call) -> Reply:
    return await _run(call, _aliased(call), batch=True)


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
    aliased = base + "/aliases/{alias}"
    return [  # the hot routes first: the router tries them in order
        route(ctx, base + "/predict", predict, ["POST"], "v1_predict"),
        route(ctx, base + "/predict/batch", predict_batch, ["POST"], "v1_predict_batch"),
        route(ctx, pinned + "/predict", predict, ["POST"], "v1_predict"),
        route(ctx, pinned + "/predict/batch", predict_batch, ["POST"], "v1_predict_batch"),
        route(ctx, aliased + "/predict", predict_alias, ["POST"], "v1_predict"),
        route(ctx, aliased + "/predict/batch", predict_alias_batch, ["POST"], "v1_predict_batch"),
        route(ctx, "/v1/models", list_models, ["GET"], "v1_models"),
        route(ctx, base, describe_model, ["GET"], "v1_model"),
    ]
