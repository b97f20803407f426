"""What a fitted estimator expects and answers: features, dtypes, nullability, categories, classes.

Three input layouts (``ModelSchema.mode``):

- ``numeric``: every feature is a number (or bool); one float tensor ``input`` of shape [N, n].
  Names come from ``feature_names_in_``, else ``--features``, else the sample's header, else ``f0..``.
- ``mixed``: a DataFrame model with string columns or a ColumnTransformer selecting columns by name;
  one tensor per feature, shape [N, 1], named after the feature.
- ``text``: a text pipeline (CountVectorizer/TfidfVectorizer/HashingVectorizer first); one string
  feature.

Per feature: ``dtype`` from the sample (``bool``, ``int64``, ``float64``, ``string``), ``nullable`` when
the sample has missing values or an imputer covers the column, ``categories`` seen by an encoder (with
``allow_unknown`` from its ``handle_unknown``), ``min``/``max`` seen in the sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from bundlegate.errors import NotAnEstimator, SampleMismatch
from bundlegate.manifest import DType, InputSpec
from bundlegate.packer.converters import fitted_names, fitted_width
from bundlegate.packer.samples import Sample

if TYPE_CHECKING:
    import pandas as pd

Mode = Literal["numeric", "mixed", "text"]
MAX_FEATURE_NAME = 128


@dataclass
class ModelSchema:
    mode: Mode
    task: Literal["classification", "regression"]
    inputs: list[InputSpec]
    classes: list[Any] | None
    has_probabilities: bool
    named_columns: bool  # the original estimator was fitted on a DataFrame with these names
    frame: pd.DataFrame | None = None  # the sample, columns in feature order; None without a sample
    none_is_category: set[str] = field(default_factory=set)  # string features whose encoder kept None

    @property
    def names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def string_features(self) -> set[str]:
        return {i.name for i in self.inputs if i.dtype == "string"}

    def original_input(self, frame: pd.DataFrame) -> Any:
        """``frame`` as the original estimator was trained on it (array, DataFrame or texts)."""
        import numpy as np

        if self.mode == "text":
            return frame.iloc[:, 0].fillna("").astype(str).to_numpy()
        if self.mode == "mixed" or self.named_columns:
            out = frame.copy()
            for col in self.string_features:
                # missing as the model saw it in training: NaN (what read_csv gives), or None when an
                # encoder learned None as a category (then the parity gate shows the gateway's "" differs)
                missing = None if col in self.none_is_category else np.nan
                out[col] = out[col].astype(object).where(out[col].notna(), missing)
            return out
        return frame.to_numpy(dtype=np.float64)


# ---------------------------------------------------------------------------------------- introspection


def steps_of(est: Any) -> list[Any]:
    """The flattened steps of a (nested) Pipeline, or ``[est]``."""
    from sklearn.pipeline import Pipeline

    if isinstance(est, Pipeline):
        return [s for _, step in est.steps if step not in (None, "passthrough") for s in steps_of(step)]
    return [est]


def final_estimator(est: Any) -> Any:
    return steps_of(est)[-1]


def is_text_model(est: Any) -> bool:
    from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer

    return isinstance(steps_of(est)[0], CountVectorizer | HashingVectorizer)


def column_routes(est: Any) -> dict[str, list[tuple[list[Any], int]]]:
    """For a model whose first step is a ColumnTransformer selecting columns by name:
    feature name → [(the transformer's flattened steps, the feature's position among its columns)]."""
    from sklearn.compose import ColumnTransformer

    first = steps_of(est)[0]
    routes: dict[str, list[tuple[list[Any], int]]] = {}
    if not isinstance(first, ColumnTransformer):
        return routes
    names = list(getattr(first, "feature_names_in_", []))
    for _, trans, cols in first.transformers_:
        if isinstance(trans, str):  # "drop" / "passthrough"
            continue
        resolved = _resolve_columns(cols, names)
        for pos, col in enumerate(resolved):
            routes.setdefault(col, []).append((steps_of(trans), pos))
    return routes


def _resolve_columns(cols: Any, names: list[str]) -> list[str]:
    import numpy as np

    if isinstance(cols, str):
        return [cols]
    if isinstance(cols, slice):
        return names[cols]
    arr = np.asarray(cols)
    if arr.dtype == bool:
        return [n for n, keep in zip(names, arr, strict=False) if keep]
    if arr.dtype.kind in "iu":
        return [names[i] for i in arr.tolist() if 0 <= i < len(names)]
    return [str(c) for c in arr.tolist()]


def selects_by_name(est: Any) -> bool:
    from sklearn.compose import ColumnTransformer

    first = steps_of(est)[0]
    if not isinstance(first, ColumnTransformer):
        return False
    return any(
        isinstance(cols, str) or (isinstance(cols, list) and any(isinstance(c, str) for c in cols))
        for _, _, cols in first.transformers
    )


def _encoder_info(steps: list[Any], pos: int) -> tuple[list[Any] | None, bool, bool]:
    """(categories, allow_unknown, imputed) for the column at ``pos`` of a transformer's steps."""
    from sklearn.impute import SimpleImputer
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

    imputed = False
    for step in steps:
        if isinstance(step, SimpleImputer):
            imputed = True
        if isinstance(step, OneHotEncoder | OrdinalEncoder) and hasattr(step, "categories_"):
            cats = step.categories_[pos] if pos < len(step.categories_) else None
            if cats is None:
                return None, True, imputed
            unknown = step.handle_unknown in ("ignore", "infrequent_if_exist", "use_encoded_value")
            return list(cats.tolist()), unknown, imputed
    return None, True, imputed


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


