"""``Predictions``: a model's answers for sample rows, as the packer compares and stores them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class Predictions:
    """Labels (``[n]``) and probabilities (``[n, n_classes]``) of a classifier, or values (``[n, k]``)."""

    labels: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None

    def head(self, n: int) -> Predictions:
        """The first ``n`` rows."""
        return Predictions(
            labels=None if self.labels is None else self.labels[:n],
            probabilities=None if self.probabilities is None else self.probabilities[:n],
            values=None if self.values is None else self.values[:n],
        )
