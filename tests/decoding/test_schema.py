"""CompiledSchema: every request shape gives the array sklearn was trained on, every mistake is located."""

from __future__ import annotations

from functools import cache
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from bundle_factory import IRIS_FEATURES, Built, iris_model, mixed_model, regressor_model
from bundlegate.answers import Answers
from bundlegate.decoding import MISSING_STRING, CompiledSchema
from bundlegate.errors import InvalidRows, Problem
from bundlegate.feed import Feed, Prediction
from bundlegate.http.v1.codec import location


@cache
def _session(built: Built) -> ort.InferenceSession:
    return ort.InferenceSession(built.files["model.onnx"], providers=["CPUExecutionProvider"])


def _predict(built: Built, feed: Feed) -> Prediction:
    label, proba = _session(built).run(None, feed.arrays)
    return Prediction(labels=label, probabilities=proba)


def _locs(exc: pytest.ExceptionInfo[InvalidRows], schema: CompiledSchema) -> list[list[Any]]:
    """Where ``/v1`` says the problems are (its codec locates what decoding reports)."""
    return [location(p, exc.value.shape, schema.names) for p in exc.value.problems]


@pytest.fixture(scope="module")
def iris() -> CompiledSchema:
    return CompiledSchema(iris_model().manifest, max_rows=200, max_string_length=8)


@pytest.fixture(scope="module")
def credit() -> CompiledSchema:
    return CompiledSchema(mixed_model().manifest, max_rows=200, max_string_length=8)


# ---------------------------------------------------------------- numeric model: every shape, same array


def test_every_request_shape_gives_the_training_rows(iris: CompiledSchema) -> None:
    X = iris_model().X[:5]
    records = [dict(zip(IRIS_FEATURES, r, strict=True)) for r in X.tolist()]
    columns = {f: X[:, j].tolist() for j, f in enumerate(IRIS_FEATURES)}
    expected = X.astype(np.float32)
    for feed in (
        iris.from_records(records),
        iris.from_columns(columns),
        iris.from_rows(X.tolist()),
        iris.from_batch(records),
        iris.from_batch(columns),
        iris.from_batch(X.tolist()),
    ):
        assert feed.n_rows == 5
        assert feed.arrays["input"].dtype == np.float32
        np.testing.assert_array_equal(feed.arrays["input"], expected)
    for single in (iris.from_record(records[2]), iris.from_record(X[2].tolist())):
        assert single.n_rows == 1
        np.testing.assert_array_equal(single.arrays["input"], expected[2:3])


def test_integers_are_numbers_and_key_order_does_not_matter(iris: CompiledSchema) -> None:
    feed = iris.from_record({"petal_width": 0, "petal_length": 1, "sepal_width": 2.5, "sepal_length": 5})
    np.testing.assert_array_equal(feed.arrays["input"], [[5.0, 2.5, 1.0, 0.0]])


def test_iris_predictions_match_sklearn(iris: CompiledSchema) -> None:
    built = iris_model()
    out = Answers(iris.manifest).decode_batch(_predict(built, iris.from_rows(built.X.tolist())))
    assert out["predictions"] == built.estimator.predict(built.X).tolist()
    np.testing.assert_allclose(out["probabilities"], built.estimator.predict_proba(built.X), atol=1e-5)


def test_single_prediction_is_a_class_with_probabilities_by_class(iris: CompiledSchema) -> None:
    built = iris_model()
    out = Answers(iris.manifest).decode_one(_predict(built, iris.from_record(built.X[0].tolist())))
    assert out["prediction"] == "setosa"
    assert list(out["probabilities"]) == ["setosa", "versicolor", "virginica"]
    assert all(type(p) is float for p in out["probabilities"].values())
    assert out["probabilities"]["setosa"] > 0.9


def test_float32_answers_keep_float32_digits(iris: CompiledSchema) -> None:
    """0.98165685, not 0.9816568493843079: no more digits than the float32 model computed."""
    built = iris_model()
    prediction = _predict(built, iris.from_rows(built.X[:5].tolist()))
    assert prediction.probabilities is not None
    out = Answers(iris.manifest).decode_batch(prediction)
    flat = [p for row in out["probabilities"] for p in row]
    assert flat == [float(str(p)) for p in prediction.probabilities.ravel()]
    assert all(len(repr(p).replace("e-", "")) <= 12 for p in flat), flat