# ---------------------------------------------------------------------------------------- inference


def infer_schema(est: Any, sample: Sample | None, features: list[str] | None, model_name: str) -> ModelSchema:
    """The request schema of ``est``, checked against ``sample`` (``SampleMismatch`` when they differ)."""
    from sklearn.base import is_classifier

    task: Literal["classification", "regression"] = "classification" if is_classifier(est) else "regression"
    classes = [_plain(c) for c in est.classes_] if task == "classification" else None
    if classes is not None and len({type(c) for c in classes}) > 1:
        raise NotAnEstimator(f"{model_name}: classes of mixed types {classes[:5]} cannot be served")
    has_proba = task == "classification" and hasattr(est, "predict_proba")

    if is_text_model(est):
        names = features or ([sample.frame.columns[0]] if sample is not None and sample.named else ["text"])
        if len(names) != 1 or (sample is not None and sample.frame.shape[1] != 1):
            raise SampleMismatch(f"{model_name} is a text model: it takes exactly one text column")
        frame = None
        if sample is not None:
            frame = sample.frame.copy()
            frame.columns = names
        spec = InputSpec(
            name=names[0],
            dtype="string",
            nullable=bool(frame is not None and frame.iloc[:, 0].isna().any()),
        )
        return ModelSchema("text", task, [spec], classes, has_proba, False, frame)

    model_names = fitted_names(est, sample.frame.columns if sample is not None and sample.named else features)
    n_features = fitted_width(est)
    if n_features is None:
        raise NotAnEstimator(f"{model_name}: cannot tell how many features the model takes")
    named_columns = bool(model_names)
    names = _feature_names(model_names, int(n_features), sample, features, model_name)
    frame = _align(sample, names, named_columns, model_name) if sample is not None else None

    routes = column_routes(est)
    dtypes = {
        n: _dtype_of(frame[n]) if frame is not None else _dtype_from_routes(routes.get(n)) for n in names
    }
    mixed = named_columns and (selects_by_name(est) or "string" in dtypes.values())
    if not mixed and "string" in dtypes.values():
        bad = [n for n, d in dtypes.items() if d == "string"][:5]
        raise SampleMismatch(f"the sample's columns {bad} hold text, but {model_name} takes numbers only")
    inputs = []
    none_is_category: set[str] = set()
    for n in names:
        cats, unknown, imputed = None, True, False
        for steps, pos in routes.get(n, []):
            c, u, i = _encoder_info(steps, pos)
            if c is not None and any(v is None for v in c):
                none_is_category.add(n)
            cats = [v for v in c if not _is_missing(v)] if c is not None else cats
            unknown = unknown and u
            imputed = imputed or i
        col = frame[n] if frame is not None else None
        nullable = imputed or bool(col is not None and col.isna().any())
        dtype = dtypes[n]
        fields: dict[str, Any] = {"name": n, "dtype": dtype, "nullable": nullable}
        if dtype == "string" and cats is not None and all(isinstance(c, str) for c in cats):
            fields.update(categories=sorted(cats), allow_unknown=unknown)
        if col is not None and dtype in ("float64", "int64") and col.notna().any():
            fields.update(min=float(col.min()), max=float(col.max()))
        inputs.append(InputSpec(**fields))
    mode: Mode = "mixed" if mixed else "numeric"
    return ModelSchema(mode, task, inputs, classes, has_proba, named_columns, frame, none_is_category)


