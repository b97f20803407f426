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

from bundlegate import onnx_check
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


def refuse_external_data(model_bytes: bytes) -> None:
    """Raise ``UnsafePath`` if any tensor of the ONNX model keeps its data outside the file.

    The protobuf wire-format walk of ``onnx_check`` (no ``onnx`` package needed). onnxruntime finds
    an external file only through a ``location`` entry, so a model without those bytes anywhere needs
    no walk.
    """
    if b"location" not in model_bytes:
        return
    try:
        external = onnx_check.refers_to_external_data(model_bytes)
    except onnx_check.WireError:
        raise BundleError("model.onnx is not a valid ONNX protobuf") from None
    if external:
        raise UnsafePath("model.onnx refers to external data, which bundles may not use")
