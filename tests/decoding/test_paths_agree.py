"""The hot path's shortcuts answer exactly what the checked paths answer (see bench/README.md).

- ``parse_json_body`` proves from the bytes that a body is one key over numbers and arrays;
- ``Answers.encode_batch`` leaves numeric outputs as arrays for orjson to write;
- ``flatrows.flat_rows`` parses positional rows into one buffer of doubles, proving the shape from
  the bytes, and ``CompiledSchema.from_flat`` makes the tensor from it;
- ``/v2`` binary float rows (tritonclient's default) go to ``from_flat`` as the numpy array they
  arrive as, instead of Python values and ``from_rows``.

Each shortcut is checked against the path it skips: same document, same tensor, same JSON, and the
same 400/422 answers for everything the shortcut must not accept.
"""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from bundle_factory import iris_model, regressor_model
from bundlegate.answers import Answers
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import InvalidInput, MalformedRequest
from bundlegate.feed import Prediction
from bundlegate.http.body import parse_json, parse_json_body
from bundlegate.http.v1 import _flatrows as flatrows
from bundlegate.http.v1._flatrows import flat_rows
from bundlegate.http.v2.binary import decode_binary_inputs
from bundlegate.http.v2.codec import feed_from_tensors


@pytest.mark.parametrize(
    ("body", "numbers_only"),
    [
        (b'{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.0, -2.2e-3, 1E5, 0]]}', True),
        (b'{"inputs": [5.1, 3.5, 1.4, 0.2]}', True),
        (b'{"inputs":\n [[1,2],\t[3,4]]}', True),
        (b'{"inputs": [[5.1, true, 1.4, 0.2]]}', False),
        (b'{"inputs": [[5.1, false, 1.4, 0.2]]}', False),
        (b'{"inputs": [[5.1, null, 1.4, 0.2]]}', False),
        (b'{"inputs": [[5.1, "3.5", 1.4, 0.2]]}', False),
        (b'{"inputs": [{"a": 1}]}', False),
        (b'{"inputs": [[1]], "extra": [[2]]}', False),
        (b'{"inputs": {"a": [1, 2]}}', False),
        (b"[[1, 2], [3, 4]]", False),
    ],
)
def test_numbers_only_is_proven_from_the_bytes(body: bytes, numbers_only: bool) -> None:
    doc, proven = parse_json_body(body, 32)
    assert proven is numbers_only
    assert doc == orjson.loads(body) == parse_json(body, 32)


def test_numbers_only_bodies_still_have_their_depth_checked() -> None:
    deep = b'{"inputs": ' + b"[" * 40 + b"1" + b"]" * 40 + b"}"
    with pytest.raises(MalformedRequest) as exc:
        parse_json_body(deep, 32)
    assert exc.value.details[0]["type"] == "too_deep"
    ok = b'{"inputs": ' + b"[" * 31 + b"1" + b"]" * 31 + b"}"
    assert parse_json_body(ok, 32)[1] is True
    with pytest.raises(MalformedRequest):
        parse_json_body(b'{"inputs": ' + b"[" * 32 + b"1" + b"]" * 32 + b"}", 32)


def test_duplicate_keys_are_still_refused() -> None:
    with pytest.raises(MalformedRequest):
        parse_json_body(b'{"inputs": [[1, 2]], "inputs": [[3, 4]]}', 32)


@pytest.fixture(scope="module")
def iris() -> CompiledSchema:
    return CompiledSchema(iris_model().manifest, max_rows=2000)


def _outcome(fn: Any) -> Any:
    try:
        feed = fn()
    except InvalidInput as e:
        return ("422", e.message, e.details)
    if feed is None:
        return None
    return {k: (a.dtype, a.shape, a.tobytes()) for k, a in feed.arrays.items()}


