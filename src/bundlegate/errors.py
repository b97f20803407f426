"""The one exception tree of bundlegate.

Every error the core raises carries a stable ``code`` string; the HTTP layer maps codes to status codes
(``bundlegate.http.errors``) and the CLI prints ``message`` and exits non-zero (``bundlegate.cli``).
No module below the HTTP layer knows a status code; the statuses below are what the HTTP layer answers.

    BundlegateError                 base; ``code``, ``message``, ``details``
    ├── BundleError                 a bundle on disk is unusable            code: invalid_bundle
    │   ├── InvalidName             bad bundle name or version              code: invalid_name
    │   ├── UnsafePath              symlink, '..', absolute path, external data  code: unsafe_path
    │   ├── DigestMismatch          a file's size/sha256 differs from the manifest  code: digest_mismatch
    │   ├── BundleExists            the version directory already exists    code: bundle_exists
    │   ├── ManifestError           bundle.json missing, not JSON, or not format v1  code: invalid_manifest
    │   ├── SignatureError          no valid signature by a trusted key      code: invalid_signature
    │   └── StoreError              the object store is unreachable or refuses  code: store_unavailable
    ├── TableError                  a table cannot be read or written (bundle predict)  code: invalid_table
    ├── InvalidSetting              a setting cannot be parsed or is out of range  code: invalid_setting
    ├── CannotServe                 ``bundle serve`` cannot listen (the address is in use)  code: cannot_serve
    ├── KeysFileError               the keys file is missing, unreadable or invalid  code: invalid_keys_file
    │   ├── InvalidKeySpec          a key id or model pattern is not allowed  code: invalid_key_spec
    │   ├── DuplicateKeyId          ``keys create`` with an id already in use  code: duplicate_key_id
    │   └── UnknownKeyId            ``keys revoke`` of an id not in the file  code: unknown_key_id
    ├── PackError                   ``bundle pack`` cannot produce a bundle  code: pack_failed
    │   ├── ModelFileError          not a pickle/joblib/onnx, or unreadable  code: invalid_model_file
    │   ├── NotAnEstimator          the file holds no fitted sklearn estimator  code: not_an_estimator
    │   ├── SampleMismatch          the sample's columns/width do not match the model  code: sample_mismatch
    │   ├── ConversionFailed        skl2onnx cannot convert the estimator    code: conversion_failed
    │   └── ParityFailed            ONNX disagrees with the original          code: parity_failed
    ├── RequestError                a client request cannot be answered (HTTP 4xx)
    │   ├── MalformedRequest        bad JSON, NaN, duplicate key, nesting      code: malformed_json  (400)
    │   ├── Unauthenticated         missing or unknown API key               code: unauthenticated (401)
    │   ├── NotFound                unknown model/version or not allowed      code: not_found       (404)
    │   ├── MethodNotAllowed        wrong method                              code: method_not_allowed (405)
    │   ├── PayloadTooLarge         body over the limit                       code: payload_too_large (413)
    │   ├── UnsupportedMediaType    not application/json      code: unsupported_media_type (415)
    │   ├── InvalidInput            schema violation; ``details`` locate it    code: invalid_input   (422)
    │   │   └── InvalidRows         request values that do not fit the model's schema, as ``Problem``s
    │   │                           (row, feature, what); each protocol locates them its own way
    │   └── RateLimited             per-key rate limit; ``retry_after``        code: rate_limited    (429)
    └── Unavailable                 the server cannot answer now (HTTP 5xx); ``retry_after``
        ├── Overloaded              queue full or draining                    code: overloaded      (503)
        ├── ModelNotReady           model loading or failed                   code: model_not_ready (503)
        │   └── NotResident         a version on disk but not in memory (``--lazy``, evicted): the
        │                           HTTP layer loads it and retries; 503 only if it escapes
        └── DeadlineExceeded        inference deadline passed                 code: deadline_exceeded (504)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

Location = Sequence[str | int]

MAX_DETAILS = 20


class BundlegateError(Exception):
    """Base of every error bundlegate raises on purpose."""

    code = "internal"

    def __init__(self, message: str, details: Sequence[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[dict[str, Any]] = list(details or [])[:MAX_DETAILS]

    def __str__(self) -> str:
        return self.message


class BundleError(BundlegateError):
    code = "invalid_bundle"


class InvalidName(BundleError):
    code = "invalid_name"


class UnsafePath(BundleError):
    code = "unsafe_path"


class DigestMismatch(BundleError):
    code = "digest_mismatch"


class BundleExists(BundleError):
    code = "bundle_exists"


class ManifestError(BundleError):
    code = "invalid_manifest"


class SignatureError(BundleError):
    code = "invalid_signature"


class StoreError(BundleError):
    code = "store_unavailable"


class TableError(BundlegateError):
    code = "invalid_table"


class InvalidSetting(BundlegateError):
    code = "invalid_setting"


class CannotServe(BundlegateError):
    code = "cannot_serve"


class KeysFileError(BundlegateError):
    code = "invalid_keys_file"


class InvalidKeySpec(KeysFileError):
    code = "invalid_key_spec"


class DuplicateKeyId(KeysFileError):
    code = "duplicate_key_id"


class UnknownKeyId(KeysFileError):
    code = "unknown_key_id"


class PackError(BundlegateError):
    code = "pack_failed"


class ModelFileError(PackError):
    code = "invalid_model_file"


class NotAnEstimator(PackError):
    code = "not_an_estimator"


class SampleMismatch(PackError):
    code = "sample_mismatch"


class ConversionFailed(PackError):
    code = "conversion_failed"


class ParityFailed(PackError):
    code = "parity_failed"


class RequestError(BundlegateError):
    code = "bad_request"


class MalformedRequest(RequestError):
    code = "malformed_json"


class Unauthenticated(RequestError):
    code = "unauthenticated"


class NotFound(RequestError):
    code = "not_found"


class MethodNotAllowed(RequestError):
    code = "method_not_allowed"


class PayloadTooLarge(RequestError):
    code = "payload_too_large"


class UnsupportedMediaType(RequestError):
    code = "unsupported_media_type"


class InvalidInput(RequestError):
    code = "invalid_input"


class Problem(NamedTuple):
    """One thing wrong with the values of a request, in the model's terms: the row (None: the whole
    request or a whole column), the feature name or the key as sent (None: the whole row), what is
    wrong, and its kind (``missing``, ``extra``, ``type``, ``value``, ``width``, ...)."""

    row: int | None
    feature: str | None
    msg: str
    kind: str = "invalid"


class InvalidRows(InvalidInput):
    """Request values that do not fit the model's schema (``bundlegate.decoding``).

    ``problems`` say what is wrong by row and feature; ``shape`` is how the values came (``record``,
    ``values``, ``records``, ``columns`` or ``rows``). ``details`` holds a neutral location
    (``["inputs", row, feature]``) until a protocol replaces it with its own (``locate``).
    """

    def __init__(self, message: str, problems: Sequence[Problem], shape: str = "records") -> None:
        self.problems = list(problems)[:MAX_DETAILS]
        self.shape = shape
        super().__init__(message, [_neutral(p) for p in self.problems])

    def locate(self, where: Any) -> InvalidInput:
        """The same error with every problem located by ``where(problem) -> loc``."""
        return InvalidInput(self.message, [problem(where(p), p.msg, p.kind) for p in self.problems])


def _neutral(p: Problem) -> dict[str, Any]:
    loc: list[str | int] = ["inputs"]
    if p.row is not None:
        loc.append(p.row)
    if p.feature is not None:
        loc.append(p.feature)
    return problem(loc, p.msg, p.kind)


class RateLimited(RequestError):
    code = "rate_limited"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(BundlegateError):
    code = "unavailable"

    def __init__(self, message: str, retry_after: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Overloaded(Unavailable):
    code = "overloaded"


class ModelNotReady(Unavailable):
    code = "model_not_ready"


class NotResident(ModelNotReady):
    def __init__(self, name: str, version: int) -> None:
        super().__init__(f"model {name!r} version {version} is not loaded", retry_after=1.0)
        self.name = name
        self.version = version


class DeadlineExceeded(Unavailable):
    code = "deadline_exceeded"


def problem(loc: Location, msg: str, kind: str = "invalid") -> dict[str, Any]:
    """One entry of ``details``: where (``loc``, e.g. ``["inputs", 3, "age"]``), what kind, and a message.

    Messages must never echo long input values, keys or stack traces; callers pass short texts.
    """
    return {"loc": list(loc), "type": kind, "msg": msg}


def shorten(text: str, limit: int = 300) -> str:
    """``text`` on one line (whitespace collapsed), cut at ``limit`` characters with an ellipsis: the
    one way messages quote things they do not control (exception texts, names sent by clients)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one bounded line for a model's state, the log or a message: the message of a
    bundlegate error, else ``Type: message`` (``shorten``)."""
    text = exc.message if isinstance(exc, BundlegateError) else f"{type(exc).__name__}: {exc}"
    return shorten(text, limit)
