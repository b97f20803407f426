"""``GET /openapi.json`` and the ``/docs`` page (Swagger UI), no CDN.

    GET /openapi.json        the OpenAPI 3.1 document (``bundlegate.http.openapi``); a presented key
                             adds the models it may see, a wrong key is 401 as everywhere
    GET /docs                an HTML page: Swagger UI on /openapi.json, with a field for the API key
    GET /docs/{asset}        Swagger UI's own files, served from the ``swagger-ui-bundle-v2`` package
                             (the ``docs`` extra, pinned in pyproject.toml)

The key typed on the page stays in the page's memory: it goes into the ``Authorization`` header of the
document fetch and of "Try it out" calls, never into a URL or browser storage. Without the ``docs``
extra ``/docs`` answers 404 saying what to install; ``/openapi.json`` needs nothing extra.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import orjson
from starlette.routing import Route

from bundlegate.errors import NotFound
from bundlegate.http.auth import presented_key
from bundlegate.http.context import GatewayContext, Reply
from bundlegate.http.openapi import openapi_document
from bundlegate.http.routing import Call, route

_ASSETS = {
    "swagger-ui.css": b"text/css; charset=utf-8",
    "swagger-ui-bundle.js": b"text/javascript; charset=utf-8",
    "favicon-32x32.png": b"image/png",
}
_HTML = b"text/html; charset=utf-8"
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'",
    ),
]

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bundlegate API</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
<link rel="stylesheet" href="/docs/page.css">
</head>
<body>
<form id="key-form" class="bundlegate-key">
  <strong>bundlegate</strong>
  <label>API key <input id="key" type="password" autocomplete="off" placeholder="bg_..."></label>
  <button type="submit">Show my models</button>
  <span id="key-note">Without a key: what the gateway shows anyone.</span>
</form>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/page.js"></script>
</body>
</html>
"""

PAGE_JS = """"use strict";
let apiKey = "";
function show() {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    requestInterceptor: (request) => {
      if (apiKey) { request.headers["Authorization"] = "Bearer " + apiKey; }
      return request;
    },
  });
}
document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  apiKey = document.getElementById("key").value.trim();
  document.getElementById("key-note").textContent =
    apiKey ? "Showing the models of this key." : "Without a key: what the gateway shows anyone.";
  show();
});
show();
"""

PAGE_CSS = """.bundlegate-key { font-family: sans-serif; padding: 10px 20px; background: #1b1b1b; color: #fff;
  display: flex; gap: 14px; align-items: center; }
.bundlegate-key input { width: 22em; }
.bundlegate-key span { color: #bbb; font-size: 0.9em; }
"""


@functools.cache
def assets_dir() -> Path | None:
    """Swagger UI's files from the installed ``swagger-ui-bundle-v2`` package, or None."""
    if importlib.util.find_spec("swagger_ui_bundle") is None:
        return None
    import swagger_ui_bundle

    path = Path(swagger_ui_bundle.swagger_ui_path)
    return path if (path / "swagger-ui-bundle.js").is_file() else None


async def openapi_json(call: Call) -> Reply:
    key = call.authenticate() if call.ctx.auth.insecure or presented_key(call.scope["headers"]) else None
    document = openapi_document(call.ctx.settings, call.ctx.registry, key)
    return Reply(200, orjson.dumps(document))


def _page_reply(body: str | bytes, content_type: bytes) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    return Reply(200, data, content_type, headers=[*_SECURITY_HEADERS, (b"cache-control", b"no-cache")])


def _require_assets() -> Path:
    path = assets_dir()
    if path is None:
        raise NotFound("the docs page needs the docs extra: pip install 'bundlegate[docs]'")
    return path


async def docs_page(call: Call) -> Reply:
    _require_assets()
    return _page_reply(PAGE, _HTML)


async def docs_asset(call: Call) -> Reply:
    name = call.params["asset"]
    if name == "page.js":
        return _page_reply(PAGE_JS, b"text/javascript; charset=utf-8")
    if name == "page.css":
        return _page_reply(PAGE_CSS, b"text/css; charset=utf-8")
    content_type = _ASSETS.get(name)  # a closed set of names: the path never comes from the request
    if content_type is None:
        raise NotFound("not found")
    return _page_reply(_asset_bytes(_require_assets() / name), content_type)


@functools.cache
def _asset_bytes(path: Path) -> bytes:
    return path.read_bytes()


def routes(ctx: GatewayContext) -> list[Route]:
    return [
        route(ctx, "/openapi.json", openapi_json, ["GET"], "openapi"),
        route(ctx, "/docs", docs_page, ["GET"], "docs"),
        route(ctx, "/docs/{asset}", docs_asset, ["GET"], "docs"),
    ]
