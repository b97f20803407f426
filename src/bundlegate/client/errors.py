"""The errors of ``bundlegate.client``: one class per gateway error code, and how an error answer (or a
failure to get one) becomes one of them."""

from __future__ import annotations

import math
from typing import Any

import httpx


class GatewayError(Exception):
    """An error answer of the gateway (its one error body), or a failure to get one."""

    code = "internal"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        details: list[dict[str, Any]] | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.details = details or []
        self.request_id = request_id
        self.retry_after = retry_after


class MalformedRequest(GatewayError):
    code = "malformed_json"


class Unauthenticated(GatewayError):
    code = "unauthenticated"


class NotFound(GatewayError):
    code = "not_found"


class MethodNotAllowed(GatewayError):
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    code = "payload_too_large"


class UnsupportedMediaType(GatewayError):
    code = "unsupported_media_type"


class InvalidInput(GatewayError):
    code = "invalid_input"


class RateLimited(GatewayError):
    code = "rate_limited"


class Unavailable(GatewayError):
    code = "unavailable"


class Overloaded(Unavailable):
    code = "overloaded"


class ModelNotReady(Unavailable):
    code = "model_not_ready"


class DeadlineExceeded(GatewayError):
    code = "deadline_exceeded"


class ServerError(GatewayError):
    code = "internal"


class Timeout(GatewayError):
    """No answer within the client's timeout."""

    code = "client_timeout"


class ConnectionFailed(GatewayError):
    """The gateway could not be reached."""

    code = "connection_failed"


ERRORS: dict[str, type[GatewayError]] = {
    cls.code: cls
    for cls in (
        MalformedRequest,
        Unauthenticated,
        NotFound,
        MethodNotAllowed,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidInput,
        RateLimited,
        Unavailable,
        Overloaded,
        ModelNotReady,
        DeadlineExceeded,
        ServerError,
    )
}
ERRORS["bad_request"] = MalformedRequest


def error_from(response: httpx.Response) -> GatewayError:
    try:
        body = response.json()
    except ValueError:
        body = None
    retry_after = _retry_after(response.headers.get("retry-after"))
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):  # /v1 layout
        code, message, details = error.get("code"), error.get("message"), error.get("details")
    else:  # /v2 layout, or no gateway body at all
        code = body.get("code") if isinstance(body, dict) else None
        message = error if isinstance(error, str) else response.text[:200] or response.reason_phrase
        details = body.get("details") if isinstance(body, dict) else None
    cls = ERRORS.get(code) if isinstance(code, str) else None
    if cls is None:
        cls = ServerError if response.status_code >= 500 else GatewayError
    return cls(
        str(message),
        status=response.status_code,
        details=details if isinstance(details, list) else [],
        request_id=response.headers.get("x-request-id"),
        retry_after=retry_after,
    )


def _retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def transport_error(exc: httpx.TransportError) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer in time: {type(exc).__name__}")
    return ConnectionFailed(f"cannot reach the gateway: {exc}")
