"""Bundle admission: what a bundle version must show before the gateway serves it.

Reading (``bundle.read_bundle``) already holds a bundle to its shape and digests, its model file to
``max_model_bytes`` and its manifest to the digest beside it (and, with trusted keys, a signature).
This module adds what needs the model itself:

- ``admit_onnx(model_bytes)``: the ONNX file holds only standard operator domains (and those the
  operator admits with ``--onnx-domains``: skl2onnx converts text pipelines with ``com.microsoft``
  operators, which onnxruntime implements itself) and no external data
  (``bundlegate.onnx_check``), checked in a child process whose address space is capped, before
  onnxruntime sees a byte of it;
- ``check_answers(manifest, prediction, rows)``: the model's outputs fit the manifest (one label and
  one probability per declared class for each row, one value per row), so a bundle whose classes
  disagree with its model fails at load instead of answering 500 to every request;
- ``compare_with_expected(...)``: the answers to the stored sample rows are the answers stored at
  pack time (``expected.json``), within the parity tolerance; the warm-up replays them, so a model
  file or manifest that no longer reproduces them is refused.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np

from bundlegate import onnx_check
from bundlegate.bundle import Bundle
from bundlegate.errors import BundleError, UnsafePath
from bundlegate.feed import Prediction
from bundlegate.manifest import Manifest

CHECK_TIMEOUT_S = 120.0
# the checking process's address space: the interpreter's own ~30 MiB, the model read from stdin
# (twice, in a bad case), and room for the walk
CHECK_BASE_BYTES = 256 * 1024 * 1024


def admit_onnx(
    model_bytes: bytes, extra_domains: tuple[str, ...] = (), *, timeout_s: float = CHECK_TIMEOUT_S
) -> None:
    """Raise ``UnsafePath`` (external data) or ``BundleError`` unless ``model_bytes`` passes
    ``bundlegate.onnx_check`` in a child process (see the module docstring); operators of
    ``extra_domains`` are admitted too (``--onnx-domains``)."""
    limit = CHECK_BASE_BYTES + 2 * len(model_bytes)
    command = [sys.executable, "-I", "-S", onnx_check.__file__, str(limit), *extra_domains]
    try:
        done = subprocess.run(command, input=model_bytes, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise BundleError(f"the ONNX admission check did not finish in {timeout_s:g} s") from None
    if done.returncode == 0:
        return
    reasons = done.stdout.decode("utf-8", "replace").strip().splitlines()
    if done.returncode != onnx_check.REFUSED or not reasons:
        raise BundleError(
            f"the ONNX admission check failed (exit {done.returncode}: out of memory or crashed); "
            "the model is refused"
        )
    message = "model refused: " + "; ".join(reasons[:5])
    if any("external data" in r for r in reasons):
        raise UnsafePath(message)
    raise BundleError(message)


def check_answers(manifest: Manifest, prediction: Prediction, rows: int) -> None:
    """Raise ``BundleError`` unless ``prediction`` (for ``rows`` rows) has the shape the manifest
    promises: a label per row, a probability per declared class, a value per row."""
    classes = manifest.classes or []
    outputs = manifest.outputs
    labels, probabilities, values = prediction.labels, prediction.probabilities, prediction.values
    if outputs.label is not None and labels is not None and np.asarray(labels).shape[0] != rows:
        raise BundleError(f"the model gives {len(labels)} labels for {rows} rows")
    if outputs.probabilities is not None and probabilities is not None:
        shape = np.asarray(probabilities).shape
        if len(shape) != 2 or shape[0] != rows or (classes and shape[1] != len(classes)):
            width = shape[1] if len(shape) == 2 else "?"
            raise BundleError(
                f"the model's probabilities have {width} columns, bundle.json declares {len(classes)} classes"
            )
    if outputs.value is not None and values is not None and np.asarray(values).shape[0] != rows:
        raise BundleError(f"the model gives {len(values)} values for {rows} rows")


def compare_with_expected(prediction: Prediction, expected: Any, tolerance: float, rows: int) -> float:
    """The largest difference between ``prediction`` (of the first ``rows`` sample rows) and the
    answers stored at pack time; ``BundleError`` when labels differ or a difference passes
    ``tolerance``."""
    if not isinstance(expected, dict):
        raise BundleError("verification failed: the stored answers are not a JSON object")
    diff = 0.0
    if "labels" in expected:
        want_labels = list(expected["labels"])[:rows]
        got = [] if prediction.labels is None else np.asarray(prediction.labels).reshape(-1).tolist()
        if got != want_labels:
            bad = sum(a != b for a, b in zip(got, want_labels, strict=False))
            raise BundleError(f"verification failed: {bad or 'all'} of {rows} sample labels differ")
    for key, actual in (("probabilities", prediction.probabilities), ("values", prediction.values)):
        if key not in expected:
            continue
        try:
            want = np.asarray(expected[key], dtype=np.float64)[:rows]
        except (TypeError, ValueError):
            raise BundleError(f"verification failed: the stored {key} are not numbers") from None
        if actual is None or np.asarray(actual).size != want.size:
            raise BundleError(f"verification failed: the model gives no {key} of the stored shape")
        d = float(np.max(np.abs(np.asarray(actual, dtype=np.float64).reshape(want.shape) - want), initial=0))
        if not d <= tolerance:
            raise BundleError(
                f"verification failed: {key} differ from the stored ones by {d:.3g} (tolerance {tolerance:g})"
            )
        diff = max(diff, d)
    return diff


def tolerance_of(manifest: Manifest) -> float:
    """The parity tolerance recorded at pack time (1e-4 when there is none)."""
    return manifest.parity.tolerance if manifest.parity is not None else 1e-4


def check_sample_answers(bundle: Bundle, prediction: Prediction, rows: int) -> None:
    """The warm-up's check of the answers to the first ``rows`` stored sample rows: their shape
    (``check_answers``) and, when the bundle stores them, the pack-time answers
    (``compare_with_expected``). ``BundleError`` refuses the version."""
    manifest = bundle.manifest
    check_answers(manifest, prediction, rows)
    if manifest.expected_file is None:
        return
    try:
        expected = json.loads(bundle.read_file(manifest.expected_file))
    except ValueError:
        raise BundleError(f"{manifest.expected_file} is not valid JSON") from None
    compare_with_expected(prediction, expected, tolerance_of(manifest), rows)
