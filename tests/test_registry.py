"""ModelRegistry: every version loads in parallel, a bad bundle fails alone, reload switches versions."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bundle_factory import iris_model, mixed_model, pickled_model, with_version, write
from bundlegate.errors import ModelNotReady, NotFound, Overloaded
from bundlegate.feed import Feed, Prediction
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings

SETOSA = [5.1, 3.5, 1.4, 0.2]


class Observers:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, int], int] = {}

    def __call__(self, name: str, version: int) -> Observers.One:
        return Observers.One(self, (name, version))

    class One:
        def __init__(self, parent: Observers, key: tuple[str, int]) -> None:
            self.parent, self.key = parent, key

        def on_batch(self, rows: int, queue_wait_s: float, inference_s: float) -> None:
            self.parent.rows[self.key] = self.parent.rows.get(self.key, 0) + rows


def _corrupt(bundle_dir: Path) -> None:
    model = bundle_dir / "model.onnx"
    data = bytearray(model.read_bytes())
    data[-1] ^= 1
    model.chmod(0o644)
    model.write_bytes(bytes(data))


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "bundles"
    repo.mkdir()
    write(repo, iris_model())
    write(repo, with_version(iris_model(), 2))
    write(repo, mixed_model())
    _corrupt(write(repo, with_version(iris_model(), 1, name="broken")))
    return repo


@pytest.fixture
async def registry(repo: Path) -> AsyncIterator[ModelRegistry]:
    registry = ModelRegistry(repo, Settings(), Observers(), load_threads=2)
    yield registry
    await registry.drain(timeout=5)


async def _predict(registry: ModelRegistry, name: str, version: int | None = None) -> object:
    loaded = registry.get(name, version)
    prediction = await loaded.queue.submit(loaded.schema.from_record(SETOSA))
    return loaded.answers.decode_one(prediction)["prediction"]


async def test_every_version_loads_and_a_corrupted_bundle_fails_alone(registry: ModelRegistry) -> None:
    loaded_seconds: list[float] = []
    registry.on_loaded = lambda name, version, seconds: loaded_seconds.append(seconds)
    assert not registry.ready  # not before the first scan and load
    report = await registry.start()
    assert sorted(report.added) == [("credit", 1), ("iris", 1), ("iris", 2)]
    assert report.failed == [("broken", 1)]
    assert registry.ready
    assert len(loaded_seconds) == 3
    assert all(s > 0 for s in loaded_seconds)
    statuses = {m.name: m for m in registry.models()}
    assert [m for m in statuses] == ["broken", "credit", "iris"]
    broken = statuses["broken"].versions[0]
    assert broken.state == "failed"
    assert broken.error is not None
    assert "model.onnx" in broken.error
    assert statuses["iris"].default == 2
    assert [v.state for v in statuses["iris"].versions] == ["loaded", "loaded"]
    assert statuses["iris"].versions[0].load_seconds is not None
    assert await _predict(registry, "iris") == "setosa"
    assert registry.get("iris").version == 2
    assert registry.get("iris", 1).version == 1
    assert registry.state_counts() == {"loading": 0, "loaded": 3, "failed": 1, "unloaded": 0, "available": 0}


async def test_unknown_and_unready_models(registry: ModelRegistry) -> None:
    await registry.start()
    with pytest.raises(NotFound):
        registry.get("nope")
    with pytest.raises(NotFound):
        registry.get("iris", 9)
    with pytest.raises(ModelNotReady):
        registry.get("broken")
    with pytest.raises(ModelNotReady):
        registry.get("broken", 1)


async def test_mixed_model_serves_through_the_registry(registry: ModelRegistry) -> None:
    await registry.start()
    loaded = registry.get("credit")
    feed = loaded.schema.from_records(
        [{"age": None, "income": 70, "city": "Rome"}, {"age": 30, "income": 20, "city": None}]
    )
    out = loaded.answers.decode_batch(await loaded.queue.submit(feed))
    assert out["predictions"] == ["approve", "reject"]


async def test_serving_json_pins_the_default_and_sets_batching(repo: Path) -> None:
    (repo / "iris" / "serving.json").write_text(
        json.dumps({"default_version": 1, "batch_max_rows": 64, "batch_max_delay_ms": 3})
    )
    (repo / "credit" / "serving.json").write_text("{not json")
    registry = ModelRegistry(repo, Settings(batch_max_rows=128), load_threads=2, inline_max_s=0.002)
    try:
        await registry.start()
        assert registry.get("iris").version == 1
        assert registry.model("iris").default == 1
        queue = registry.get("iris", 2).queue
        assert queue.max_batch_rows == 64
        assert queue.max_delay_s == pytest.approx(0.003)
        assert queue.inline_max_s == 0.002
        credit = registry.model("credit")
        assert credit.error is not None
        assert "serving.json" in credit.error
        assert registry.get("credit").queue.max_batch_rows == 128
        (repo / "iris" / "serving.json").write_text(json.dumps({"batch_max_rows": 8}))
        await registry.reload()
        assert registry.get("iris").version == 2  # the pin is gone: the highest version again
        assert queue.max_batch_rows == 8
    finally:
        await registry.drain(timeout=5)


async def test_pickles_fail_without_opt_in_and_load_with_it(tmp_path: Path) -> None:
    write(tmp_path, pickled_model())
    refused = ModelRegistry(tmp_path, Settings(), load_threads=1)
    allowed = ModelRegistry(tmp_path, Settings(allow_pickle=True), load_threads=1)
    try:
        await refused.start()
        error = refused.model("iris-pickle").versions[0].error
        assert error is not None
        assert "allow-pickle" in error
        await allowed.start()
        assert await _predict(allowed, "iris-pickle") == "setosa"
    finally:
        await refused.drain(timeout=5)
        await allowed.drain(timeout=5)


async def test_reload_switches_versions_without_failing_in_flight_requests(
    registry: ModelRegistry, repo: Path
) -> None:
    observers = Observers()
    registry.observer_factory = observers
    await registry.start()
    old = registry.get("iris", 1)
    gate = threading.Event()
    real = old.model

    class Held:
        def predict(self, feed: Feed) -> Prediction:
            assert gate.wait(10)
            return real.predict(feed)

    old.queue.model = Held()
    old.queue.inline_max_s = -1.0  # through the worker and the thread pool: really in flight
    in_flight = [asyncio.create_task(old.queue.submit(old.schema.from_record(SETOSA))) for _ in range(20)]
    await asyncio.sleep(0.01)
    write(repo, with_version(iris_model(), 3))
    shutil.rmtree(repo / "iris" / "1")
    report = await registry.reload()
    assert report.added == [("iris", 3)]
    assert report.removed == [("iris", 1)]
    assert not any(t.done() for t in in_flight)
    gate.set()
    results = await asyncio.gather(*in_flight)
    assert all(r.labels is not None and r.labels.tolist() == ["setosa"] for r in results)
    assert registry.get("iris").version == 3
    assert await _predict(registry, "iris") == "setosa"
    with pytest.raises(NotFound):
        registry.get("iris", 1)
    assert [v.version for v in registry.model("iris").versions] == [2, 3]
    assert observers.rows[("iris", 3)] == 1


async def test_reload_retries_a_failed_version_that_was_repaired(registry: ModelRegistry, repo: Path) -> None:
    await registry.start()
    shutil.rmtree(repo / "broken" / "1")
    write(repo, with_version(iris_model(), 1, name="broken"))
    report = await registry.reload()
    assert report.added == [("broken", 1)]
    assert await _predict(registry, "broken") == "setosa"


async def test_unload_and_load(registry: ModelRegistry) -> None:
    await registry.start()
    status = await registry.unload("iris")
    assert {v.state for v in status.versions} == {"unloaded"}
    with pytest.raises(ModelNotReady):
        registry.get("iris")
    status = await registry.load("iris")
    assert {v.state for v in status.versions} == {"loaded"}
    assert await _predict(registry, "iris") == "setosa"
    with pytest.raises(NotFound):
        await registry.load("nope")


async def test_drain_refuses_new_work(registry: ModelRegistry) -> None:
    await registry.start()
    loaded = registry.get("iris")
    assert await registry.drain(timeout=5)
    assert not registry.ready
    with pytest.raises(Overloaded):
        await loaded.queue.submit(loaded.schema.from_record(SETOSA))


async def test_a_manifest_that_disagrees_with_its_directory_fails(tmp_path: Path) -> None:
    bundle_dir = write(tmp_path, iris_model())
    bundle_dir.rename(tmp_path / "iris" / "5")
    registry = ModelRegistry(tmp_path, Settings(), load_threads=1)
    try:
        await registry.start()
        status = registry.model("iris").versions[0]
        assert status.version == 5
        assert status.state == "failed"
    finally:
        await registry.drain(timeout=5)


async def test_loading_versions_are_visible_and_not_ready(repo: Path) -> None:
    gate = threading.Event()

    class SlowRegistry(ModelRegistry):
        def _load_parts(self, name: str, version: int, path: Path) -> Any:
            assert gate.wait(10)
            return super()._load_parts(name, version, path)

    registry = SlowRegistry(repo, Settings(), load_threads=2)
    try:
        starting = asyncio.create_task(registry.start())
        while not registry.models():
            await asyncio.sleep(0.005)
        assert {v.state for m in registry.models() for v in m.versions} == {"loading"}
        assert not registry.ready
        with pytest.raises(ModelNotReady, match="loading"):
            registry.get("iris")
        gate.set()
        await starting
        assert registry.ready
        assert registry.get("iris").version == 2
    finally:
        gate.set()
        await registry.drain(timeout=5)


EXAMPLES = Path(__file__).resolve().parent.parent / "bundles"


@pytest.mark.skipif(not (EXAMPLES / "iris").is_dir(), reason="example bundles not built")
async def test_example_bundles_answer_like_sklearn() -> None:
    registry = ModelRegistry(EXAMPLES, Settings(), load_threads=2)
    try:
        report = await registry.start()
        assert report.failed == []
        for name, _ in report.added:
            loaded = registry.get(name)
            bundle_dir = EXAMPLES / name / str(loaded.version)
            sample = json.loads((bundle_dir / "sample.json").read_text())
            expected = json.loads((bundle_dir / "expected.json").read_text())
            out = loaded.answers.decode_batch(await loaded.queue.submit(loaded.schema.from_records(sample)))
            if "labels" in expected:
                assert out["predictions"] == expected["labels"], name
                np.testing.assert_allclose(out["probabilities"], expected["probabilities"], atol=1e-4)
            else:
                np.testing.assert_allclose(
                    np.ravel(out["predictions"]), np.ravel(expected["values"]), rtol=1e-4
                )
    finally:
        await registry.drain(timeout=5)


_RUN_IN_THREADS_OF_A_REGISTRY = """
import os, sys
if sys.argv[1] == "one":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from bundlegate.registry import ModelRegistry
from bundlegate.settings import Settings
print(ModelRegistry(sys.argv[2], Settings(), load_threads=1).run_in_threads)
"""


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="no CPU affinity on this OS")
@pytest.mark.parametrize("cpus", ["one", "all"])
def test_a_process_confined_to_one_cpu_runs_its_batches_on_the_event_loop(repo: Path, cpus: str) -> None:
    threads = cpus == "all" and len(os.sched_getaffinity(0)) > 1  # one CPU in all: the loop too
    out = subprocess.run(
        [sys.executable, "-c", _RUN_IN_THREADS_OF_A_REGISTRY, cpus, str(repo)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.split()[-1] == str(threads)
