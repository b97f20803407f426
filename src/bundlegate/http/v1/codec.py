"""The ``/v1`` envelope: request bodies → the model's feed, predictions → answer bodies.

A request body is ``{"inputs": ...}`` and nothing else: one record (an object of features, or a
positional list for numeric models) for ``predict``; records, columns or positional rows for
``predict/batch``. Positional rows of a model that takes one float tensor are parsed straight into
one buffer (``_flatrows``); everything else is strict JSON (``http.body``) handed to the version's
``CompiledSchema``. Its problems come back located as the client wrote the request:
``["inputs", 3, "age"]`` (records), ``["inputs", "age", 3]`` (columns), ``["inputs", 3, 1]``
(positional rows), ``["inputs", "age"]`` or ``["inputs", 1]`` (one record).

Answers: ``{"model", "version", "request_id", "prediction", "probabilities": {class: p}}`` for one
record, ``{..., "predictions": [...], "probabilities": [[...], ...]}`` for a batch (``Answers``).
They name their outputs the same way single and batch (``Answers.names``): a classifier's answers carry
``classes`` (single: ``probabilities`` keyed by class; batch: each row of ``probabilities`` in
``classes`` order); a multi-output regressor whose targets were named at pack time carries ``targets``
(single: ``prediction`` keyed by target; batch: each row of ``predictions`` in ``targets`` order).
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson

from bundlegate.answers import Answers
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import InvalidInput, InvalidRows, Problem, problem
from bundlegate.feed import Feed, Prediction
from bundlegate.http.body import parse_json
from bundlegate.http.context import RequestInfo
from bundlegate.http.v1._flatrows import flat_rows

_DEPTH_OF_ROWS = 3  # {"inputs": [[...]]}


class Limits(Protocol):
    """The settings decoding a ``/v1`` body reads."""

    @property
    def max_json_depth(self) -> int: ...
    @property
    def request_max_rows(self) -> int: ...


def decode(body: bytes, schema: CompiledSchema, batch: bool, limits: Limits) -> Feed:
    """The feed of a ``predict`` (``batch`` False) or ``predict/batch`` body; ``MalformedRequest``
    (400) or ``InvalidInput`` (422) with ``/v1`` locations."""
    try:
        width = schema.flat_width
        if batch and width is not None and limits.max_json_depth >= _DEPTH_OF_ROWS:
            rows = flat_rows(body, width, limits.request_max_rows)
            if rows is not None:
                feed = schema.from_flat(rows.numbers, rows.n_rows)
                if feed is not None:  # else a value the dtype cannot hold: the checked path words it
                    return feed
        inputs = inputs_of(parse_json(body, limits.max_json_depth))
        return schema.from_batch(inputs) if batch else schema.from_record(inputs)
    except InvalidRows as e:
        shape = e.shape
        raise e.locate(lambda p: location(p, shape, schema.names)) from None


def inputs_of(doc: Any) -> Any:
    """The ``inputs`` of a ``/v1`` body, which may hold nothing else."""
    if not isinstance(doc, dict):
        raise InvalidInput(
            'the body must be a JSON object {"inputs": ...}', [problem([], "expected an object", "type")]
        )
    if "inputs" not in doc:
        raise InvalidInput('the body has no "inputs"', [problem(["inputs"], "field required", "missing")])
    if len(doc) > 1:
        extra = [problem([str(k)[:64]], "unknown field", "extra") for k in doc if k != "inputs"]
        raise InvalidInput('the body may only hold "inputs"', extra)
    return doc["inputs"]


def location(p: Problem, shape: str, names: tuple[str, ...]) -> list[str | int]:
    """Where problem ``p`` is in a body whose inputs came as ``shape``."""
    row, feature = p.row, p.feature
    position = names.index(feature) if feature in names else None
    if shape == "record":
        parts: tuple[str | int | None, ...] = (feature,)
    elif shape == "values":
        parts = (position,)
    elif shape == "columns":
        parts = (feature, row)
    elif shape == "rows":
        parts = (row, position)
    else:  # records
        parts = (row, feature)
    return ["inputs", *(x for x in parts if x is not None)]


def encode(info: RequestInfo, answers: Answers, prediction: Prediction, batch: bool) -> bytes:
    """The answer body: the model, version and request id, the prediction(s), then what the answers
    name (``Answers.names``: ``classes`` or ``targets``)."""
    head = {"model": info.model, "version": info.version, "request_id": info.request_id}
    names = answers.names
    if batch:
        out = head | answers.encode_batch(prediction)
        return orjson.dumps(out | names if names else out, option=orjson.OPT_SERIALIZE_NUMPY)
    one = answers.decode_one(prediction)
    if "targets" in names:  # a named multi-output regressor: its values keyed by target
        one["prediction"] = dict(zip(names["targets"], one["prediction"], strict=True))
    return orjson.dumps(head | one | names if names else head | one)
