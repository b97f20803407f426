"""The registry's table of versions and the lookups of one request: ``VersionTable``.

``ModelRegistry`` (``registry``) fills the table; endpoints read it: ``get`` for a model's default or
a pinned version, ``route`` for a model whose ``serving.json`` splits or shadows its default route,
and the statuses. Entries are replaced, never changed, so a request sees one consistent entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bundlegate.answers import Answers
from bundlegate.batching import BatchQueue
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import ModelNotReady, NotFound, NotResident
from bundlegate.manifest import Manifest
from bundlegate.policies import ServingPolicies
from bundlegate.runtime import Model
from bundlegate.shadow import ShadowRoute, ShadowScorer
from bundlegate.status import ModelStatus, State, VersionStatus


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A servable bundle version: what the HTTP layer needs for one request."""

    name: str
    version: int
    manifest: Manifest
    schema: CompiledSchema
    answers: Answers
    model: Model
    queue: BatchQueue

    @property
    def runtime(self) -> str:
        return self.model.runtime


@dataclass(frozen=True, slots=True)
class Entry:
    path: Path
    state: State
    loaded: LoadedVersion | None = None
    error: str | None = None
    load_seconds: float | None = None
    missing: bool = False
    manifest: Manifest | None = None  # an ``available`` version's, read without loading it
    # loaded, or loadable on demand; a field, not a property: the default route reads it per request
    servable: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "servable", self.loaded is not None or self.state == "available")


class VersionTable:
    """Every known version of every model, and the lookups over it (see the module docstring)."""

    def __init__(self, policies: ServingPolicies, shadows: ShadowScorer) -> None:
        self.policies = policies
        self.rollouts = policies.rollouts  # only models whose default route splits or shadows
        self.shadows = shadows
        self._models: dict[str, dict[int, Entry]] = {}
        self._scan_error: str | None = None

    def names(self) -> list[str]:
        """Every model the registry knows, in name order."""
        return sorted(self._models)

    def serves(self, name: str) -> bool:
        """Whether ``name`` has a default version to answer with (loaded, or loadable on demand)."""
        versions = self._models.get(name)
        return versions is not None and self._default(name, versions) is not None

    def get(self, name: str, version: int | None = None) -> LoadedVersion:
        """The version to serve: ``version``, or the default. ``NotFound`` / ``ModelNotReady``."""
        versions = self._models.get(name)
        if not versions:
            raise NotFound(f"no model named {name[:64]!r}")
        if version is None:
            version = self._default(name, versions)
            if version is None:
                states = {e.state for e in versions.values()}
                what = "still loading" if "loading" in states else "not loaded"
                raise ModelNotReady(
                    f"model {name!r} is {what}", retry_after=5.0 if what == "not loaded" else 1.0
                )
        entry = versions.get(version)
        if entry is None:
            raise NotFound(f"model {name!r} has no version {version}")
        if entry.loaded is None:
            if entry.state == "available":
                raise NotResident(name, version)
            raise ModelNotReady(f"model {name!r} version {version} is {entry.state}")
        return entry.loaded

    def route(self, name: str, routing_key: bytes | None) -> tuple[LoadedVersion, ShadowRoute | None]:
        """The default route of a model in ``rollouts``: the version its traffic split picks (the
        default when that one cannot serve), and the shadow to offer the request to, if any. A shadow
        version that is not resident starts loading in the background; requests are shadowed once
        it is."""
        rollout = self.rollouts[name]
        version = rollout.pick(routing_key)
        if version is not None:
            entry = self._entry(name, version)
            if entry is None or not entry.servable:
                version = None
        loaded = self.get(name, version)
        shadow = rollout.shadow
        if shadow is None or shadow.version == loaded.version:
            return loaded, None
        target = self._entry(name, shadow.version)
        if target is None or target.loaded is None:
            if target is not None and target.state == "available":  # --lazy, or evicted
                self._wake(name, shadow.version)
            return loaded, None
        return loaded, ShadowRoute(self.shadows, target.loaded, shadow.sample)

    def _wake(self, name: str, version: int) -> None:
        """Start making an ``available`` version resident without waiting (the registry does)."""

    def manifest(self, name: str, version: int | None = None) -> Manifest | None:
        """The manifest of ``version`` (or the default) when it is loaded or ``available``: describing
        a model needs no load."""
        versions = self._models.get(name, {})
        if version is None:
            version = self._default(name, versions)
        entry = versions.get(version) if version is not None else None
        if entry is None:
            return None
        if entry.loaded is not None:
            return entry.loaded.manifest
        return entry.manifest if entry.state == "available" else None

    def models(self) -> list[ModelStatus]:
        """Every model in name order, each with its versions (ascending), states and default."""
        return [self.model(name) for name in sorted(self._models)]

    def model(self, name: str) -> ModelStatus:
        versions = self._models.get(name)
        if versions is None:
            raise NotFound(f"no model named {name[:64]!r}")
        serving = self.policies.of(name)
        return ModelStatus(
            name=name,
            versions=[
                VersionStatus(
                    v, e.state, e.error, e.load_seconds, e.loaded.runtime if e.loaded else None, e.missing
                )
                for v, e in sorted(versions.items())
            ],
            default=self._default(name, versions),
            error=self.policies.error(name) or self._scan_error,
            aliases=dict(serving.aliases),
            traffic={int(v): w for v, w in serving.traffic.items()},
            shadow=serving.shadow.version if serving.shadow else None,
        )

    def state_counts(self) -> dict[str, int]:
        """Versions per state, every state present (for the ``bundlegate_models`` gauge)."""
        counts = {"loading": 0, "loaded": 0, "failed": 0, "unloaded": 0, "available": 0}
        for versions in self._models.values():
            for entry in versions.values():
                counts[entry.state] += 1
        return counts

    def _entry(self, name: str, version: int) -> Entry | None:
        return self._models.get(name, {}).get(version)

    def _set(self, name: str, version: int, entry: Entry) -> None:
        versions = dict(self._models.get(name, {}))
        versions[version] = entry
        self._models = {**self._models, name: versions}

    def _default(self, name: str, versions: dict[int, Entry]) -> int | None:
        pinned = self.policies.of(name).default_version
        if pinned is not None and pinned in versions:
            return pinned if versions[pinned].servable else None
        servable = [v for v, e in versions.items() if e.servable]
        return max(servable) if servable else None
