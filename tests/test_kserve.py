"""KServe without a cluster: the ClusterServingRuntime the chart renders on request, and the example
InferenceService, validated against KServe's own CRD schemas (vendored in tests/kserve/, strict about
unknown fields as the API server is); then the runtime's container command run as KServe would run it
(its args, with the model directory, keys file, address and port of this machine), answering an Open
Inference Protocol client for the InferenceService's model name."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import bundle_factory as bf
from bundlegate.keys import create_key
from bundlegate.settings import Settings
from server.test_serve_socket import IRIS_ROWS, serve

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "bundlegate"
SCHEMAS = Path(__file__).resolve().parent / "kserve"
EXAMPLE = ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
ENABLED = {"kserve": {"servingRuntime": {"enabled": True}}}


def strict(schema: Any) -> Any:
    """``schema`` refusing undeclared fields wherever it declares ``properties`` (and does not keep
    unknown fields on purpose), as Kubernetes' strict field validation does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def validator(name: str) -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(strict(json.loads((SCHEMAS / name).read_text())))


def rendered(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="demo", namespace="ml")
    return [
        d
        for path, text in files.items()
        if not path.endswith("NOTES.txt")
        for d in yaml.safe_load_all(text)
        if d
    ]


def runtime() -> dict[str, Any]:
    (doc,) = [d for d in rendered(ENABLED) if d["kind"] == "ClusterServingRuntime"]
    return doc


def test_the_chart_renders_the_runtime_only_on_request() -> None:
    assert not [d for d in rendered({}) if d["kind"] == "ClusterServingRuntime"]
    doc = runtime()
    validator("clusterservingruntime-v1alpha1.schema.json").validate(doc)
    assert doc["apiVersion"] == "serving.kserve.io/v1alpha1"
    spec = doc["spec"]
    assert [f["name"] for f in spec["supportedModelFormats"]] == ["bundlegate"]
    assert spec["protocolVersions"] == ["v2"]
    (container,) = spec["containers"]
    assert container["name"] == "kserve-container"  # the name KServe looks for
    assert container["args"][:2] == ["serve", "/mnt/models"]  # where the storage initializer puts the model
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_the_runtime_keeps_answering_for_the_charts_drain_delay() -> None:
    delayed = {**ENABLED, "gateway": {"drainDelaySeconds": 7, "drainTimeoutSeconds": 9}}
    (doc,) = [d for d in rendered(delayed) if d["kind"] == "ClusterServingRuntime"]
    (container,) = doc["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    settings = Settings.from_env(env)  # the gateway reads what the runtime sets
    assert (settings.drain_delay_s, settings.drain_timeout_s) == (7, 9)


def test_lint_with_the_runtime_on() -> None:
    assert helm.lint(CHART, ENABLED, strict=True, namespace="ml")["errors"] == []


def test_the_schema_check_catches_mistakes() -> None:
    check = validator("clusterservingruntime-v1alpha1.schema.json")
    doc = runtime()
    wrong_type = copy.deepcopy(doc)
    wrong_type["spec"]["protocolVersions"] = "v2"
    unknown_field = copy.deepcopy(doc)
    unknown_field["spec"]["containers"][0]["readyProbe"] = {}
    for bad in (wrong_type, unknown_field):
        with pytest.raises(jsonschema.ValidationError):
            check.validate(bad)


def test_the_example_inference_service_selects_the_runtime() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    validator("inferenceservice-v1beta1-predictor.schema.json").validate(example)
    model = example["spec"]["predictor"]["model"]
    doc = runtime()
    assert model["runtime"] == doc["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in doc["spec"]["supportedModelFormats"]]
    assert model["protocolVersion"] in doc["spec"]["protocolVersions"]


def test_the_runtime_container_answers_kserve_over_v2(tmp_path: Path) -> None:
    (container,) = runtime()["spec"]["containers"]
    models = tmp_path / "mnt-models"  # what the storage initializer downloads: a bundle repository
    models.mkdir()
    bf.write(models, bf.iris_model())
    keys = tmp_path / "keys.json"
    auth = {"Authorization": "Bearer " + create_key(keys, "kserve", ["*"])}
    # this machine's paths, loopback only; serve() adds a free --port after these (the last one counts)
    local = {"/mnt/models": str(models), "/etc/bundlegate/keys.json": str(keys), "0.0.0.0": "127.0.0.1"}
    args = [local.get(a, a) for a in container["args"][1:]]
    assert args[args.index("--host") + 1] == "127.0.0.1"
    with serve(tmp_path, *args) as server:
        import tritonclient.http as triton

        client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
        assert client.is_model_ready("iris", headers=dict(auth))
        tensor = triton.InferInput("input", list(IRIS_ROWS.shape), "FP64")
        tensor.set_data_from_numpy(IRIS_ROWS)
        labels = client.infer("iris", [tensor], headers=dict(auth)).as_numpy("label")
        expected = bf.iris_model().estimator.predict(IRIS_ROWS).tolist()
        assert [v.decode() if isinstance(v, bytes) else v for v in labels.tolist()] == expected
