"""An MLflow model directory (an ``MLmodel`` file and its artifacts), read without MLflow installed.

Flavours: ``sklearn`` (``pickled_model``, pickle/cloudpickle through the allowlist unpickler, or skops),
``onnx`` (``data``), and ``python_function`` whose ``loader_module`` is ``mlflow.sklearn``
(``model_path``). What the directory adds to a pack:

- the column-based ``signature`` (``inputs``: name, type, required) becomes the input schema: names
  (``--features`` for models fitted on arrays), dtypes (``double``/``float`` → float64, ``long``/
  ``integer`` → int64, ``string``, ``boolean`` → bool) and nullability (not ``required``);
- the saved input example (``saved_input_example_info``) becomes the sample rows when ``--sample`` is
  not given;
- the model uuid and run id are kept as the bundle's tags ``mlflow.model_uuid`` and ``mlflow.run_id``.

Paths in ``MLmodel`` must stay inside the directory. ``model_file`` loads the model file itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from bundlegate.errors import ModelFileError, SampleMismatch
from bundlegate.manifest import DType, InputSpec

if TYPE_CHECKING:
    from bundlegate.packer.samples import Sample
    from bundlegate.packer.schema_inference import ModelSchema

MLMODEL = "MLmodel"
SIGNATURE_TYPES: dict[str, DType] = {
    "double": "float64",
    "float": "float64",
    "long": "int64",
    "integer": "int64",
    "string": "string",
    "boolean": "bool",
}
NUMERIC: set[str] = {"float32", "float64", "int64", "bool"}


@dataclass(frozen=True)
class MlflowModel:
    """What an MLflow directory holds: the model file and its format, and what comes with it."""

    file: Path
    kind: Literal["pickle", "skops", "onnx"]
    sample: Sample | None
    signature: list[InputSpec] | None
    provenance: dict[str, str]


def read_mlflow_dir(path: Path) -> MlflowModel:
    """The model file of the MLflow directory ``path`` with its signature, input example and provenance."""
    doc = _read_mlmodel(path)
    flavors = doc.get("flavors")
    if not isinstance(flavors, dict):
        raise ModelFileError(f"{path.name}/{MLMODEL} has no flavors")
    provenance = {
        f"mlflow.{key}": str(doc[key]) for key in ("model_uuid", "run_id") if doc.get(key) is not None
    }
    sample, signature = _input_example(path, doc), _signature(path, doc)
    sklearn = flavors.get("sklearn")
    onnx = flavors.get("onnx")
    pyfunc = flavors.get("python_function")
    kind: Literal["pickle", "skops", "onnx"]
    if isinstance(sklearn, dict) and sklearn.get("pickled_model"):
        file = _inside(path, sklearn["pickled_model"])
        skops = sklearn.get("serialization_format") == "skops" or file.suffix == ".skops"
        kind = "skops" if skops else "pickle"
    elif isinstance(onnx, dict) and onnx.get("data"):
        file, kind = _inside(path, onnx["data"]), "onnx"
    elif (
        isinstance(pyfunc, dict)
        and pyfunc.get("loader_module") == "mlflow.sklearn"
        and pyfunc.get("model_path")
    ):
        file, kind = _inside(path, pyfunc["model_path"]), "pickle"
    else:
        loader = pyfunc.get("loader_module") if isinstance(pyfunc, dict) else None
        raise ModelFileError(
            f"{path.name}: MLflow flavour(s) {sorted(flavors)}"
            + (f" (python_function via {loader})" if loader else "")
            + " cannot be packed; bundle pack reads the sklearn and onnx flavours"
        )
    return MlflowModel(file, kind, sample, signature, provenance)


def apply_signature(schema: ModelSchema, signature: list[InputSpec] | None) -> None:
    """Give ``schema``'s features the signature's dtypes and nullability (names must agree)."""
    if not signature:
        return
    by_name = {s.name: s for s in signature}
    missing = [n for n in schema.names if n not in by_name]
    if missing:
        raise SampleMismatch(f"the MLflow signature has no column(s) {missing[:8]} the model takes")
    specs = []
    for spec in schema.inputs:
        sig = by_name[spec.name]
        update: dict[str, Any] = {"nullable": spec.nullable or sig.nullable}
        if sig.dtype != spec.dtype and sig.dtype in NUMERIC and spec.dtype in NUMERIC:
            update["dtype"] = sig.dtype
        specs.append(spec.model_copy(update=update))
    schema.inputs = specs


def signature_names(signature: list[InputSpec] | None) -> list[str] | None:
    return [s.name for s in signature] if signature else None


def _read_mlmodel(path: Path) -> dict[str, Any]:
    import yaml

    file = path / MLMODEL
    if not file.is_file():
        raise ModelFileError(f"{path.name} is a directory without an {MLMODEL} file, not an MLflow model")
    try:
        doc = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{path.name}/{MLMODEL} is not valid YAML: {type(exc).__name__}") from None
    if not isinstance(doc, dict):
        raise ModelFileError(f"{path.name}/{MLMODEL} is not a mapping")
    return doc


def _inside(root: Path, relative: Any) -> Path:
    """``root/relative``, refusing absolute paths and anything that leaves ``root``."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute():
        raise ModelFileError(f"{root.name}/{MLMODEL} names a file outside the model directory")
    file = (root / relative).resolve()
    if not file.is_relative_to(root.resolve()):
        raise ModelFileError(f"{root.name}/{MLMODEL} names a file outside the model directory")
    if not file.is_file():
        raise ModelFileError(f"{root.name}/{MLMODEL} names {relative!r}, which is not in the directory")
    return file


