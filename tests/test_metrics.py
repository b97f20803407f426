"""Gateway metrics: names, labels, buckets, closed label sets, promtool, and multi-process aggregation."""

from __future__ import annotations

import os
import random
import string
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from bundlegate.metrics import GatewayMetrics, multiprocess_exposition, prepare_multiprocess_dir
from prometheus_server import promtool_check_metrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(metrics: GatewayMetrics) -> Samples:
    body, _ = metrics.exposition()
    return parse(body)


def parse(body: bytes) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(data: Samples, name: str, **labels: str) -> float | None:
    return data.get((name, frozenset(labels.items())))


def label_values(data: Samples, label: str) -> set[str]:
    return {v for (_, labels) in data for k, v in labels if k == label}


@pytest.fixture
def metrics() -> GatewayMetrics:
    m = GatewayMetrics(registry=CollectorRegistry())
    m.set_model_info([("iris", 1, "onnx", False), ("iris", 2, "onnx", True), ("credit", 3, "sklearn", True)])
    return m


def test_every_documented_metric_is_exposed_with_help_and_type(metrics: GatewayMetrics) -> None:
    metrics.observe_request("iris", 2, "v1_predict", 200, 0.002)
    metrics.record_error("iris", 2, "invalid_input")
    metrics.record_rejection("queue_full")
    metrics.observer_for("iris", 2).on_batch(4, 0.0001, 0.0003)
    metrics.model_loaded("iris", 2, 0.25)
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    expected = {
        "bundlegate_requests": ("counter", {"model", "version", "endpoint", "code"}),
        "bundlegate_request_duration_seconds": ("histogram", {"model", "version", "endpoint"}),
        "bundlegate_queue_wait_seconds": ("histogram", {"model", "version"}),
        "bundlegate_inference_duration_seconds": ("histogram", {"model", "version"}),
        "bundlegate_batch_size_rows": ("histogram", {"model", "version"}),
        "bundlegate_rows_predicted": ("counter", {"model", "version"}),
        "bundlegate_request_errors": ("counter", {"model", "version", "reason"}),
        "bundlegate_rejected_requests": ("counter", {"reason"}),
        "bundlegate_model_load_duration_seconds": ("gauge", {"model", "version"}),
        "bundlegate_models": ("gauge", {"state"}),
        "bundlegate_model_info": ("gauge", {"model", "version", "runtime", "default"}),
    }
    for name, (kind, labels) in expected.items():
        family = families[name]
        assert family.type == kind, name
        assert family.documentation, name
        sample_labels = {k for s in family.samples for k in s.labels if k != "le"}
        assert sample_labels == labels, name


def test_the_exposition_passes_promtool(metrics: GatewayMetrics) -> None:
    metrics.observe_request("iris", 2, "v1_predict", 200, 0.002)
    metrics.observe_request("nope", 1, "v2_infer", 404, 0.0004)
    metrics.record_error("credit", 3, "deadline_exceeded")
    metrics.record_rejection("draining")
    metrics.observer_for("credit", 3).on_batch(256, 0.002, 0.01)
    metrics.model_loaded("credit", 3, 1.5)
    metrics.set_model_states({"loaded": 3})
    result = promtool_check_metrics(metrics.exposition()[0])
    assert result.returncode == 0, result.stdout + result.stderr


def test_requests_are_counted_and_timed(metrics: GatewayMetrics) -> None:
    for seconds in (0.0004, 0.003, 0.003, 7.0):
        metrics.observe_request("iris", 2, "v1_predict", 200, seconds)
    metrics.observe_request("iris", "2", "v1_predict", 422, 0.001)
    data = samples(metrics)
    ok = {"model": "iris", "version": "2", "endpoint": "v1_predict"}
    assert value(data, "bundlegate_requests_total", **ok, code="200") == 4
    assert value(data, "bundlegate_requests_total", **ok, code="422") == 1
    assert value(data, "bundlegate_request_duration_seconds_count", **ok) == 5
    assert value(data, "bundlegate_request_duration_seconds_bucket", **ok, le="0.0005") == 1
    assert value(data, "bundlegate_request_duration_seconds_bucket", **ok, le="0.005") == 4
    assert value(data, "bundlegate_request_duration_seconds_bucket", **ok, le="5.0") == 4
    assert value(data, "bundlegate_request_duration_seconds_bucket", **ok, le="10.0") == 5


def test_buckets_fit_a_gateway(metrics: GatewayMetrics) -> None:
    metrics.observe_request("iris", 2, "v1_predict", 200, 0.001)
    metrics.observer_for("iris", 2).on_batch(1, 0.0001, 0.0001)
    data = samples(metrics)

    def bounds(name: str) -> list[float]:
        return sorted(float(dict(labels)["le"]) for (n, labels) in data if n == name + "_bucket")

    assert bounds("bundlegate_request_duration_seconds")[0] == 0.0005
    assert bounds("bundlegate_request_duration_seconds")[-2:] == [10.0, float("inf")]
    for stage in ("bundlegate_queue_wait_seconds", "bundlegate_inference_duration_seconds"):
        assert bounds(stage)[0] == 0.00005
        assert bounds(stage)[-2:] == [5.0, float("inf")]
    assert bounds("bundlegate_batch_size_rows") == [float(2**i) for i in range(13)] + [float("inf")]


