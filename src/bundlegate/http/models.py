"""Models as the HTTP API describes them: the registry's statuses and manifests turned into the
``GET /v1/models`` and ``GET /v1/models/{name}`` bodies.

A description carries the request schema, the outputs and the versions with their states; never file
paths, file digests or the original model file name (DESIGN.md §3).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bundlegate.errors import BundlegateError
from bundlegate.manifest import Manifest
from bundlegate.registry import ModelRegistry
from bundlegate.status import MISSING_ON_DISK, ModelStatus


def status_of(registry: ModelRegistry, name: str) -> ModelStatus | None:
    """The registry's status of model ``name``, or None when the registry does not know it."""
    try:
        return registry.model(name)
    except BundlegateError:
        return None


_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/[^\s:'\"]+")


def public_error(text: str, repo: Path) -> str:
    """A load error as clients may see it: paths inside the repository relative to it, any other
    absolute path replaced by ``<path>`` (the API never shows where files live)."""
    for root in {str(repo.resolve()), str(repo.absolute()), str(repo)}:
        if root not in ("", "."):
            text = text.replace(root.rstrip("/") + "/", "")
    return _ABSOLUTE_PATH.sub("<path>", text)


def model_summary(status: ModelStatus, repo: Path) -> dict[str, Any]:
    versions: list[dict[str, Any]] = []
    for v in status.versions:
        entry: dict[str, Any] = {"version": v.version, "state": v.state}
        if v.error:
            entry["error"] = public_error(v.error, repo)
        if v.missing:
            entry["warning"] = MISSING_ON_DISK
        versions.append(entry)
    summary: dict[str, Any] = {"name": status.name, "default_version": status.default, "versions": versions}
    if status.aliases:
        summary["aliases"] = status.aliases
    if status.traffic:
        summary["traffic"] = {str(v): w for v, w in status.traffic.items()}
    if status.shadow is not None:
        summary["shadow_version"] = status.shadow
    if status.error:
        summary["error"] = public_error(status.error, repo)
    return summary


def schema_json(manifest: Manifest) -> dict[str, Any]:
    """The public part of a manifest: what to send and what comes back."""
    inputs = [
        i.model_dump(exclude_none=True, exclude={"allow_unknown"} if i.categories is None else set())
        for i in manifest.inputs
    ]
    outputs: dict[str, Any] = {}
    if manifest.outputs.label is not None:
        outputs["label"] = {"classes": list(manifest.outputs.label.classes)}
    if manifest.outputs.probabilities is not None:
        outputs["probabilities"] = {}
    if manifest.outputs.value is not None:
        outputs["value"] = {}
    return {
        "version": manifest.version,
        "task": manifest.task,
        "runtime": manifest.runtime,
        "description": manifest.description,
        "created_at": manifest.created_at,
        "tags": manifest.tags,
        "metrics": manifest.metrics,
        "estimator": manifest.source.estimator,
        "inputs": inputs,
        "outputs": outputs,
        "positional_rows": all(i.dtype in ("float32", "float64", "int64") for i in manifest.inputs),
    }


def model_description(registry: ModelRegistry, status: ModelStatus) -> dict[str, Any]:
    """``GET /v1/models/{name}``: the summary plus the schema of the default version (``null`` while
    the model is loading, failed or unloaded; an ``available`` version is described unloaded)."""
    body = model_summary(status, registry.repo)
    manifest = registry.manifest(status.name, status.default) if status.default is not None else None
    body["schema"] = None if manifest is None else schema_json(manifest)
    return body
