"""Strict JSON parsing: what orjson lets through and the gateway refuses, and what it must still accept."""

from __future__ import annotations

import pytest

from bundlegate.errors import MalformedRequest, UnsupportedMediaType
from bundlegate.http.body import check_content_type, parse_json


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1}',
        b'{"a": "x:y", "b": {"c": "[{:}]"}}',
        b'{"a": [{"b": 1}, {"b": 2}], "c": [[1, 2], [3]]}',
        b'{"t\\u003a": 1, "t": 2}',
        b"[1, 2, 3]",
        b'"just a string"',
        b"3.5",
        b"{}",
        b'{"a": {}, "b": []}',
    ],
)
def test_accepts_strict_json(raw: bytes) -> None:
    import json

    assert parse_json(raw, 32) == json.loads(raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": 1, "a": 2}',
        b'{"x": [{"k": 1}, {"k": 2, "k": 3}]}',
        b'{"x": "a:b", "y": {"z": 1, "z": 1}}',
        b'[{"a": {"b": {"c": 1, "c": 2}}}]',
        b'{"a": "[", "b": 1, "b": 2}',
        b'{"inputs": {"x": 1, "x": 2}}',
        b'{"inputs": [1], "inputs": [2]}',
    ],
)
def test_refuses_duplicate_keys_at_any_depth(raw: bytes) -> None:
    with pytest.raises(MalformedRequest, match="duplicate key"):
        parse_json(raw, 32)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"{'a': 1}", b"[1,]", b"\xff"])
def test_refuses_non_json(raw: bytes) -> None:
    with pytest.raises(MalformedRequest, match="malformed JSON"):
        parse_json(raw, 32)


def test_depth_limit_is_exact_and_brackets_inside_strings_do_not_count() -> None:
    assert parse_json(b"[[[1]]]", 3) == [[[1]]]
    with pytest.raises(MalformedRequest, match="deeper than 3"):
        parse_json(b"[[[[1]]]]", 3)
    with pytest.raises(MalformedRequest, match="deeper than 3"):
        parse_json(b'{"a": {"b": {"c": {}}}}', 3)
    assert parse_json(b'["[[[[[[", {"a": "{{{{{{"}]', 3) == ["[[[[[[", {"a": "{{{{{{"}]


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"Application/JSON",
        b"application/vnd.api+json",
    ],
)
def test_json_content_types(content_type: bytes) -> None:
    check_content_type(content_type)


@pytest.mark.parametrize(
    "content_type", [b"text/json", b"text/plain", b"multipart/form-data; boundary=x", b""]
)
def test_other_content_types_are_415(content_type: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        check_content_type(content_type)
    with pytest.raises(UnsupportedMediaType):
        check_content_type(None)
    check_content_type(None, allow_missing=True)
