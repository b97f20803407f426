"""skl2onnx conversion of a fitted estimator into the ONNX layout bundles use.

- ``numeric``: one input ``input`` [N, n] (float32, or float64 for the double-precision conversion).
- ``mixed``: one input per feature [N, 1], named after it: ``string`` for text columns, float otherwise.
- ``text``: one string input ``input`` [N, 1].

Classifiers: no ZipMap, so the probabilities are a plain [N, k] tensor in ``classes_`` order and the label
a [N] tensor. Text vectorizers lower-case with the ``C`` locale (present everywhere; the parity gate
catches text where that differs from Python's ``str.lower``).

Missing strings reach the model as ``""`` (``schema.MISSING_STRING``): a ``SimpleImputer`` that was
fitted on string columns with ``missing_values=nan`` is converted as if it had been
``missing_values=""`` (a copy; the user's estimator is not changed), so the imputer still fills them.
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from bundlegate.errors import ConversionFailed
from bundlegate.manifest import OnnxInput
from bundlegate.packer.schema_inference import ModelSchema, column_routes, final_estimator, steps_of

Precision = Literal["float32", "float64"]
OPSET = 17
ML_OPSET = 3


@dataclass(frozen=True)
class Converted:
    onnx_bytes: bytes
    onnx_inputs: list[OnnxInput]
    precision: Precision
    output_names: list[str]
    opset: int


def convert(est: Any, schema: ModelSchema, precision: Precision) -> Converted:
    """Convert ``est``; ``ConversionFailed`` with skl2onnx's reason when it cannot."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = FloatTensorType if precision == "float32" else DoubleTensorType
    names = schema.names
    if schema.mode == "numeric":
        initial = [("input", number([None, len(names)]))]
        onnx_inputs = [OnnxInput(name="input", dtype=precision, features=names)]
    elif schema.mode == "text":
        initial = [("input", StringTensorType([None, 1]))]
        onnx_inputs = [OnnxInput(name="input", dtype="string", features=names)]
    else:
        strings = schema.string_features
        initial = [(n, StringTensorType([None, 1]) if n in strings else number([None, 1])) for n in names]
        onnx_inputs = [
            OnnxInput(name=n, dtype="string" if n in strings else precision, features=[n]) for n in names
        ]
    model = _for_conversion(est, schema)
    options: dict[int, dict[str, Any]] = {}
    if schema.task == "classification":
        for step in _classifiers(model):
            options[id(step)] = {"zipmap": False}
    if schema.mode == "text":
        # onnxruntime's StringNormalizer defaults to en_US.UTF-8, which slim images do not have
        options[id(steps_of(model)[0])] = {"locale": "C"}
    try:
        with warnings.catch_warnings():
            # skl2onnx reads attributes scikit-learn has deprecated; that is not the user's concern
            warnings.simplefilter("ignore")
            onx = convert_sklearn(
                model,
                name=type(est).__name__,  # the graph name; skl2onnx would pick a random one
                initial_types=initial,
                options=options,
                target_opset={"": OPSET, "ai.onnx.ml": ML_OPSET},
            )
    except Exception as exc:  # skl2onnx raises RuntimeError, NotImplementedError, ValueError, ...
        raise ConversionFailed(
            f"skl2onnx cannot convert {_describe(est)} ({precision}): {type(exc).__name__}: {_short(exc)}"
        ) from None
    return Converted(
        onnx_bytes=onx.SerializeToString(),
        onnx_inputs=onnx_inputs,
        precision=precision,
        output_names=[o.name for o in onx.graph.output],
        opset=OPSET,
    )


def _classifiers(model: Any) -> list[Any]:
    """Every object whose zipmap option must be off: the model and its final step."""
    found = [model]
    last = final_estimator(model)
    if last is not model:
        found.append(last)
    return found


def _for_conversion(est: Any, schema: ModelSchema) -> Any:
    """``est`` itself, or a copy whose string imputers treat ``""`` as missing (see module docs)."""
    from sklearn.impute import SimpleImputer

    strings = schema.string_features
    if not strings:
        return est
    needs = []
    for feature, routes in column_routes(est).items():
        if feature not in strings:
            continue
        for steps, _ in routes:
            for step in steps:
                if isinstance(step, SimpleImputer) and _is_nan(step.missing_values):
                    needs.append(id(step))
    if not needs:
        return est
    clone = copy.deepcopy(est)
    # deepcopy keeps the structure, so the same walk finds the copies of the imputers
    for (_, routes_a), (_, routes_b) in zip(
        column_routes(est).items(), column_routes(clone).items(), strict=True
    ):
        for (steps_a, _), (steps_b, _) in zip(routes_a, routes_b, strict=True):
            for a, b in zip(steps_a, steps_b, strict=True):
                if id(a) in needs:
                    b.missing_values = ""
    return clone


def _is_nan(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _describe(est: Any) -> str:
    steps = steps_of(est)
    if len(steps) == 1:
        return type(est).__name__
    return f"{type(est).__name__}({' → '.join(type(s).__name__ for s in steps)})"


def _short(exc: BaseException, limit: int = 240) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"
