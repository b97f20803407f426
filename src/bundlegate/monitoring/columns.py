"""Where each input feature sits in a model's feed: ``FeatureColumns``.

A feed holds one array per ONNX input, ``[n_rows, k]``; a numeric model has one float tensor fed by
every feature, a mixed pipeline one tensor per feature. Monitoring reads features by name, so it keeps
the (tensor, column) of each, laid out as ``decoding`` lays them (``manifest.onnx_inputs``, or for
runtime sklearn one ``X`` tensor when every feature is a number and one tensor per feature otherwise).
"""

from __future__ import annotations

from bundlegate.dtypes import NUMERIC
from bundlegate.feed import Array, Feed
from bundlegate.manifest import InputSpec, Manifest


class FeatureColumns:
    """The feature → (tensor, column) map of one bundle version."""

    def __init__(self, manifest: Manifest) -> None:
        self.specs: tuple[InputSpec, ...] = tuple(manifest.inputs)
        by_name = {s.name: s for s in self.specs}
        places: dict[str, tuple[str, int]] = {}
        if manifest.onnx_inputs:
            for tensor in manifest.onnx_inputs:
                for column, feature in enumerate(tensor.features):
                    places[feature] = (tensor.name, column)
        elif all(s.dtype in NUMERIC for s in self.specs):
            places = {s.name: ("X", i) for i, s in enumerate(self.specs)}
        else:
            places = {s.name: (s.name, 0) for s in self.specs}
        self.places = tuple((name, *places[name]) for name in by_name if name in places)
        # numeric models: every feature in one tensor, column i holding feature i (the tensor is the rows)
        tensors = {tensor for _, tensor, _ in self.places}
        in_order = [column for _, _, column in self.places] == list(range(len(self.specs)))
        self.block = next(iter(tensors)) if len(tensors) == 1 and in_order else None

    def columns(self, feed: Feed) -> dict[str, Array]:
        """Each feature's values for the feed's rows (views, no copies)."""
        arrays = feed.arrays
        return {name: arrays[tensor][:, column] for name, tensor, column in self.places}
