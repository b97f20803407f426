"""A Python client for the gateway's ``/v1`` API: ``Client`` (blocking) and ``AsyncClient`` (asyncio),
over httpx (``pip install 'bundlegate[client]'``)::

    from bundlegate.client import Client

    with Client("http://127.0.0.1:8080", api_key="bg_...") as gw:
        one = gw.predict("iris", {"sepal_length": 5.1, "sepal_width": 3.5, ...})
        one.prediction, one.probabilities            # "setosa", {"setosa": 0.98, ...}
        many = gw.predict_many("iris", frame)        # a pandas DataFrame, a list of dicts or of rows,
        many.predictions, many.classes               # or a dict of columns
        many.probability_records()                   # [{"setosa": 0.98, ...}, ...]

- Pinning: ``version=3`` calls ``/v1/models/{name}/versions/3/...``; ``alias="champion"`` calls
  ``/v1/models/{name}/aliases/champion/...`` (the alias route comes with serving.json aliases; a gateway
  without it answers ``NotFound``). Either per call or as the client's default.
- Errors: every gateway error code is an exception class (``InvalidInput`` for ``invalid_input``...),
  all ``GatewayError`` with ``status``, ``code``, ``message``, ``details`` and ``request_id``; no answer
  in time is ``Timeout``, no connection ``ConnectionFailed``.
- Retries: a 503 or 429 answer, or a connection that could not be made, is retried up to ``retries``
  times; the wait is the answer's ``Retry-After`` when it has one, else an exponential backoff
  (``backoff`` * 2^attempt with jitter), never more than ``max_wait`` seconds.
- Missing values: NaN in a DataFrame is sent as ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

RETRY_STATUSES = frozenset({429, 503})


# --------------------------------------------------------------------------------- errors


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


# --------------------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Prediction:
    """One record's answer. ``probabilities`` is keyed by class (classifiers); ``classes`` their order."""

    model: str
    version: int
    request_id: str
    prediction: Any
    probabilities: dict[str, float] | None = None
    classes: list[Any] | None = None
    targets: list[str] | None = None


@dataclass(frozen=True)
class BatchPrediction:
    """Many rows' answers. Each row of ``probabilities`` is in ``classes`` order; each row of a
    multi-output regressor's ``predictions`` in ``targets`` order, where the targets were named."""

    model: str
    version: int
    request_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    targets: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def probability_records(self) -> list[dict[str, float]]:
        """Each row's probabilities keyed by class, as a single answer gives them."""
        if self.probabilities is None or self.classes is None:
            return []
        keys = [_class_key(c) for c in self.classes]
        return [dict(zip(keys, row, strict=True)) for row in self.probabilities]


def _class_key(c: Any) -> str:
    return ("true" if c else "false") if isinstance(c, bool) else str(c)


# --------------------------------------------------------------------------------- shared logic


class _Base:
    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        max_wait: float,
        version: int | None,
        alias: str | None,
    ) -> None:
        if retries < 0 or backoff < 0 or max_wait < 0:
            raise ValueError("retries, backoff and max_wait must be >= 0")
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_wait = max_wait
        self.version = version
        self.alias = alias
        _target(version, alias)

    def _path(self, model: str, batch: bool, version: int | None, alias: str | None) -> str:
        if version is None and alias is None:
            version, alias = self.version, self.alias
        path = f"/v1/models/{quote(model, safe='')}" + _target(version, alias) + "/predict"
        return path + "/batch" if batch else path

    def _wait(self, attempt: int, error: GatewayError) -> float | None:
        """Seconds to wait before retry ``attempt`` (1-based), or None to give up."""
        if attempt > self.retries:
            return None
        if error.retry_after is not None:
            return min(self.max_wait, error.retry_after)
        wait: float = self.backoff * 2 ** (attempt - 1) * (0.5 + random.random())
        return min(self.max_wait, wait)


def _target(version: int | None, alias: str | None) -> str:
    if version is not None and alias is not None:
        raise ValueError("pin a version or an alias, not both")
    if version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError("version must be a positive integer")
        return f"/versions/{version}"
    if alias is not None:
        return f"/aliases/{quote(alias, safe='')}"
    return ""


