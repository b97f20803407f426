"""skl2onnx conversion of a fitted estimator into the ONNX layout bundles use.

- ``numeric``: one input ``input`` [N, n] (float32, or float64 for the double-precision conversion).
- ``mixed``: one input per feature [N, 1], named after it: ``string`` for text columns, float otherwise.
- ``text``: one string input ``input`` [N, 1].

Classifiers: no ZipMap, so the probabilities are a plain [N, k] tensor in ``classes_`` order and the label
a [N] tensor. Text vectorizers tokenize and lower-case Unicode as scikit-learn does
(``converters.text_options``; the parity gate catches text where they still differ).

Missing strings reach the model as ``""`` (``schema.MISSING_STRING``): a ``SimpleImputer`` that was
fitted on string columns with ``missing_values=nan`` is converted as if it had been
``missing_values=""`` (a copy; the user's estimator is not changed), so the imputer still fills them.

The double-precision conversion (tried when float32 fails parity) keeps every number a double: numeric
inputs are float64, scalers divide in doubles (skl2onnx's ``div`` option), imputers become
``Where(IsNaN(x), statistics, x)`` (onnxruntime's ``Imputer`` is float32-only), and tree models get their
input rounded to float32 and back, because scikit-learn's trees compare ``float32(x)`` with float64
thresholds. skl2onnx's graph optimizer is off for it (it would drop that rounding).
"""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

from bundlegate.errors import ConversionFailed, shorten
from bundlegate.manifest import OnnxInput
from bundlegate.packer.converters import boost_library, catboost_onnx, extra_converters, text_options
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
    converter: str = "skl2onnx"  # what made the graph, for the manifest's provenance


def convert(est: Any, schema: ModelSchema, precision: Precision) -> Converted:
    """Convert ``est``; ``ConversionFailed`` with skl2onnx's reason when it cannot."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
    from sklearn.preprocessing import MaxAbsScaler, RobustScaler, StandardScaler

    if boost_library(est) == "catboost":
        return _catboost(est, schema, precision)
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
    if precision == "float64":
        # true division in doubles, as scikit-learn does, instead of the float32 Scaler operator
        for part in _fitted_parts(model):
            if isinstance(part, StandardScaler | RobustScaler | MaxAbsScaler):
                options[id(part)] = {"div": "div"}
    if schema.mode == "text":
        # onnxruntime's StringNormalizer defaults to en_US.UTF-8, which slim images do not have
        options[id(steps_of(model)[0])] = text_options(steps_of(model)[0])
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
                custom_conversion_functions=_converters(model, precision),
                model_optim=precision == "float32",  # the optimizer drops the float32 rounding casts
            )
    except Exception as exc:  # skl2onnx raises RuntimeError, NotImplementedError, ValueError, ...
        raise ConversionFailed(
            f"skl2onnx cannot convert {_describe(est)} ({precision}): "
            f"{type(exc).__name__}: {shorten(str(exc), 240)}"
        ) from None
    if schema.mode == "mixed":
        onnx_inputs = _graph_names(onnx_inputs, [i.name for i in onx.graph.input])
    return Converted(
        onnx_bytes=onx.SerializeToString(),
        onnx_inputs=onnx_inputs,
        precision=precision,
        output_names=[o.name for o in onx.graph.output],
        opset=OPSET,
    )


def _catboost(est: Any, schema: ModelSchema, precision: Precision) -> Converted:
    """CatBoost's own export (``converters.catboost_onnx``): numeric features, float32 only."""
    if schema.mode != "numeric" or precision != "float32":
        why = "numeric features only" if schema.mode != "numeric" else "float32 only"
        raise ConversionFailed(f"CatBoost's ONNX export takes {why}")
    import onnx

    data = catboost_onnx(est)
    model = onnx.load_model_from_string(data)
    (graph_input,) = [i.name for i in model.graph.input]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), OPSET)
    return Converted(
        onnx_bytes=data,
        onnx_inputs=[OnnxInput(name=graph_input, dtype="float32", features=schema.names)],
        precision="float32",
        output_names=[o.name for o in model.graph.output],
        opset=opset,
        converter="catboost",
    )


def _graph_names(onnx_inputs: list[OnnxInput], graph_inputs: list[str]) -> list[OnnxInput]:
    """The per-feature inputs renamed as skl2onnx named them in the graph (in the same order).

    skl2onnx turns a column name into an ONNX-safe identifier (``od280/od315`` becomes ``od280_od315``);
    the features keep the user's names, the tensors take the graph's.
    """
    if len(graph_inputs) != len(onnx_inputs) or len(set(graph_inputs)) != len(graph_inputs):
        raise ConversionFailed(
            f"skl2onnx made inputs {graph_inputs[:8]} for the features {[i.name for i in onnx_inputs][:8]}"
        )
    return [i.model_copy(update={"name": n}) for i, n in zip(onnx_inputs, graph_inputs, strict=True)]


