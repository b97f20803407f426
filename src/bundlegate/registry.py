"""Every version of every bundle in the repository, its state, and the route to it per model.

    registry = ModelRegistry(repo, settings, metrics.observer_for)
    await registry.start()                       # scan, then load every version in parallel threads
    loaded = registry.get("credit")              # default version; get("credit", 3) pins one
    loaded, shadow = registry.route("credit", key)   # a model whose serving.json splits or shadows
    await registry.reload()                      # new versions load in the background, then switch in
    await registry.drain(timeout=20)             # shutdown: refuse new work, finish in-flight

States per version (``status``): ``loading`` → ``loaded`` | ``failed``, ``unloaded`` after an admin
unload, ``available`` on disk but not in memory (``lazy``, or evicted under the memory budget). ``get``
raises ``NotFound`` for an unknown model or version, ``NotResident`` for an available one (the HTTP
layer awaits ``make_resident`` and retries: one load per version at a time, ``residency``) and
``ModelNotReady`` for one that is loading, failed or unloaded.

The operator's ``<repo>/<name>/serving.json`` (``bundlegate.serving``) sets the default version, a
weighted split and a shadow (``rollout``, ``shadow``), aliases, which versions load, pinning and
batching. A refused file is logged once, reported in the status and to ``events``, and the previous
good configuration stays in force. Default version: ``default_version`` when that version exists, else
the highest servable version.

What the repository loses never stops what serves: a loaded version whose directory is gone stays
(``missing`` in its status) until an admin unload, or until a re-scan loads a new version of its model
(one that served already never replaces it: ``rm -rf`` is not atomic); a repository that cannot be
read changes nothing. A failed version is logged once per change and tried again with a back-off
(``load_retries``).

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
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from bundlegate.batching import DEFAULT_INLINE_MAX_S, BatchObserver, BatchQueue, run_blocking, usable_cpus
from bundlegate.errors import NotFound, one_line
from bundlegate.load_retries import LoadRetries
from bundlegate.loader import LoaderSettings, VersionParts, described, load_version
from bundlegate.policies import ServingPolicies
from bundlegate.registry_events import RegistryEvents, bundle_bytes
from bundlegate.repository import Skipped, scan_repository_report
from bundlegate.residency import Residency
from bundlegate.serving import ServingConfig, read_serving
from bundlegate.shadow import ShadowScorer
from bundlegate.status import ModelStatus, ReloadReport
from bundlegate.version_table import Entry, LoadedVersion, VersionTable

log = logging.getLogger("bundlegate.registry")

__all__ = ["LoadedVersion", "ModelRegistry", "RegistrySettings"]


class RegistrySettings(LoaderSettings, Protocol):
    """The settings the registry reads (``bundlegate.settings.Settings`` has them all)."""

    @property
    def batch_max_rows(self) -> int: ...
    @property
    def batch_max_delay_ms(self) -> float: ...
    @property
    def queue_max_rows(self) -> int: ...
    @property
    def lazy(self) -> bool: ...
    @property
    def memory_budget_mb(self) -> int: ...


ObserverFactory = Callable[[str, int], BatchObserver]
LoadListener = Callable[[str, int, float], None]


class ModelRegistry(VersionTable):
    """See the module docstring."""

    def __init__(
        self,
        repo: Path,
        settings: RegistrySettings,
        observer_factory: ObserverFactory | None = None,
        *,
        on_loaded: LoadListener | None = None,
        events: RegistryEvents | None = None,
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
        self.events = events or RegistryEvents()
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
        super().__init__(
            ServingPolicies(self.events.serving_refused), ShadowScorer(self.events.shadow_compared)
        )
        self.residency = Residency(settings.memory_budget_mb * 2**20)
        self._retries = LoadRetries()
        self._reload_lock = asyncio.Lock()
        self._draining = False
        self._started = False
        self._background: set[asyncio.Task[Any]] = set()
        self._skipped: set[Skipped] = set()  # reported already

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> ReloadReport:
        """Scan the repository and load every version in parallel; returns what was loaded or failed."""
        report = await self.reload()
        self._started = True
        return report

    async def reload(self) -> ReloadReport:
        """Re-scan: load new versions (and failed ones that are due), switch them in, drop versions
        that are gone (see the module docstring for what stays)."""
        async with self._reload_lock:
            report = ReloadReport()
            found = await self._scan()
            if found is None:
                return report
            for name in found:
                await self._refresh_serving(name)
                allowed = self.policies.of(name).loads(list(found[name]))
                found[name] = {v: p for v, p in found[name].items() if v in allowed}
            todo = [
                (name, version, path)
                for name, versions in found.items()
                for version, path in versions.items()
                if (entry := self._entry(name, version)) is None
                or (entry.state == "failed" and self._retries.due((name, version), path))
            ]
            results = await self._load_all(todo)
            for (name, version, _), ok in zip(todo, results, strict=True):
                (report.added if ok else report.failed).append((name, version))
            fresh = {key for key in report.added if (e := self._entry(*key)) and e.loaded is not None}
            self._forget_gone(found, fresh, report)
            for name in self.policies.names():
                if name not in self._models:
                    self.policies.forget(name)
            return report

    async def load(self, name: str) -> ModelStatus:
        """Admin: load every version of ``name`` on disk that is not loaded (a model or version that
        appeared since the last scan included); ``NotFound`` when the repository has none."""
        async with self._reload_lock:
            found = (await self._scan() or {}).get(name)
            if not found:
                raise NotFound(f"no model named {name[:64]!r} in the repository")
            await self._refresh_serving(name)
            allowed = self.policies.of(name).loads(list(found))
            todo = [
                (name, v, p)
                for v, p in found.items()
                if v in allowed and ((e := self._entry(name, v)) is None or e.loaded is None)
            ]
            await self._load_all(todo, lazy=False)
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
                self.residency.remove((name, version))
                self._set(name, version, Entry(entry.path, "unloaded", load_seconds=entry.load_seconds))
            await asyncio.gather(*drains)
            self.events.resident(self.residency.resident_bytes)
            return self.model(name)

    async def make_resident(self, name: str, version: int) -> None:
        """Load an ``available`` version (``--lazy``, or evicted); concurrent callers share one load."""

        async def start() -> None:
            entry = self._entry(name, version)
            if entry is not None and entry.state == "available" and not self._draining:
                await self._load(name, version, entry.path, entry, cold=True)

        await self.residency.load_once((name, version), start)

    def _wake(self, name: str, version: int) -> None:
        """A shadow version is ``available``: load it in the background, one load at a time."""
        if not self._draining and not self.residency.loading((name, version)):
            self._in_background(self.make_resident(name, version))

    async def drain(self, timeout: float | None = None) -> bool:
        """Shutdown: refuse new work (``Overloaded``), wait for in-flight work; False on timeout."""
        self._draining = True
        queues = [e.loaded.queue for v in self._models.values() for e in v.values() if e.loaded is not None]
        results = await asyncio.gather(*(q.drain(timeout) for q in queues))
        await self.shadows.wait(timeout)
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

    # ------------------------------------------------------------------ internals

    async def _scan(self) -> dict[str, dict[int, Path]] | None:
        """``{name: {version: path}}`` on disk, or None (logged once) when the repository is unreadable."""
        try:
            if self.sync is not None:  # an object-storage mirror: it keeps its cache when the store fails
                await run_blocking(self._load_pool, self.sync)
            refs, skipped = await run_blocking(self._load_pool, scan_repository_report, self.repo)
        except Exception as exc:  # a failing mount: keep serving what is loaded
            reason = f"the repository cannot be read, nothing changes: {one_line(exc)}"
            if reason != self._scan_error:
                log.error("%s", reason)
            self._scan_error = reason
            return None
        self._scan_error = None
        self._report_skipped(skipped)
        found: dict[str, dict[int, Path]] = {}
        for ref in refs:
            found.setdefault(ref.name, {})[ref.version] = Path(ref.path)
        return found

    def _report_skipped(self, skipped: list[Skipped]) -> None:
        """Log each directory the scan skips, with the reason, once (not at every re-scan)."""
        current = set(skipped)
        for path, reason in sorted(current - self._skipped):
            log.warning("skipped %s: %s", path, reason)
        self._skipped = current

    def _forget_gone(
        self, found: dict[str, dict[int, Path]], fresh: set[tuple[str, int]], report: ReloadReport
    ) -> None:
        """Drop versions gone from disk, but a loaded one stays (``missing``) until a version of its
        model that this re-scan loaded (``fresh``) serves. A version that served before never counts
        as a replacement: a directory tree being deleted shows some versions still on disk."""
        for name, versions in list(self._models.items()):
            on_disk = found.get(name, {})
            replaced = any((name, v) in fresh and v in on_disk for v in versions)
            for version, entry in list(versions.items()):
                if version in on_disk:
                    if entry.missing:
                        self._set(name, version, replace(entry, missing=False, path=on_disk[version]))
                elif entry.loaded is None or replaced:
                    self._remove(name, version)
                    report.removed.append((name, version))
                elif not entry.missing:
                    log.warning("model %s version %s is missing on disk; still serving", name, version)
                    self._set(name, version, replace(entry, missing=True))

    async def _load_all(self, todo: list[tuple[str, int, Path]], lazy: bool | None = None) -> list[bool]:
        if self.settings.lazy if lazy is None else lazy:
            manifests = await run_blocking(self._load_pool, lambda: [described(*t) for t in todo])
            for (name, version, path), manifest in zip(todo, manifests, strict=True):
                self._set(name, version, Entry(path, "available", manifest=manifest))
            return [True] * len(todo)
        entries = [Entry(path, "loading") for _, _, path in todo]
        for (name, version, _), entry in zip(todo, entries, strict=True):
            self._set(name, version, entry)
        return await asyncio.gather(
            *(self._load(n, v, p, e) for (n, v, p), e in zip(todo, entries, strict=True))
        )

    def _remove(self, name: str, version: int) -> None:
        versions = dict(self._models.get(name, {}))
        entry = versions.pop(version, None)
        models = {**self._models, name: versions}
        if not versions:
            del models[name]
        self._models = models
        self._retries.forget((name, version))
        self.residency.remove((name, version))
        if entry is not None and entry.loaded is not None:
            self._in_background(entry.loaded.queue.drain())

    async def _refresh_serving(self, name: str) -> None:
        """Re-read ``serving.json``; loaded versions take its batching settings at once."""
        serving = self.policies.refresh(
            name, await run_blocking(self._load_pool, read_serving, self.repo / name)
        )
        for entry in self._models.get(name, {}).values():
            if entry.loaded is not None:
                queue = entry.loaded.queue
                queue.max_batch_rows = serving.batch_max_rows or self.settings.batch_max_rows
                queue.max_delay_s = self._batch_max_delay_s(serving)

    def _batch_max_delay_s(self, serving: ServingConfig) -> float:
        delay_ms = serving.batch_max_delay_ms
        return (self.settings.batch_max_delay_ms if delay_ms is None else delay_ms) / 1000.0

    def _in_background(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _make_room(self, need: int, keep: tuple[str, int]) -> None:
        """Evict least recently used unpinned versions until ``need`` more bytes fit the budget."""

        def pinned(key: tuple[str, int]) -> bool:
            entry = self._entry(*key)
            return key == keep or entry is None or entry.missing or self.policies.of(key[0]).pinned

        for name, version in self.residency.victims(need, pinned):
            entry = self._entry(name, version)
            self.residency.remove((name, version))
            if entry is not None and entry.loaded is not None:  # in-flight requests keep their reference
                evicted = Entry(
                    entry.path, "available", load_seconds=entry.load_seconds, manifest=entry.loaded.manifest
                )
                self._set(name, version, evicted)
                self.events.evicted(name, version)
                log.info("model %s version %s evicted (memory budget)", name, version)

    async def _load(self, name: str, version: int, path: Path, started_as: Entry, cold: bool = False) -> bool:
        """Load one version in a thread, then switch it in; a failure is recorded, never raised."""
        key = (name, version)
        started = time.monotonic()
        size = bundle_bytes(path)
        self._make_room(size, key)
        try:
            parts = await run_blocking(self._load_pool, self._load_parts, name, version, path)
        except Exception as exc:  # any failure of one bundle only fails that bundle
            reason = one_line(exc)
            if self._retries.failed(key, path, reason):
                log.warning("bundle %s version %s failed to load: %s", name, version, reason)
            if self._entry(name, version) is started_as:
                self._set(name, version, Entry(path, "failed", error=reason))
            return False
        seconds = time.monotonic() - started
        serving = self.policies.of(name)
        observer = self.observer_factory(name, version) if self.observer_factory else None
        queue = BatchQueue(
            parts.model,
            max_batch_rows=serving.batch_max_rows or self.settings.batch_max_rows,
            max_delay_s=self._batch_max_delay_s(serving),
            max_queue_rows=self.settings.queue_max_rows,
            observer=self.residency.observer(key, observer),
            inline_max_s=self.inline_max_s,
            run_in_threads=self.run_in_threads,
            executor=self._inference_pool,
        )
        if parts.warm is not None:
            queue.record_inference(*parts.warm)
        if self._entry(name, version) is not started_as or self._draining:  # removed or unloaded meanwhile
            return False
        self._retries.forget(key)
        loaded = LoadedVersion(name, version, parts.manifest, parts.schema, parts.answers, parts.model, queue)
        self._set(name, version, Entry(path, "loaded", loaded=loaded, load_seconds=seconds))
        self.residency.add(key, size)
        self._make_room(0, key)
        log.info("bundle %s version %s loaded in %.3fs (%s)", name, version, seconds, parts.model.runtime)
        if self.on_loaded is not None:
            self.on_loaded(name, version, seconds)
        self.events.version_loaded(name, version, seconds, size, cold)
        self.events.resident(self.residency.resident_bytes)
        return True

    def _load_parts(self, name: str, version: int, path: Path) -> VersionParts:
        """Load one version (in a loading thread)."""
        return load_version(path, name, version, self.settings)
