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
import itertools
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from bundlegate.client.answers import BatchPrediction, Prediction, answer_from, batch_inputs
from bundlegate.client.errors import (
    ERRORS,
    ConnectionFailed,
    DeadlineExceeded,
    GatewayError,
    InvalidInput,
    MalformedRequest,
    MethodNotAllowed,
    ModelNotReady,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    Timeout,
    Unauthenticated,
    Unavailable,
    UnsupportedMediaType,
    error_from,
    transport_error,
)

__all__ = [
    "ERRORS",
    "AsyncClient",
    "BatchPrediction",
    "Client",
    "ConnectionFailed",
    "DeadlineExceeded",
    "GatewayError",
    "InvalidInput",
    "MalformedRequest",
    "MethodNotAllowed",
    "ModelNotReady",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "Prediction",
    "RateLimited",
    "ServerError",
    "Timeout",
    "Unauthenticated",
    "Unavailable",
    "UnsupportedMediaType",
    "batch_inputs",
]

RETRY_STATUSES = frozenset({429, 503})


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

    def _next_wait(
        self, attempt: int, response: httpx.Response | None, exc: httpx.TransportError | None
    ) -> float | None:
        """How long to wait before attempt ``attempt + 1``, or None to return ``response``: a failed
        connection and a 429/503 answer are retried while attempts remain; any other transport error
        (a timeout: the request may have run) raises at once."""
        if exc is not None:
            error = transport_error(exc)
            wait = self._wait(attempt, error) if isinstance(exc, httpx.ConnectError) else None
            if wait is None:
                raise error from exc
            return wait
        assert response is not None
        if response.status_code not in RETRY_STATUSES:
            return None
        return self._wait(attempt, error_from(response))

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
            raise error_from(response)
        return response.json()

    def _post(self, path: str, body: dict[str, Any], *, batch: bool) -> Prediction | BatchPrediction:
        return answer_from(self._send("POST", path, body), batch)

    def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        for attempt in itertools.count(1):
            response, failure = None, None
            try:
                response = self._http.request(method, self.base_url + path, json=body, headers=self.headers)
            except httpx.TransportError as exc:
                failure = exc
            wait = self._next_wait(attempt, response, failure)
            if wait is None:
                assert response is not None
                return response
            time.sleep(wait)
        raise AssertionError("unreachable")


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
        answer = answer_from(
            await self._send("POST", self._path(model, False, version, alias), {"inputs": record}), False
        )
        assert isinstance(answer, Prediction)
        return answer

    async def predict_many(
        self, model: str, rows: Any, *, version: int | None = None, alias: str | None = None
    ) -> BatchPrediction:
        body = {"inputs": batch_inputs(rows)}
        answer = answer_from(await self._send("POST", self._path(model, True, version, alias), body), True)
        assert isinstance(answer, BatchPrediction)
        return answer

    async def models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the models this key may see."""
        models: list[dict[str, Any]] = (await self._get("/v1/models"))["models"]
        return models

    async def model(self, name: str) -> dict[str, Any]:
        """``GET /v1/models/{name}``: schema, outputs and versions."""
        description: dict[str, Any] = await self._get(f"/v1/models/{quote(name, safe='')}")
        return description

    async def _get(self, path: str) -> Any:
        response = await self._send("GET", path, None)
        if response.status_code != 200:
            raise error_from(response)
        return response.json()

    async def _send(self, method: str, path: str, body: Any) -> httpx.Response:
        for attempt in itertools.count(1):
            response, failure = None, None
            try:
                response = await self._http.request(
                    method, self.base_url + path, json=body, headers=self.headers
                )
            except httpx.TransportError as exc:
                failure = exc
            wait = self._next_wait(attempt, response, failure)
            if wait is None:
                assert response is not None
                return response
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")
