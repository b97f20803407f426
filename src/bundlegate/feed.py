"""What a model takes and gives: ``Feed`` (one array per ONNX input, ``[n_rows, k]``) and ``Prediction``
(labels, probabilities, values for those rows).

``CompiledSchema`` (``bundlegate.schema``) turns requests into feeds and predictions into answers; the
batching queue concatenates feeds and slices predictions; the runtimes turn one into the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class Feed:
    """The model input: ONNX input name → array of shape ``[n_rows, k]``, and the row count."""

    arrays: dict[str, Array]
    n_rows: int

    @staticmethod
    def concat(feeds: Sequence[Feed]) -> Feed:
        """One feed holding the rows of ``feeds`` in order (for a batch of several requests)."""
        if len(feeds) == 1:
            return feeds[0]
        names = feeds[0].arrays.keys()
        return Feed(
            {n: np.concatenate([f.arrays[n] for f in feeds]) for n in names},
            sum(f.n_rows for f in feeds),
        )


@dataclass(frozen=True, slots=True)
class Prediction:
    """What a model returns for ``n`` rows; absent outputs are ``None``.

    ``labels`` hold the original classes (shape ``[n]``), ``probabilities`` shape ``[n, n_classes]`` in
    the manifest's class order, ``values`` shape ``[n]`` or ``[n, k]`` (regressors, transforms).
    """

    labels: Array | None = None
    probabilities: Array | None = None
    values: Array | None = None

    def rows(self, start: int, stop: int) -> Prediction:
        """The prediction of rows ``start:stop`` only (views, no copies)."""
        return Prediction(
            None if self.labels is None else self.labels[start:stop],
            None if self.probabilities is None else self.probabilities[start:stop],
            None if self.values is None else self.values[start:stop],
        )
