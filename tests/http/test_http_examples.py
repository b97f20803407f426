"""The example bundles of the repository (``bundles/``, what ``make serve`` serves): over HTTP, /v1 and
/v2 answer exactly what the original sklearn model answered on each bundle's sample rows
(the manifest's ``expected_file``, written by ``bundle pack`` from the fitted estimator)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from gateway_support import client_for
from prometheus_client import CollectorRegistry

from bundlegate.http.app import create_app
from bundlegate.keys import create_key
from bundlegate.metrics import GatewayMetrics
from bundlegate.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "bundles"


def example_versions() -> list[Path]:
    if not EXAMPLES.is_dir():
        return []
    found = []
    for path in sorted(EXAMPLES.glob("*/*/bundle.json")):
        manifest = json.loads(path.read_text())
        if manifest.get("sample_file") and manifest.get("expected_file"):
            found.append(path.parent)
    return found


pytestmark = pytest.mark.skipif(not example_versions(), reason="the example bundles are not built")


@pytest.fixture(scope="module")
def examples_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("example-keys") / "keys.json"
    return path, create_key(path, "examples", ["*"])


@pytest.fixture
async def example_client(examples_key: tuple[Path, str]) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(repository=EXAMPLES, keys_file=examples_key[0], access_log=False)
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    await app.loaded()
    try:
        async with client_for(app) as client:
            client.headers["Authorization"] = f"Bearer {examples_key[1]}"
            yield client
    finally:
        await app.shutdown()


def load(version_dir: Path) -> tuple[str, int, list[dict[str, Any]], dict[str, Any]]:
    manifest = json.loads((version_dir / "bundle.json").read_text())
    sample = json.loads((version_dir / manifest["sample_file"]).read_text())
    expected = json.loads((version_dir / manifest["expected_file"]).read_text())
    return manifest["name"], manifest["version"], sample, expected


def assert_matches(predictions: list[Any], probabilities: Any, expected: dict[str, Any]) -> None:
    if "labels" in expected:
        assert predictions == expected["labels"]
        assert np.allclose(np.array(probabilities), np.array(expected["probabilities"]), atol=1e-4)
    else:
        assert np.allclose(np.ravel(predictions), np.ravel(expected["values"]), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("version_dir", example_versions(), ids=lambda p: f"{p.parent.name}-{p.name}")
async def test_v1_batch_and_single_equal_sklearn(
    example_client: httpx.AsyncClient, version_dir: Path
) -> None:
    name, version, sample, expected = load(version_dir)
    base = f"/v1/models/{name}/versions/{version}"
    r = await example_client.post(f"{base}/predict/batch", json={"inputs": sample})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_matches(body["predictions"], body.get("probabilities"), expected)
    for i in (0, len(sample) - 1):
        one = await example_client.post(f"{base}/predict", json={"inputs": sample[i]})
        assert one.status_code == 200, one.text
        assert one.json()["prediction"] == body["predictions"][i]


@pytest.mark.parametrize("version_dir", example_versions(), ids=lambda p: f"{p.parent.name}-{p.name}")
async def test_v2_infer_per_feature_equals_sklearn(
    example_client: httpx.AsyncClient, version_dir: Path
) -> None:
    name, version, sample, expected = load(version_dir)
    meta = (await example_client.get(f"/v2/models/{name}/versions/{version}")).json()
    manifest = json.loads((version_dir / "bundle.json").read_text())
    n = len(sample)
    tensors = [
        {
            "name": spec["name"],
            "datatype": {"string": "BYTES", "bool": "BOOL"}.get(spec["dtype"], "FP64"),
            "shape": [n, 1],
            "data": [row[spec["name"]] for row in sample],
        }
        for spec in manifest["inputs"]
    ]
    r = await example_client.post(f"/v2/models/{name}/versions/{version}/infer", json={"inputs": tensors})
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert [o["name"] for o in meta["outputs"]] == list(outputs)
    if "labels" in expected:
        probabilities = np.array(outputs["probabilities"]["data"]).reshape(outputs["probabilities"]["shape"])
        assert_matches(outputs["label"]["data"], probabilities, expected)
    else:
        assert_matches(outputs["value"]["data"], None, expected)
