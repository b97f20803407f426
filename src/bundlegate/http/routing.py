"""Routes and the per-request ``Call`` the endpoints of ``v1``, ``v2`` and ``ops`` work with.

An endpoint is ``async def handler(call: Call) -> Reply``. ``route()`` wraps it as a raw ASGI app for
Starlette's router (no ``Request`` object, no response class): the wrapper records the route template
and endpoint name for the access log and metrics and leaves the reply for the middleware to send.

``Call`` gathers the steps every model endpoint takes, in the order DESIGN.md §4 implies:
``authenticate()`` (401/429), ``model(name, version)`` (404 for an unknown *or* not allowed model,
with one body; 503 while loading or draining), ``await json()`` or ``await json_body()`` (415, 413,
400).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from bundlegate.errors import ModelNotReady, NotFound, NotResident, Overloaded, Unauthenticated
from bundlegate.feed import Feed, Prediction
from bundlegate.http.auth import NOT_FOUND_MESSAGE, check_model_access
from bundlegate.http.body import (
    check_content_type,
    decode_content,
    header,
    parse_json,
    read_body,
)
from bundlegate.http.context import GatewayContext, Reply, RequestInfo
from bundlegate.keys import KeyRecord
from bundlegate.registry import LoadedVersion
from bundlegate.shadow import ShadowRoute

Handler = Callable[["Call"], Awaitable[Reply]]

_MAX_VERSION_DIGITS = 9
_LOAD_ROUNDS = 4  # handler runs after loading what it found not resident (see _Endpoint)


class Call:
    """One request as an endpoint sees it."""

    __slots__ = ("_body", "ctx", "info", "key", "receive", "scope", "shadow")

    def __init__(self, ctx: GatewayContext, scope: Scope, receive: Receive, info: RequestInfo) -> None:
        self.ctx = ctx
        self.scope = scope
        self.receive = receive
        self.info = info
        self.key: KeyRecord | None = None
        self._body: bytes | None = None
        self.shadow: ShadowRoute | None = None  # set by model() when the default route is shadowed

    @property
    def params(self) -> dict[str, str]:
        params: dict[str, str] = self.scope["path_params"]
        return params

    def header(self, name: bytes) -> bytes | None:
        return header(self.scope["headers"], name)

    def authenticate(self, *, rate_limited: bool = True) -> KeyRecord:
        """The caller's key record (401 missing/unknown key, 429 over its rate limit unless not
        ``rate_limited``). Without keys (``--insecure-no-auth``) only loopback clients are answered,
        however the server was bound."""
        auth = self.ctx.auth
        if auth.insecure and not is_loopback(self.scope.get("client")):
            raise Unauthenticated("this gateway runs without API keys and answers loopback clients only")
        key = auth.authenticate(self.scope["headers"], rate_limited=rate_limited)
        self.key = key
        self.info.key_id = key.id
        return key

    def model(self, name: str, version: str | None = None, *, routed: bool = True) -> LoadedVersion:
        """The loaded version answering for ``name`` (and ``version``, when pinned). Authenticates
        first. Unknown model, unknown version and a model the key may not see all raise the same
        ``NotFound``; a loading or failed model ``ModelNotReady`` (so is any allowed name before the
        first load has finished); a draining server ``Overloaded``. The default route of a model whose
        serving.json splits or shadows it goes through ``registry.route`` (``X-Routing-Key``) unless
        ``routed`` is False (metadata: the default version, whatever the split)."""
        key = self.key or self.authenticate()
        check_model_access(key, name)
        if self.ctx.state.draining:
            raise Overloaded("the server is shutting down; retry on another instance", retry_after=1)
        registry = self.ctx.registry
        try:
            if version is None and routed and name in registry.rollouts:
                loaded, self.shadow = registry.route(name, self.header(b"x-routing-key"))
            else:
                loaded = registry.get(name, parse_version(version))
        except NotFound:
            if not self.ctx.state.loading_done:  # the repository may not even be scanned yet
                raise ModelNotReady("models are still loading", retry_after=1) from None
            raise NotFound(NOT_FOUND_MESSAGE) from None
        self.info.model = name
        self.info.version = loaded.version
        return loaded

    def known_model(self, name: str) -> None:
        """Mark ``name`` as the model of this request for logs and metrics (a name the registry
        knows, checked by the caller)."""
        self.info.model = name

    async def json(self, *, allow_missing_content_type: bool = False) -> Any:
        """The request body as strict JSON (415 wrong content type, 413 too large, 400 malformed)."""
        check_content_type(self.header(b"content-type"), allow_missing=allow_missing_content_type)
        return parse_json(await self.body(), self.ctx.settings.max_json_depth)

    async def json_body(self) -> bytes:
        """The raw body of a request that must be JSON (415 wrong content type, 413 too large), for
        a protocol codec that parses it itself."""
        check_content_type(self.header(b"content-type"))
        return await self.body()

    async def body(self) -> bytes:
        """The raw request body, decompressed if it came gzip/deflate encoded (415 for other encodings,
        413 when the body or what it decompresses to passes the limit). Read once, then kept."""
        if self._body is not None:  # read once; a second call gets the same bytes
            return self._body
        limit = self.ctx.settings.max_body_bytes
        body = await read_body(self.receive, self.header(b"content-length"), limit)
        encoding = self.header(b"content-encoding")
        self._body = body if encoding is None else decode_content(body, encoding, limit)
        return self._body

    async def predict(self, loaded: LoadedVersion, feed: Feed) -> Prediction:
        """``feed`` through the version's batching queue, within the request's deadline; the answer
        goes to monitoring and tracing when they are on."""
        ctx = self.ctx
        if ctx.tracing is None:
            prediction = await loaded.queue.submit(feed, self.deadline())
        else:
            submitted = time.monotonic()
            prediction = await loaded.queue.submit(feed, self.deadline())
            ctx.tracing.stages(loaded.queue.observer, submitted, feed.n_rows)
        if ctx.monitor is not None:
            ctx.monitor.observe(loaded, self.info.request_id, feed, prediction)
        return prediction

    def deadline(self) -> float:
        """When this request's inference must be done (``time.monotonic`` clock)."""
        return time.monotonic() + self.ctx.settings.request_timeout_s


