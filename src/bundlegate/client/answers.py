"""What ``bundlegate.client`` returns: ``Prediction`` (one record) and ``BatchPrediction`` (many rows), and
how a rows argument becomes a request's ``inputs``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from bundlegate.client.errors import error_from


@dataclass(frozen=True)
class Prediction:
    """One record's answer. ``probabilities`` is keyed by class (classifiers); ``classes`` their order."""

    model: str
    version: int
    request_id: str
    prediction: Any
    probabilities: dict[str, float] | None = None
    classes: list[Any] | None = None
    targets: list[str] | None = None


@dataclass(frozen=True)
class BatchPrediction:
    """Many rows' answers. Each row of ``probabilities`` is in ``classes`` order; each row of a
    multi-output regressor's ``predictions`` in ``targets`` order, where the targets were named."""

    model: str
    version: int
    request_id: str
    predictions: list[Any]
    probabilities: list[list[float]] | None = None
    classes: list[Any] | None = None
    targets: list[str] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    def probability_records(self) -> list[dict[str, float]]:
        """Each row's probabilities keyed by class, as a single answer gives them."""
        if self.probabilities is None or self.classes is None:
            return []
        keys = [_class_key(c) for c in self.classes]
        return [dict(zip(keys, row, strict=True)) for row in self.probabilities]


def _class_key(c: Any) -> str:
    return ("true" if c else "false") if isinstance(c, bool) else str(c)


def batch_inputs(rows: Any) -> Any:
    """What ``predict_many`` sends as ``inputs``: a DataFrame becomes columns (NaN and NA as null);
    lists of records or rows and dicts of columns go as they are."""
    if hasattr(rows, "to_dict") and hasattr(rows, "columns"):  # a pandas DataFrame, without importing pandas
        frame = rows.astype(object).where(rows.notna(), None)
        return {str(k): v for k, v in frame.to_dict(orient="list").items()}
    if isinstance(rows, Mapping) or (isinstance(rows, Sequence) and not isinstance(rows, str | bytes)):
        return rows if isinstance(rows, Mapping) else list(rows)
    raise TypeError("rows must be a pandas DataFrame, a list of records or rows, or a dict of columns")


def answer_from(response: httpx.Response, batch: bool) -> Prediction | BatchPrediction:
    if response.status_code != 200:
        raise error_from(response)
    body = response.json()
    head = {"model": body["model"], "version": body["version"], "request_id": body["request_id"]}
    names = {"classes": body.get("classes"), "targets": body.get("targets")}
    if batch:
        return BatchPrediction(
            **head,
            predictions=body["predictions"],
            probabilities=body.get("probabilities"),
            raw=body,
            **names,
        )
    return Prediction(**head, prediction=body["prediction"], probabilities=body.get("probabilities"), **names)
