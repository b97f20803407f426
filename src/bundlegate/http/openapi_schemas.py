"""The building blocks of the gateway's OpenAPI document (``bundlegate.http.openapi``): the schemas every
document shares (the error bodies, Open Inference Protocol tensors and metadata), the error responses
by status, and helpers that write one operation."""

from __future__ import annotations

from typing import Any

from bundlegate.http.errors import STATUS_BY_CODE

Schema = dict[str, Any]

ERROR_STATUSES = {
    "400": "Malformed JSON (NaN/Infinity literals, duplicate keys, nesting too deep).",
    "401": "Missing or unknown API key (`WWW-Authenticate: Bearer`).",
    "404": "Unknown model or version, or one this key may not see (one answer for both).",
    "413": "Body over the limit.",
    "415": "Wrong content type or content encoding.",
    "422": "Schema violation; `details` locate each problem.",
    "429": "Over this key's rate limit; retry after `Retry-After` seconds.",
    "503": "Overloaded, draining or the model is loading; retry after `Retry-After` seconds.",
    "504": "The inference deadline passed.",
}

# A model output that is not a finite number (inputs far outside the training range can overflow a
# model's arithmetic) is written as null: JSON has no NaN.
NOT_A_NUMBER: Schema = {"type": "null", "description": "the model's output was not a finite number"}
NUMBER: Schema = {"type": ["number", "null"]}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def common_schemas() -> dict[str, Schema]:
    detail = {
        "type": "object",
        "properties": {
            "loc": {"type": "array", "items": {"type": ["string", "integer"]}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    }
    code = {"type": "string", "enum": sorted(STATUS_BY_CODE)}
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
            "datatype": {"type": "string"},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "request_id"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message", "details"],
                    "properties": {
                        "code": code,
                        "message": {"type": "string"},
                        "details": {"type": "array", "items": detail, "maxItems": 20},
                    },
                },
                "request_id": {"type": "string"},
            },
        },
        "OipError": {
            "type": "object",
            "required": ["error", "code", "request_id"],
            "properties": {
                "error": {"type": "string"},
                "code": code,
                "details": {"type": "array", "items": detail, "maxItems": 20},
                "request_id": {"type": "string"},
            },
        },
        "Tensor": tensor,
        "InferRequest": {
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "inputs": {"type": "array", "items": ref("Tensor"), "minItems": 1},
                "outputs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {"name": {"type": "string"}},
                    },
                },
            },
        },
        "InferResponse": {
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": "string"},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": ref("Tensor")},
            },
        },
        "TensorMetadata": {
            "type": "object",
            "required": ["name", "datatype", "shape"],
            "properties": {
                "name": {"type": "string"},
                "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}},
            },
        },
        "ModelMetadata": {
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": {"type": "string"},
                "versions": {"type": "array", "items": {"type": "string"}},
                "platform": {"type": "string"},
                "inputs": {"type": "array", "items": ref("TensorMetadata")},
                "outputs": {"type": "array", "items": ref("TensorMetadata")},
            },
        },
        "Status": {"type": "object"},
    }


def error_responses() -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for protocol, schema in (("", "Error"), ("Oip", "OipError")):
        for status, text in ERROR_STATUSES.items():
            response: dict[str, Any] = {
                "description": text,
                "content": {"application/json": {"schema": ref(schema)}},
            }
            if status in ("429", "503"):
                response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
            responses[f"{protocol}E{status}"] = response
    return responses


def error_refs(statuses: str, oip: bool = False) -> dict[str, Any]:
    prefix = "OipE" if oip else "E"
    return {s: {"$ref": f"#/components/responses/{prefix}{s}"} for s in statuses.split()}


def json_content(schema: Schema, description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


MODEL_ERRORS = "400 401 404 413 415 422 429 503 504"


def post(summary: str, request: Schema, answer: Schema, tag: str, oip: bool = False) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "tags": [tag],
            "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
            "responses": {"200": json_content(answer), **error_refs(MODEL_ERRORS, oip)},
        }
    }


def get(summary: str, answer: Schema, tag: str, errors: str = "401 404 429 503", oip: bool = False) -> Any:
    return {
        "get": {
            "summary": summary,
            "tags": [tag],
            "responses": {"200": json_content(answer), **error_refs(errors, oip)},
        }
    }


def public(operation: dict[str, Any]) -> dict[str, Any]:
    for op in operation.values():
        op["security"] = []
    return operation