def test_batches_are_observed_per_model_version(metrics: GatewayMetrics) -> None:
    observer = metrics.observer_for("credit", 3)
    observer.on_batch(8, 0.0002, 0.001)
    observer.on_batch(300, 0.004, 0.02)
    data = samples(metrics)
    mv = {"model": "credit", "version": "3"}
    assert value(data, "bundlegate_rows_predicted_total", **mv) == 308
    assert value(data, "bundlegate_batch_size_rows_count", **mv) == 2
    assert value(data, "bundlegate_batch_size_rows_bucket", **mv, le="8.0") == 1
    assert value(data, "bundlegate_batch_size_rows_bucket", **mv, le="512.0") == 2
    assert value(data, "bundlegate_queue_wait_seconds_sum", **mv) == pytest.approx(0.0042)
    assert value(data, "bundlegate_inference_duration_seconds_count", **mv) == 2


def test_unknown_models_become_dash_and_add_no_label_values(metrics: GatewayMetrics) -> None:
    metrics.observe_request("iris", 2, "v1_predict", 200, 0.001)
    before = samples(metrics)
    rng = random.Random(7)
    for _ in range(100):
        name = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 40)))
        version = rng.choice([1, 2, 99, "x"])
        metrics.observe_request(name, version, "v1_predict", 404, 0.0005)
        metrics.record_error(name, version, "not_found")
    # A known model with a version the registry does not have keeps its name, not the version.
    metrics.observe_request("iris", 99, "v1_predict", 404, 0.0005)
    after = samples(metrics)
    assert label_values(after, "model") == label_values(before, "model") | {"-"} == {"iris", "credit", "-"}
    assert label_values(after, "version") == {"1", "2", "3", "-"}
    assert (
        value(after, "bundlegate_requests_total", model="-", version="-", endpoint="v1_predict", code="404")
        == 100
    )
    assert value(after, "bundlegate_request_errors_total", model="-", version="-", reason="not_found") == 100
    assert (
        value(
            after, "bundlegate_requests_total", model="iris", version="-", endpoint="v1_predict", code="404"
        )
        == 1
    )


def test_endpoints_codes_and_reasons_are_closed_sets(metrics: GatewayMetrics) -> None:
    metrics.observe_request("iris", 2, "/v1/models/iris/predict?x=1", 200, 0.001)
    metrics.observe_request("iris", 2, "v2_infer", 999, 0.001)
    metrics.record_error("iris", 2, "something the user typed")
    metrics.record_rejection("because")
    metrics.record_rejection("rate_limited")
    data = samples(metrics)
    assert label_values(data, "endpoint") == {"other", "v2_infer"}
    assert label_values(data, "code") == {"200", "500"}
    assert label_values(data, "reason") == {
        "internal",
        "queue_full",
        "draining",
        "rate_limited",
        "request_timeout",
        "headers_too_large",
        "uri_too_long",
        "model_not_ready",
        "deadline_exceeded",
    }
    assert value(data, "bundlegate_rejected_requests_total", reason="rate_limited") == 1
    assert value(data, "bundlegate_rejected_requests_total", reason="queue_full") == 0


def test_model_info_follows_the_registry(metrics: GatewayMetrics) -> None:
    data = samples(metrics)
    assert (
        value(data, "bundlegate_model_info", model="iris", version="2", runtime="onnx", default="true") == 1
    )
    assert (
        value(data, "bundlegate_model_info", model="iris", version="1", runtime="onnx", default="false") == 1
    )

    # The operator makes version 1 the default and unloads credit.
    metrics.set_model_info([("iris", 1, "onnx", True), ("iris", 2, "onnx", False)])
    data = samples(metrics)
    info = {labels for (name, labels) in data if name == "bundlegate_model_info"}
    assert info == {
        frozenset({"model": "iris", "version": "1", "runtime": "onnx", "default": "true"}.items()),
        frozenset({"model": "iris", "version": "2", "runtime": "onnx", "default": "false"}.items()),
    }


def test_model_states_and_load_time(metrics: GatewayMetrics) -> None:
    data = samples(metrics)
    assert {value(data, "bundlegate_models", state=s) for s in ("loading", "loaded", "failed")} == {0}
    metrics.set_model_states({"loaded": 2, "failed": 1})
    metrics.model_loaded("iris", 2, 0.75)
    data = samples(metrics)
    assert value(data, "bundlegate_models", state="loaded") == 2
    assert value(data, "bundlegate_models", state="failed") == 1
    assert value(data, "bundlegate_models", state="loading") == 0
    assert value(data, "bundlegate_model_load_duration_seconds", model="iris", version="2") == 0.75


