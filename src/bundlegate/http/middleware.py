"""The one pure ASGI middleware around every HTTP request (no ``BaseHTTPMiddleware``: no extra task,
no body buffering).

For each request it:

- takes the client's ``X-Request-ID`` when it is sane (1-64 characters of ``[A-Za-z0-9._-]``), else
  makes one (a per-process random prefix and a counter: unique, and cheaper than a UUID);
- runs the router; the endpoint returns a ``Reply`` in ``RequestInfo.reply``, an exception becomes the
  one error body (``bundlegate.http.errors``);
- sends the reply with ``X-Request-ID`` and, once a model version answered, ``X-Model-Version``;
- counts the request in the metrics (endpoint, model, version, status, latency; errors by code,
  rejections by reason) and writes one JSON line to the access log: ``ts``, ``request_id``,
  ``method``, ``path`` (the route template, never the raw path), ``status``, ``duration_ms``,
  ``model``, ``version``, ``key_id`` (never the key), ``error`` (the code, if any).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import secrets
import sys
import time
from collections.abc import Callable

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from bundlegate.http.context import GatewayContext, RequestInfo
from bundlegate.http.errors import error_reply
from bundlegate.http.tracebacks import TracebackLog

_CONNECTION_CLOSE = (b"connection", b"close")
_SANE_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_REJECTIONS = {
    "rate_limited": "rate_limited",
    "model_not_ready": "model_not_ready",
    "deadline_exceeded": "deadline_exceeded",
}


class RequestIds:
    """Request ids for one process: ``<12 random hex>-<counter in hex>``."""

    def __init__(self) -> None:
        self._prefix = secrets.token_hex(6) + "-"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):x}"


class AccessLog:
    """Writes one JSON object per line; ``write`` defaults to the process's stderr at call time.

    Lines are written together at the end of the event-loop iteration that produced them (one
    ``write`` for a burst of requests instead of one each; a line waits a few µs at most), or at once
    where no loop runs. ``flush()`` writes what is pending (the app calls it at shutdown)."""

    def __init__(self, write: Callable[[str], object] | None = None) -> None:
        self._write = write
        self._pending: list[bytes] = []
        self._second = -1
        self._stamp = ""

    def record(self, info: RequestInfo, method: str, status: int, duration_s: float) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # the date and time change once a second; the milliseconds always
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        line = orjson.dumps(
            {
                "ts": f"{self._stamp}.{int((now - second) * 1000):03d}Z",
                "request_id": info.request_id,
                "method": method,
                "path": info.route,
                "status": status,
                "duration_ms": round(duration_s * 1000, 3),
                "model": info.model,
                "version": info.version,
                "key_id": info.key_id,
                "error": info.error_code,
            }
        )
        pending = self._pending
        pending.append(line)
        if len(pending) == 1:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no loop: now
                self.flush()

    def flush(self) -> None:
        """Write the pending lines."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        if self._write is not None:
            for line in lines:
                self._write(line.decode())
        else:
            lines.append(b"")
            sys.stderr.write(b"\n".join(lines).decode())


class GatewayMiddleware:
    """See the module docstring. ``access_log=None`` turns the access log off."""

    def __init__(self, app: ASGIApp, ctx: GatewayContext, access_log: AccessLog | None) -> None:
        self.app = app
        self.ctx = ctx
        self.access_log = access_log
        self.ids = RequestIds()
        self.tracebacks = TracebackLog(ctx.settings.max_tracebacks_per_minute, ctx.metrics.record_unhandled)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        request_id = self._request_id(scope["headers"])
        info = RequestInfo(request_id)
        scope["bundlegate"] = info
        # With "app" in the scope, Starlette's router raises HTTPException for 404/405 instead of
        # answering plain text itself, so those answers get the error body too.
        scope["app"] = self
        state = self.ctx.state
        state.in_flight += 1
        status = 500
        try:
            try:
                await self.app(scope, receive, send)
                reply = info.reply
                if reply is None:
                    raise RuntimeError("the endpoint produced no reply")
            except Exception as exc:
                oip = scope["path"].startswith("/v2")
                reply, info.error_code = error_reply(exc, request_id, oip=oip, tracebacks=self.tracebacks)
            status = reply.status
            body = b"" if scope["method"] == "HEAD" else reply.body
            headers = [
                (b"content-type", reply.content_type),
                (b"content-length", str(len(reply.body)).encode()),
                (b"x-request-id", request_id.encode()),
            ]
            if info.version is not None:
                headers.append((b"x-model-version", str(info.version).encode()))
            if reply.headers:
                headers.extend(reply.headers)
            if status == 413 or status == 408:  # the rest of that body is never read: close
                headers.append(_CONNECTION_CLOSE)
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            state.in_flight -= 1
            if state.in_flight == 0 and state.idle is not None:
                state.idle.set()
            duration = time.perf_counter() - start
            self._observe(info, status, duration)
            if self.access_log is not None:
                self.access_log.record(info, scope["method"], status, duration)

    def _request_id(self, headers: list[tuple[bytes, bytes]]) -> str:
        for name, value in headers:
            if name == b"x-request-id":
                if _SANE_REQUEST_ID.fullmatch(value):
                    return value.decode("ascii")
                break
        return self.ids.next()

    def _observe(self, info: RequestInfo, status: int, duration: float) -> None:
        metrics = self.ctx.metrics
        model = info.model or "-"
        version: str | int = info.version if info.version is not None else "-"
        metrics.observe_request(model, version, info.endpoint, status, duration)
        code = info.error_code
        if code is not None:
            metrics.record_error(model, version, code)
            if code == "overloaded":
                metrics.record_rejection("draining" if self.ctx.state.draining else "queue_full")
            elif code in _REJECTIONS:
                metrics.record_rejection(_REJECTIONS[code])
