"""Loaded bundle versions: ``OnnxModel`` (the default) and ``SklearnModel`` (the opt-in pickle fallback).

``load_model(bundle)`` reads the model file once (``Bundle.read_file``: size and sha256 checked against
``bundle.json``) and builds the model from those verified bytes, so the file cannot change between
check and use::

    model = load_model(bundle, ort_threads=1, allow_pickle=False)
    prediction = model.predict(feed)          # blocking; onnxruntime releases the GIL

One ``onnxruntime.InferenceSession`` per bundle version: intra-op threads from the settings, one
inter-op thread, sequential execution, all graph optimisations, no spinning threads (the gateway
shares its cores with the event loop). ONNX external data is refused before onnxruntime sees the
bytes: a model loaded from memory would resolve external paths against the working directory.

A ``runtime: sklearn`` bundle is unpickled only when the operator allows pickles *and* the installed
libraries are exactly the versions the bundle was made with (DESIGN.md §6; ``sklearn_model``);
sklearn, joblib and pandas are imported only then.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort

from bundlegate.admission import admit_onnx
from bundlegate.bundle import Bundle
from bundlegate.dtypes import ONNX
from bundlegate.errors import BundleError, DeadlineExceeded, UnsafePath, shorten
from bundlegate.feed import Feed, Prediction
from bundlegate.manifest import Manifest
from bundlegate.sklearn_model import SklearnModel

__all__ = [
    "Model",
    "OnnxModel",
    "Prediction",
    "SklearnModel",
    "StoppableRun",
    "load_model",
    "refuse_external_data",
]


class OnnxModel:
    """A bundle version served by onnxruntime."""

    runtime = "onnx"

    def __init__(self, manifest: Manifest, model_bytes: bytes, *, ort_threads: int = 1) -> None:
        refuse_external_data(model_bytes)
        self.manifest = manifest
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, ort_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                model_bytes, sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own (non-exported) error types
            raise BundleError(f"onnxruntime cannot load {manifest.model_file}: {shorten(str(exc))}") from None
        declared = {i.name: i for i in manifest.onnx_inputs}
        actual = {i.name: i for i in self.session.get_inputs()}
        if set(declared) != set(actual):
            raise BundleError(
                f"{manifest.model_file} has inputs {sorted(actual)}, bundle.json declares {sorted(declared)}"
            )
        for name, spec in declared.items():
            node = actual[name]
            width = node.shape[1] if len(node.shape) == 2 else None
            if node.type != ONNX[spec.dtype] or (isinstance(width, int) and width != len(spec.features)):
                raise BundleError(
                    f"{manifest.model_file} input {name!r} is {node.type} {node.shape}, but bundle.json "
                    f"declares {spec.dtype} with {len(spec.features)} feature(s)"
                )
        outputs = manifest.outputs
        wanted = [
            outputs.label.onnx_name if outputs.label else None,
            outputs.probabilities.onnx_name if outputs.probabilities else None,
            outputs.value.onnx_name if outputs.value else None,
        ]
        self._names = [n for n in wanted if n is not None]
        # where each of (labels, probabilities, values) is in session.run's result list, or -1
        self._at = [self._names.index(n) if n is not None else -1 for n in wanted]
        missing = set(self._names) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise BundleError(
                f"{manifest.model_file} has no output(s) {sorted(missing)} named in bundle.json"
            )
        self._classes = manifest.classes or []

    def predict(self, feed: Feed, run_options: Any = None) -> Prediction:
        """Run the model on every row of ``feed`` (blocking)."""
        results = self.session.run(self._names, feed.arrays, run_options)
        labels, proba, values = (results[i] if i >= 0 else None for i in self._at)
        if isinstance(proba, list):  # a ZipMap output: one {class: p} per row
            proba = np.array([[row[c] for c in self._classes] for row in proba], dtype=np.float32)
        return Prediction(labels, proba, values)

    def stoppable(self) -> StoppableRun:
        """A ``predict`` call that ``stop()`` can end before it is done (a deadline passed)."""
        return StoppableRun(self)


class StoppableRun:
    """One ``predict`` call of an ``OnnxModel`` that ``stop()``, from any thread, ends early:
    onnxruntime checks its run options' ``terminate`` flag between the graph's nodes (inside
    loops too), so the call returns within about one node's time and its thread is free again.
    A stopped call raises ``DeadlineExceeded``."""

    __slots__ = ("_model", "_options", "stopped")

    def __init__(self, model: OnnxModel) -> None:
        self._model = model
        self._options = ort.RunOptions()
        self._options.log_severity_level = 4  # a terminated run is not an error worth a log line
        self.stopped = False

    def predict(self, feed: Feed) -> Prediction:
        try:
            return self._model.predict(feed, self._options)
        except Exception:
            if self.stopped:
                raise DeadlineExceeded("the request deadline passed during inference") from None
            raise

    def stop(self) -> None:
        self.stopped = True
        self._options.terminate = True


Model = OnnxModel | SklearnModel


def load_model(
    bundle: Bundle, *, ort_threads: int = 1, allow_pickle: bool = False, onnx_domains: tuple[str, ...] = ()
) -> Model:
    """The model of one bundle version, from its verified model file.

    Raises ``BundleError`` (or a subclass) with the reason: digest mismatch, external data, a pickle
    without ``allow_pickle`` or for another scikit-learn version, a model onnxruntime cannot load.
    """
    manifest = bundle.manifest
    if manifest.runtime == "sklearn":
        if not allow_pickle:
            raise BundleError(
                "runtime sklearn bundles are pickles; start the gateway with --allow-pickle to load them"
            )
        return SklearnModel(manifest, bundle.read_file(manifest.model_file))
    model_bytes = bundle.read_file(manifest.model_file)
    admit_onnx(model_bytes, onnx_domains)
    return OnnxModel(manifest, model_bytes, ort_threads=ort_threads)


# ---------------------------------------------------------------------- external data check


# message kind -> {field number in onnx.proto: kind of the sub-message}, for fields that hold tensors
# or messages holding tensors; every other field is skipped by its wire type.
_CHILDREN: dict[str, dict[int, str]] = {
    "model": {7: "graph", 20: "training", 25: "function"},
    "training": {1: "graph", 2: "graph"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "function": {7: "node"},
    "node": {5: "attribute"},
    "attribute": {5: "tensor", 6: "graph", 10: "tensor", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {},
}
_TENSOR_EXTERNAL_DATA = 13
_TENSOR_DATA_LOCATION = 14
_MAX_DEPTH = 64


def refuse_external_data(model_bytes: bytes) -> None:
    """Raise ``UnsafePath`` if any tensor of the ONNX model keeps its data outside the file.

    A small protobuf wire-format walk over the messages that can hold tensors (graphs, nodes,
    attributes, functions, sparse tensors), so the runtime needs no ``onnx`` package. onnxruntime
    finds an external file only through a ``location`` entry, so a model without those bytes
    anywhere needs no walk (which matters: tree ensembles hold millions of unpacked integers).
    """
    if b"location" not in model_bytes:
        return
    try:
        _walk(memoryview(model_bytes), "model", 0)
    except _WireError:
        raise BundleError("model.onnx is not a valid ONNX protobuf") from None


class _WireError(Exception):
    pass


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _WireError
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _walk(buf: memoryview, kind: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _WireError
    children = _CHILDREN[kind]
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            if kind == "tensor" and field == _TENSOR_DATA_LOCATION and value == 1:
                raise UnsafePath("model.onnx refers to external data, which bundles may not use")
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = _varint(buf, pos)
            end = pos + length
            if end > len(buf):
                raise _WireError
            if kind == "tensor" and field == _TENSOR_EXTERNAL_DATA:
                raise UnsafePath("model.onnx refers to external data, which bundles may not use")
            child = children.get(field)
            if child is not None:
                _walk(buf[pos:end], child, depth + 1)
            pos = end
        else:
            raise _WireError
    if pos != len(buf):
        raise _WireError