@pytest.mark.parametrize(
    ("rows", "flat"),
    [
        (iris_model().X.tolist(), True),
        ([[1, 2, 3, 4], [5, 6, 7, 8]], True),
        ([[0.1, 2, -3.5, 1e-30]] * 3, True),
        ([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0, 5.0]], False),  # ragged, same total
        ([[1.0, 2.0, 3.0, 4.0], [1.0, [2.0], 3.0, 4.0]], False),  # nested
        ([[1.0, 2.0, 3.0, 4.0], 5.0], False),  # a number for a row
        ([[1e39, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]], False),  # too large for float32: 422
        ([[10**400, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0]], False),  # not a number orjson reads: 400
        ([[2**70, 2.0, 3.0, 4.0]], False),  # an integer beyond 64 bits
    ],
)
def test_flat_rows_give_the_checked_paths_answer(iris: CompiledSchema, rows: list[Any], flat: bool) -> None:
    # what /v1 batch does: flat rows and from_flat where they apply, else the checked path
    body = json.dumps({"inputs": rows}).encode()
    rows_read = flat_rows(body, 4, 2000)
    fast = None if rows_read is None else _outcome(lambda: iris.from_flat(*rows_read))
    assert (fast is not None) is flat  # None: the checked path decides and words the error
    try:
        checked = _outcome(lambda: iris.from_rows(parse_json(body, 32)["inputs"]))
    except MalformedRequest as e:
        checked = ("400", e.message)
    if flat:
        assert fast == checked  # the same tensor, byte for byte


def test_encode_batch_writes_the_json_decode_batch_writes(iris: CompiledSchema) -> None:
    X = iris_model().X.astype(np.float32)
    labels = np.arange(len(X)) % 3
    proba = np.random.default_rng(0).random((len(X), 3), dtype=np.float32)
    for prediction in (
        Prediction(labels=labels.astype(np.int64), probabilities=proba),
        Prediction(labels=np.array(["setosa", "versicolor"] * 75, dtype=object), probabilities=proba),
        Prediction(labels=labels.astype(np.int64), probabilities=proba).rows(10, 20),
    ):
        plain = orjson.dumps(Answers(iris.manifest).decode_batch(prediction))
        assert (
            orjson.dumps(Answers(iris.manifest).encode_batch(prediction), option=orjson.OPT_SERIALIZE_NUMPY)
            == plain
        )
    regressor = CompiledSchema(regressor_model().manifest)
    for values in (np.linspace(-3, 7, 50, dtype=np.float32)[:, None], np.linspace(-3, 7, 50)):
        prediction = Prediction(values=values)
        plain = orjson.dumps(Answers(regressor.manifest).decode_batch(prediction))
        assert (
            orjson.dumps(
                Answers(regressor.manifest).encode_batch(prediction), option=orjson.OPT_SERIALIZE_NUMPY
            )
            == plain
        )


# ----------------------------------------------------------------------------- flat rows

FLAT_ACCEPTED = [
    b'{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.0, -2.2e-3, 1E5, 0]]}',
    b'{"inputs":[[5.1,3.5,1.4,0.2]]}',
    b' \n{ "inputs" :\t[ [1, 2 ,3,4] ,\r\n [ 5,6,7, 8 ] ] }\n',
    b'{"inputs": [[-0.0, 0, 1e-7, 2E+3]]}',
]
FLAT_REFUSED = [
    b'{"inputs": [[1, 2, 3], [4]]}',  # ragged, though the numbers add up to 4 per row on average
    b'{"inputs": [[1, 2, 3, 4], [5, 6, 7]]}',
    b'{"inputs": [[1, 2, 3, 4]5, [5, 6, 7, 8]]}',  # a number outside a row
    b'{"inputs": [5[1, 2, 3, 4]]}',
    b'{"inputs": [[1, 2, 3, 4] [5, 6, 7, 8]]}',  # rows without a comma
    b'{"inputs": [[1, 2, 3, 4],]}',
    b'{"inputs": [[, 2, 3, 4]]}',
    b'{"inputs": [[1 2, 3, 4]]}',  # two numbers in one slot: the shape looks right
    b'{"inputs": [[1, 2, 3, 01]]}',  # not JSON numbers
    b'{"inputs": [[1, 2, 3, .5]]}',
    b'{"inputs": [[1, 2, 3, +5]]}',
    b'{"inputs": [[1, 2, 3, 1e]]}',
    b'{"inputs": [[1, 2, 3, NaN]]}',
    b'{"inputs": [[1, 2, 3, true]]}',
    b'{"inputs": [[1, 2, 3, "4"]]}',
    b'{"in puts": [[1, 2, 3, 4]]}',  # another key
    b'{"inputs": [[1, 2, 3, 4]], "x": 1}',
    b'{"inputs": [[1, 2, 3, 4]]',
    b'{"inputs": [[1, 2, 3, 4]]}}',
    b'{"inputs": [[[1, 2, 3, 4]]]}',
    b'{"inputs": [[1, 2, [3, 4], 5], [6, 7, [], 8]]}',  # 4 long rows, 4 numbers a row on average
    b'{"inputs": [[1, [2, 3, 4]], [5, 6, 7, 8]]}',
    b'{"inputs": ["abcd", [1, 2, 3, 4]]}',  # a string of len 4
    b'{"inputs": ["a[cd", [1, 2, 3, 4]]}',  # ... holding the n + 1st "["
    b'{"inputs": [{"a": 1, "b": 2, "c": 3, "d": [4]}, [1, 2, 3, 4]]}',  # 4 keys, an array inside
    b'{"inputs": [[1, 2, 3, 4], [5, 6, 7, null]]}',
    b'{"inputs": [[1, 2, 3, 4], 5]}',
    b'{"inputs": [1, 2, 3, 4]}',
    b'{"inputs": []}',
    b"[[1, 2, 3, 4]]",
    b'{"inputs": [[1, 2, 3, 4]], "inputs": [[5, 6, 7, 8]]}',  # a repeated key: the general path refuses
    b'{"inputs": [[1, 2, 3, 1e400]]}',  # beyond double range
    b'{"inputs": [[1, 2, 3, 99999999999999999999999]]}',  # beyond 64 bits
    b'{"inputs": [[1, 2, 3, 4]]} x',
    b'\xff{"inputs": [[1, 2, 3, 4]]}',
    b'{"inputs": [[1, 2, 3, 4]], "\xff": 1}',
]