def _converters(model: Any, precision: Precision) -> dict[Any, Any]:
    """Converter overrides: boosted trees and HistGradientBoosting (``converters``), then doubles."""
    overrides = extra_converters(_fitted_parts(model))
    if precision == "float64":
        overrides.update(_double_converters(model))
    return overrides


def _double_converters(model: Any) -> dict[Any, Any]:
    """Converter overrides for the double-precision conversion (see ``_imputer``, ``_tree_rounding``)."""
    from sklearn.impute import SimpleImputer

    overrides: dict[Any, Any] = {SimpleImputer: _imputer}
    for part in _fitted_parts(model):
        if _is_tree_model(part):
            overrides[type(part)] = _tree_rounding(type(part))
    return overrides


def _is_tree_model(est: Any) -> bool:
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.tree import BaseDecisionTree

    trees = (
        BaseDecisionTree,
        RandomForestClassifier,
        RandomForestRegressor,
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
    )
    return isinstance(est, trees)


def _tree_rounding(cls: type) -> Any:
    """skl2onnx's converter for the tree model ``cls``, fed its input rounded to float32 and back.

    scikit-learn trees compare ``float32(x)`` with float64 thresholds; the double conversion keeps the
    float64 thresholds, and this rounding makes the comparisons exactly scikit-learn's.
    """
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.proto import onnx_proto

    original = get_converter(sklearn_operator_name_map[cls])

    def convert_rounded(scope: Any, operator: Any, container: Any) -> None:
        source = operator.inputs[0]
        if len(operator.inputs) == 1 and isinstance(source.type, DoubleTensorType):
            as_float = scope.get_unique_variable_name("tree_input_float32")
            container.add_node(
                "Cast", [source.full_name], [as_float], to=onnx_proto.TensorProto.FLOAT,
                name=scope.get_unique_operator_name("Cast"),
            )  # fmt: skip
            rounded = scope.declare_local_variable("tree_input_rounded", DoubleTensorType(source.type.shape))
            container.add_node(
                "Cast", [as_float], [rounded.full_name], to=onnx_proto.TensorProto.DOUBLE,
                name=scope.get_unique_operator_name("Cast"),
            )  # fmt: skip
            operator = _WithInputs(operator, [rounded])
        original(scope, operator, container)

    return convert_rounded


class _WithInputs:
    """An skl2onnx operator seen with other inputs (its own list refuses changes)."""

    def __init__(self, operator: Any, inputs: list[Any]) -> None:
        self._operator = operator
        self.inputs = inputs
        self.input_full_names = [i.full_name for i in inputs]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)


def _imputer(scope: Any, operator: Any, container: Any) -> None:
    """SimpleImputer on doubles as ``Where(IsNaN(x), statistics, x)``.

    skl2onnx's converter emits the ``Imputer`` operator, which onnxruntime implements for float32 only
    and which rounds the statistics to float32; the double-precision conversion needs neither.
    """
    import numpy as np
    from skl2onnx.common._apply_operation import apply_concat
    from skl2onnx.common.data_types import DoubleTensorType
    from skl2onnx.operator_converters.imputer_op import convert_sklearn_imputer
    from skl2onnx.proto import onnx_proto

    op = operator.raw_operator
    if not isinstance(operator.inputs[0].type, DoubleTensorType):
        convert_sklearn_imputer(scope, operator, container)
        return
    if not _is_nan(op.missing_values) or getattr(op, "add_indicator", False):
        raise NotImplementedError("double imputer: only missing_values=nan without indicator")
    stats = np.asarray(op.statistics_, dtype=np.float64)
    if np.isnan(stats).any():
        raise NotImplementedError("double imputer: a column was entirely missing in training")
    names = [i.full_name for i in operator.inputs]
    x = names[0]
    if len(names) > 1:
        x = scope.get_unique_variable_name("imputer_input")
        apply_concat(scope, names, x, container, axis=1)
    fill = scope.get_unique_variable_name("imputer_statistics")
    container.add_initializer(fill, onnx_proto.TensorProto.DOUBLE, [len(stats)], stats.tolist())
    mask = scope.get_unique_variable_name("imputer_missing")
    container.add_node("IsNaN", [x], [mask], name=scope.get_unique_operator_name("IsNaN"))
    container.add_node(
        "Where",
        [mask, fill, x],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Where"),
    )


def _fitted_parts(model: Any) -> list[Any]:
    """Every fitted step: pipeline steps, and the fitted transformers of a ColumnTransformer."""
    from sklearn.compose import ColumnTransformer

    parts = []
    for step in steps_of(model):
        parts.append(step)
        if isinstance(step, ColumnTransformer):
            for _, trans, _ in step.transformers_:
                if not isinstance(trans, str):
                    parts.extend(_fitted_parts(trans))
    return parts


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
