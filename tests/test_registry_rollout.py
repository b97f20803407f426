"""The registry under rollouts: a refused serving.json keeps the last good one, what the disk loses
keeps serving, failures back off and log once, versions policy, lazy loads once, a pinned model stays."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bundle_factory import iris_model, with_version, write
from bundlegate.errors import NotResident
from bundlegate.registry import ModelRegistry
from bundlegate.registry_events import RegistryEvents
from bundlegate.settings import Settings


class Events(RegistryEvents):
    def __init__(self) -> None:
        self.loads: list[tuple[str, int, bool]] = []
        self.evictions: list[tuple[str, int]] = []
        self.refused: dict[str, bool] = {}

    def version_loaded(self, model: str, version: int, seconds: float, size: int, cold: bool) -> None:
        self.loads.append((model, version, cold))

    def evicted(self, model: str, version: int) -> None:
        self.evictions.append((model, version))

    def serving_refused(self, model: str, refused: bool) -> None:
        self.refused[model] = refused


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "bundles"
    repo.mkdir()
    write(repo, iris_model())
    write(repo, with_version(iris_model(), 2))
    return repo


@pytest.fixture
async def make(repo: Path) -> AsyncIterator[Any]:
    made: list[ModelRegistry] = []

    def build(**settings: Any) -> tuple[ModelRegistry, Events]:
        events = Events()
        registry = ModelRegistry(repo, Settings(**settings), events=events, load_threads=2)
        made.append(registry)
        return registry, events

    yield build
    for registry in made:
        await registry.drain(timeout=5)


async def test_a_refused_serving_json_keeps_the_previous_configuration(repo: Path, make: Any) -> None:
    registry, events = make()
    (repo / "iris" / "serving.json").write_text(json.dumps({"aliases": {"champion": 1}}))
    await registry.start()
    assert registry.policies.alias("iris", "champion") == 1
    (repo / "iris" / "serving.json").write_text(json.dumps({"aliases": {"champion": 2}, "trafic": {}}))
    await registry.reload()
    status = registry.model("iris")
    assert status.error is not None
    assert "unknown key 'trafic'" in status.error
    assert events.refused == {"iris": True}
    assert registry.policies.alias("iris", "champion") == 1  # the last good file still applies
    (repo / "iris" / "serving.json").write_text(json.dumps({"aliases": {"champion": 2}}))
    await registry.reload()
    assert registry.model("iris").error is None
    assert events.refused == {"iris": False}
    assert registry.policies.alias("iris", "champion") == 2


async def test_what_the_disk_loses_keeps_serving_until_replaced(repo: Path, make: Any) -> None:
    registry, _ = make()
    await registry.start()
    shutil.rmtree(repo / "iris")
    await registry.reload()
    assert registry.get("iris").version == 2
    assert [v.missing for v in registry.model("iris").versions] == [True, True]
    repo.rename(repo.parent / "elsewhere")  # a mount that fails: nothing changes
    await registry.reload()
    assert registry.get("iris").version == 2
    assert registry.model("iris").error is not None
    (repo.parent / "elsewhere").rename(repo)
    write(repo, with_version(iris_model(), 3))  # a replacement version: the missing ones go
    await registry.reload()
    assert [v.version for v in registry.model("iris").versions] == [3]
    assert registry.model("iris").error is None


async def test_a_half_deleted_model_keeps_its_default_serving(repo: Path, make: Any) -> None:
    registry, _ = make()
    await registry.start()
    shutil.rmtree(repo / "iris" / "2")  # rm -rf caught half-way: version 1 is still on disk
    report = await registry.reload()
    assert report.removed == []
    assert registry.get("iris").version == 2  # version 1 served before: it replaces nothing
    assert [(v.version, v.missing) for v in registry.model("iris").versions] == [(1, False), (2, True)]
    shutil.rmtree(repo / "iris")
    await registry.reload()
    assert registry.get("iris").version == 2


async def test_a_failed_bundle_is_logged_once_and_retried_when_it_changes(
    repo: Path, make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    broken = write(repo, with_version(iris_model(), 1, name="broken"))
    (broken / "model.onnx").write_bytes(b"not the model that was hashed")
    registry, _ = make()
    with caplog.at_level(logging.WARNING, logger="bundlegate.registry"):
        await registry.start()
        for _ in range(3):
            await registry.reload()
    assert sum("broken version 1 failed" in r.message for r in caplog.records) == 1
    shutil.rmtree(broken)
    write(repo, with_version(iris_model(), 1, name="broken"))  # fixed on disk
    await registry.reload()
    assert registry.get("broken").version == 1


async def test_the_versions_policy_limits_what_loads(repo: Path, make: Any) -> None:
    write(repo, with_version(iris_model(), 3))
    (repo / "iris" / "serving.json").write_text(json.dumps({"versions": {"latest": 2}}))
    registry, _ = make()
    await registry.start()
    assert [v.version for v in registry.model("iris").versions] == [2, 3]


async def test_lazy_loads_a_version_once_however_many_ask(repo: Path, make: Any) -> None:
    registry, events = make(lazy=True)
    await registry.start()
    assert [v.state for v in registry.model("iris").versions] == ["available", "available"]
    assert registry.serves("iris")
    with pytest.raises(NotResident):
        registry.get("iris")
    await asyncio.gather(*(registry.make_resident("iris", 2) for _ in range(8)))
    assert events.loads == [("iris", 2, True)]
    assert registry.get("iris").version == 2


async def test_a_pinned_model_is_never_evicted(repo: Path, make: Any) -> None:
    write(repo, with_version(iris_model(), 1, name="other"))
    (repo / "iris" / "serving.json").write_text(json.dumps({"pinned": True, "versions": [2]}))
    size = sum(f.stat().st_size for f in (repo / "other" / "1").iterdir())
    registry, events = make(lazy=True, memory_budget_mb=1)
    registry.residency.budget_bytes = size + size // 2  # room for one version
    await registry.start()
    await registry.make_resident("iris", 2)
    await registry.make_resident("other", 1)
    assert events.evictions == []  # over the budget, but the only candidate is pinned
    assert registry.get("iris").version == 2
    assert registry.get("other").version == 1


async def test_a_lazy_shadow_loads_in_the_background_and_then_shadows(repo: Path, make: Any) -> None:
    (repo / "iris" / "serving.json").write_text(json.dumps({"shadow": {"version": 1}}))
    registry, events = make(lazy=True)
    await registry.start()
    await registry.make_resident("iris", 2)
    loaded, shadow = registry.route("iris", None)
    assert (loaded.version, shadow) == (2, None)  # not resident yet: this request is not shadowed
    for _ in range(200):  # bounded: the background load takes well under a second
        if registry.model("iris").versions[0].state == "loaded":
            break
        await asyncio.sleep(0.02)
    assert events.loads == [("iris", 2, True), ("iris", 1, True)]
    loaded, shadow = registry.route("iris", None)
    assert loaded.version == 2
    assert shadow is not None
    assert shadow.target.version == 1
