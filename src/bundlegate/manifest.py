"""The bundle manifest, ``bundle.json``, format version 1 (DESIGN.md §2).

Plain data: no HTTP, no onnxruntime, no sklearn. ``Manifest.model_validate_json`` reads one,
``Manifest.to_json`` writes one (stable key order, indented, UTC timestamps).

Example (abridged)::

    {"format_version": 1, "name": "iris", "version": 1, "created_at": "2026-11-22T08:00:00Z",
     "task": "classification", "runtime": "onnx",
     "inputs": [{"name": "sepal_length", "dtype": "float64", "nullable": false, "min": 4.3, "max": 7.9}],
     "onnx_inputs": [{"name": "input", "dtype": "float32", "features": ["sepal_length", ...]}],
     "outputs": {"label": {"onnx_name": "label", "classes": ["setosa", ...]},
                 "probabilities": {"onnx_name": "probabilities"}},
     "files": [{"name": "model.onnx", "size": 1234, "sha256": "..."}], ...}

Encodings the packer and the gateway share: a null for a nullable numeric feature is fed as NaN (the
pipeline's imputer, or a NaN-aware model, handles it); a null for a nullable string feature is fed as the
empty string ``""``, which the packed model treats as missing (string imputers are converted with
``missing_values=""``; a one-hot encoder that ignores unknowns gives it all zeros). ``sample_file`` is a
JSON list of records; ``expected_file`` is ``{"labels": [...], "probabilities": [[...]]}`` or
``{"values": [[...]]}``, what the original model answered for those records at pack time.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

FORMAT_VERSION: Literal[1] = 1
MANIFEST_FILE = "bundle.json"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
FILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

DType = Literal["float32", "float64", "int64", "bool", "string"]
Task = Literal["classification", "regression", "transform"]
Runtime = Literal["onnx", "sklearn"]


def valid_name(name: str) -> bool:
    """A bundle name: ``^[a-z0-9][a-z0-9_.-]{0,62}$`` and no ``..``."""
    return bool(NAME_RE.match(name)) and ".." not in name


def valid_file_name(name: str) -> bool:
    """A plain file name inside a bundle: no directories, no ``..``, no leading dot."""
    return bool(FILE_NAME_RE.match(name)) and ".." not in name


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Model):
    """One feature of the request schema, in model order."""

    name: str
    dtype: DType
    nullable: bool = False
    categories: list[str] | list[int] | None = None  # seen in training (by an encoder)
    allow_unknown: bool = True  # unknown categories accepted (the encoder ignores them)
    min: float | None = None
    max: float | None = None


class OnnxInput(_Model):
    """One input tensor of model.onnx and the features that fill it, in column order.

    A purely numeric model has one float tensor fed by every feature (shape [N, n_features]);
    a mixed pipeline has one tensor per feature (shape [N, 1]).
    """

    name: str
    dtype: DType
    features: list[str]


class LabelOutput(_Model):
    onnx_name: str
    classes: list[str] | list[int] | list[bool]


class TensorOutput(_Model):
    onnx_name: str
    # ``value`` of a multi-output regressor whose training data named its targets: the names of its
    # columns, in order (``/v1`` answers then say which value is which)
    targets: list[str] | None = None


class Outputs(_Model):
    label: LabelOutput | None = None  # classifiers
    probabilities: TensorOutput | None = None  # classifiers with predict_proba, columns in classes order
    value: TensorOutput | None = None  # regressors (shape [N] or [N, 1]) and transforms


class FileEntry(_Model):
    name: str
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:
        if not valid_file_name(v):
            raise ValueError(f"not a plain file name: {v[:80]!r}")
        return v


class Source(_Model):
    estimator: str  # class path, e.g. sklearn.pipeline.Pipeline
    steps: list[str] = []  # class paths of pipeline steps, outermost first
    model_file: str | None = None  # original file name (no directories)
    sklearn_version: str | None = None
    numpy_version: str | None = None
    python_version: str | None = None
    converter: str | None = None  # e.g. "skl2onnx"
    converter_version: str | None = None
    opset: int | None = None
    precision: Literal["float32", "float64"] | None = None
    libraries: dict[str, str] | None = (
        None  # runtime sklearn: other distributions the pickle needs, exact versions
    )


class Parity(_Model):
    rows: int
    sample: Literal["provided", "synthesized"]
    label_agreement: float | None = None  # classifiers: share of rows with the same label
    label_ties: int | None = None  # rows whose labels differ only on an exact tie of the top probabilities
    max_abs_diff_probabilities: float | None = None
    max_abs_diff_values: float | None = None  # regressors
    tolerance: float
    passed: bool
    reason: str | None = None


class FeatureReference(_Model):
    """Training statistics of one feature, for drift monitoring."""

    name: str
    kind: Literal["numeric", "categorical"]
    count: int
    null_rate: float
    bins: list[float] | None = None  # numeric: histogram edges (len = len(counts) + 1)
    counts: list[int] | None = None
    quantiles: dict[str, float] | None = None  # "0.01", "0.25", "0.5", ... -> value
    mean: float | None = None
    std: float | None = None
    frequencies: dict[str, float] | None = None  # categorical: value -> share (top values + "__other__")


class PredictionReference(_Model):
    kind: Literal["classes", "values"]
    frequencies: dict[str, float] | None = None  # classification: class -> share
    bins: list[float] | None = None  # regression
    counts: list[int] | None = None
    quantiles: dict[str, float] | None = None


class Reference(_Model):
    rows: int
    features: list[FeatureReference]
    predictions: PredictionReference | None = None


class Manifest(_Model):
    format_version: Literal[1] = FORMAT_VERSION
    name: str
    version: int = Field(ge=1)
    created_at: str
    description: str = ""
    tags: dict[str, str] = {}
    metrics: dict[str, float | str] = {}
    task: Task
    runtime: Runtime = "onnx"
    model_file: str = "model.onnx"  # model.onnx, or model.joblib for runtime sklearn
    source: Source
    inputs: list[InputSpec]
    onnx_inputs: list[OnnxInput] = []  # runtime onnx only
    outputs: Outputs
    files: list[FileEntry]
    parity: Parity | None = None
    reference: Reference | None = None
    sample_file: str | None = None  # a few sample rows (a JSON list of records) for warm-up and verify
    expected_file: str | None = None  # the original model's answers for those rows (``bundle verify``)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not valid_name(v):
            raise ValueError("name must match ^[a-z0-9][a-z0-9_.-]{0,62}$ and contain no '..'")
        return v

    @field_validator("model_file", "sample_file", "expected_file")
    @classmethod
    def _file(cls, v: str | None) -> str | None:
        if v is not None and not valid_file_name(v):
            raise ValueError(f"not a plain file name: {v[:80]!r}")
        return v

    @property
    def feature_names(self) -> list[str]:
        return [i.name for i in self.inputs]

    @property
    def classes(self) -> list[Any] | None:
        return list(self.outputs.label.classes) if self.outputs.label else None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True) + "\n"
