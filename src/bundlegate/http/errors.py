"""Error codes → HTTP status codes, and the one error body (DESIGN.md §4).

This is the only table that knows both an error ``code`` and a status::

    {"error": {"code": "invalid_input", "message": "...", "details": [...]}, "request_id": "..."}

Under ``/v2`` the same fields are laid out as the Open Inference Protocol requires, ``error`` being the
message string, so Triton and KServe clients show it (tritonclient fails to print an object there)::

    {"error": "...", "code": "invalid_input", "details": [...], "request_id": "..."}

401 answers carry ``WWW-Authenticate: Bearer``, 429 and 503 answers ``Retry-After`` (whole seconds),
405 answers ``Allow``. An exception that is not a ``BundlegateError`` becomes a 500 with a generic
message; its traceback goes to the log with the request id, never to the client.
"""

from __future__ import annotations

import logging
import math

import orjson
from starlette.exceptions import HTTPException

from bundlegate.errors import (
    BundlegateError,
    MethodNotAllowed,
    NotFound,
    RateLimited,
    Unavailable,
)
from bundlegate.http.context import Reply
from bundlegate.http.tracebacks import TracebackLog

logger = logging.getLogger("bundlegate.http")

STATUS_BY_CODE: dict[str, int] = {
    "bad_request": 400,
    "malformed_json": 400,
    "unauthenticated": 401,
    "not_found": 404,
    "method_not_allowed": 405,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "invalid_input": 422,
    "rate_limited": 429,
    "unavailable": 503,
    "overloaded": 503,
    "model_not_ready": 503,
    "deadline_exceeded": 504,
    "internal": 500,
}

INTERNAL_MESSAGE = "internal server error"
_WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="bundlegate"')


def error_body(
    code: str, message: str, details: list[dict[str, object]], request_id: str, *, oip: bool = False
) -> bytes:
    if oip:
        return orjson.dumps({"error": message, "code": code, "details": details, "request_id": request_id})
    return orjson.dumps(
        {"error": {"code": code, "message": message, "details": details}, "request_id": request_id}
    )


def error_reply(
    exc: BaseException, request_id: str, *, oip: bool = False, tracebacks: TracebackLog | None = None
) -> tuple[Reply, str]:
    """The reply for ``exc`` and its error code; ``oip`` lays the body out for the ``/v2`` protocol.
    Unknown exceptions are logged here, with the request id (through ``tracebacks``, which bounds
    their rate, when given)."""
    if isinstance(exc, HTTPException):
        # from the router: no route (404) or a route without this method (405)
        if exc.status_code == 405:
            allow = (exc.headers or {}).get("Allow", "")
            exc = MethodNotAllowed(f"method not allowed; use {allow}" if allow else "method not allowed")
            reply, code = error_reply(exc, request_id, oip=oip)
            reply.headers = [*(reply.headers or []), (b"allow", allow.encode("latin-1"))]
            return reply, code
        exc = NotFound("not found")
    status = STATUS_BY_CODE.get(exc.code, 0) if isinstance(exc, BundlegateError) else 0
    if not isinstance(exc, BundlegateError) or status == 0:
        if tracebacks is not None:
            tracebacks.log(exc, request_id)
            return Reply(500, error_body("internal", INTERNAL_MESSAGE, [], request_id, oip=oip)), "internal"
        logger.error(
            "unhandled error, request_id=%s: %s",
            request_id,
            type(exc).__name__,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        return Reply(500, error_body("internal", INTERNAL_MESSAGE, [], request_id, oip=oip)), "internal"
    headers: list[tuple[bytes, bytes]] | None = None
    if status == 401:
        headers = [_WWW_AUTHENTICATE]
    elif isinstance(exc, RateLimited | Unavailable):
        headers = [(b"retry-after", str(max(1, math.ceil(exc.retry_after))).encode())]
    return Reply(
        status, error_body(exc.code, exc.message, exc.details, request_id, oip=oip), headers=headers
    ), exc.code