def test_each_instance_has_its_own_registry() -> None:
    a = GatewayMetrics(registry=CollectorRegistry())
    b = GatewayMetrics()
    a.record_rejection("queue_full")
    assert value(samples(b), "bundlegate_rejected_requests_total", reason="queue_full") == 0


WORKER = textwrap.dedent(
    """
    import sys
    from bundlegate.metrics import GatewayMetrics
    m = GatewayMetrics.for_process()
    assert m.multiprocess_dir is not None
    m.set_model_info([("iris", 1, "onnx", True)])
    m.set_model_states({"loaded": 1})
    for _ in range(int(sys.argv[1])):
        m.observe_request("iris", 1, "v1_predict", 200, 0.002)
    m.observe_request("unknown-model", 1, "v1_predict", 404, 0.001)
    m.observer_for("iris", 1).on_batch(int(sys.argv[1]), 0.0001, 0.001)
    m.record_rejection("queue_full")
    sys.stdout.write(m.exposition()[0].decode())
    """
)


def test_multiprocess_workers_add_up(tmp_path: Path) -> None:
    directory = tmp_path / "multiproc"
    directory.mkdir()
    (directory / "stale_from_last_run.db").write_bytes(b"x")
    environ_before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    try:
        prepare_multiprocess_dir(directory)
        env = dict(os.environ)
    finally:
        if environ_before is None:
            os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        else:
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = environ_before
    assert env["PROMETHEUS_MULTIPROC_DIR"] == str(directory)
    assert list(directory.iterdir()) == []

    workers = [
        subprocess.run(
            [sys.executable, "-c", WORKER, str(n)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for n in (3, 5)
    ]
    for w in workers:
        assert w.returncode == 0, w.stderr
    # Each worker's /metrics already shows the sum over the workers so far; the last one sees both.
    last = parse(workers[-1].stdout.encode())
    body, _ = multiprocess_exposition(directory)
    data = parse(body)
    assert data == last
    mv = {"model": "iris", "version": "1"}
    assert value(data, "bundlegate_requests_total", **mv, endpoint="v1_predict", code="200") == 8
    assert (
        value(data, "bundlegate_requests_total", model="-", version="-", endpoint="v1_predict", code="404")
        == 2
    )
    assert value(data, "bundlegate_request_duration_seconds_count", **mv, endpoint="v1_predict") == 8
    assert value(data, "bundlegate_rows_predicted_total", **mv) == 8
    assert value(data, "bundlegate_rejected_requests_total", reason="queue_full") == 2
    # Gauges every worker sets alike are not summed.
    assert value(data, "bundlegate_models", state="loaded") == 1
    assert value(data, "bundlegate_model_info", **mv, runtime="onnx", default="true") == 1
    result = promtool_check_metrics(body)
    assert result.returncode == 0, result.stdout + result.stderr


# --- through the gateway, in-process -------------------------------------------------------------------


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    import bundle_factory as bf
    from bundlegate.http.app import create_app
    from bundlegate.keys import create_key
    from bundlegate.settings import Settings

    repo = tmp_path / "repo"
    bf.write(repo, bf.iris_model())
    key = create_key(tmp_path / "keys.json", "web", ["*"])
    settings = Settings(repository=repo, keys_file=tmp_path / "keys.json", access_log=False)
    app = create_app(settings, metrics=GatewayMetrics(CollectorRegistry()))
    await app.startup()
    await app.loaded()
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test") as c:
            yield c, key
    finally:
        await app.shutdown()


async def test_requests_for_random_model_names_add_no_label_values(
    gateway: tuple[httpx.AsyncClient, str],
) -> None:
    client, key = gateway
    headers = {"Authorization": f"Bearer {key}"}
    row = {"inputs": [5.1, 3.5, 1.4, 0.2]}
    assert (await client.post("/v1/models/iris/predict", json=row, headers=headers)).status_code == 200
    before = parse((await client.get("/metrics", headers=headers)).content)

    rng = random.Random(11)
    for i in range(100):
        name = "".join(rng.choices(string.ascii_lowercase + string.digits, k=rng.randint(1, 40)))
        path = rng.choice(
            [
                f"/v1/models/{name}/predict",
                f"/v2/models/{name}/infer",
                f"/v1/models/iris/versions/{i + 7}/predict",
            ]
        )
        response = await client.post(path, json=row, headers=headers)
        assert response.status_code == 404
    after = parse((await client.get("/metrics", headers=headers)).content)

    assert label_values(after, "model") == label_values(before, "model") | {"-"} == {"iris", "-"}
    assert label_values(after, "version") == {"1", "-"}
    not_found = sum(
        v
        for (name, labels), v in after.items()
        if name == "bundlegate_requests_total" and ("code", "404") in labels
    )
    assert not_found == 100
    result = promtool_check_metrics((await client.get("/metrics", headers=headers)).content)
    assert result.returncode == 0, result.stdout + result.stderr
