"""One model version in the gateway's OpenAPI document (``bundlegate.http.openapi``): its ``/v1`` request
schemas in every accepted shape (a record, a positional row for numeric models, records, columns, rows)
bounded as the gateway checks values, its answer schemas (classes, targets), its ``/v2`` infer request,
and the paths that serve it (default and pinned)."""

from __future__ import annotations

from typing import Any

from bundlegate.http.openapi_schemas import NOT_A_NUMBER, NUMBER, Schema, get, post, ref
from bundlegate.http.v2.codec import tensor_metadata
from bundlegate.manifest import InputSpec, Manifest
from bundlegate.settings import Settings

_FLOAT32_MAX = 3.4e38  # a little under float32's largest finite value: every number up to it casts finite
_INT64 = (-(2**63), 2**63 - 1)


def _value(spec: InputSpec, tensor_dtype: str, max_string_length: int) -> Schema:
    """What one feature accepts, as the gateway checks it."""
    schema: Schema
    if spec.dtype == "string":
        schema = {"type": "string", "maxLength": max_string_length}
        if spec.categories is not None and not spec.allow_unknown:
            schema = {"enum": [str(c) for c in spec.categories]}
    elif spec.dtype == "bool":
        schema = {"type": "boolean"}
    elif spec.dtype == "int64" or tensor_dtype == "int64":
        lo, hi = _INT64 if tensor_dtype == "int64" else (-(2**53), 2**53)
        schema = {"type": "integer", "minimum": lo, "maximum": hi}
    else:
        bound = _FLOAT32_MAX if tensor_dtype == "float32" else None
        schema = {"type": "number"}
        if bound is not None:
            schema |= {"minimum": -bound, "maximum": bound}
    if spec.nullable and spec.dtype in ("string", "float32", "float64") and tensor_dtype != "int64":
        schema = {"anyOf": [schema, {"type": "null"}]}
    return schema


def _tensor_dtypes(manifest: Manifest) -> dict[str, str]:
    found = {f: t.dtype for t in manifest.onnx_inputs for f in t.features}
    return {i.name: found.get(i.name, i.dtype) for i in manifest.inputs}


def model_paths(
    paths: dict[str, Any], schemas: dict[str, Schema], settings: Settings, manifest: Manifest, default: bool
) -> None:
    name, version = manifest.name, manifest.version
    prefix = f"{name}.v{version}."
    dtypes = _tensor_dtypes(manifest)
    values = {i.name: _value(i, dtypes[i.name], settings.max_string_length) for i in manifest.inputs}
    names = list(values)
    max_rows = settings.request_max_rows
    record = {"type": "object", "properties": values, "required": names, "additionalProperties": False}
    schemas[prefix + "Record"] = record
    numeric = all(i.dtype in ("float32", "float64", "int64") for i in manifest.inputs)
    one: list[Schema] = [ref(prefix + "Record")]
    many: list[Schema] = [
        {"type": "array", "items": ref(prefix + "Record"), "minItems": 1, "maxItems": max_rows}
    ]
    if numeric:
        row = {
            "type": "array",
            "prefixItems": [values[n] for n in names],
            "items": False,
            "minItems": len(names),
            "maxItems": len(names),
        }
        schemas[prefix + "Row"] = row
        one.append(ref(prefix + "Row"))
        many.append({"type": "array", "items": ref(prefix + "Row"), "minItems": 1, "maxItems": max_rows})
    columns = {
        "type": "object",
        "properties": {
            n: {"type": "array", "items": v, "minItems": 1, "maxItems": max_rows} for n, v in values.items()
        },
        "required": names,
        "additionalProperties": False,
        "description": "Columns: one array per feature, all of the same length.",
    }
    schemas[prefix + "Columns"] = columns
    many.append(ref(prefix + "Columns"))
    schemas[prefix + "PredictRequest"] = _body(one[0] if len(one) == 1 else {"anyOf": one})
    schemas[prefix + "BatchRequest"] = _body({"anyOf": many})
    single, batch = _answers(manifest)
    schemas[prefix + "PredictAnswer"] = single
    schemas[prefix + "BatchAnswer"] = batch
    schemas[prefix + "InferRequest"] = _infer_request(manifest)

    bases = [f"/v1/models/{name}/versions/{version}"] + ([f"/v1/models/{name}"] if default else [])
    for base in bases:
        paths[base + "/predict"] = post(
            f"{name} v{version}: predict one record",
            ref(prefix + "PredictRequest"),
            ref(prefix + "PredictAnswer"),
            f"{name}",
        )
        paths[base + "/predict/batch"] = post(
            f"{name} v{version}: predict many rows (records, columns or positional rows)",
            ref(prefix + "BatchRequest"),
            ref(prefix + "BatchAnswer"),
            f"{name}",
        )
    if default:
        paths[f"/v1/models/{name}"] = get(f"{name}: schema, outputs and versions", ref("Status"), name)
    for base in [f"/v2/models/{name}/versions/{version}"] + ([f"/v2/models/{name}"] if default else []):
        paths[base] = get(f"{name} v{version}: metadata (OIP)", ref("ModelMetadata"), name, oip=True)
        paths[base + "/ready"] = get(f"{name} v{version}: ready (OIP)", ref("Status"), name, oip=True)
        paths[base + "/infer"] = post(
            f"{name} v{version}: inference (Open Inference Protocol)",
            ref(prefix + "InferRequest"),
            ref("InferResponse"),
            name,
            oip=True,
        )


