"""Ground truth joined to the predictions it answers: ``FeedbackStore`` and ``LiveScore``.

``remember(request_id, model, version, prediction)`` keeps a prediction (a reference to its arrays,
no copy, no decoding) under its request id, in insertion order, for ``ttl_s`` seconds and while the
store holds at most ``max_rows`` rows: the oldest go first. A forgotten id is remembered (ids only,
as many as the store holds predictions) so that feedback arriving after it is told "late" rather
than "unknown". ``find`` looks one up for a model; an id of another model is unknown to it.

``LiveScore`` keeps the last ``window`` matched rows of one version: whether the label was right
(classifiers, ``accuracy``) or the absolute error (regressors, ``mae``).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from bundlegate.feed import Prediction


@dataclass(frozen=True, slots=True)
class Remembered:
    model: str
    version: int
    prediction: Prediction
    rows: int
    at: float


class FeedbackStore:
    """Predictions by request id, bounded in rows and time (see the module docstring)."""

    def __init__(self, ttl_s: float, max_rows: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_rows = max_rows
        self._clock = clock
        self._entries: OrderedDict[str, Remembered] = OrderedDict()
        self._rows = 0
        self._forgotten: OrderedDict[str, str] = OrderedDict()  # request id -> model

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, request_id: str, model: str, version: int, prediction: Prediction, rows: int) -> None:
        now = self._clock()
        self._entries[request_id] = Remembered(model, version, prediction, rows, now)
        self._rows += rows
        if self._rows > self.max_rows or len(self._entries) & 255 == 0:
            self._expire(now)

    def find(self, request_id: str, model: str) -> Remembered | str:
        """The prediction ``request_id`` got from ``model``, else ``"late"`` (it was kept, and is
        no more) or ``"unknown"``."""
        self._expire(self._clock())
        entry = self._entries.get(request_id)
        if entry is not None and entry.model == model:
            return entry
        return "late" if self._forgotten.get(request_id) == model else "unknown"

    def _expire(self, now: float) -> None:
        entries, oldest = self._entries, now - self.ttl_s
        while entries:
            request_id, first = next(iter(entries.items()))
            if first.at >= oldest and self._rows <= self.max_rows:
                break
            entries.popitem(last=False)
            self._rows -= first.rows
            self._forgotten[request_id] = first.model
        while len(self._forgotten) > max(len(entries), 1024):
            self._forgotten.popitem(last=False)


class LiveScore:
    """The last ``window`` matched rows of one version: accuracy or mean absolute error."""

    def __init__(self, window: int) -> None:
        self._scores: deque[float] = deque(maxlen=window)
        self._sum = 0.0

    def add(self, score: float) -> None:
        if len(self._scores) == self._scores.maxlen:
            self._sum -= self._scores[0]
        self._scores.append(score)
        self._sum += score

    @property
    def count(self) -> int:
        return len(self._scores)

    @property
    def mean(self) -> float | None:
        """Accuracy (scores 0/1) or MAE (absolute errors) over the window; None before any."""
        return self._sum / len(self._scores) if self._scores else None
