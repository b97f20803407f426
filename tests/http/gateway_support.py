"""Helpers shared by the HTTP tests (the fixtures are in this directory's conftest.py)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

import bundle_factory as bf  # tests/ is on sys.path (pyproject's pytest pythonpath)
from bundlegate.feed import Feed, Prediction
from bundlegate.http.app import Gateway

MakeApp = Callable[..., Awaitable[Gateway]]


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


def client_for(app: Gateway) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway.test")


class SlowModel:
    """Wraps a loaded model so that inference takes ``seconds`` (a model slower than the deadline)."""

    def __init__(self, model: Any, seconds: float) -> None:
        self.model = model
        self.seconds = seconds

    def predict(self, feed: Feed) -> Prediction:
        time.sleep(self.seconds)
        prediction: Prediction = self.model.predict(feed)
        return prediction


def slow_down(app: Gateway, name: str, seconds: float) -> None:
    queue = app.ctx.registry.get(name).queue
    queue.model = SlowModel(queue.model, seconds)
    queue.inline_max_s = -1.0  # always through the worker and the thread pool
