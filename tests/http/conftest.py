"""Fixtures for the HTTP tests: a repository of real example bundles, a keys file, and the gateway
app in-process (``httpx.ASGITransport`` runs no lifespan, so the fixture starts and stops the app)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bundle_factory lives in tests/

import bundle_factory as bf  # noqa: E402

from bundlegate.http.app import Gateway, create_app  # noqa: E402
from bundlegate.keys import create_key  # noqa: E402
from bundlegate.metrics import GatewayMetrics  # noqa: E402
from bundlegate.settings import Settings  # noqa: E402


@dataclass(frozen=True)
class Keys:
    path: Path
    all: str  # every model
    iris: str  # only "iris"
    admin: str  # every model, admin

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.all}"}


def build_repo(root: Path) -> Path:
    """iris v1 and v2 (numeric classifier), credit (mixed, nullable), credit-strict (unknown city
    refused), price (regressor), broken (a tampered model file: fails to load)."""
    repo = root / "repo"
    repo.mkdir()
    iris = bf.iris_model()
    bf.write(repo, iris)
    bf.write(repo, bf.with_version(iris, 2))
    mixed = bf.mixed_model()
    bf.write(repo, mixed)
    strict_inputs = [
        i.model_copy(update={"allow_unknown": False}) if i.name == "city" else i
        for i in mixed.manifest.inputs
    ]
    strict = bf.Built(
        mixed.manifest.model_copy(update={"name": "credit-strict", "inputs": strict_inputs}),
        mixed.files,
        mixed.estimator,
        mixed.X,
    )
    bf.write(repo, strict)
    bf.write(repo, bf.regressor_model())
    broken = bf.write(repo, bf.with_version(iris, 1, name="broken"))
    (broken / "model.onnx").write_bytes(b"not the model that was hashed")
    return repo


@pytest.fixture(scope="session")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repo(tmp_path_factory.mktemp("bundles"))


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    path = tmp_path_factory.mktemp("keys") / "keys.json"
    return Keys(
        path,
        all=create_key(path, "web-shop", ["*"]),
        iris=create_key(path, "iris-app", ["iris"]),
        admin=create_key(path, "ops", ["*"], admin=True),
    )


MakeApp = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def make_app(repo: Path, keys: Keys) -> AsyncIterator[MakeApp]:
    """Build, start and (after the test) stop a gateway; keyword arguments override settings."""
    apps: list[Gateway] = []

    async def make(*, wait: bool = True, **overrides: Any) -> Gateway:
        settings = Settings(repository=repo, keys_file=keys.path, access_log=False).replace(**overrides)
        app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
        apps.append(app)
        await app.startup()
        if wait:
            await app.loaded()
        return app

    yield make
    for app in apps:
        await app.shutdown()


def client_for(app: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


@pytest.fixture
async def app(make_app: MakeApp) -> Gateway:
    return await make_app()


@pytest.fixture
async def client(app: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c
