"""Strict JSON request bodies (DESIGN.md §4): size limit, content type, and a parser that refuses what
lenient parsers let through.

``read_body`` streams the body from ASGI ``receive`` and stops with 413 as soon as the declared
``Content-Length`` or the bytes received pass the limit (the rest is never read); ``decode_content``
inflates a gzip/deflate body (tritonclient can compress requests) without passing the same limit.
``check_content_type`` answers 415 for anything but JSON. ``parse_json`` uses orjson (which already
refuses ``NaN``/``Infinity`` literals and invalid UTF-8) and adds the two checks orjson does not make:

- nesting deeper than the limit;
- duplicate keys in an object (orjson keeps the last one silently).

Duplicate keys are found by counting, exactly: every ``"key": value`` pair of the body holds one ``:``
outside strings, so the body's ``:`` bytes number the pairs written plus the colons inside strings,
and the parsed objects hold the pairs written minus the duplicates dropped. Equal counts therefore
prove there was no duplicate. ``bytes.count`` runs at memory speed; the parsed objects are counted
level by level and only down to the last level that holds containers. Only a body where the counts
differ (a ``:`` inside a string, such as a timestamp, or a duplicate) is parsed a second time with the
standard library's ``object_pairs_hook`` to decide. The same level walk measures the nesting depth; a
one-record body (two containers) needs no walk at all.

"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
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


def decode_content(body: bytes, encoding: bytes, max_bytes: int) -> bytes:
    """A ``Content-Encoding: gzip|deflate`` body decompressed, never past ``max_bytes`` (a small body
    can expand enormously); ``identity`` as it is; anything else is 415."""
    name = encoding.strip().lower()
    if name in (b"", b"identity"):
        return body
    if name not in (b"gzip", b"x-gzip", b"deflate"):
        raise UnsupportedMediaType("unsupported Content-Encoding; send identity, gzip or deflate")
    decompressor = zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib header, detected
    try:
        data = decompressor.decompress(body, max_bytes + 1)
    except zlib.error:
        raise MalformedRequest(f"the body is not valid {name.decode()} data") from None
    if len(data) > max_bytes or decompressor.unconsumed_tail:
        raise PayloadTooLarge(_too_large(max_bytes) + " once decompressed")
    return data


def _too_large(max_bytes: int) -> str:
    return f"request body larger than the limit of {max_bytes} bytes"


def parse_json(body: bytes, max_depth: int) -> Any:
    """The JSON document in ``body``; ``MalformedRequest`` (400) for anything not strict JSON."""
    return parse_json_body(body, max_depth)[0]


def parse_json_body(body: bytes, max_depth: int) -> tuple[Any, bool]:
    """``parse_json``, and whether every scalar of the document is a number below one object key,
    ``{"key": [[1, 2.5], ...]}`` (no string, ``true``, ``false`` or ``null`` anywhere else). That proof
    is what lets ``parse_json`` skip the walk for duplicate keys and depth on such bodies; the flag
    says which way a body went (``tests/test_hot_path.py`` checks the proof against orjson).

    Both come from the body's skeleton, the body without the bytes numbers, separators and
    whitespace are made of (one ``bytes.translate`` pass). It keeps every ``:``, ``{`` and ``[``, so
    the counts below are the body's; for a body of numbers it is tiny, and a skeleton that is only
    ``{"key":`` and brackets proves the numbers-only shape: one key (no duplicate possible) and a
    nesting depth read from the brackets, with no walk over the parsed document.
    """
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
    skeleton = body.translate(None, _NUMBER_BYTES)
    colons = skeleton.count(b":")
    if colons == 1 and skeleton.count(b'"') == 2:
        bare = skeleton.translate(None, b"[]")
        if bare[:2] == b'{"' and bare[-3:] == b'":}':
            if len(skeleton) - len(bare) < max_depth:  # fewer brackets than the depth limit
                return doc, True
            brackets = np.frombuffer(skeleton, dtype=np.uint8)
            nesting = np.cumsum((brackets == _OPEN).astype(np.int32) - (brackets == _CLOSE))
            if 1 + int(nesting.max(initial=0)) > max_depth:
                raise _too_deep(max_depth)
            return doc, True
    containers = skeleton.count(b"{") + skeleton.count(b"[")
    if colons == 0 and containers <= max_depth:
        return doc, False  # no object keys to repeat, not enough brackets to nest too deep
    if _count_pairs(doc, containers, max_depth) != colons and _has_duplicate_keys(body):
        raise MalformedRequest(
            "duplicate key in a JSON object", [problem(["body"], "an object repeats a key", "duplicate_key")]
        )
    return doc, False


# what JSON numbers, separators and whitespace are made of (see ``parse_json_body``)
_NUMBER_BYTES = b"0123456789.eE+-, \t\r\n"
_OPEN, _CLOSE = ord("["), ord("]")


def _too_deep(max_depth: int) -> MalformedRequest:
    return MalformedRequest(
        f"JSON nested deeper than {max_depth} levels",
        [problem(["body"], f"at most {max_depth} levels of nesting", "too_deep")],
    )


def _count_pairs(doc: Any, brackets: int, max_depth: int) -> int:
    """The number of keys of all objects in ``doc``; raises for nesting deeper than ``max_depth``.

    Level by level, without recursion. ``brackets`` (the ``{`` and ``[`` bytes of the body) bounds the
    number of containers: once that many have been found there is nothing deeper, so the values of
    the last level (the numbers of a thousand records or rows) are never looked at one by one.
    """
    if brackets <= 2 and type(doc) is dict:  # one record, {"inputs": {...}}: no walk needed
        inner = [v for v in doc.values() if type(v) is dict or type(v) is list]
        if len(inner) == brackets - 1:
            return len(doc) + (len(inner[0]) if inner and type(inner[0]) is dict else 0)
    level = [doc] if type(doc) is dict or type(doc) is list else []
    seen = len(level)
    depth = 1
    pairs = 0
    while level:
        if depth > max_depth:
            raise MalformedRequest(
                f"JSON nested deeper than {max_depth} levels",
                [problem(["body"], f"at most {max_depth} levels of nesting", "too_deep")],
            )
        pairs += sum([len(node) for node in level if type(node) is dict])
        if seen >= brackets:
            break
        deeper: list[Any] = []
        for node in level:
            values = node.values() if type(node) is dict else node
            deeper += [v for v in values if type(v) is dict or type(v) is list]
        seen += len(deeper)
        level = deeper
        depth += 1
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