def test_integer_classes_stay_integers() -> None:
    built = iris_model(string_classes=False)
    schema = CompiledSchema(built.manifest)
    out = Answers(schema.manifest).decode_one(_predict(built, schema.from_record(built.X[100].tolist())))
    assert out["prediction"] == 2
    assert type(out["prediction"]) is int
    assert list(out["probabilities"]) == ["0", "1", "2"]


def test_regressor_predictions_are_floats() -> None:
    built = regressor_model()
    schema = CompiledSchema(built.manifest)
    feed = schema.from_records([{"a": 0.5, "b": -1.0, "n": 2}, {"a": 1, "b": 2, "n": 0}])
    (values,) = ort.InferenceSession(built.files["model.onnx"], providers=["CPUExecutionProvider"]).run(
        None, feed.arrays
    )
    out = Answers(schema.manifest).decode_batch(Prediction(values=values))
    assert all(type(v) is float for v in out["predictions"])
    np.testing.assert_allclose(
        out["predictions"], built.estimator.predict([[0.5, -1, 2], [1, 2, 0]]), rtol=1e-5
    )
    assert type(Answers(schema.manifest).decode_one(Prediction(values=values))["prediction"]) is float


# ---------------------------------------------------------------- mixed model: strings, nulls


def test_mixed_records_and_columns_feed_one_tensor_per_feature(credit: CompiledSchema) -> None:
    records = [
        {"age": 41, "income": 52.5, "city": "Berlin"},
        {"age": None, "income": 40, "city": None},
    ]
    feed = credit.from_records(records)
    assert set(feed.arrays) == {"age", "income", "city"}
    np.testing.assert_array_equal(feed.arrays["age"], np.array([[41.0], [np.nan]], dtype=np.float32))
    assert feed.arrays["city"].tolist() == [["Berlin"], [MISSING_STRING]]
    columns = credit.from_columns({"age": [41, None], "income": [52.5, 40], "city": ["Berlin", None]})
    for name in feed.arrays:
        np.testing.assert_array_equal(columns.arrays[name], feed.arrays[name])


def test_mixed_predictions_match_sklearn_including_missing_values(credit: CompiledSchema) -> None:
    built = mixed_model()
    X = built.X
    records = [
        {"age": None if np.isnan(a) else a, "income": i, "city": c or None}
        for a, i, c in zip(X["age"], X["income"], X["city"], strict=True)
    ][:60]
    out = Answers(credit.manifest).decode_batch(_predict(built, credit.from_records(records)))
    assert out["predictions"] == built.estimator.predict(X[:60]).tolist()
    np.testing.assert_allclose(out["probabilities"], built.estimator.predict_proba(X[:60]), atol=1e-5)


