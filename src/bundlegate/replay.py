"""Replay a bundle's stored sample rows through its model and compare with the stored answers.

``bundle pack`` stores ``sample.json`` (rows) and ``expected.json`` (the original model's answers for
them); ``replay`` runs those rows through the gateway's own decoding and runtime, so a bundle that
replays answers what the gateway will answer::

    rows, max_abs_diff = replay(bundle)            # BundleError naming what differs
"""

from __future__ import annotations

import json
from typing import Any

from bundlegate.admission import check_answers, compare_with_expected, tolerance_of
from bundlegate.bundle import Bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import BundleError
from bundlegate.runtime import Model, load_model


def replay(
    bundle: Bundle,
    *,
    allow_pickle: bool = False,
    model: Model | None = None,
    onnx_domains: tuple[str, ...] = (),
) -> tuple[int, float]:
    """Predict the stored sample rows and compare them with the stored answers: answers of the shape
    the manifest declares, labels equal, probabilities and values within the manifest's parity
    tolerance (``bundlegate.admission``, which the gateway's warm-up runs too). Returns (rows,
    largest absolute difference); ``(0, 0.0)`` for a bundle without stored rows (its model is still
    loaded)."""
    m = bundle.manifest
    if model is None:
        model = load_model(bundle, allow_pickle=allow_pickle, onnx_domains=onnx_domains)
    if m.sample_file is None or m.expected_file is None:
        return 0, 0.0
    try:
        rows = json.loads(bundle.read_file(m.sample_file))
        expected: dict[str, Any] = json.loads(bundle.read_file(m.expected_file))
    except ValueError:
        raise BundleError(f"{m.sample_file} or {m.expected_file} is not valid JSON") from None
    pred = model.predict(CompiledSchema(m).from_records(rows))
    check_answers(m, pred, len(rows))
    return len(rows), compare_with_expected(pred, expected, tolerance_of(m), len(rows))
