"""What the rollout socket tests share: steady load from client threads, metric lines, and forest
bundles that each answer with their own class names (so an answer shows which model gave it)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import httpx
import numpy as np

import bundle_factory as bf

MAX_SECONDS = 120.0  # every load loop is bounded in time as well as in count


@dataclass
class Answer:
    index: int
    status: int
    version: str | None
    body: Any


@dataclass
class SteadyLoad:
    """``threads`` clients, each sending ``request(client, i)`` in a loop until ``stop()`` or
    ``max_requests`` in all; every answer (or exception) is kept."""

    url: str
    request: Callable[[httpx.Client, int], httpx.Response]
    threads: int = 3
    max_requests: int = 20_000
    answers: list[Answer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]

    def __enter__(self) -> SteadyLoad:
        for w in self._workers:
            w.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for w in self._workers:
            w.join(MAX_SECONDS)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        while len(self.answers) + len(self.failures) < count and time.monotonic() < deadline:
            if not any(w.is_alive() for w in self._workers):
                break
            time.sleep(0.02)

    def _next(self) -> int | None:
        with self._lock:
            if self._count >= self.max_requests:
                return None
            self._count += 1
            return self._count - 1

    def _run(self) -> None:
        deadline = time.monotonic() + MAX_SECONDS
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            while not self._stop.is_set() and time.monotonic() < deadline:
                i = self._next()
                if i is None:
                    return
                try:
                    r = self.request(client, i)
                except (httpx.HTTPError, AssertionError) as exc:  # a wrong answer fails too
                    self.failures.append(f"request {i}: {exc!r}")
                    continue
                if r.status_code != 200:
                    self.failures.append(f"request {i}: {r.status_code} {r.text[:200]}")
                    continue
                self.answers.append(Answer(i, r.status_code, r.headers.get("x-model-version"), r.json()))


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels...}`` in a Prometheus exposition (None if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            return float(value)
    return None


@cache
def forest() -> tuple[bytes, Any, np.ndarray]:
    """A random forest on noisy iris (about 2 MB of ONNX), its estimator and the rows."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.ensemble import RandomForestClassifier

    data = load_iris()
    rng = np.random.default_rng(0)
    X = np.vstack([data.data + rng.normal(0, 0.3, data.data.shape) for _ in range(20)])
    y = np.tile(data.target_names[data.target], 20)
    clf = RandomForestClassifier(n_estimators=120, random_state=0).fit(X, y)
    onx = convert_sklearn(
        clf,
        initial_types=[("input", FloatTensorType([None, 4]))],
        options={id(clf): {"zipmap": False}},
        target_opset=17,
    )
    return onx.SerializeToString(), clf, data.data


def forest_bundle(name: str) -> bf.Built:
    """The forest as bundle ``name`` version 1, its classes renamed ``<name>-<class>``."""
    import onnx

    raw, clf, X = forest()
    model = onnx.load_from_string(raw)
    classes = [f"{name}-{c}" for c in clf.classes_]
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.name == "classlabels_strings":
                attr.strings[:] = [c.encode() for c in classes]
    sample = [dict(zip(bf.IRIS_FEATURES, row, strict=True)) for row in X[::50].tolist()]
    files = {"model.onnx": model.SerializeToString(), "sample.json": json.dumps(sample).encode()}
    base = bf.iris_model()
    manifest = bf._manifest(
        name,
        1,
        files,
        task="classification",
        source=base.manifest.source,
        inputs=base.manifest.inputs,
        onnx_inputs=base.manifest.onnx_inputs,
        outputs=base.manifest.outputs.model_copy(
            update={"label": base.manifest.outputs.label.model_copy(update={"classes": classes})}  # type: ignore[union-attr]
        ),
        sample_file="sample.json",
    )
    return bf.Built(manifest, files, clf, X)