@pytest.mark.parametrize("body", FLAT_ACCEPTED)
def test_flat_rows_are_the_strict_parsers_numbers(body: bytes) -> None:
    rows = flat_rows(body, 4, 10)
    assert rows is not None
    numbers, n = rows
    doc = parse_json(body, 32)["inputs"]
    assert n == len(doc)
    np.testing.assert_array_equal(numbers, np.array(doc, dtype=np.float64).ravel())


@pytest.mark.parametrize("body", FLAT_REFUSED)
def test_flat_rows_leave_every_other_body_to_the_general_path(body: bytes) -> None:
    assert flat_rows(body, 4, 10) is None


def test_flat_rows_respect_the_row_limit_and_width() -> None:
    body = orjson.dumps({"inputs": [[1.5, 2, 3, 4]] * 11})
    assert flat_rows(body, 4, 10) is None  # the general path answers 422 too_many_rows
    assert flat_rows(body, 4, 11) is not None
    assert flat_rows(body, 3, 11) is None


def test_flat_rows_of_one_call_survive_the_next() -> None:
    """Each thread keeps its parser between calls: the numbers of a call are the caller's, not a view
    of the parser's buffers that the next body overwrites."""
    first = flat_rows(orjson.dumps({"inputs": [[1, 2, 3, 4]] * 3}), 4, 10)
    second = flat_rows(orjson.dumps({"inputs": [[9, 8, 7, 6]] * 5}), 4, 10)
    assert first is not None
    assert second is not None
    np.testing.assert_array_equal(first.numbers, [1, 2, 3, 4] * 3)
    np.testing.assert_array_equal(second.numbers, [9, 8, 7, 6] * 5)


def test_flat_rows_still_parse_while_a_document_of_the_kept_parser_is_alive() -> None:
    """simdjson refuses to reuse a parser while one of its documents is referenced; should one ever
    outlive its call, the thread gets a new parser instead of every batch taking the slow path."""
    flat_rows(orjson.dumps({"inputs": [[1, 2, 3, 4]]}), 4, 10)
    alive = flatrows._local.parser.parse(b'{"inputs": [[0, 0, 0, 0]]}')
    rows = flat_rows(orjson.dumps({"inputs": [[5, 6, 7, 8]]}), 4, 10)
    assert rows is not None
    np.testing.assert_array_equal(rows.numbers, [5, 6, 7, 8])
    assert alive["inputs"][0][0] == 0


_FAULTS_A_CALL = """
import resource, sys
import numpy as np, orjson
from bundlegate.http.v1._flatrows import flat_rows
body = orjson.dumps({"inputs": np.random.default_rng(0).normal(size=(1000, 20)).tolist()})
for _ in range(3):
    assert flat_rows(body, 20, 1000) is not None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    assert flat_rows(body, 20, 1000) is not None
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="page-fault counts of glibc's allocator")
def test_a_large_batch_does_not_fault_in_fresh_memory_on_every_call() -> None:
    """The bench's random-forest batch (1000 rows of 20 long floats, 0.4 MB): a parser per call
    allocated its ~1 MB of buffers afresh and touched ~290 new pages a call (~0.7 ms of a ~2 ms
    parse on one core). A kept parser touches none once warm. Counted in a fresh interpreter, as a
    server starts: the test process's own heap can hide the pattern."""
    out = subprocess.run([sys.executable, "-c", _FAULTS_A_CALL], capture_output=True, text=True, check=True)
    faults = float(out.stdout)
    assert faults < 20, f"{faults:.0f} page faults a call"


