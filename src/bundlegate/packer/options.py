"""What ``bundle pack`` is asked for (``PackOptions``) and what it reports back (``PackResult``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bundlegate.manifest import Manifest


@dataclass(frozen=True)
class PackOptions:
    name: str
    repo: Path = Path("bundles")
    version: int | None = None
    sample: Path | None = None
    features: list[str] | None = None
    targets: list[str] | None = None  # a multi-output regressor's target names, in column order
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | str] = field(default_factory=dict)
    allow_pickle_fallback: bool = False
    trust_pickle: bool = False  # unpickle without the allowlist (``unpickle``)
    progress: Callable[[str], None] | None = None  # told each step as it starts ("converting ...")


@dataclass(frozen=True)
class PackResult:
    path: Path
    manifest: Manifest
    notes: list[str]  # what happened on the way, e.g. "float32 parity failed: ...; float64 passed"
