"""What the registry reports: each model's versions, their states and the default version.

States per version: ``loading`` → ``loaded`` | ``failed`` (with the reason), ``unloaded`` after an
admin unload, and ``available`` for a version on disk that is not in memory (``--lazy`` before its
first request, or evicted under ``--memory-budget-mb``). A loaded version whose directory left the
repository keeps serving with ``missing`` set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

State = Literal["loading", "loaded", "failed", "unloaded", "available"]
MISSING_ON_DISK = "missing on disk"


@dataclass(frozen=True, slots=True)
class VersionStatus:
    version: int
    state: State
    error: str | None = None
    load_seconds: float | None = None
    runtime: str | None = None
    missing: bool = False  # serving, but its directory is gone from the repository


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    versions: list[VersionStatus]
    default: int | None
    error: str | None = None  # a model-level problem, e.g. a refused serving.json
    aliases: dict[str, int] = field(default_factory=dict)
    traffic: dict[int, float] = field(default_factory=dict)
    shadow: int | None = None


@dataclass(frozen=True, slots=True)
class ReloadReport:
    added: list[tuple[str, int]] = field(default_factory=list)
    removed: list[tuple[str, int]] = field(default_factory=list)
    failed: list[tuple[str, int]] = field(default_factory=list)
