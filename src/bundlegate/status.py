"""What the registry reports: each model's versions, their states and the default version.

States per version: ``loading`` → ``loaded`` | ``failed`` (with the reason), and ``unloaded`` after an
admin unload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["loading", "loaded", "failed", "unloaded"]


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: State
    error: str | None = None
    load_seconds: float | None = None
    runtime: str | None = None


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    versions: list[VersionStatus]
    default: int | None
    error: str | None = None  # a model-level problem, e.g. a broken serving.json


@dataclass(frozen=True, slots=True)
class ReloadReport:
    added: list[tuple[str, int]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
