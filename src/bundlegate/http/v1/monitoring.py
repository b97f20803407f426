"""``/v1`` monitoring routes: drift and feedback (``bundlegate.monitoring``).

    GET  /v1/models/{name}/drift                     the default version's drift window
    GET  /v1/models/{name}/versions/{version}/drift  a pinned version's
    POST /v1/models/{name}/feedback                  {"feedback": [{"request_id": "…", "row": 0,
                                                     "label": "setosa"}]}  ("value" for regressors)

Both need a key that may see the model, as predict does. Feedback is all or nothing: a body with
any item that is malformed, names an unknown or expired request id, a row the request did not have,
or a label of the wrong type answers 422 with each such item located (``["feedback", 3,
"request_id"]``) and records nothing; otherwise every item is joined to its prediction and the answer
is ``{"matched": n}``. With drift or feedback off (``--drift``, ``--feedback``) these routes answer 404.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from bundlegate.errors import InvalidInput, NotFound, problem
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.models import status_of
from bundlegate.http.routing import Call, json_reply, route
from bundlegate.monitoring.monitor import FeedbackItem

MAX_REQUEST_ID = 128
_ITEM_KEYS = frozenset({"request_id", "row", "label", "value"})


async def drift(call: Call) -> Reply:
    params = call.params
    loaded = call.model(params["name"], params.get("version"))
    monitor = call.ctx.monitor
    if monitor is None or not call.ctx.settings.drift:
        raise NotFound("drift monitoring is off on this gateway (bundle serve --drift)")
    return json_reply(monitor.drift_report(loaded))


async def feedback(call: Call) -> Reply:
    key = call.authenticate()
    name = call.params["name"]
    check_model_access(key, name)
    if status_of(call.ctx.registry, name) is None:
        raise NotFound(NOT_FOUND_MESSAGE)
    call.known_model(name)
    monitor = call.ctx.monitor
    if monitor is None or monitor.feedback is None:
        raise NotFound("feedback is off on this gateway (bundle serve --feedback)")
    items = parse_feedback(await call.json(), call.ctx.settings.request_max_rows)
    problems = monitor.join_feedback(name, items)
    if problems:
        raise InvalidInput(
            f"{len(problems)} of {len(items)} feedback items cannot be joined; nothing was recorded",
            [problem(["feedback", i, field], msg, kind) for i, field, msg, kind in problems],
        )
    return json_reply({"matched": len(items)})


def parse_feedback(doc: Any, max_items: int) -> list[FeedbackItem]:
    """The items of a feedback body; ``InvalidInput`` (422) naming every malformed one."""
    if not isinstance(doc, dict) or set(doc) != {"feedback"}:
        raise InvalidInput(
            'the body must be {"feedback": [...]}',
            [problem(["feedback"], "expected only this field", "type")],
        )
    raw = doc["feedback"]
    if not isinstance(raw, list) or not raw:
        raise InvalidInput(
            "feedback must be a non-empty list", [problem(["feedback"], "expected a list", "type")]
        )
    if len(raw) > max_items:
        raise InvalidInput(
            f"{len(raw)} feedback items, more than the limit of {max_items}",
            [problem(["feedback"], f"at most {max_items} items per request", "too_many_rows")],
        )
    items, problems = [], []
    for i, item in enumerate(raw):
        where: list[str | int] = ["feedback", i]
        if not isinstance(item, dict):
            problems.append(problem(where, "expected an object", "type"))
            continue
        extra = [k for k in item if k not in _ITEM_KEYS]
        request_id, row = item.get("request_id"), item.get("row", 0)
        if extra:
            problems.append(problem([*where, str(extra[0])[:64]], "unknown field", "extra"))
        elif not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_REQUEST_ID:
            problems.append(
                problem([*where, "request_id"], "expected the request_id of a prediction", "type")
            )
        elif isinstance(row, bool) or not isinstance(row, int) or row < 0:
            problems.append(problem([*where, "row"], "expected a row number (0 or more)", "type"))
        elif ("label" in item) == ("value" in item):
            problems.append(problem(where, 'expected one of "label" (classifiers) or "value"', "missing"))
        else:
            items.append(FeedbackItem(i, request_id, row, item.get("label"), item.get("value")))
    if problems:
        raise InvalidInput(f"{len(problems)} feedback items are malformed; nothing was recorded", problems)
    return items


def routes(ctx: GatewayContext) -> list[Route]:
    base = "/v1/models/{name}"
    return [
        route(ctx, base + "/feedback", feedback, ["POST"], "v1_feedback"),
        route(ctx, base + "/drift", drift, ["GET"], "v1_drift"),
        route(ctx, base + "/versions/{version}/drift", drift, ["GET"], "v1_drift"),
    ]
