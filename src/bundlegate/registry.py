"""Every version of every bundle in the repository, its state, and the default version per model.

    registry = ModelRegistry(repo, settings, metrics.observer_for)
    await registry.start()                       # scan, then load every version in parallel threads
    loaded = registry.get("credit")              # default version; get("credit", 3) pins one
    prediction = await loaded.queue.submit(loaded.schema.from_record(obj), deadline)
    await registry.reload()                      # new versions load in the background, then switch in
    await registry.drain(timeout=20)             # shutdown: refuse new work, finish in-flight

States per version: ``loading`` → ``loaded`` | ``failed`` (with the reason), and ``unloaded`` after an
admin unload. A bad bundle only fails itself. ``get`` raises ``NotFound`` for an unknown model or
version and ``ModelNotReady`` for one that is loading, failed or unloaded.

Default version: ``default_version`` from the operator's optional ``<repo>/<name>/serving.json`` when
that version exists, else the highest loaded version. ``serving.json`` also sets the model's
``batch_max_rows`` and ``batch_max_delay_ms`` (``bundlegate.serving`` reads it); a broken ``serving.json``
is reported in the model's status (``error``) and the settings' defaults apply.

Switching is atomic: all state changes happen on the event loop thread by replacing entries, so a
request sees either the old or the new version, and a removed version's queue drains its in-flight
requests before it is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bundlegate.answers import Answers
from bundlegate.batching import (
    DEFAULT_INLINE_MAX_S,
    BatchObserver,
    BatchQueue,
    run_blocking,
    usable_cpus,
)
from bundlegate.bundle import BundleRef, scan_repository
from bundlegate.decoding import CompiledSchema
from bundlegate.errors import ModelNotReady, NotFound, one_line
from bundlegate.loader import LoaderSettings, VersionParts, load_version
from bundlegate.manifest import Manifest
from bundlegate.runtime import Model
from bundlegate.serving import ServingConfig, read_serving
from bundlegate.status import ModelStatus, ReloadReport, State, VersionStatus

log = logging.getLogger("bundlegate.registry")


class RegistrySettings(LoaderSettings, Protocol):
    """The settings the registry reads (``bundlegate.settings.Settings`` has them all)."""

    @property
    def batch_max_rows(self) -> int: ...
    @property
    def batch_max_delay_ms(self) -> float: ...
    @property
    def queue_max_rows(self) -> int: ...


ObserverFactory = Callable[[str, int], BatchObserver]
LoadListener = Callable[[str, int, float], None]


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
class _Entry:
    path: Path
    state: State
    loaded: LoadedVersion | None = None
    error: str | None = None
    load_seconds: float | None = None


class ModelRegistry:
    """See the module docstring."""

    def __init__(
        self,
        repo: Path,
        settings: RegistrySettings,
        observer_factory: ObserverFactory | None = None,
        *,
        on_loaded: LoadListener | None = None,
        load_threads: int | None = None,
        inference_executor: ThreadPoolExecutor | None = None,
        inline_max_s: float = DEFAULT_INLINE_MAX_S,
        run_in_threads: bool | None = None,
        sync: Callable[[], object] | None = None,
    ) -> None:
        self.repo = Path(repo)
        self.sync = sync  # brings ``repo`` up to date before each scan (an object-storage mirror)
        self.settings = settings
        self.observer_factory = observer_factory
        self.on_loaded = on_loaded
        self.inline_max_s = inline_max_s  # see bundlegate.batching: inline vs thread pool
        # expensive batches to threads? (None: only if this process may use more than one CPU)
        self.run_in_threads = usable_cpus() > 1 if run_in_threads is None else run_in_threads
        self._load_pool = ThreadPoolExecutor(
            max_workers=load_threads or min(4, os.cpu_count() or 1), thread_name_prefix="bundlegate-load"
        )
        self._own_inference_pool = inference_executor is None
        self._inference_pool = inference_executor or ThreadPoolExecutor(
            max_workers=os.cpu_count() or 1, thread_name_prefix="bundlegate-infer"
        )
        self._models: dict[str, dict[int, _Entry]] = {}
        self._serving: dict[str, ServingConfig] = {}
        self._reload_lock = asyncio.Lock()
        self._draining = False
        self._started = False
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> ReloadReport:
        """Scan the repository and load every version in parallel; returns what was loaded or failed."""
        report = await self.reload()
        self._started = True
        return report

    async def reload(self) -> ReloadReport:
        """Re-scan: load new (and previously failed) versions, then switch them in; drop removed ones.

        Serving continues meanwhile: loading happens in threads, each version switches in when it is
        loaded and warmed, and a removed version finishes its in-flight requests before it goes.
        """
        async with self._reload_lock:
            refs = await self._scan()
            found: dict[str, dict[int, Path]] = {}
            for ref in refs:
                found.setdefault(ref.name, {})[ref.version] = Path(ref.path)
            for name in found:
                await self._refresh_serving(name)
            report = ReloadReport()
            for name, versions in list(self._models.items()):
                for version in list(versions):
                    if version not in found.get(name, {}):
                        self._remove(name, version)
                        report.removed.append((name, version))
            todo = [
                (name, version, path)
                for name, versions in found.items()
                for version, path in versions.items()
                if (entry := self._entry(name, version)) is None or entry.state == "failed"
            ]
            for name, version, path in todo:
                self._set(name, version, _Entry(path, "loading"))
            results = await asyncio.gather(*(self._load(name, version, path) for name, version, path in todo))
            for (name, version, _), ok in zip(todo, results, strict=True):
                (report.added if ok else report.failed).append((name, version))
            for name in list(self._serving):
                if name not in found:
                    del self._serving[name]
            return report

    async def load(self, name: str) -> ModelStatus:
        """Admin: (re)load every version of ``name`` found on disk that is not loaded."""
        async with self._reload_lock:
            refs = [r for r in await self._scan() if r.name == name]
            if not refs:
                raise NotFound(f"no model named {name[:64]!r} in the repository")
            await self._refresh_serving(name)
            todo = [
                (r.version, Path(r.path))
                for r in refs
                if (e := self._entry(name, r.version)) is None or e.state in ("failed", "unloaded")
            ]
            for version, path in todo:
                self._set(name, version, _Entry(path, "loading"))
            await asyncio.gather(*(self._load(name, version, path) for version, path in todo))
            return self.model(name)

    async def unload(self, name: str) -> ModelStatus:
        """Admin: stop serving every version of ``name`` (in-flight requests finish first)."""
        async with self._reload_lock:
            versions = self._models.get(name)
            if versions is None:
                raise NotFound(f"no model named {name[:64]!r}")
            drains = []
            for version, entry in versions.items():
                if entry.loaded is not None:
                    drains.append(entry.loaded.queue.drain())
                self._set(name, version, _Entry(entry.path, "unloaded", load_seconds=entry.load_seconds))
            await asyncio.gather(*drains)
            return self.model(name)

    async def drain(self, timeout: float | None = None) -> bool:
        """Shutdown: refuse new work (``Overloaded``), wait for in-flight work; False on timeout."""
        self._draining = True
        queues = [e.loaded.queue for v in self._models.values() for e in v.values() if e.loaded is not None]
        results = await asyncio.gather(*(q.drain(timeout) for q in queues))
        if self._background:
            await asyncio.wait(self._background, timeout=timeout)
        self._load_pool.shutdown(wait=False, cancel_futures=True)
        if self._own_inference_pool:
            self._inference_pool.shutdown(wait=False)
        return all(results)

    # ------------------------------------------------------------------ lookups

    @property
    def ready(self) -> bool:
        """``start`` has finished: every version found is loaded or failed (or unloaded); not draining."""
        return (
            self._started
            and not self._draining
            and all(e.state != "loading" for versions in self._models.values() for e in versions.values())
        )

    @property
    def draining(self) -> bool:
        return self._draining

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
            raise ModelNotReady(f"model {name!r} version {version} is {entry.state}")
        return entry.loaded

    def models(self) -> list[ModelStatus]:
        """Every model in name order, each with its versions (ascending), states and default."""
        return [self.model(name) for name in sorted(self._models)]

    def model(self, name: str) -> ModelStatus:
        versions = self._models.get(name)
        if versions is None:
            raise NotFound(f"no model named {name[:64]!r}")
        serving = self._serving.get(name, ServingConfig())
        return ModelStatus(
            name=name,
            versions=[
                VersionStatus(
                    version=v,
                    state=e.state,
                    error=e.error,
                    load_seconds=e.load_seconds,
                    runtime=e.loaded.runtime if e.loaded else None,
                )
                for v, e in sorted(versions.items())
            ],
            default=self._default(name, versions),
            error=serving.error,
        )

    def state_counts(self) -> dict[str, int]:
        """Versions per state, every state present (for the ``bundlegate_models`` gauge)."""
        counts = {"loading": 0, "loaded": 0, "failed": 0, "unloaded": 0}
        for versions in self._models.values():
            for entry in versions.values():
                counts[entry.state] += 1
        return counts

    # ------------------------------------------------------------------ internals

    async def _scan(self) -> list[BundleRef]:
        if self.sync is not None:
            await run_blocking(self._load_pool, self.sync)
        return await run_blocking(self._load_pool, scan_repository, self.repo)

    def _entry(self, name: str, version: int) -> _Entry | None:
        return self._models.get(name, {}).get(version)

    def _set(self, name: str, version: int, entry: _Entry) -> None:
        versions = dict(self._models.get(name, {}))
        versions[version] = entry
        self._models = {**self._models, name: versions}

    def _remove(self, name: str, version: int) -> None:
        versions = dict(self._models.get(name, {}))
        entry = versions.pop(version, None)
        models = {**self._models, name: versions}
        if not versions:
            del models[name]
        self._models = models
        if entry is not None and entry.loaded is not None:
            self._in_background(entry.loaded.queue.drain())

    async def _refresh_serving(self, name: str) -> None:
        """Re-read ``serving.json``; loaded versions take its batching settings at once."""
        serving = await run_blocking(self._load_pool, read_serving, self.repo / name)
        self._serving[name] = serving
        for entry in self._models.get(name, {}).values():
            if entry.loaded is not None:
                queue = entry.loaded.queue
                queue.max_batch_rows = self._batch_max_rows(serving)
                queue.max_delay_s = self._batch_max_delay_s(serving)

    def _batch_max_rows(self, serving: ServingConfig) -> int:
        return serving.batch_max_rows or self.settings.batch_max_rows

    def _batch_max_delay_s(self, serving: ServingConfig) -> float:
        delay_ms = serving.batch_max_delay_ms
        return (self.settings.batch_max_delay_ms if delay_ms is None else delay_ms) / 1000.0

    def _still_loading(self, name: str, version: int) -> bool:
        entry = self._entry(name, version)
        return entry is not None and entry.state == "loading"

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _default(self, name: str, versions: dict[int, _Entry]) -> int | None:
        pinned = self._serving.get(name, ServingConfig()).default_version
        if pinned is not None and pinned in versions:
            return pinned if versions[pinned].loaded is not None else None
        loaded = [v for v, e in versions.items() if e.loaded is not None]
        return max(loaded) if loaded else None

    async def _load(self, name: str, version: int, path: Path) -> bool:
        """Load one version in a thread, then switch it in; a failure is recorded, never raised."""
        started = time.monotonic()
        try:
            parts = await run_blocking(self._load_pool, self._load_parts, name, version, path)
        except Exception as exc:  # any failure of one bundle only fails that bundle
            reason = one_line(exc)
            log.warning("bundle %s version %s failed to load: %s", name, version, reason)
            if self._still_loading(name, version):
                self._set(name, version, _Entry(path, "failed", error=reason))
            return False
        seconds = time.monotonic() - started
        serving = self._serving.get(name, ServingConfig())
        observer = self.observer_factory(name, version) if self.observer_factory else None
        queue = BatchQueue(
            parts.model,
            max_batch_rows=self._batch_max_rows(serving),
            max_delay_s=self._batch_max_delay_s(serving),
            max_queue_rows=self.settings.queue_max_rows,
            observer=observer,
            inline_max_s=self.inline_max_s,
            run_in_threads=self.run_in_threads,
            executor=self._inference_pool,
        )
        if parts.warm is not None:
            queue.record_inference(*parts.warm)
        if not self._still_loading(name, version) or self._draining:  # removed or unloaded meanwhile
            return False
        loaded = LoadedVersion(name, version, parts.manifest, parts.schema, parts.answers, parts.model, queue)
        self._set(name, version, _Entry(path, "loaded", loaded=loaded, load_seconds=seconds))
        log.info("bundle %s version %s loaded in %.3fs (%s)", name, version, seconds, parts.model.runtime)
        if self.on_loaded is not None:
            self.on_loaded(name, version, seconds)
        return True

    def _load_parts(self, name: str, version: int, path: Path) -> VersionParts:
        """Load one version (in a loading thread)."""
        return load_version(path, name, version, self.settings)
