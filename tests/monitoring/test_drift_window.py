"""Drift's parts without HTTP: the bins agree with numpy's histogram, PSI reads 0 for the reference
itself and grows with a shift, and the window keeps the newest rows within its size and time limits."""

from __future__ import annotations

import numpy as np
import pytest

import bundle_factory as bf
from bundlegate.feed import Feed, Prediction
from bundlegate.manifest import FeatureReference, Reference
from bundlegate.monitoring.buckets import CategoryBuckets, NumericBins, psi
from bundlegate.monitoring.columns import FeatureColumns
from bundlegate.monitoring.drift import ROWS_PER_REQUEST, VersionDrift
from fake_clock import FakeClock


def test_numeric_bins_count_as_numpy_histogram_and_keep_outliers_and_nulls_apart() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 2))
    counts_a, edges_a = np.histogram(x[:, 0], bins=10)
    counts_b, edges_b = np.histogram(x[:, 1], bins=7)
    bins = NumericBins([edges_a.tolist(), edges_b.tolist()], [0.0, 0.1], [counts_a, counts_b])
    live = np.vstack([x, [[-99.0, 99.0], [np.nan, np.nan]]])
    a, b = bins.split(bins.counts(live))
    assert a.tolist() == [1, *counts_a.tolist(), 0, 1]  # below, the bins, above, null
    assert b.tolist() == [0, *counts_b.tolist(), 1, 1]
    assert bins.expected[1][-1] == pytest.approx(0.1)
    assert bins.expected[1].sum() == pytest.approx(1.0)
    assert psi(a[1:-2], np.asarray(counts_a) / counts_a.sum()) == pytest.approx(0.0, abs=1e-9)


def test_psi_grows_with_the_shift() -> None:
    expected = np.full(10, 0.1)
    assert psi(np.full(10, 50), expected) == pytest.approx(0.0)
    small = psi(np.array([60, 55, 50, 50, 50, 50, 50, 50, 45, 40]), expected)
    large = psi(np.array([0, 0, 0, 0, 0, 100, 100, 100, 100, 100]), expected)
    assert 0 < small < 0.1 < 0.2 < large  # type: ignore[operator]
    assert psi(np.zeros(10), expected) is None


def test_category_buckets_fold_rare_values_into_other_when_the_reference_did() -> None:
    folded = CategoryBuckets({"a": 0.5, "__other__": 0.5}, 0.0, empty_is_null=False)
    plain = CategoryBuckets({"a": 1.0}, 0.2, empty_is_null=True)
    values = np.array(["a", "b", "", "c"], dtype=object)
    assert dict(zip(folded.labels, folded.counts(values).tolist())) == {
        "a": 1,
        "__other__": 3,
        "__unseen__": 0,
        "__null__": 0,
    }
    assert dict(zip(plain.labels, plain.counts(values).tolist())) == {
        "a": 1,
        "__other__": 0,
        "__unseen__": 2,
        "__null__": 1,
    }
    assert plain.expected.tolist() == pytest.approx([0.8, 0.0, 0.0, 0.2])


def _drift(
    window_rows: int, window_s: float, clock: FakeClock, max_rows_per_s: float | None = None
) -> VersionDrift:
    built = bf.iris_model()
    features = [
        FeatureReference(
            name=n, kind="numeric", count=150, null_rate=0.0, bins=[0.0, 5.0, 10.0], counts=[75, 75]
        )
        for n in bf.IRIS_FEATURES
    ]
    manifest = built.manifest.model_copy(update={"reference": Reference(rows=150, features=features)})
    return VersionDrift(manifest, FeatureColumns(manifest), window_rows, window_s, clock, max_rows_per_s)


def _rows(n: int, value: float) -> tuple[Feed, Prediction]:
    return Feed({"input": np.full((n, 4), value, dtype=np.float32)}, n), Prediction(
        labels=np.array(["setosa"] * n)
    )


def test_the_window_keeps_the_newest_rows_within_its_size_and_time() -> None:
    clock = FakeClock()
    drift = _drift(window_rows=100, window_s=60, clock=clock)
    assert drift.flush_rows == 12
    for _ in range(10):
        drift.add(*_rows(12, 1.0))  # counted as they come: ten chunks of 12 rows
    rows, features, prediction = drift.report()
    assert prediction is None  # no prediction reference in this bundle
    assert rows == 108  # whole chunks, the oldest dropped once the others hold 100 rows
    assert features[0].live[1] == 108
    clock.advance(30)
    drift.add(*_rows(30, 7.0))
    rows, features, _ = drift.report()
    assert rows == 102
    assert features[0].live[1:3] == [72, 30]
    clock.advance(31)  # the first ten chunks are now over a minute old
    rows, features, _ = drift.report()
    assert rows == 30
    assert features[0].live[1:3] == [0, 30]
    clock.advance(61)
    assert drift.report()[0] == 0
    assert drift.report()[1][0].psi is None


def test_a_large_request_adds_an_evenly_spaced_sample_of_its_rows() -> None:
    drift = _drift(window_rows=10_000, window_s=60, clock=FakeClock())
    feed, prediction = _rows(1000, 1.0)
    feed.arrays["input"][500:] = 7.0  # the second half in the other bin
    drift.add(feed, prediction)
    rows, features, _ = drift.report()
    assert rows == ROWS_PER_REQUEST
    assert features[0].live[1:3] == [ROWS_PER_REQUEST // 2, ROWS_PER_REQUEST // 2]


def test_heavy_traffic_is_counted_as_an_even_sample_of_its_requests() -> None:
    clock = FakeClock()
    drift = _drift(window_rows=100_000, window_s=3600, clock=clock, max_rows_per_s=1000)
    for second in range(3):  # 8,000 single rows a second, half in each bin, alternating
        for i in range(8000):
            drift.add(*_rows(1, 1.0 if i % 2 else 7.0))
            clock.advance(1 / 8000)
        rows, features, _ = drift.report()
    # the first ~1,000 rows (one chunk) are all counted, then one request in 8: ~1,000 rows a second
    assert drift.stride == 8
    assert 3000 <= rows <= 5000
    low, high = features[0].live[1:3]
    assert abs(low - high) <= rows * 0.1  # an even sample: both bins alike, though the traffic alternates
    assert features[0].psi is not None
    quiet = _drift(window_rows=100_000, window_s=3600, clock=clock, max_rows_per_s=1000)
    for _ in range(500):  # 500 rows a second: all of them
        quiet.add(*_rows(1, 1.0))
        clock.advance(1 / 500)
    assert quiet.report()[0] == 500
    assert quiet.stride == 1