def test_bodies_above_the_kept_size_are_parsed_and_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flatrows, "_KEPT_PARSER_MAX_BYTES", 64)
    flat_rows(b'{"inputs": [[1, 2, 3, 4]]}', 4, 10)
    kept = flatrows._local.parser
    big = orjson.dumps({"inputs": [[1.25, 2, 3, 4]] * 10})
    rows = flat_rows(big, 4, 10)
    assert rows is not None
    assert rows.n_rows == 10
    np.testing.assert_array_equal(rows.numbers, [1.25, 2, 3, 4] * 10)
    assert flatrows._local.parser is kept


def test_from_flat_builds_the_tensor_from_rows_builds(iris: CompiledSchema) -> None:
    rows = [[5.1, 3.5, 1.4, 0.2], [6, -2.2e-3, 1e5, 0]]
    flat = flat_rows(orjson.dumps({"inputs": rows}), 4, 10)
    assert flat is not None
    assert iris.flat_width == 4
    fast = iris.from_flat(*flat)
    assert fast is not None
    checked = iris.from_rows(rows)
    for name, array in checked.arrays.items():
        assert fast.arrays[name].dtype == array.dtype
        np.testing.assert_array_equal(fast.arrays[name], array)
    assert iris.from_flat(np.array([1e39, 1, 2, 3]), 1) is None  # beyond float32: the checked path words it


# ----------------------------------------------------------------------------- binary tensor data


def _binary_doc(datatype: str, values: np.ndarray[Any, Any], shape: list[int]) -> dict[str, Any]:
    raw = values.astype(datatype_numpy(datatype)).tobytes()
    doc = {"inputs": [{"name": "input", "datatype": datatype, "shape": shape}]}
    doc["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
    decode_binary_inputs(doc, memoryview(b"{hdr}" + raw)[5:])  # at an odd address, as after a header
    assert not doc["inputs"][0]["data"].flags.aligned  # so _binary_rows copies it first
    return doc


def datatype_numpy(datatype: str) -> str:
    return {"FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "INT64": "<i8", "INT32": "<i4"}[datatype]


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("FP32", iris_model().X[:50]),
        ("FP64", iris_model().X[:50] + 1e-9),  # rounds to float32 like the checked path
        ("FP16", iris_model().X[:50]),
        ("FP64", np.array([[1e39, 2.0, 3.0, 4.0]])),  # too large for float32: the checked path's 422
        ("INT64", np.array([[16777217, 2, 3, 4]])),  # ints take the checked path (same rounding)
        ("INT32", np.array([[1, 2, 3, 4]] * 3)),
    ],
)
def test_binary_rows_give_the_checked_paths_answer(
    iris: CompiledSchema, datatype: str, values: np.ndarray[Any, Any]
) -> None:
    version: Any = SimpleNamespace(manifest=iris.manifest, schema=iris)
    binary = _binary_doc(datatype, values, list(values.shape))
    as_json = {"inputs": [{**binary["inputs"][0], "data": binary["inputs"][0]["data"].tolist()}]}
    fast = _outcome(lambda: feed_from_tensors(version, binary["inputs"]))
    checked = _outcome(lambda: feed_from_tensors(version, as_json["inputs"]))
    assert fast == checked  # the same tensor byte for byte, or the same 422


def test_binary_float32_rows_are_not_copied(iris: CompiledSchema) -> None:
    version: Any = SimpleNamespace(manifest=iris.manifest, schema=iris)
    rows = iris_model().X.astype(np.float32)
    raw = bytearray(rows.tobytes())
    doc = {"inputs": [{"name": "x", "datatype": "FP32", "shape": list(rows.shape)}]}
    doc["inputs"][0]["parameters"] = {"binary_data_size": len(raw)}
    decode_binary_inputs(doc, memoryview(raw))
    feed = feed_from_tensors(version, doc["inputs"])
    (tensor,) = feed.arrays.values()
    assert tensor.shape == rows.shape
    assert np.shares_memory(tensor, np.frombuffer(raw, dtype=np.uint8))  # the body's bytes, as sent
    np.testing.assert_array_equal(tensor, rows)