def is_loopback(client: tuple[str, int] | list[Any] | None) -> bool:
    """Whether an ASGI ``client`` address is this host (no address: a Unix socket, also local)."""
    if not client:
        return True
    host = str(client[0])
    return host.startswith("127.") or host in ("::1", "localhost")


def parse_version(version: str | None) -> int | None:
    """A version from the path; anything but a positive integer in ASCII digits is an unknown
    version (404): ``str.isdigit`` alone also takes ``²`` (which ``int`` refuses) and fullwidth or
    Arabic-Indic digits (which ``int`` reads as the ASCII number)."""
    if version is None:
        return None
    if not (version.isascii() and version.isdigit()) or len(version) > _MAX_VERSION_DIGITS:
        raise NotFound(NOT_FOUND_MESSAGE)
    if int(version) < 1:
        raise NotFound(NOT_FOUND_MESSAGE)
    return int(version)


def json_reply(obj: Any, status: int = 200) -> Reply:
    return Reply(status, orjson.dumps(obj))


class _Endpoint:
    """A handler as a raw ASGI app (Starlette's router calls it with the matched scope)."""

    __slots__ = ("ctx", "handler", "name", "path")

    def __init__(self, ctx: GatewayContext, path: str, name: str, handler: Handler) -> None:
        self.ctx = ctx
        self.path = path
        self.name = name
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        info: RequestInfo = scope["bundlegate"]
        info.route = self.path
        info.endpoint = self.name
        tracing = self.ctx.tracing
        if tracing is None:
            await self._answer(scope, receive, info)
            return
        with tracing.request(scope["method"], self.path, scope["headers"], info):
            await self._answer(scope, receive, info)

    async def _answer(self, scope: Scope, receive: Receive, info: RequestInfo) -> None:
        call = Call(self.ctx, scope, receive, info)
        try:
            info.reply = await self.handler(call)
        except NotResident as exc:  # --lazy or evicted: load it (one load per version), then answer
            info.reply = await self._after_loading(call, exc)

    async def _after_loading(self, call: Call, missing: NotResident) -> Reply:
        """Load the version the handler needs and run it again; a split route may pick another
        version that is not resident either, so a few rounds (a 503 if it still is not)."""
        rounds = _LOAD_ROUNDS
        while True:
            await self.ctx.registry.make_resident(missing.name, missing.version)
            rounds -= 1
            retry = Call(self.ctx, call.scope, call.receive, call.info)
            retry.key = call.key  # authenticated (and counted by the rate limiter) once
            try:
                return await self.handler(retry)
            except NotResident as exc:
                if not rounds:
                    raise
                missing = exc


class HotRoutes:
    """The POST model routes (``/v1/models/{name}/predict``, ``/v2/models/{name}/infer``, their
    ``/versions/{version}`` and ``/aliases/{alias}`` forms...) found with one ``str.split`` and a dict
    lookup, ahead of Starlette's router, which tries each route's regular expression in turn;
    everything else, and any request with a ``root_path``, goes on to ``fallback`` (the router), which
    also answers 404/405.

    ``{name}``, ``{version}`` and ``{alias}`` match one non-empty path segment, as in Starlette."""

    def __init__(self, routes: list[Route], fallback: ASGIApp) -> None:
        self.fallback = fallback
        self._table: dict[tuple[str | None, ...], _Endpoint] = {}
        for r in routes:
            key = _template_key(r.path)
            if key is not None and r.methods == {"POST"} and isinstance(r.endpoint, _Endpoint):
                self._table.setdefault(key, r.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] == "POST" and not scope.get("root_path"):
            parts: list[str | None] = scope["path"].split("/")
            if len(parts) > 4 and parts[3] and parts[2] == "models":
                params = {"name": parts[3]}
                parts[3] = None
                if len(parts) > 6 and parts[5]:
                    param = _SEGMENT_PARAMS.get(parts[4])  # type: ignore[arg-type]
                    if param is not None:
                        params[param] = parts[5]
                        parts[5] = None
                endpoint = self._table.get(tuple(parts))
                if endpoint is not None:
                    scope["path_params"] = params
                    await endpoint(scope, receive, send)
                    return
        await self.fallback(scope, receive, send)


_SEGMENT_PARAMS = {"versions": "version", "aliases": "alias"}  # /versions/{version}, /aliases/{alias}


def _template_key(path: str) -> tuple[str | None, ...] | None:
    """``/v1/models/{name}[/versions/{version} | /aliases/{alias}]/...`` as a ``HotRoutes`` key
    (placeholders as None)."""
    parts: list[str | None] = list(path.split("/"))
    if len(parts) < 5 or parts[2] != "models" or parts[3] != "{name}":
        return None
    parts[3] = None
    param = _SEGMENT_PARAMS.get(parts[4] or "")
    if len(parts) > 6 and param is not None and parts[5] == "{" + param + "}":
        parts[5] = None
    if any(p is not None and "{" in p for p in parts):
        return None
    return tuple(parts)


def route(ctx: GatewayContext, path: str, handler: Handler, methods: list[str], name: str) -> Route:
    """A Starlette route for ``handler``; ``name`` is the metrics ``endpoint`` label."""
    return Route(path, _Endpoint(ctx, path, name, handler), methods=methods, name=None)
