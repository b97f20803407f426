"""The README's install from a wheel, and the container's, done here without a Docker engine: a fresh
clone of this repository (its committed HEAD), `make dist` in it, the wheel installed into a fresh
virtualenv with the README's extras for serving (`docs`, `client`; not `pack`, as in the Dockerfile; no
pip cache), and proof that the result is a working gateway without scikit-learn: `bundle keys create`,
`bundle serve` on the example bundles, a prediction over a real socket, the /docs page, then SIGTERM and
a clean exit inside the drain timeout.

Slow (it downloads the runtime dependencies from the package index every run, on purpose: a cached or
pre-installed dependency could hide one missing from pyproject.toml)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from ports import free_port

pytestmark = [pytest.mark.slow, pytest.mark.socket]

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_BUNDLES = ROOT / "bundles"
DRAIN_TIMEOUT_S = 5
START_TIMEOUT_S = 120
# What the Dockerfile's build stage copies (its .dockerignore keeps everything else out).
BUILD_CONTEXT = ("pyproject.toml", "README.md", "src")
README_EXTRAS = "[docs,client]"


# bundlegate.client from the installed wheel (the client extra): one prediction, printed as JSON.
CLIENT_CALL = """
import json, sys
from bundlegate.client import Client
with Client(sys.argv[1], sys.argv[2]) as gw:
    answer = gw.predict(sys.argv[3], json.loads(sys.argv[4]))
print(json.dumps({"model": answer.model, "version": answer.version}))
"""


def run(args: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, check=False, timeout=900, **kwargs
    )
    assert result.returncode == 0, f"{args[:4]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment (its package index settings included) without anything that could leak
    the development install in (PYTHONPATH, an active virtualenv, gateway settings) or reuse a pip cache."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BUNDLEGATE_", "PYTHON", "VIRTUAL_ENV")) and k != "PIP_CACHE_DIR"
    }
    env.update(PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.update(extra)
    return env


def example_record(base_url: str, headers: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """A model the gateway serves from the example repository and one valid record for it, built from
    the manifest of its default version."""
    listing = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=10)
    assert listing.status_code == 200, listing.text
    for model in listing.json()["models"]:
        states = {v["version"]: v["state"] for v in model["versions"]}
        if states.get(model.get("default_version")) == "loaded":
            name, version = model["name"], model["default_version"]
            break
    else:
        pytest.fail(f"the gateway serves no model from {EXAMPLE_BUNDLES}: {listing.text}")
    manifest = json.loads((EXAMPLE_BUNDLES / name / str(version) / "bundle.json").read_text())
    record: dict[str, Any] = {}
    for feature in manifest["inputs"]:
        dtype = feature["dtype"]
        if feature.get("categories"):
            record[feature["name"]] = feature["categories"][0]
        elif dtype == "string":
            record[feature["name"]] = "x"
        elif dtype == "bool":
            record[feature["name"]] = False
        elif dtype == "int64":
            record[feature["name"]] = int(feature.get("min") or 0)
        else:
            record[feature["name"]] = float(feature.get("min") or 0.0)
    return name, record


def wait_ready(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"bundle serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.25)
    pytest.fail(f"bundle serve was not ready within {START_TIMEOUT_S}s")


def build_wheel(tmp_path: Path) -> Path:
    """The wheel, built from a copy of the Docker build context (nothing written into the checkout)."""
    context = tmp_path / "context"
    context.mkdir()
    for name in BUILD_CONTEXT:
        source = ROOT / name
        assert source.exists(), f"{name} is missing; the wheel build (and the Docker build) need it"
        if source.is_dir():
            shutil.copytree(
                source, context / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
            )
        else:
            shutil.copy2(source, context / name)
    wheels = tmp_path / "wheels"
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", wheels, context], env=clean_env())
    (wheel,) = wheels.glob("bundlegate-*.whl")
    return wheel


def wheel_from_a_fresh_clone(tmp_path: Path) -> Path:
    """The wheel as the README builds it: `make dist` in a fresh clone of this repository's committed
    HEAD (nothing written into the checkout)."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None or shutil.which("make") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true needs a git checkout, git and make for the fresh-clone build")
        pytest.skip("not a git checkout, or git/make missing")
    clone = tmp_path / "clone"
    run(["git", "clone", "--quiet", "--no-hardlinks", ROOT, clone], env=clean_env())
    for name in BUILD_CONTEXT:
        assert (clone / name).exists(), f"{name} is not committed; the wheel (and the Docker build) need it"
    run(["make", "-C", clone, "dist", f"PYTHON={sys.executable}"], env=clean_env())
    (wheel,) = (clone / "dist").glob("bundlegate-*.whl")
    return wheel


