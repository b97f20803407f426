"""The parity gate: the original estimator and its ONNX conversion on the same rows.

The ONNX model answers through the gateway's own path (``gateway_predictions``): the rows as JSON
records, as a client would send them, decoded by the version's ``CompiledSchema`` and run by
``runtime.OnnxModel``, so a bundle that passes answers what the gateway will answer. It passes when
every label agrees (or differs only on an exact tie of the top probabilities, counted in
``label_ties``) and the largest absolute difference of probabilities (classifiers) or values
(regressors) is within the tolerance:

- probabilities: ``PROBA_TOLERANCE`` (1e-4);
- values: ``VALUE_TOLERANCE`` (1e-5) relative to the largest absolute prediction, at least 1e-5 absolute.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from bundlegate.decoding import CompiledSchema
from bundlegate.manifest import Manifest, OnnxInput, Outputs, Parity, Source, utc_now
from bundlegate.packer.predictions import Predictions
from bundlegate.packer.reference import stored_rows
from bundlegate.packer.schema_inference import ModelSchema
from bundlegate.runtime import OnnxModel

if TYPE_CHECKING:
    import pandas as pd

PROBA_TOLERANCE = 1e-4
VALUE_TOLERANCE = 1e-5
_LONGEST_STRING = 2**24  # the string limit is the operator's setting, not the packer's


def predict_original(est: Any, schema: ModelSchema, frame: pd.DataFrame) -> Predictions:
    """The original estimator's answers for ``frame`` (feature columns in order)."""
    import numpy as np

    X = schema.original_input(frame)
    if schema.task == "classification":
        proba = np.asarray(est.predict_proba(X), dtype=np.float64) if schema.has_probabilities else None
        return Predictions(labels=np.asarray(est.predict(X)), probabilities=proba)
    return Predictions(values=np.asarray(est.predict(X), dtype=np.float64).reshape(len(frame), -1))


def draft_manifest(schema: ModelSchema, onnx_inputs: list[OnnxInput], outputs: Outputs) -> Manifest:
    """The parts of a manifest the gateway serves by, for a conversion not yet written."""
    return Manifest(
        name="draft",
        version=1,
        created_at=utc_now(),
        task=schema.task,
        source=Source(estimator="draft"),
        inputs=schema.inputs,
        onnx_inputs=onnx_inputs,
        outputs=outputs,
        files=[],
    )


def gateway_predictions(
    manifest: Manifest, onnx_bytes: bytes, schema: ModelSchema, frame: pd.DataFrame
) -> Predictions:
    """What the gateway answers for the rows of ``frame``, sent as JSON records."""
    import numpy as np

    records = stored_rows(schema, frame, rows=len(frame))
    decoder = CompiledSchema(manifest, max_rows=max(1, len(records)), max_string_length=_LONGEST_STRING)
    prediction = OnnxModel(manifest, onnx_bytes).predict(decoder.from_records(records))
    n = len(records)
    if schema.task == "classification":
        assert prediction.labels is not None
        proba = prediction.probabilities
        return Predictions(
            labels=np.asarray(prediction.labels).reshape(n),
            probabilities=None if proba is None else np.asarray(proba, dtype=np.float64),
        )
    assert prediction.values is not None
    return Predictions(values=np.asarray(prediction.values, dtype=np.float64).reshape(n, -1))


def compare(
    schema: ModelSchema,
    original: Predictions,
    converted: Predictions,
    sample: Literal["provided", "synthesized"],
) -> Parity:
    """How closely ``converted`` matches ``original``."""
    import numpy as np

    if schema.task == "classification":
        assert original.labels is not None
        assert converted.labels is not None
        rows = len(original.labels)
        same = [a == b for a, b in zip(original.labels.tolist(), converted.labels.tolist(), strict=True)]
        agreement = sum(same) / rows
        diff = None
        if original.probabilities is not None and converted.probabilities is not None:
            diff = float(np.max(np.abs(original.probabilities - converted.probabilities)))
        ties = _ties(schema, original, converted, same)
        differ = rows - sum(same) - ties
        passed = differ == 0 and (diff is None or diff <= PROBA_TOLERANCE)
        reason = None
        if not passed:
            reason = (
                f"{differ} of {rows} labels differ" if differ else ""
            ) or f"probabilities differ by up to {diff:.3g} (tolerance {PROBA_TOLERANCE:g})"
        return Parity(
            rows=rows,
            sample=sample,
            label_agreement=agreement,
            label_ties=ties,
            max_abs_diff_probabilities=diff,
            tolerance=PROBA_TOLERANCE,
            passed=passed,
            reason=reason,
        )
    assert original.values is not None
    assert converted.values is not None
    rows = len(original.values)
    scale = max(1.0, float(np.max(np.abs(original.values))) if rows else 1.0)
    tolerance = float(f"{VALUE_TOLERANCE * scale:.3g}")
    if original.values.shape != converted.values.shape:
        diff = float("inf")
    else:
        diff = float(np.max(np.abs(original.values - converted.values)))
    passed = diff <= tolerance
    return Parity(
        rows=rows,
        sample=sample,
        max_abs_diff_values=diff if np.isfinite(diff) else None,
        tolerance=tolerance,
        passed=passed,
        reason=None if passed else f"values differ by up to {diff:.3g} (tolerance {tolerance:g})",
    )


def _ties(schema: ModelSchema, original: Predictions, converted: Predictions, same: list[bool]) -> int:
    """Rows whose labels differ only because the top probabilities tie exactly (both labels are argmax).

    A forest with an even number of trees splits 50/50 on some rows; scikit-learn then answers the first
    class and onnxruntime another. Both are right; such rows are counted, not failed.
    """
    if original.probabilities is None or schema.classes is None:
        return 0
    assert original.labels is not None
    assert converted.labels is not None
    index = {c: i for i, c in enumerate(schema.classes)}
    ties = 0
    for row, ok in enumerate(same):
        if ok:
            continue
        a = index.get(
            original.labels[row].item() if hasattr(original.labels[row], "item") else original.labels[row]
        )
        b = index.get(
            converted.labels[row].item() if hasattr(converted.labels[row], "item") else converted.labels[row]
        )
        p = original.probabilities[row]
        if a is not None and b is not None and p[a] == p[b] == p.max():
            ties += 1
    return ties


def check_parity(
    est: Any,
    schema: ModelSchema,
    frame: pd.DataFrame,
    onnx_bytes: bytes,
    manifest: Manifest,
    sample: Literal["provided", "synthesized"],
    original: Predictions | None = None,
) -> tuple[Parity, Predictions]:
    """Run both models on ``frame``; returns the parity record and the original's predictions."""
    original = original or predict_original(est, schema, frame)
    converted = gateway_predictions(manifest, onnx_bytes, schema, frame)
    return compare(schema, original, converted, sample), original
