r"""What skl2onnx does not bring or gets wrong: XGBoost, LightGBM, CatBoost, HistGradientBoosting, text.

- XGBoost and LightGBM classifiers and regressors convert through onnxmltools' converters, registered
  with skl2onnx the first time a model needs them (the ``boost`` extra installs both libraries and
  onnxmltools; without it these models are refused with the reason). XGBoost's converter reads split
  features as ``f0, f1, ...``; a booster fitted on a DataFrame names them after its columns, so the
  converter sees the booster with its names lifted for the duration of the conversion.
- CatBoost classifiers and regressors (numeric features) convert through CatBoost's own ONNX export
  (float32), its ZipMap replaced by the plain [N, k] probability tensor bundles use.
- HistGradientBoosting: skl2onnx writes ``False`` for a leaf's missing-value direction into an integer
  attribute list, which current protobuf runtimes refuse ("Expected an int, got a boolean"; protobuf 7
  here, whatever the scikit-learn version); the wrapped converter writes booleans in attribute lists
  as 0/1. Missing values then follow the learned direction as in scikit-learn.
- Text vectorizers: onnxruntime tokenizes with re2, whose ``\w`` is ASCII only, and skl2onnx swaps
  scikit-learn's default ``(?u)\b\w\w+\b`` for ``[a-zA-Z0-9_]+`` (so ``über`` became ``ber``, and
  one-letter words broke bigrams). ``text_options`` gives the tokenizer the same Unicode runs of two or
  more word characters, and lower-cases in the ``C.UTF-8`` locale (every Unicode capital, and present
  in Debian slim images, unlike ``en_US.UTF-8``). Other token patterns go to re2 as written; the
  parity gate judges them.

``extra_converters(model)`` returns the overrides for ``convert_sklearn(custom_conversion_functions=...)``
for the parts of ``model`` that need one, registering the boosted-tree converters on the way.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any

from bundlegate.errors import ConversionFailed

BOOST_PACKAGES = ("xgboost", "lightgbm", "catboost")
_registered: set[str] = set()


def boost_library(est: Any) -> str | None:
    """``"xgboost"`` or ``"lightgbm"`` when ``est`` comes from that library, else None."""
    root = type(est).__module__.split(".", 1)[0]
    return root if root in BOOST_PACKAGES else None


def is_fitted_catboost(obj: Any) -> bool | None:
    """None when ``obj`` is not a CatBoost model, else whether it is fitted."""
    if boost_library(obj) != "catboost" or not hasattr(obj, "is_fitted"):
        return None
    return bool(obj.is_fitted())


def catboost_onnx(est: Any) -> bytes:
    """CatBoost's own ONNX export, with its ZipMap replaced by the plain probability tensor."""
    import tempfile
    from pathlib import Path

    import onnx

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        est.save_model(str(path), format="onnx")
        model = onnx.load_model(str(path))
    graph = model.graph
    for node in list(graph.node):
        if node.op_type != "ZipMap":
            continue
        tensor, mapped = node.input[0], node.output[0]
        graph.node.remove(node)
        for producer in graph.node:
            producer.output[:] = [mapped if o == tensor else o for o in producer.output]
        (out,) = [o for o in graph.output if o.name == mapped]
        classes = len(est.classes_)
        out.CopyFrom(onnx.helper.make_tensor_value_info(mapped, onnx.TensorProto.FLOAT, [None, classes]))
    return bytes(model.SerializeToString())


def fitted_width(est: Any) -> int | None:
    """How many features ``est`` takes (CatBoost answers 0 for a model fitted on an array)."""
    width = getattr(est, "n_features_in_", None)
    if not width and boost_library(est) == "catboost":
        width = len(getattr(est, "feature_names_", None) or []) or None
    return None if width is None else int(width)


def fitted_names(est: Any, sample_columns: Any) -> list[str]:
    """The column names ``est`` was fitted with, as the user wrote them.

    LightGBM keeps its own spelling of DataFrame columns (spaces become ``_``) but predicts on the
    user's frame by position; when the sample's header (or ``--features``, or an MLflow signature) is
    that spelling's origin, its names win.
    """
    names = [str(n) for n in getattr(est, "feature_names_in_", [])]
    if not names and boost_library(est) == "catboost":  # CatBoost calls array columns "0", "1", ...
        own = [str(n) for n in getattr(est, "feature_names_", None) or []]
        names = [] if own == [str(i) for i in range(len(own))] else own
    if boost_library(final_step(est)) != "lightgbm" or sample_columns is None:
        return names
    columns = [str(c) for c in sample_columns]
    if len(columns) == len(names) and all(
        c == n or re.sub(r"\s", "_", c) == n for c, n in zip(columns, names, strict=True)
    ):
        return columns
    return names


