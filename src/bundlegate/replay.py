"""Replay a bundle's stored sample rows through its model and compare with the stored answers.

``bundle pack`` stores ``sample.json`` (rows) and ``expected.json`` (the original model's answers for
them); ``replay`` runs those rows through the gateway's own decoding and runtime, so a bundle that
replays answers what the gateway will answer::

    rows, max_abs_diff = replay(bundle)            # BundleError naming what differs
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from bundlegate.bundle import Bundle
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import BundleError
from bundlegate.runtime import Model, load_model

DEFAULT_TOLERANCE = 1e-4


def replay(bundle: Bundle, *, allow_pickle: bool = False, model: Model | None = None) -> tuple[int, float]:
    """Predict the stored sample rows and compare them with the stored answers: labels equal,
    probabilities and values within the manifest's parity tolerance. Returns (rows, largest absolute
    difference); ``(0, 0.0)`` for a bundle without stored rows (its model is still loaded)."""
    m = bundle.manifest
    if model is None:
        model = load_model(bundle, allow_pickle=allow_pickle)
    if m.sample_file is None or m.expected_file is None:
        return 0, 0.0
    try:
        rows = json.loads(bundle.read_file(m.sample_file))
        expected: dict[str, Any] = json.loads(bundle.read_file(m.expected_file))
    except ValueError:
        raise BundleError(f"{m.sample_file} or {m.expected_file} is not valid JSON") from None
    pred = model.predict(CompiledSchema(m).from_records(rows))
    tolerance = m.parity.tolerance if m.parity is not None else DEFAULT_TOLERANCE
    diff = 0.0
    if "labels" in expected:
        got = [] if pred.labels is None else np.asarray(pred.labels).reshape(-1).tolist()
        if got != expected["labels"]:
            bad = sum(a != b for a, b in zip(got, expected["labels"], strict=False))
            raise BundleError(f"verification failed: {bad or 'all'} of {len(rows)} sample labels differ")
    for key, actual in (("probabilities", pred.probabilities), ("values", pred.values)):
        if key not in expected:
            continue
        want = np.asarray(expected[key], dtype=np.float64)
        if actual is None or np.asarray(actual).size != want.size:
            raise BundleError(f"verification failed: the model gives no {key} of the stored shape")
        d = float(np.max(np.abs(np.asarray(actual, dtype=np.float64).reshape(want.shape) - want)))
        if not d <= tolerance:
            raise BundleError(
                f"verification failed: {key} differ from the stored ones by {d:.3g} (tolerance {tolerance:g})"
            )
        diff = max(diff, d)
    return len(rows), diff
