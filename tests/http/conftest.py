"""Fixtures for the HTTP tests: a repository of real example bundles, a keys file, and the gateway
app in-process (``httpx.ASGITransport`` runs no lifespan, so the fixture starts and stops the app)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from gateway_support import Keys, MakeApp, build_repo, client_for
from prometheus_client import CollectorRegistry

from bundlegate.http.app import Gateway, create_app
from bundlegate.keys import create_key
from bundlegate.metrics import GatewayMetrics
from bundlegate.settings import Settings


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


@pytest.fixture
async def make_app(repo: Path, keys: Keys) -> AsyncIterator[MakeApp]:
    """Build, start and (after the test) stop a gateway; keyword arguments override settings."""
    apps: list[Gateway] = []

    async def make(*, wait: bool = True, **overrides: Any) -> Gateway:
        settings = dataclasses.replace(
            Settings(repository=repo, keys_file=keys.path, access_log=False), **overrides
        )
        app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
        apps.append(app)
        await app.startup()
        if wait:
            await app.loaded()
        return app

    yield make
    for app in apps:
        await app.shutdown()


@pytest.fixture
async def app(make_app: MakeApp) -> Gateway:
    return await make_app()


@pytest.fixture
async def client(app: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c
