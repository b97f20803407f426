"""Strict JSON request bodies (DESIGN.md §4): size limit, content type, and a parser that refuses what
lenient parsers let through.

``read_body`` streams the body from ASGI ``receive`` and stops with 413 as soon as the declared
``Content-Length`` or the bytes received pass the limit (the rest is never read). ``check_content_type``
answers 415 for anything but JSON. ``parse_json`` uses orjson (which already refuses ``NaN``/``Infinity``
literals and invalid UTF-8) and adds the two checks orjson does not make:

- nesting deeper than the limit;
- duplicate keys in an object (orjson keeps the last one silently).

Duplicate keys are found by counting: every ``"key": value`` pair of the document contains exactly one
``:`` outside strings, so if the body holds as many ``:`` bytes as the parsed objects hold keys, no key
was dropped. ``bytes.count`` runs at memory speed; only a body with ``:`` inside strings (timestamps,
URLs) and fewer keys than colons is re-read with the standard library's ``object_pairs_hook`` to decide.
The same walk over the parsed objects measures the depth; it is skipped when the body does not even
hold as many brackets as the limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import orjson
from starlette.types import Receive

from bundlegate.errors import MalformedRequest, PayloadTooLarge, UnsupportedMediaType, problem


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The first value of header ``name`` (lower case) in an ASGI header list."""
    for key, value in headers:
        if key == name:
            return value
    return None


def check_content_type(content_type: bytes | None, *, allow_missing: bool = False) -> None:
    """415 unless the content type is ``application/json`` (or ``application/*+json``), with any
    parameters. ``allow_missing``: a request without the header is taken as JSON (Open Inference
    Protocol clients such as tritonclient send none)."""
    if content_type is None:
        if allow_missing:
            return
        raise UnsupportedMediaType("send the body as JSON with 'Content-Type: application/json'")
    media = content_type.split(b";", 1)[0].strip().lower()
    if media != b"application/json" and not (media.startswith(b"application/") and media.endswith(b"+json")):
        raise UnsupportedMediaType(
            "unsupported content type; send the body as JSON with 'Content-Type: application/json'"
        )


async def read_body(receive: Receive, content_length: bytes | None, max_bytes: int) -> bytes:
    """The whole request body; ``PayloadTooLarge`` as soon as it is known to pass ``max_bytes``."""
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise MalformedRequest("invalid Content-Length header") from None
        if declared > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
    message = await receive()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):
        if len(body) > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
        return body
    chunks = [body]
    size = len(body)
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise MalformedRequest("the request body was not received completely")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLarge(_too_large(max_bytes))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _too_large(max_bytes: int) -> str:
    return f"request body larger than the limit of {max_bytes} bytes"


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON document in ``body``; ``MalformedRequest`` (400) for anything not strict JSON."""
    if not body:
        raise MalformedRequest("the request body is empty; send a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        # orjson's message names the position and what was expected, never the input itself.
        where = f"line {e.lineno} column {e.colno}"
        raise MalformedRequest(
            f"malformed JSON at {where}", [problem(["body"], str(e.msg)[:120], "json")]
        ) from None
    colons = body.count(b":")
    deep_possible = body.count(b"{") + body.count(b"[") > max_depth
    if colons == 0 and not deep_possible:
        return doc
    pairs = _walk(doc, max_depth if deep_possible else 0)
    if pairs != colons and _has_duplicate_keys(body):
        raise MalformedRequest(
            "duplicate key in a JSON object", [problem(["body"], "an object repeats a key", "duplicate_key")]
        )
    return doc


def _walk(doc: Any, max_depth: int) -> int:
    """The number of keys of all objects in ``doc``; raises for nesting deeper than ``max_depth``
    (0: do not check). Iterative, so a deep document cannot exhaust the Python stack."""
    if type(doc) is not dict and type(doc) is not list:
        return 0
    pairs = 0
    stack: list[tuple[Any, int]] = [(doc, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if max_depth and depth > max_depth:
            raise MalformedRequest(
                f"JSON nested deeper than {max_depth} levels",
                [problem(["body"], f"at most {max_depth} levels of nesting", "too_deep")],
            )
        if type(node) is dict:
            pairs += len(node)
            values: Iterable[Any] = node.values()
        else:
            values = node
        child = depth + 1
        for v in values:
            t = type(v)
            if t is dict or t is list:
                push((v, child))
    return pairs


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Duplicate
    return result


class _Duplicate(Exception):
    pass


def _has_duplicate_keys(body: bytes) -> bool:
    try:
        json.loads(body, object_pairs_hook=_reject_duplicates)
    except _Duplicate:
        return True
    return False