def _signature(path: Path, doc: dict[str, Any]) -> list[InputSpec] | None:
    """The column-based input signature as ``InputSpec``s; None without one (or a tensor signature)."""
    raw = (doc.get("signature") or {}).get("inputs") if isinstance(doc.get("signature"), dict) else None
    if raw is None:
        return None
    try:
        cols = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise ModelFileError(f"{path.name}/{MLMODEL}: the signature's inputs are not JSON") from None
    if not isinstance(cols, list) or not all(isinstance(c, dict) for c in cols):
        raise ModelFileError(f"{path.name}/{MLMODEL}: the signature's inputs are not a list of columns")
    if not cols or any(c.get("type") == "tensor" or "name" not in c for c in cols):
        return None  # a tensor signature names no columns
    specs = []
    for c in cols:
        dtype = SIGNATURE_TYPES.get(str(c.get("type")))
        if dtype is None:
            raise ModelFileError(
                f"{path.name}: signature column {str(c['name'])[:60]!r} has type {c.get('type')!r}, "
                f"which bundles cannot take (supported: {', '.join(SIGNATURE_TYPES)})"
            )
        specs.append(InputSpec(name=str(c["name"]), dtype=dtype, nullable=not c.get("required", True)))
    return specs


def _input_example(path: Path, doc: dict[str, Any]) -> Sample | None:
    """The saved input example as sample rows (split or records orient), or None."""
    import pandas as pd

    from bundlegate.packer.samples import Sample

    info = doc.get("saved_input_example_info")
    if not isinstance(info, dict) or not info.get("artifact_path"):
        return None
    file = _inside(path, info["artifact_path"])
    try:
        example: Any = json.loads(file.read_text())
    except (ValueError, UnicodeDecodeError):
        raise ModelFileError(f"{path.name}: the input example {file.name} is not JSON") from None
    if isinstance(example, dict):
        example = example.get("dataframe_split", example.get("dataframe_records", example))
    if isinstance(example, dict) and "data" in example:
        columns = example.get("columns")
        frame = pd.DataFrame(example["data"], columns=columns)
        named = columns is not None
    elif isinstance(example, dict) and "inputs" in example:
        frame, named = pd.DataFrame(example["inputs"]), False
    elif isinstance(example, list) and example and all(isinstance(r, dict) for r in example):
        frame, named = pd.DataFrame.from_records(example), True
    elif isinstance(example, list) and example and all(isinstance(r, list) for r in example):
        frame, named = pd.DataFrame(example), False
    else:
        raise ModelFileError(f"{path.name}: cannot read rows from the input example {file.name}")
    if frame.empty:
        return None
    frame.columns = [str(c) for c in frame.columns]
    return Sample(frame, named=named, source=file.name)