def test_positional_rows_are_refused_for_models_with_strings(credit: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        credit.from_rows([[1, 2, "Berlin"]])
    assert _locs(exc, credit) == [["inputs"]]
    with pytest.raises(InvalidRows):
        credit.from_record([1, 2, "Berlin"])


# ---------------------------------------------------------------- validation: each mistake, located


@pytest.mark.parametrize(
    ("record", "loc", "kind"),
    [
        ({"age": 41, "income": 1}, ["inputs", 1, "city"], "missing"),
        ({"age": 41, "income": 1, "city": "Rome", "zip": 1}, ["inputs", 1, "zip"], "extra"),
        ({"age": True, "income": 1, "city": "Rome"}, ["inputs", 1, "age"], "type"),
        ({"age": "41", "income": 1, "city": "Rome"}, ["inputs", 1, "age"], "type"),
        ({"age": 41, "income": 1, "city": 7}, ["inputs", 1, "city"], "type"),
        ({"age": 41, "income": None, "city": "Rome"}, ["inputs", 1, "income"], "value"),
        ({"age": 41, "income": 1e300, "city": "Rome"}, ["inputs", 1, "income"], "value"),
        ({"age": 41, "income": float("inf"), "city": "Rome"}, ["inputs", 1, "income"], "value"),
        ({"age": 41, "income": 1, "city": "Rome" * 3}, ["inputs", 1, "city"], "value"),
        ({"age": [41], "income": 1, "city": "Rome"}, ["inputs", 1, "age"], "type"),
    ],
)
def test_record_mistakes_are_located(
    credit: CompiledSchema, record: dict[str, Any], loc: list[Any], kind: str
) -> None:
    good = {"age": 30, "income": 50, "city": "Rome"}
    with pytest.raises(InvalidRows) as exc:
        credit.from_records([good, record])
    assert _locs(exc, credit) == [loc]
    assert exc.value.details[0]["type"] == kind


def test_bool_for_a_number_says_so(iris: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        iris.from_record({"sepal_length": True, "sepal_width": 1, "petal_length": 1, "petal_width": 1})
    assert exc.value.details[0]["msg"] == "expected a number, got a boolean"
    assert _locs(exc, iris) == [["inputs", "sepal_length"]]


def test_overflow_to_infinity_in_float32_is_refused(iris: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        iris.from_rows([[1, 2, 3, 4], [1, 2, 1e39, 4]])
    assert _locs(exc, iris) == [["inputs", 1, 2]]
    assert "float32" in exc.value.details[0]["msg"]


def test_unknown_category_only_where_the_schema_forbids_it() -> None:
    built = mixed_model()
    lenient = CompiledSchema(built.manifest)
    assert lenient.from_record({"age": 1, "income": 2, "city": "Oslo"}).arrays["city"].tolist() == [["Oslo"]]
    inputs = [
        i.model_copy(update={"allow_unknown": False}) if i.name == "city" else i
        for i in built.manifest.inputs
    ]
    strict = CompiledSchema(built.manifest.model_copy(update={"inputs": inputs}))
    strict.from_record({"age": 1, "income": 2, "city": "Rome"})
    with pytest.raises(InvalidRows) as exc:
        strict.from_columns({"age": [1, 2], "income": [2, 3], "city": ["Rome", "Oslo"]})
    assert _locs(exc, strict) == [["inputs", "city", 1]]
    assert exc.value.details[0]["msg"] == "unknown category"


def test_locations_follow_the_request_shape(iris: CompiledSchema, credit: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        credit.from_columns({"age": [1, 2, 3], "income": [1, "x", 3], "city": ["a", "b", "c"]})
    assert _locs(exc, credit) == [["inputs", "income", 1]]
    with pytest.raises(InvalidRows) as exc:
        iris.from_rows([[1, 2, 3, 4], [1, 2, 3, "x"]])
    assert _locs(exc, iris) == [["inputs", 1, 3]]
    with pytest.raises(InvalidRows) as exc:
        iris.from_record([1, 2, None, 4])
    assert _locs(exc, iris) == [["inputs", 2]]
    with pytest.raises(InvalidRows) as exc:
        credit.from_record({"age": 1, "income": "x", "city": "Rome"})
    assert _locs(exc, credit) == [["inputs", "income"]]


def test_wrong_width_and_wrong_row_types(iris: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        iris.from_rows([[1, 2, 3, 4], [1, 2, 3], 5])
    assert _locs(exc, iris) == [["inputs", 1], ["inputs", 2]]
    assert exc.value.details[0]["msg"] == "expected 4 values, got 3"
    with pytest.raises(InvalidRows) as exc:
        iris.from_record([1, 2, 3])
    assert _locs(exc, iris) == [["inputs"]]
    with pytest.raises(InvalidRows) as exc:
        iris.from_records([{"sepal_length": 1}, [1, 2, 3, 4]])
    assert ["inputs", 1] in _locs(exc, iris)
    assert ["inputs", 0, "sepal_width"] in _locs(exc, iris)


def test_columns_of_unequal_length_or_not_lists(credit: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        credit.from_columns({"age": [1, 2], "income": [1], "city": "Rome"})
    assert _locs(exc, credit) == [["inputs", "income"], ["inputs", "city"]]


@pytest.mark.parametrize(
    "batch", [[], {"sepal_length": [], "sepal_width": [], "petal_length": [], "petal_width": []}]
)
def test_empty_batch(iris: CompiledSchema, batch: Any) -> None:
    with pytest.raises(InvalidRows) as exc:
        iris.from_batch(batch)
    assert _locs(exc, iris) == [["inputs"]]


def test_batch_over_the_row_limit(iris: CompiledSchema) -> None:
    with pytest.raises(InvalidRows) as exc:
        iris.from_rows([[1, 2, 3, 4]] * 201)
    assert exc.value.details[0]["type"] == "too_many_rows"
    iris.from_rows([[1, 2, 3, 4]] * 200)


def test_at_most_twenty_problems_and_no_long_values_echoed(iris: CompiledSchema) -> None:
    long_key = "k" * 500
    with pytest.raises(InvalidRows) as exc:
        iris.from_records([{long_key: "v" * 10_000}] * 50)
    assert len(exc.value.details) == 20
    assert all(len(str(d)) < 300 for d in exc.value.details)


def test_int64_features_want_integers() -> None:
    schema = CompiledSchema(regressor_model().manifest)
    np.testing.assert_array_equal(schema.from_record({"a": 1, "b": 2, "n": 3.0}).arrays["X"], [[1, 2, 3]])
    with pytest.raises(InvalidRows) as exc:
        schema.from_records([{"a": 1, "b": 2, "n": 3}, {"a": 1, "b": 2, "n": 3.5}])
    assert _locs(exc, schema) == [["inputs", 1, "n"]]
    assert exc.value.details[0]["msg"] == "expected an integer"


def test_non_list_batch_and_non_object_record(iris: CompiledSchema) -> None:
    with pytest.raises(InvalidRows):
        iris.from_records({"a": 1})
    with pytest.raises(InvalidRows):
        iris.from_record("setosa")
    with pytest.raises(InvalidRows):
        iris.from_columns([1, 2])


def test_feed_concat_and_prediction_rows() -> None:
    a = Feed({"x": np.zeros((2, 1))}, 2)
    b = Feed({"x": np.ones((3, 1))}, 3)
    both = Feed.concat([a, b])
    assert both.n_rows == 5
    assert both.arrays["x"].ravel().tolist() == [0, 0, 1, 1, 1]
    p = Prediction(labels=np.arange(5), probabilities=np.eye(5))
    part = p.rows(2, 4)
    assert part.labels is not None
    assert part.labels.tolist() == [2, 3]
    assert part.values is None


@pytest.mark.parametrize(
    "record",
    [
        {"age": 41, "income": 52.5, "city": "Berlin"},
        {"age": None, "income": 40, "city": None},
        {"age": 41.0, "income": -3, "city": ""},
        {"age": 2**40, "income": 0.0, "city": "Oslo"},
    ],
)
def test_one_record_converts_like_a_batch_of_one(credit: CompiledSchema, record: dict[str, Any]) -> None:
    one = credit.from_record(record)
    batch = credit.from_records([record])
    assert one.n_rows == 1
    assert set(one.arrays) == set(batch.arrays)
    for name, arr in batch.arrays.items():
        assert one.arrays[name].dtype == arr.dtype
        assert one.arrays[name].shape == (1, 1)
        assert one.arrays[name].tolist() == arr.tolist() or np.isnan(arr.astype(float)).all()


def test_problems_name_the_row_and_the_feature(credit: CompiledSchema) -> None:
    """Decoding reports in the model's terms; each protocol turns them into its own locations."""
    good = {"age": 30, "income": 50, "city": "Rome"}
    with pytest.raises(InvalidRows) as exc:
        credit.from_records([good, {"age": "x", "income": 2, "city": "Rome", "zip": 1}])
    assert exc.value.shape == "records"
    assert exc.value.problems == [
        Problem(1, "zip", "unknown feature", "extra"),
        Problem(1, "age", "expected a number, got a string", "type"),
    ]
    with pytest.raises(InvalidRows) as exc:
        credit.from_columns({"age": [1, 2], "income": [1, None], "city": ["a", "b"]})
    assert exc.value.shape == "columns"
    assert [(p.row, p.feature) for p in exc.value.problems] == [(1, "income")]
