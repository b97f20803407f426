"""Monitoring over a real socket: ``bundle serve --drift --feedback --payload-log`` on 127.0.0.1 serving
a bundle packed by ``bundle pack`` from a sample of known distributions (four independent normals).

Rows drawn like the sample leave every feature's PSI under 0.1; the same number of rows with one
feature moved by two standard deviations push that feature, and only that one, over 0.2, in
``/drift`` and in ``/metrics``. Feedback for 200 predictions of which 150 were right reads as a live
accuracy of 0.75, and a 10% payload sample of 2,000 requests writes about 200 lines."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bundlegate.keys import create_key

pytestmark = [pytest.mark.socket, pytest.mark.slow]

FEATURES = ["age", "income", "score", "tenure"]
MEANS = np.array([40.0, 3000.0, 0.0, 12.0])
STDS = np.array([10.0, 800.0, 1.0, 4.0])
SHIFTED = "score"
ROWS = 2000
START_TIMEOUT_S = 60.0


def draw(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.normal(MEANS, STDS, size=(n, len(FEATURES)))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A classifier packed with a 5,000-row sample: the reference the gateway compares with."""
    import joblib
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from bundlegate.packer import PackOptions, pack_bundle

    root = tmp_path_factory.mktemp("drift")
    rng = np.random.default_rng(7)
    X = draw(rng, 5000)
    z = (X - MEANS) / STDS
    y = np.where(z[:, 0] + z[:, 2] > 0.5, "high", np.where(z[:, 1] < -0.5, "low", "mid"))
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    joblib.dump(model, root / "risk.joblib")
    np.save(root / "sample.npy", X)
    pack_bundle(
        root / "risk.joblib",
        PackOptions(name="risk", repo=root / "repo", sample=root / "sample.npy", features=FEATURES),
    )
    return root / "repo"


@contextlib.contextmanager
def gateway(repo: Path, tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    from ports import free_port

    key = create_key(tmp_path / "keys.json", "monitor", ["*"])
    port = free_port()
    log = tmp_path / "payload.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUNDLEGATE_")}
    args = [
        *("--host", "127.0.0.1", "--port", str(port), "--keys", str(tmp_path / "keys.json")),
        *("--no-access-log", "--drift", "--drift-window-rows", str(ROWS), "--feedback"),
        *("--drift-max-rows-per-s", "0"),  # every row counted, however fast the client is
        *("--payload-log", str(log), "--payload-sample-rate", "0.1"),
    ]
    with (tmp_path / "serve.log").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bundlegate.cli", "serve", str(repo), *args],
            stderr=err,
            env=env,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"bundle serve did not start:\n{(tmp_path / 'serve.log').read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            yield client, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def psi_gauges(client: httpx.Client) -> tuple[dict[str, float], dict[str, float]]:
    """(feature -> bundlegate_feature_drift_psi, bundlegate_live_accuracy and the prediction PSI)."""
    features: dict[str, float] = {}
    others: dict[str, float] = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == "bundlegate_feature_drift_psi" and sample.labels["model"] == "risk":
                assert sample.labels["version"] == "1"
                features[sample.labels["feature"]] = sample.value
            elif sample.name in ("bundlegate_live_accuracy", "bundlegate_prediction_drift_psi"):
                others[sample.name] = sample.value
    return features, others


def drift_psi(client: httpx.Client) -> tuple[int, dict[str, float], Any]:
    answer = client.get("/v1/models/risk/drift")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body == client.get("/v1/models/risk/versions/1/drift").json()
    for feature in body["features"]:
        assert len(feature["buckets"]) == len(feature["reference"]) == len(feature["live"])
    return body["window"]["rows"], {f["name"]: f["psi"] for f in body["features"]}, body["prediction"]


def test_drift_feedback_and_payload_log_over_a_socket(repo: Path, tmp_path: Path) -> None:
    rng = np.random.default_rng(2026)
    with gateway(repo, tmp_path) as (client, log):
        # 2,000 single rows drawn like the reference
        answers, sent = [], {}
        for row in draw(rng, ROWS):
            r = client.post("/v1/models/risk/predict", json={"inputs": dict(zip(FEATURES, row.tolist()))})
            assert r.status_code == 200, r.text
            answers.append(r.json())
            sent[r.json()["request_id"]] = row.tolist()
        rows, psi, prediction = drift_psi(client)
        assert rows == ROWS
        assert set(psi) == set(FEATURES)
        assert all(v < 0.1 for v in psi.values()), psi
        assert prediction["psi"] < 0.1, prediction
        gauges, others = psi_gauges(client)
        assert gauges == pytest.approx(psi, abs=1e-5)
        assert others["bundlegate_prediction_drift_psi"] == pytest.approx(prediction["psi"], abs=1e-5)

        # feedback: 200 predictions, 150 of them right
        classes = ["high", "low", "mid"]
        feedback = []
        for i, answer in enumerate(answers[:200]):
            right = answer["prediction"]
            label = right if i < 150 else next(c for c in classes if c != right)
            feedback.append({"request_id": answer["request_id"], "label": label})
        r = client.post("/v1/models/risk/feedback", json={"feedback": feedback})
        assert r.status_code == 200, r.text
        assert r.json() == {"matched": 200}
        assert psi_gauges(client)[1]["bundlegate_live_accuracy"] == pytest.approx(0.75)

        # feedback the gateway cannot join: 422, nothing recorded, predictions go on
        r = client.post(
            "/v1/models/risk/feedback",
            json={"feedback": [{"request_id": "no-such-request", "label": "high"}, feedback[0]]},
        )
        assert r.status_code == 422, r.text
        assert r.json()["error"]["details"][0]["loc"] == ["feedback", 0, "request_id"]
        r = client.post("/v1/models/risk/feedback", json={"feedback": [{**feedback[0], "label": 3}]})
        assert r.status_code == 422, r.text
        assert psi_gauges(client)[1]["bundlegate_live_accuracy"] == pytest.approx(0.75)

        # 2,000 rows with one feature two standard deviations away, as 100-row batches
        shifted = draw(rng, ROWS)
        shifted[:, FEATURES.index(SHIFTED)] += 2 * STDS[FEATURES.index(SHIFTED)]
        for batch in np.split(shifted, ROWS // 100):
            records = [dict(zip(FEATURES, row)) for row in batch.tolist()]
            r = client.post("/v1/models/risk/predict/batch", json={"inputs": records})
            assert r.status_code == 200, r.text
        rows, psi, _ = drift_psi(client)
        assert rows == ROWS
        assert psi[SHIFTED] > 0.2, psi
        assert all(v < 0.1 for name, v in psi.items() if name != SHIFTED), psi
        gauges, _ = psi_gauges(client)
        assert gauges[SHIFTED] > 0.2
        assert all(v < 0.1 for name, v in gauges.items() if name != SHIFTED), gauges

    # the gateway has stopped: the payload log is complete. 10% of 2,000 single-row requests, plus
    # 10% of 20 batches of 100 rows (a line per row)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    singles = [line for line in lines if line["request_id"] in sent]
    assert 150 <= len(singles) <= 250, len(singles)  # binomial(2000, 0.1): 200 +- 3.7 sd
    assert len(lines) - len(singles) in range(0, 2001, 100)
    first = singles[0]
    assert set(first) == {"time", "request_id", "model", "version", "row", "inputs", "outputs"}
    assert first["inputs"] == pytest.approx(sent[first["request_id"]])  # in the model's feature order
    assert first["outputs"]["prediction"] in ("high", "low", "mid")
    assert len(first["outputs"]["probabilities"]) == 3
