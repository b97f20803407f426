"""Model outputs → JSON-ready answers (DESIGN.md §3): ``Answers``, built once per bundle version.

    decode_one(prediction)    {"prediction": label or value, "probabilities": {class: p}}
    decode_batch(prediction)  {"predictions": [...], "probabilities": [[p, ...], ...]}
    encode_batch(prediction)  decode_batch's JSON, numeric outputs left as numpy arrays for orjson

``/v1`` writes these fields into its answers; ``/v2`` and offline scoring take their columns.

Probabilities and values keep their float32 digits (``_shortest``); boolean classes come back as
``true``/``false`` whatever onnxruntime returned for them (0/1 or strings).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from bundlegate.feed import Prediction
from bundlegate.manifest import Manifest


class Answers:
    """How the predictions of one bundle version are written as JSON."""

    def __init__(self, manifest: Manifest) -> None:
        self._label_lookup = self._labels(manifest)
        self._class_keys = (
            [json_key(c) for c in manifest.outputs.label.classes] if manifest.outputs.label else []
        )
        self.names = output_names(manifest)

    @staticmethod
    def _labels(manifest: Manifest) -> dict[Any, Any] | None:
        label = manifest.outputs.label
        if label is None or not label.classes or not isinstance(label.classes[0], bool):
            return None
        return {0: False, 1: True, "False": False, "True": True}  # 0/1 also match False/True

    def decode_one(self, prediction: Prediction) -> dict[str, Any]:
        """The first row as JSON-ready Python: ``{"prediction": ..., "probabilities": {class: p}}``."""
        out = self.decode_batch(prediction)
        result: dict[str, Any] = {"prediction": out["predictions"][0]}
        if "probabilities" in out:
            result["probabilities"] = dict(zip(self._class_keys, out["probabilities"][0], strict=True))
        return result

    def encode_batch(self, prediction: Prediction) -> dict[str, Any]:
        """``decode_batch`` for ``orjson.dumps(..., option=orjson.OPT_SERIALIZE_NUMPY)``: numeric
        labels, values and probabilities stay numpy arrays, which orjson writes in C (no Python list
        of floats, no round trip through ``_shortest``); the JSON is exactly ``decode_batch``'s."""
        labels, probabilities, values = prediction.labels, prediction.probabilities, prediction.values
        if (
            (labels is not None and (labels.dtype.kind not in "iuf" or self._label_lookup is not None))
            or (probabilities is not None and probabilities.dtype.kind != "f")
            or (values is not None and values.dtype.kind != "f")
        ):
            return self.decode_batch(prediction)
        result: dict[str, Any] = {}
        if labels is not None:
            result["predictions"] = np.ascontiguousarray(labels.ravel())
        elif values is not None:
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            result["predictions"] = np.ascontiguousarray(values)
        if probabilities is not None:
            result["probabilities"] = np.ascontiguousarray(probabilities)
        return result

    def decode_batch(self, prediction: Prediction) -> dict[str, Any]:
        """Every row: ``{"predictions": [...], "probabilities": [[p, ...], ...]}`` (classes order)."""
        result: dict[str, Any] = {}
        if prediction.labels is not None:
            labels = prediction.labels.ravel().tolist()
            if self._label_lookup is not None:
                labels = [self._label_lookup.get(v, v) for v in labels]
            result["predictions"] = labels
        elif prediction.values is not None:
            values = prediction.values
            if values.ndim == 2 and values.shape[1] == 1:
                values = values[:, 0]
            result["predictions"] = _shortest(values)
        if prediction.probabilities is not None:
            result["probabilities"] = _shortest(prediction.probabilities)
        return result


def output_names(manifest: Manifest) -> dict[str, list[Any]]:
    """What every answer of a version names: a classifier's ``classes`` (the order of a batch answer's
    probability rows), a multi-output regressor's ``targets`` where training named them (the order of
    a batch answer's value rows)."""
    outputs = manifest.outputs
    if outputs.label is not None:
        return {"classes": list(outputs.label.classes)}
    if outputs.value is not None and outputs.value.targets:
        return {"targets": list(outputs.value.targets)}
    return {}


def json_key(c: object) -> str:
    """A class as a JSON object key: strings as they are, booleans as ``true``/``false``."""
    if isinstance(c, bool):
        return "true" if c else "false"
    return str(c)


def _shortest(array: npt.NDArray[Any]) -> Any:
    """``array.tolist()``, but float32 numbers keep their own shortest digits (0.98165685, not the
    0.9816568493843079 that widening to a Python float prints): the model computed float32, and the
    answer should not claim more precision than that. orjson writes numpy floats at their width."""
    if array.dtype != np.float32:
        return array.tolist()
    return orjson.loads(orjson.dumps(np.ascontiguousarray(array), option=orjson.OPT_SERIALIZE_NUMPY))