def final_step(est: Any) -> Any:
    steps = getattr(est, "steps", None)
    return final_step(steps[-1][1]) if steps else est


def extra_converters(parts: list[Any]) -> dict[Any, Callable[..., None]]:
    """Converter overrides for the fitted ``parts`` of a model (see module docs)."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    overrides: dict[Any, Callable[..., None]] = {}
    for part in parts:
        library = boost_library(part)
        if library is not None:
            _register(library)
            if library == "xgboost":
                overrides[type(part)] = _xgboost_positional(type(part))
        elif isinstance(part, HistGradientBoostingClassifier | HistGradientBoostingRegressor):
            overrides[type(part)] = _integer_attributes(type(part))
    return overrides


SKLEARN_WORD_PATTERN = r"(?u)\b\w\w+\b"
UNICODE_WORDS = r"[\p{L}\p{N}_]{2,}"  # re2: what Python's \w\w+ between word boundaries finds


def text_options(vectorizer: Any) -> dict[str, Any]:
    """skl2onnx options for a Count/Tfidf vectorizer (see module docs)."""
    options: dict[str, Any] = {"locale": "C.UTF-8"}
    if getattr(vectorizer, "analyzer", "word") == "word" and vectorizer.token_pattern == SKLEARN_WORD_PATTERN:
        options["tokenexp"] = UNICODE_WORDS
    return options


def _register(library: str) -> None:
    """Register onnxmltools' converters for ``library``'s classifier and regressor with skl2onnx."""
    if library in _registered:
        return
    if importlib.util.find_spec("onnxmltools") is None:
        raise ConversionFailed(
            f"converting a {library} model needs onnxmltools: pip install 'bundlegate[boost]'"
        )
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    classifier_options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if library == "xgboost":
        import xgboost
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

        pairs = [(xgboost.XGBClassifier, xgboost.XGBRegressor, convert_xgboost, "XGBoost")]
    else:
        import lightgbm
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        pairs = [(lightgbm.LGBMClassifier, lightgbm.LGBMRegressor, convert_lightgbm, "LightGbm")]
    for classifier, regressor, converter, prefix in pairs:
        update_registered_converter(
            classifier,
            f"{prefix}{classifier.__name__}",
            calculate_linear_classifier_output_shapes,
            converter,
            options=classifier_options,
        )
        update_registered_converter(
            regressor, f"{prefix}{regressor.__name__}", calculate_linear_regressor_output_shapes, converter
        )
    _registered.add(library)


def _xgboost_positional(cls: type) -> Callable[..., None]:
    """onnxmltools' XGBoost converter, run on the booster with its feature names lifted."""
    from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost

    def convert(scope: Any, operator: Any, container: Any) -> None:
        booster = operator.raw_operator.get_booster()
        names, types = booster.feature_names, booster.feature_types
        booster.feature_names = None
        try:
            convert_xgboost(scope, operator, container)
        finally:
            booster.feature_names = names
            booster.feature_types = types

    return convert


def _integer_attributes(cls: type) -> Callable[..., None]:
    """skl2onnx's converter for ``cls`` with boolean attribute values written as integers."""
    from skl2onnx._supported_operators import sklearn_operator_name_map
    from skl2onnx.common._registration import get_converter

    original = get_converter(sklearn_operator_name_map[cls])

    def convert(scope: Any, operator: Any, container: Any) -> None:
        original(scope, operator, _IntegerAttributes(container))

    return convert


class _IntegerAttributes:
    """An skl2onnx container whose ``add_node`` turns booleans in list attributes into 0/1."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def add_node(self, op_type: Any, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list) and any(isinstance(v, bool) for v in value):
                attrs[key] = [int(v) if isinstance(v, bool) else v for v in value]
        return self._container.add_node(op_type, inputs, outputs, *args, **attrs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)
