"""Drift of one served model version against its bundle's reference: ``VersionDrift``.

``add(feed, prediction)`` does constant work on the request path: a numeric model's rows are copied
into the chunk's buffers (nothing of the request is kept), other models' arrays are kept; of a request
with more than ``ROWS_PER_REQUEST`` rows, an evenly spaced sample of that many, so the window weighs
a large batch like a few single rows. Above ``MAX_ROWS_PER_S`` rows a second, it takes one request
in every ``stride`` on average (random gaps; the stride is worked out again at each chunk from the
rate of the last), so heavy traffic costs drift about what ``MAX_ROWS_PER_S`` does and the window
holds an even sample of it. Once ``flush_rows`` rows are pending, or when someone reads the
drift, the pending rows are counted into buckets in one go (``buckets``: array operations over the
whole chunk) and the chunk joins a sliding window: whole chunks, the newest first, while the others
hold at least ``window_rows`` rows and none is older than ``window_s``. ``report()`` gives each
feature's PSI against the reference and both histograms, and the PSI of the predictions against the
reference the packer stored for the original model's answers on the sample (bundles without one have
no prediction drift).

Features the reference says nothing about (no bins, no frequencies) are left out.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from bundlegate.feed import Array, Feed, Prediction
from bundlegate.manifest import Manifest
from bundlegate.monitoring.buckets import CategoryBuckets, NumericBins, psi
from bundlegate.monitoring.columns import FeatureColumns

FLUSH_ROWS = 1024
# rows of one request that drift counts: a large batch costs no more than a few small ones, and an
# evenly spaced sample of it (its start moving from request to request) stands for the rest
ROWS_PER_REQUEST = 32
# rows a second drift counts, about, at most: above it an even sample of the requests (``stride``)
MAX_ROWS_PER_S = 2000.0
STRIDE_AFTER_ROWS = 64  # a chunk this large (or a second long) says the rate well enough


@dataclass(frozen=True, slots=True)
class Histogram:
    """What ``/drift`` shows for one feature or the predictions."""

    name: str
    kind: str
    psi: float | None
    buckets: list[str]
    reference: list[float]
    live: list[int]

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "psi": None if self.psi is None else round(self.psi, 6),
            "buckets": self.buckets,
            "reference": [round(x, 6) for x in self.reference],
            "live": self.live,
        }


class VersionDrift:
    """The sliding window of one model version (see the module docstring)."""

    def __init__(
        self,
        manifest: Manifest,
        columns: FeatureColumns,
        window_rows: int,
        window_s: float,
        clock: Callable[[], float] = time.monotonic,
        max_rows_per_s: float | None = MAX_ROWS_PER_S,
    ) -> None:
        self.window_rows = window_rows
        self.max_rows_per_s = max_rows_per_s
        self.stride = 1  # one request in this many is counted
        self._skip = 0  # requests to pass over before the next counted one
        self._rate_since = clock()  # when the stride was last worked out
        self._rows_since = 0  # rows counted since then
        self._offered = 0  # requests offered since then
        self._taken = 0  # of those, requests counted
        self.window_s = window_s
        self.flush_rows = max(1, min(FLUSH_ROWS, window_rows // 8))
        self._clock = clock
        self._columns = columns
        ref = manifest.reference
        specs = {s.name: s for s in manifest.inputs}
        features = ref.features if ref is not None else []
        numeric = [f for f in features if f.kind == "numeric" and f.bins and f.counts and f.name in specs]
        self._numeric_names = [f.name for f in numeric]
        self._numeric = (
            NumericBins(
                [f.bins or [] for f in numeric], [f.null_rate for f in numeric], [f.counts for f in numeric]
            )
            if numeric
            else None
        )
        self._categories = [
            (f.name, CategoryBuckets(f.frequencies, f.null_rate, empty_is_null=specs[f.name].nullable))
            for f in features
            if f.kind == "categorical" and f.frequencies and f.name in specs
        ]
        predicted = ref.predictions if ref is not None else None
        self._pred_classes: CategoryBuckets | None = None
        self._pred_values: NumericBins | None = None
        if predicted is not None and predicted.kind == "classes" and predicted.frequencies:
            self._pred_classes = CategoryBuckets(predicted.frequencies, 0.0, empty_is_null=False)
        elif predicted is not None and predicted.kind == "values" and predicted.bins and predicted.counts:
            self._pred_values = NumericBins([predicted.bins], [0.0], [predicted.counts])
        # one flat count vector: the numeric features, each category feature, then the predictions
        sizes = [self._numeric.total if self._numeric else 0] + [c.size for _, c in self._categories]
        sizes.append(self._pred_classes.size if self._pred_classes else 0)
        sizes.append(self._pred_values.total if self._pred_values else 0)
        self._bounds = np.cumsum([0, *sizes]).tolist()
        self._totals = np.zeros(self._bounds[-1], dtype=np.int64)
        self._rows = 0
        self._chunks: deque[tuple[float, int, Array]] = deque()
        self._pending: list[tuple[tuple[Array, ...], Array | None, Array | None]] = []
        self._tensors: list[str] | None = None
        self._pending_rows = 0
        self._requests = 0
        self._buffer: Array | None = None  # a numeric model's pending rows, and their predictions
        self._labels: Array | None = None
        self._values: Array | None = None

    @property
    def monitored(self) -> bool:
        """Whether the reference gives anything to compare with."""
        return bool(self._bounds[-1])

    def add(self, feed: Feed, prediction: Prediction) -> None:
        """Keep one request's rows for the next chunk (counted once ``flush_rows`` are pending); of
        a request over ``ROWS_PER_REQUEST`` rows, an evenly spaced sample of that many; above
        ``max_rows_per_s``, one request in every ``stride``."""
        self._offered += 1
        if self._skip:
            self._skip -= 1
            return
        self._taken += 1
        if self.stride > 1:  # a random gap of ``stride`` on average: a fixed one could keep in step
            self._skip = int(random.random() * (2 * self.stride - 1))  # with a pattern in the traffic
        n = feed.n_rows
        arrays = feed.arrays
        if self._tensors is None:
            self._tensors = list(arrays)
        # plain tuples of arrays: the garbage collector stops tracking them, however many wait
        labels, values = prediction.labels, prediction.values
        if self._columns.block is not None:  # a numeric model: the rows are copied, nothing is kept
            self._copy(arrays[self._columns.block], labels, values)
            return
        if n > ROWS_PER_REQUEST:
            step = -(-n // ROWS_PER_REQUEST)
            self._requests += 1
            rows = slice(self._requests % step, None, step)  # the start moves from request to request
            n = len(range(n)[rows])
            self._pending.append(
                (
                    tuple(a[rows] for a in arrays.values()),
                    None if labels is None else labels[rows],
                    None if values is None else values[rows],
                )
            )
        else:
            self._pending.append((tuple(arrays.values()), labels, values))
        self._pending_rows += n
        if self._pending_rows >= self.flush_rows:
            self.flush()

    def _copy(self, block: Array, labels: Array | None, values: Array | None) -> None:
        """``add`` for a numeric model: the request's rows (or its sample) into the chunk's buffers."""
        n = len(block)
        if n > ROWS_PER_REQUEST:
            step = -(-n // ROWS_PER_REQUEST)
            self._requests += 1
            rows = slice(self._requests % step, None, step)  # the start moves from request to request
            block = block[rows]
            labels = None if labels is None else labels[rows]
            values = None if values is None else values[rows]
            n = len(block)
        if self._buffer is None:
            size = self.flush_rows + ROWS_PER_REQUEST
            self._buffer = np.empty((size, block.shape[1]), dtype=block.dtype)
            self._labels = None if labels is None else np.empty(size, dtype=labels.dtype)
            self._values = None if values is None else np.empty(size, dtype=np.float64)
        i = self._pending_rows
        j = i + n
        self._buffer[i:j] = block
        if self._labels is not None and labels is not None:
            self._labels[i:j] = labels.ravel()
        if self._values is not None and values is not None:
            self._values[i:j] = values.reshape(n, -1)[:, 0]
        self._pending_rows = j
        if j >= self.flush_rows:
            self.flush()

    def flush(self) -> None:
        """Count the pending rows into a chunk of the window; drop chunks that left the window."""
        self._adapt_stride(self._pending_rows)
        if self._buffer is not None and self._pending_rows:
            n, self._pending_rows = self._pending_rows, 0
            block = self._columns.block or ""
            predicted = Prediction(
                None if self._labels is None else self._labels[:n],
                None,
                None if self._values is None else self._values[:n, None],
            )
            counts = self._count(Feed({block: self._buffer[:n]}, n), predicted)
            self._chunks.append((self._clock(), n, counts))
            self._totals += counts
            self._rows += n
        if self._pending:
            pending, self._pending, n = self._pending, [], self._pending_rows
            self._pending_rows = 0
            tensors, labels, values = zip(*pending, strict=True)
            joined = [
                np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*tensors, strict=True)
            ]
            feed = Feed(dict(zip(self._tensors or [], joined, strict=True)), n)
            prediction = Prediction(_joined(labels), None, _joined(values))
            counts = self._count(feed, prediction)
            self._chunks.append((self._clock(), n, counts))
            self._totals += counts
            self._rows += n
        self._evict()

    def _adapt_stride(self, rows: int) -> None:
        """The stride that keeps the counted rows near ``max_rows_per_s``, from the rate of the
        rows offered since it was last worked out (``rows`` more counted)."""
        self._rows_since += rows
        now = self._clock()
        elapsed = now - self._rate_since
        if self.max_rows_per_s is None or (self._rows_since < STRIDE_AFTER_ROWS and elapsed < 1.0):
            return
        # the requests offered, each worth the rows a counted one gave
        offered = self._offered * self._rows_since / max(self._taken, 1)
        self.stride = max(1, round(offered / max(elapsed, 1e-3) / self.max_rows_per_s))
        self._skip = min(self._skip, 2 * self.stride - 2)  # a gap drawn for a larger stride
        self._rate_since, self._rows_since, self._offered, self._taken = now, 0, 0, 0

    def _count(self, feed: Feed, prediction: Prediction) -> Array:
        lo, parts = self._bounds, []
        cols = self._columns.columns(feed)
        if self._numeric is not None:
            parts.append(self._numeric.counts(self._numeric_block(feed, cols)))
        parts += [buckets.counts(cols[name]) for name, buckets in self._categories]
        if self._pred_classes is not None and prediction.labels is not None:
            parts.append(self._pred_classes.counts(prediction.labels.ravel()))
        elif self._pred_classes is not None:
            parts.append(np.zeros(lo[-2] - lo[-3], dtype=np.int64))
        if self._pred_values is not None:
            values = prediction.values
            if values is not None:
                parts.append(self._pred_values.counts(values.reshape(len(values), -1)[:, :1]))
            else:
                parts.append(np.zeros(self._pred_values.total, dtype=np.int64))
        return np.concatenate(parts).astype(np.int64) if parts else self._totals[:0]

    def _numeric_block(self, feed: Feed, cols: dict[str, Array]) -> Array:
        block = self._columns.block
        names = self._numeric_names
        if block is not None and len(names) == len(self._columns.places):
            return feed.arrays[block]  # the model's one float tensor is the block itself
        return np.column_stack([cols[name] for name in names])

    def _evict(self) -> None:
        chunks = self._chunks
        oldest = self._clock() - self.window_s
        while chunks and (chunks[0][0] < oldest or self._rows - chunks[0][1] >= self.window_rows):
            _, n, counts = chunks.popleft()
            self._totals -= counts
            self._rows -= n

    def report(self) -> tuple[int, list[Histogram], Histogram | None]:
        """(rows in the window, each feature's histogram and PSI, the predictions' or None)."""
        self.flush()
        b, totals = self._bounds, self._totals
        out: list[Histogram] = []
        if self._numeric is not None:
            per_feature = self._numeric.split(totals[b[0] : b[1]])
            for i, name in enumerate(self._numeric_names):
                out.append(
                    _histogram(
                        name, "numeric", self._numeric.labels[i], self._numeric.expected[i], per_feature[i]
                    )
                )
        for j, (name, buckets) in enumerate(self._categories):
            out.append(
                _histogram(name, "categorical", buckets.labels, buckets.expected, totals[b[1 + j] : b[2 + j]])
            )
        prediction = None
        if self._pred_classes is not None:
            c = self._pred_classes
            prediction = _histogram("prediction", "classes", c.labels, c.expected, totals[b[-3] : b[-2]])
        elif self._pred_values is not None:
            v = self._pred_values
            prediction = _histogram("prediction", "values", v.labels[0], v.expected[0], totals[b[-2] : b[-1]])
        order = {s.name: i for i, s in enumerate(self._columns.specs)}
        out.sort(key=lambda h: order.get(h.name, 0))
        return self._rows, out, prediction


def _histogram(name: str, kind: str, labels: list[str], expected: Array, counts: Array) -> Histogram:
    return Histogram(name, kind, psi(counts, expected), labels, expected.tolist(), counts.tolist())


def _joined(arrays: tuple[Array | None, ...]) -> Array | None:
    if arrays[0] is None:
        return None
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]  # type: ignore[arg-type]