def _body(inputs: Schema) -> Schema:
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {"inputs": inputs},
        "additionalProperties": False,
    }


def _answers(manifest: Manifest) -> tuple[Schema, Schema]:
    head: dict[str, Schema] = {
        "model": {"const": manifest.name},
        "version": {"const": manifest.version},
        "request_id": {"type": "string"},
    }
    label = manifest.outputs.label
    single: dict[str, Schema] = dict(head)
    batch: dict[str, Schema] = dict(head)
    if label is not None:
        classes = list(label.classes)
        one_label: Schema = {"enum": classes}
        single |= {"prediction": one_label, "classes": {"const": classes}}
        batch |= {"predictions": {"type": "array", "items": one_label}, "classes": {"const": classes}}
        if manifest.outputs.probabilities is not None:
            p = {"anyOf": [{"type": "number", "minimum": 0, "maximum": 1}, NOT_A_NUMBER]}
            keys = [str(c).lower() if isinstance(c, bool) else str(c) for c in classes]
            single["probabilities"] = {
                "type": "object",
                "properties": {k: p for k in keys},
                "required": keys,
                "additionalProperties": False,
            }
            n = len(classes)
            row = {"type": "array", "items": p, "minItems": n, "maxItems": n}
            batch["probabilities"] = {"type": "array", "items": row}
    else:
        targets = manifest.outputs.value.targets if manifest.outputs.value is not None else None
        if targets:
            single |= {
                "prediction": {
                    "type": "object",
                    "properties": {t: NUMBER for t in targets},
                    "required": list(targets),
                },
                "targets": {"const": list(targets)},
            }
            row = {"type": "array", "items": NUMBER, "minItems": len(targets), "maxItems": len(targets)}
            batch |= {"predictions": {"type": "array", "items": row}, "targets": {"const": list(targets)}}
        else:
            value: Schema = {"anyOf": [NUMBER, {"type": "array", "items": NUMBER}]}
            single["prediction"] = value
            batch["predictions"] = {"type": "array", "items": value}
    required = ["model", "version", "request_id"]
    return (
        {"type": "object", "properties": single, "required": [*required, "prediction"]},
        {"type": "object", "properties": batch, "required": [*required, "predictions"]},
    )


def _infer_request(manifest: Manifest) -> Schema:
    inputs, _ = tensor_metadata(manifest)
    tensors: list[Schema] = []
    for meta in inputs:
        tensors.append(
            {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"const": meta["name"]},
                    "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "maxItems": 2},
                    "datatype": {"const": meta["datatype"]},
                    "data": {"type": "array"},
                },
            }
        )
    return {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": {"anyOf": tensors}, "minItems": 1},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            },
        },
    }