def test_wheel_installed_like_the_container_serves_predictions(tmp_path: Path) -> None:
    # 1. The wheel, built by `make dist` in a fresh clone.
    wheel = wheel_from_a_fresh_clone(tmp_path)

    # 2. A fresh virtualenv with the wheel and nothing else, as in the Dockerfile.
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env=clean_env())
    python, bundle = venv / "bin" / "python", venv / "bin" / "bundle"
    run([python, "-m", "pip", "install", f"{wheel}{README_EXTRAS}"], env=clean_env())
    for packer_only in ("sklearn", "skl2onnx", "pandas"):
        found = run(
            [python, "-c", f"import importlib.util as u; print(u.find_spec({packer_only!r}) is not None)"],
            env=clean_env(),
        )
        assert found.stdout.strip() == "False", f"{packer_only} was installed without the pack extra"

    # 3. A key, made by the installed CLI; the key is the last line it prints.
    keys_file = tmp_path / "keys.json"
    created = run([bundle, "keys", "create", "smoke", "--models", "*", "--file", keys_file], env=clean_env())
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("bg_")

    # 4. The gateway from that venv on the example bundles, then a prediction.
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    log_file = log.open("wb")
    process = subprocess.Popen(
        [
            str(bundle),
            "serve",
            str(EXAMPLE_BUNDLES),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--keys",
            str(keys_file),
            "--drain-timeout-s",
            str(DRAIN_TIMEOUT_S),
        ],
        cwd=tmp_path,
        env=clean_env(),
        stdout=log_file,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(base_url, process, log)
        headers = {"Authorization": f"Bearer {key}"}
        model, record = example_record(base_url, headers)
        response = httpx.post(
            f"{base_url}/v1/models/{model}/predict", json={"inputs": record}, headers=headers, timeout=30
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["model"] == model
        assert "prediction" in body
        assert httpx.post(f"{base_url}/v1/models/{model}/predict", json={"inputs": record}).status_code == 401
        assert httpx.get(f"{base_url}/docs", timeout=10).status_code == 200  # the docs extra's assets
        assert httpx.get(f"{base_url}/docs/swagger-ui-bundle.js", timeout=10).status_code == 200
        from_client = run(
            [python, "-c", CLIENT_CALL, base_url, key, model, json.dumps(record)], env=clean_env()
        )
        assert json.loads(from_client.stdout)["model"] == model

        # 5. SIGTERM: the gateway drains and exits inside the drain timeout.
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=DRAIN_TIMEOUT_S + 10)
        assert time.monotonic() - started < DRAIN_TIMEOUT_S
        # uvicorn finishes its graceful shutdown, then re-raises the signal it caught: -SIGTERM is a
        # clean exit too, provided the app's shutdown (the drain) ran to its end.
        assert returncode in (0, -signal.SIGTERM), log.read_text()[-3000:]
        assert "Application shutdown complete" in log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_file.close()


def test_the_sklearn_runtime_variant_serves_a_dataframe_fallback(tmp_path: Path) -> None:
    """The Dockerfile's ``GATEWAY_EXTRAS=sklearn-runtime`` install with ``RUNTIME_PINS`` from the bundle:
    no converter, and a ``runtime: sklearn`` bundle of a DataFrame pipeline answers over a real socket."""
    import importlib.metadata as md

    import joblib
    import numpy as np

    from bundlegate.bundle import read_bundle
    from bundlegate.packer import PackOptions, pack_bundle
    from packer_zoo import CASES

    case = next(c for c in CASES if c.id == "dataframe_function_transformer")
    est, X = case.fit()
    joblib.dump(est, tmp_path / "model.joblib")
    X.to_csv(tmp_path / "sample.csv", index=False)
    repo = tmp_path / "repo"
    options = PackOptions(
        name="framed", repo=repo, sample=tmp_path / "sample.csv", allow_pickle_fallback=True
    )
    manifest = pack_bundle(tmp_path / "model.joblib", options).manifest
    source = read_bundle(repo / "framed" / "1").manifest.source
    pins = [f"scikit-learn=={source.sklearn_version}", f"numpy=={source.numpy_version}"]
    pins += [f"{k}=={v}" for k, v in (source.libraries or {}).items()]

    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", venv], env=clean_env())
    python, bundle = venv / "bin" / "python", venv / "bin" / "bundle"
    run([python, "-m", "pip", "install", f"{wheel}[sklearn-runtime]", *pins], env=clean_env())
    for module, wanted in (("sklearn", True), ("pandas", True), ("skl2onnx", False), ("onnxmltools", False)):
        probe = f"import importlib.util as u; print(u.find_spec({module!r}) is not None)"
        found = run([python, "-c", probe], env=clean_env())
        assert found.stdout.strip() == str(wanted), f"{module}: expected installed={wanted}"
    assert md.version("scikit-learn") == source.sklearn_version

    keys_file = tmp_path / "keys.json"
    created = run([bundle, "keys", "create", "smoke", "--models", "*", "--file", keys_file], env=clean_env())
    key = created.stdout.strip().splitlines()[-1]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [bundle, "serve", repo, "--host", "127.0.0.1", "--port", str(port), "--keys", keys_file,
             "--allow-pickle", "--drain-timeout-s", str(DRAIN_TIMEOUT_S)],
            cwd=tmp_path, env=clean_env(), stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_ready(base_url, process, log)
            frame = X.head(25)
            records = [
                {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
                for r in frame.to_dict("records")
            ]
            response = httpx.post(
                f"{base_url}/v1/models/framed/predict/batch",
                json={"inputs": records},
                headers={"Authorization": f"Bearer {key}"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["predictions"] == est.predict(frame).tolist()
            assert manifest.parity is not None
            np.testing.assert_allclose(
                body["probabilities"], est.predict_proba(frame), atol=manifest.parity.tolerance
            )
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=DRAIN_TIMEOUT_S + 10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