def _feature_names(
    model_names: list[str], n: int, sample: Sample | None, features: list[str] | None, model_name: str
) -> list[str]:
    if features is not None:
        if len(features) != n:
            raise SampleMismatch(f"--features names {len(features)} features, {model_name} takes {n}")
        if model_names and features != model_names:
            raise SampleMismatch(
                f"--features differ from the names {model_name} was fitted with: {model_names[:8]}"
            )
        names = features
    elif model_names:
        names = model_names
    elif sample is not None and sample.named and sample.frame.shape[1] == n and _header_like(sample):
        names = list(sample.frame.columns)
    else:
        names = [f"f{i}" for i in range(n)]
    bad = [x for x in names if not x or len(x) > MAX_FEATURE_NAME or not x.isprintable()]
    if bad or len(set(names)) != len(names):
        raise SampleMismatch("feature names must be unique, printable and 1-128 characters long")
    return names


def _header_like(sample: Sample) -> bool:
    """A CSV header of names, not numbers (a header-less CSV read with its first row as header)."""
    for c in sample.frame.columns:
        try:
            float(c)
        except ValueError:
            continue
        return False
    return True


def _align(sample: Sample, names: list[str], named_columns: bool, model_name: str) -> pd.DataFrame:
    frame = sample.frame
    if named_columns and sample.named:
        missing = [n for n in names if n not in frame.columns]
        extra = [c for c in frame.columns if c not in names]
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"missing columns {missing[:8]}")
            if extra:
                parts.append(f"unexpected columns {extra[:8]} (drop the target and other columns)")
            raise SampleMismatch(f"{sample.source} does not match {model_name}: " + "; ".join(parts))
        return frame[names].copy()
    if frame.shape[1] != len(names):
        raise SampleMismatch(
            f"{sample.source} has {frame.shape[1]} columns, {model_name} takes {len(names)} features"
        )
    out = frame.copy()
    out.columns = names
    return out


def _dtype_of(col: pd.Series) -> DType:
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return "bool"
    if pd.api.types.is_integer_dtype(col):
        return "int64"
    if pd.api.types.is_float_dtype(col):
        return "float64"
    values = col.dropna()
    if len(values) and all(isinstance(v, bool) for v in values):
        return "bool"
    if len(values) and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return "float64"
    return "string"


def _dtype_from_routes(routes: list[tuple[list[Any], int]] | None) -> DType:
    for steps, pos in routes or []:
        cats, _, _ = _encoder_info(steps, pos)
        cats = [c for c in cats or [] if not _is_missing(c)]
        if cats and all(isinstance(c, str) for c in cats):
            return "string"
    return "float64"


def _plain(v: Any) -> Any:
    """A numpy scalar as the Python value JSON keeps (str, int, float, bool)."""
    return v.item() if hasattr(v, "item") else v