def batch_inputs(rows: Any) -> Any:
    """What ``predict_many`` sends as ``inputs``: a DataFrame becomes columns (NaN and NA as null);
    lists of records or rows and dicts of columns go as they are."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame, without importing pandas
        frame = rows.astype(object).where(rows.notna(), None)
        return {str(k): v for k, v in frame.to_dict(orient="list").items()}
    if isinstance(rows, Mapping) or (isinstance(rows, Sequence) and not isinstance(rows, str | bytes)):
        return rows if isinstance(rows, Mapping) else list(rows)
    raise TypeError("rows must be a pandas DataFrame, a list of records or rows, or a dict of columns")


def _error(response: httpx.Response) -> GatewayError:
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


def _answer(response: httpx.Response, batch: bool) -> Prediction | BatchPrediction:
    if response.status_code != 200:
        raise _error(response)
    body = response.json()
    head = {"model": body["model"], "version": body["version"], "request_id": body["request_id"]}
    names = {"classes": body.get("classes"), "targets": body.get("targets")}
    if batch:
        return BatchPrediction(
            **head,
            predictions=body["predictions"],
            probabilities=body.get("probabilities"),
            raw=body,
            **names,
        )
    return Prediction(**head, prediction=body["prediction"], probabilities=body.get("probabilities"), **names)


def _transport_error(exc: httpx.TransportError) -> GatewayError:
    if isinstance(exc, httpx.TimeoutException):
        return Timeout(f"no answer in time: {type(exc).__name__}")
    return ConnectionFailed(f"cannot reach the gateway: {exc}")


# --------------------------------------------------------------------------------- clients


class Client(_Base):
    """The blocking client; see the module docstring. ``timeout`` is seconds per attempt."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_wait: float = 30.0,
        version: int | None = None,
        alias: str | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_wait=max_wait,
            version=version,
            alias=alias,
        )
        self._http = http or httpx.Client(timeout=timeout)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def predict(
        self,
        model: str,
        record: Mapping[str, Any] | Sequence[Any],
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> Prediction:
        """One record (a dict of features, or a positional list for numeric models)."""
        answer = self._post(self._path(model, False, version, alias), {"inputs": record}, batch=False)
        assert isinstance(answer, Prediction)
        return answer

    def predict_many(
        self, model: str, rows: Any, *, version: int | None = None, alias: str | None = None
    ) -> BatchPrediction:
        """Many rows: a DataFrame, a list of records or positional rows, or a dict of columns."""
        body = {"inputs": batch_inputs(rows)}
        answer = self._post(self._path(model, True, version, alias), body, batch=True)
        assert isinstance(answer, BatchPrediction)
        return answer

    def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the models this key may see."""
        models: list[dict[str, Any]] = self._get("/v1/models")["models"]
        return models

    def model(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}``: schema, outputs and versions."""
        description: dict[str, Any] = self._get(f"/v1/models/{quote(name, safe='')}")
        return description

    def _get(self, path: str) -> Any:
        response = self._send("GET", path, None)
        if response.status_code != 200:
            raise _error(response)
        return response.json()

    def _post(self, path: str, body: dict[str, Any], *, batch: bool) -> Prediction | BatchPrediction:
        return _answer(self._send("POST", path, body), batch)

    def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(method, self.base_url + path, json=body, headers=self.headers)
            except httpx.TransportError as exc:
                error = _transport_error(exc)
                if not isinstance(exc, httpx.ConnectError) or (wait := self._wait(attempt, error)) is None:
                    raise error from exc
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                wait = self._wait(attempt, _error(response))
                if wait is None:
                    return response
            time.sleep(wait)


class AsyncClient(_Base):
    """The asyncio client: the same methods as ``Client``, awaited."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
        max_wait: float = 30.0,
        version: int | None = None,
        alias: str | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_wait=max_wait,
            version=version,
            alias=alias,
        )
        self._http = http or httpx.AsyncClient(timeout=timeout)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def predict(
        self,
        model: str,
        record: Mapping[str, Any] | Sequence[Any],
        *,
        version: int | None = None,
        alias: str | None = None,
    ) -> Prediction:
        answer = _answer(
            await self._send("POST", self._path(model, False, version, alias), {"inputs": record}), False
        )
        assert isinstance(answer, Prediction)
        return answer

    async def predict_many(
        self, model: str, rows: Any, *, version: int | None = None, alias: str | None = None
    ) -> BatchPrediction:
        body = {"inputs": batch_inputs(rows)}
        answer = _answer(await self._send("POST", self._path(model, True, version, alias), body), True)
        assert isinstance(answer, BatchPrediction)
        return answer

    async def models(self) -> list[dict[str, Any]]:
        response = await self._send("GET", "/v1/models", None)
        if response.status_code != 200:
            raise _error(response)
        models: list[dict[str, Any]] = response.json()["models"]
        return models

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    method, self.base_url + path, json=body, headers=self.headers
                )
            except httpx.TransportError as exc:
                error = _transport_error(exc)
                if not isinstance(exc, httpx.ConnectError) or (wait := self._wait(attempt, error)) is None:
                    raise error from exc
            else:
                if response.status_code not in RETRY_STATUSES:
                    return response
                wait = self._wait(attempt, _error(response))
                if wait is None:
                    return response
            await asyncio.sleep(wait)
