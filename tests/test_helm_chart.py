"""The Helm chart (helm/bundlegate), checked without a cluster: `helm lint` through the Helm v4 Go SDK
(helm-python-sdk), rendering with the default values and with every option switched on, every rendered
document validated against the newest Kubernetes schema kubernetes-validate ships, and the pod wired to
what the gateway really serves (probe paths, port, settings) with the hardening the issue asks for."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from bundlegate.http.app import create_app
from bundlegate.keys import KeyStore
from bundlegate.metrics import GatewayMetrics
from bundlegate.settings import ENV_PREFIX, Settings

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)
from kubernetes_validate import utils as kv_utils  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "helm" / "bundlegate"
DASHBOARD = ROOT / "deploy" / "grafana" / "bundlegate-dashboard.json"
RELEASE, NAMESPACE = "demo", "ml"
KUBE_VERSION = kv_utils.latest_version()  # the newest Kubernetes version kubernetes-validate has schemas for

A_DIGEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"  # sha256("test")
OTHER_DIGEST = "2c69bc9111c27110a9b9a7974ba3f8ac0c053c16b23a0738115ee829fbc4d57b"

# Every optional feature on; the image-copied bundles are the non-default bundle source.
ALL_OPTIONS: dict[str, Any] = {
    "image": {"repository": "registry.example.com/ml/bundlegate", "tag": "0.1.0", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry-credentials"}],
    "gateway": {
        "port": 9090,
        "logLevel": "debug",
        "accessLog": False,
        "drainDelaySeconds": 2,
        "drainTimeoutSeconds": 30,
        "reloadIntervalSeconds": 60,
        "ortThreads": 2,
        "allowPickle": True,
        "extraEnv": [{"name": "BUNDLEGATE_MAX_STRING_LENGTH", "value": "2048"}],
    },
    "keys": {
        "entries": [
            {"id": "web-shop", "sha256": A_DIGEST, "models": ["credit", "churn*"], "admin": False},
            {"id": "ops", "sha256": OTHER_DIGEST, "models": ["*"], "admin": True},
        ]
    },
    "bundles": {
        "source": "image",
        "image": {"repository": "registry.example.com/ml/bundles", "tag": "2026-11-22", "path": "/bundles/"},
    },
    "service": {"type": "LoadBalancer", "port": 80, "annotations": {"example.com/lb": "internal"}},
    "terminationGracePeriodSeconds": 45,
    "lifecycle": {"preStopSleepSeconds": 10},
    "serviceAccount": {"create": True, "annotations": {"example.com/role": "none"}},
    "autoscaling": {
        "enabled": True,
        "minReplicas": 3,
        "maxReplicas": 20,
        "requestsPerSecond": {"enabled": True, "targetAverageValue": "100"},
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
    },
    "podDisruptionBudget": {"enabled": True, "minAvailable": "50%", "maxUnavailable": None},
    "metrics": {
        "podAnnotations": True,
        "serviceMonitor": {
            "enabled": True,
            "interval": "30s",
            "labels": {"release": "kube-prometheus-stack"},
        },
    },
    "networkPolicy": {
        "enabled": True,
        "ingressFrom": [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}},
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}},
        ],
    },
    "grafanaDashboard": {"enabled": True, "namespace": "monitoring", "annotations": {"grafana_folder": "ML"}},
    "podAnnotations": {"example.com/team": "ml"},
    "podLabels": {"team": "ml"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "ml", "operator": "Exists", "effect": "NoSchedule"}],
    "topologySpreadConstraints": [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "bundlegate"}},
        }
    ],
    "priorityClassName": "ml-serving",
}

# The other side of each either/or: existing Secret and claim instead of chart-made ones.
EXISTING_RESOURCES: dict[str, Any] = {
    "keys": {"existingSecret": "bundlegate-keys", "secretKey": "keys.json"},
    "bundles": {"source": "persistentVolumeClaim", "persistentVolumeClaim": {"existingClaim": "models"}},
    "service": {"type": "NodePort"},
    "podDisruptionBudget": {"minAvailable": 1, "maxUnavailable": None},
}

VALUE_SETS = {"default": {}, "all-options": ALL_OPTIONS, "existing-resources": EXISTING_RESOURCES}

# ServiceMonitor is a Prometheus Operator CRD, which kubernetes-validate has no schema for: the fields
# the chart sets, with the types and duration pattern of the upstream CRD (monitoring.coreos.com/v1).
_DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
SERVICE_MONITOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"any": {"type": "boolean"}, "matchNames": {"type": "array"}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def render(values: dict[str, Any]) -> dict[str, str]:
    with helm.Chart.load(CHART) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE)


def documents(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt and empty templates left out)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values).items()):
        if path.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def the(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (doc,) = by_kind(docs, kind)
    return doc


def gateway_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = the(docs, "Deployment")["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container["env"]}


def test_lint_reports_no_errors_or_warnings() -> None:
    for values in VALUE_SETS.values():
        report = helm.lint(CHART, values, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
        assert report["errors"] == []
        # severity: 1 info (e.g. "icon is recommended"), 2 warning, 3 error
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_every_rendered_document_validates_against_kubernetes(values_name: str) -> None:
    docs = documents(VALUE_SETS[values_name])
    assert docs
    for doc in docs:
        if doc["kind"] == "ServiceMonitor":
            import jsonschema

            jsonschema.validate(doc, SERVICE_MONITOR_SCHEMA)
            continue
        validated = kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        assert validated == kv_utils.major_minor(KUBE_VERSION)


def test_the_newest_schemas_are_used() -> None:
    versions = kv_utils.all_versions()
    assert versions[-1] == KUBE_VERSION
    assert tuple(int(p) for p in KUBE_VERSION.split(".")[:2]) >= (1, 33)


def test_default_values_render_the_core_objects() -> None:
    kinds = sorted(doc["kind"] for doc in documents({}))
    assert kinds == ["Deployment", "PersistentVolumeClaim", "PodDisruptionBudget", "Secret", "Service"]


def test_all_options_render_every_object() -> None:
    kinds = {doc["kind"] for doc in documents(ALL_OPTIONS)}
    assert kinds == {
        "ConfigMap",
        "Deployment",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "PodDisruptionBudget",
        "Secret",
        "Service",
        "ServiceAccount",
        "ServiceMonitor",
    }


def test_existing_secret_and_claim_are_used_not_created() -> None:
    docs = documents(EXISTING_RESOURCES)
    assert by_kind(docs, "Secret") == []
    assert by_kind(docs, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in the(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "bundlegate-keys"
    assert volumes["bundles"]["persistentVolumeClaim"] == {"claimName": "models", "readOnly": True}


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_pod_is_locked_down(values_name: str) -> None:
    docs = documents(VALUE_SETS[values_name])
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in pod["containers"] + pod.get("initContainers", []):
        ctx = container["securityContext"]
        assert ctx["runAsNonRoot"] is True
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert isinstance(ctx["runAsUser"], int)
        assert ctx["runAsUser"] > 0
        assert container["resources"]["requests"]
        assert container["resources"]["limits"]["memory"]
    # With a read-only root filesystem the only writable paths are the emptyDirs.
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/bundles"]["readOnly"] is True
    assert mounts["/etc/bundlegate"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    for account in by_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_port_and_settings_are_what_the_gateway_reads(values_name: str) -> None:
    values = VALUE_SETS[values_name]
    docs = documents(values)
    container = gateway_container(docs)
    port, metrics_port = container["ports"]
    expected_port = values.get("gateway", {}).get("port", gateway_default_port())
    assert port == {"name": "http", "containerPort": expected_port, "protocol": "TCP"}
    expected_metrics_port = values.get("metrics", {}).get("port", 9464)
    assert metrics_port == {"name": "metrics", "containerPort": expected_metrics_port, "protocol": "TCP"}

    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"

    env = env_of(container)
    assert env["BUNDLEGATE_PORT"] == str(expected_port)
    assert env["BUNDLEGATE_HOST"] == "0.0.0.0"
    assert env["BUNDLEGATE_REPOSITORY"] == "/bundles"
    assert env["BUNDLEGATE_KEYS_FILE"] == "/etc/bundlegate/keys.json"
    assert env["BUNDLEGATE_WORKERS"] == "1"
    assert container["args"][:2] == ["serve", "/bundles"]
    assert container["args"][container["args"].index("--port") + 1] == str(expected_port)
    unknown = {name for name in env if name.startswith(ENV_PREFIX)} - gateway_setting_env_names()
    assert unknown == set(), f"the gateway has no such settings: {sorted(unknown)}"
    # The gateway itself parses and range-checks what the chart sets.
    settings = Settings.from_env(env)
    assert settings.port == expected_port
    assert settings.metrics_port == expected_metrics_port
    assert container["args"][container["args"].index("--metrics-port") + 1] == str(expected_metrics_port)
    assert str(settings.repository) == "/bundles"

    service = the(docs, "Service")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http", "metrics"]
    assert service["spec"]["selector"] == the(docs, "Deployment")["spec"]["selector"]["matchLabels"]


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_shutdown_fits_in_the_grace_period(values_name: str) -> None:
    docs = documents(VALUE_SETS[values_name])
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    delay = int(env_of(container)["BUNDLEGATE_DRAIN_DELAY_S"])
    drain = int(env_of(container)["BUNDLEGATE_DRAIN_TIMEOUT_S"])
    assert pre_stop + delay > 0  # load balancers get time to notice before the listener closes
    assert pre_stop + delay + drain < pod["terminationGracePeriodSeconds"]


def test_a_drain_longer_than_the_grace_period_is_refused() -> None:
    with pytest.raises(helm.HelmError, match="terminationGracePeriodSeconds"):
        render({"gateway": {"drainTimeoutSeconds": 60}, "terminationGracePeriodSeconds": 30})


def test_schema_rejects_unknown_keys_and_plaintext_keys() -> None:
    with helm.Chart.load(CHART) as chart:
        chart.validate_schema(ALL_OPTIONS)
        with pytest.raises(helm.HelmError, match="prot"):
            chart.validate_schema({"gateway": {"prot": 8080}})
        with pytest.raises(helm.HelmError, match="sha256"):
            chart.validate_schema(
                {"keys": {"entries": [{"id": "a", "sha256": "bg_notadigest", "models": ["*"]}]}}
            )


def test_keys_secret_holds_the_keys_file() -> None:
    secret = the(documents(ALL_OPTIONS), "Secret")
    keys_file = json.loads(secret["stringData"]["keys.json"])
    assert [k["id"] for k in keys_file["keys"]] == ["web-shop", "ops"]
    assert keys_file["keys"][0] == {
        "id": "web-shop",
        "sha256": A_DIGEST,
        "models": ["credit", "churn*"],
        "admin": False,
    }
    # Mounted as a whole directory: a subPath mount would never see an updated Secret.
    pod = the(documents(ALL_OPTIONS), "Deployment")["spec"]["template"]["spec"]
    assert all("subPath" not in m for m in pod["containers"][0]["volumeMounts"])


def test_bundles_from_an_image_are_copied_by_an_init_container() -> None:
    pod = the(documents(ALL_OPTIONS), "Deployment")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["image"] == "registry.example.com/ml/bundles:2026-11-22"
    # The image's bundle directory is copied into the emptyDir, mounted where it cannot hide the source.
    (mount,) = init["volumeMounts"]
    assert mount["name"] == "bundles"
    assert init["command"] == ["cp", "-R", "/bundles/.", mount["mountPath"] + "/"]
    assert not "/bundles/".startswith(mount["mountPath"].rstrip("/") + "/")
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["bundles"]


def test_autoscaler_scales_on_cpu_and_requests_per_second() -> None:
    docs = documents(ALL_OPTIONS)
    assert "replicas" not in the(docs, "Deployment")["spec"]
    metrics = the(docs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    assert metrics[0]["resource"]["name"] == "cpu"
    assert metrics[1]["type"] == "Pods"
    assert metrics[1]["pods"]["metric"]["name"] == "bundlegate_requests_per_second"


def test_service_monitor_keeps_the_gateways_endpoint_label() -> None:
    docs = documents(ALL_OPTIONS)
    (endpoint,) = the(docs, "ServiceMonitor")["spec"]["endpoints"]
    assert endpoint["port"] == "metrics"
    # The gateway's metrics have an "endpoint" label; honorLabels keeps it from becoming exported_endpoint.
    assert endpoint["honorLabels"] is True


def test_network_policy_admits_only_the_gateway_and_metrics_ports() -> None:
    policy = the(documents(ALL_OPTIONS), "NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    assert policy["egress"] == []
    api, metrics = policy["ingress"]
    assert api["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert len(api["from"]) == 2
    assert metrics["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert "from" not in metrics  # metricsFrom empty: any scraper


def test_a_metrics_port_equal_to_the_gateway_port_is_refused() -> None:
    with pytest.raises(helm.HelmError, match=r"metrics\.port must differ"):
        render({"gateway": {"port": 9464}})


def test_dashboard_configmap_carries_the_dashboard_file() -> None:
    configmap = the(documents(ALL_OPTIONS), "ConfigMap")
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = configmap["data"]["bundlegate-dashboard.json"]
    assert json.loads(shipped) == json.loads(DASHBOARD.read_text())
    assert (CHART / "dashboards" / "bundlegate-dashboard.json").read_bytes() == DASHBOARD.read_bytes()


def test_notes_tell_how_to_call_it() -> None:
    notes = render({})[f"{CHART.name}/templates/NOTES.txt"]
    assert "kubectl port-forward --namespace ml svc/demo-bundlegate 8080:8080" in notes
    assert "Authorization: Bearer" in notes
    assert "/v1/models/<name>/predict" in notes
    assert "no API keys are configured" in notes
    assert "no API keys are configured" not in render(ALL_OPTIONS)[f"{CHART.name}/templates/NOTES.txt"]


# --- the rendered pod against the real gateway app ---------------------------------------------------------


async def test_probes_and_metrics_paths_are_what_the_gateway_answers(tmp_path: Path) -> None:
    """The gateway app, configured from the rendered pod's environment and the rendered keys Secret
    (default values: an empty keys file), answers the probe and scrape paths the chart points at; after
    shutdown begins, readiness turns false while liveness stays up."""
    docs = documents({})
    container = gateway_container(docs)
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(the(docs, "Secret")["stringData"]["keys.json"])
    (tmp_path / "bundles").mkdir()
    with socket.socket() as s:  # the chart's metrics port may be taken here: a free one, same listener
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    settings = Settings.from_env(env_of(container)).replace(
        repository=tmp_path / "bundles", keys_file=keys_file, host="127.0.0.1", metrics_port=free
    )
    app = create_app(settings, metrics=GatewayMetrics(registry=CollectorRegistry()))
    scrape_paths = {the(documents(ALL_OPTIONS), "ServiceMonitor")["spec"]["endpoints"][0]["path"]}
    scrape_paths.add(
        the(documents(ALL_OPTIONS), "Deployment")["spec"]["template"]["metadata"]["annotations"][
            "prometheus.io/path"
        ]
    )
    liveness = container["livenessProbe"]["httpGet"]["path"]
    readiness = container["readinessProbe"]["httpGet"]["path"]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
        await app.startup()
        await app.loaded()
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            response = await client.get(container[probe]["httpGet"]["path"])
            assert response.status_code == 200, (probe, response.text)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{free}") as scraper:
            for path in scrape_paths:
                response = await scraper.get(path)
                assert response.status_code == 200
                assert "bundlegate_models{" in response.text
        await app.shutdown()
        assert (await client.get(readiness)).status_code == 503
        assert (await client.get(liveness)).status_code == 200


@pytest.mark.parametrize("values_name", sorted(VALUE_SETS))
def test_rendered_keys_file_is_one_the_gateway_reads(values_name: str, tmp_path: Path) -> None:
    secrets = by_kind(documents(VALUE_SETS[values_name]), "Secret")
    for secret in secrets:
        keys_file = tmp_path / "keys.json"
        keys_file.write_text(secret["stringData"]["keys.json"])
        ids = [record.id for record in KeyStore(keys_file).records]
        entries = VALUE_SETS[values_name].get("keys", {}).get("entries", [])
        assert ids == [entry["id"] for entry in entries]


# --- what the gateway serves, read from its code -----------------------------------------------------------


def gateway_default_port() -> int:
    return Settings().port


def gateway_setting_env_names() -> set[str]:
    return {ENV_PREFIX + f.name.upper() for f in dataclasses.fields(Settings)}


def test_rendered_names_are_valid_dns_labels() -> None:
    for doc in documents(ALL_OPTIONS):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"])
        assert len(doc["metadata"]["name"]) <= 63


# --- bundles from object storage ----------------------------------------------------------------------

OBJECT_STORE: dict[str, Any] = {
    "bundles": {
        "source": "objectStore",
        "objectStore": {
            "url": "s3://models/prod",
            "endpointUrl": "http://minio.storage:9000",
            "region": "eu-central-1",
            "credentialsSecret": "bundle-store",
            "pollSeconds": 15,
        },
    },
    "networkPolicy": {"enabled": True, "allowEgress": True},
}


def test_object_store_values_lint_and_validate() -> None:
    report = helm.lint(CHART, OBJECT_STORE, strict=True, namespace=NAMESPACE, kube_version=f"v{KUBE_VERSION}")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []
    for doc in documents(OBJECT_STORE):
        assert kubernetes_validate.validate(doc, KUBE_VERSION, strict=True) == kv_utils.major_minor(
            KUBE_VERSION
        )


def test_bundles_from_object_storage_need_no_volume_claim() -> None:
    docs = documents(OBJECT_STORE)
    assert by_kind(docs, "PersistentVolumeClaim") == []
    pod = the(docs, "Deployment")["spec"]["template"]["spec"]
    container = gateway_container(docs)
    assert container["args"][:2] == ["serve", "s3://models/prod"]
    assert container["envFrom"] == [{"secretRef": {"name": "bundle-store"}}]
    env = env_of(container)
    assert env["AWS_REGION"] == "eu-central-1"
    settings = Settings.from_env(env)  # the gateway's own reading of what the chart sets
    assert settings.repository_url == "s3://models/prod"
    assert settings.s3_endpoint_url == "http://minio.storage:9000"
    assert settings.cache_dir == Path("/bundles")
    assert settings.reload_interval_s == 15
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/bundles"]["readOnly"] is False  # the mirror is written there
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["bundles"] == {"name": "bundles", "emptyDir": {"sizeLimit": "2Gi"}}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_object_store_values_are_checked() -> None:
    no_url = {"bundles": {"source": "objectStore"}}
    with pytest.raises(Exception, match=r"set bundles\.objectStore\.url"):
        render(no_url)
    walled = {**OBJECT_STORE, "networkPolicy": {"enabled": True, "allowEgress": False}}
    with pytest.raises(Exception, match=r"networkPolicy\.allowEgress"):
        render(walled)
    with pytest.raises(Exception, match="url"):
        render({"bundles": {"source": "objectStore", "objectStore": {"url": "/local/path"}}})


async def test_the_charts_object_store_settings_serve_a_pushed_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rendered environment, pointed at a real S3-compatible server, serves what was pushed."""
    import bundle_factory as bf
    from bundlegate.objectstore import push_bundle
    from s3_server import running_s3

    env = env_of(gateway_container(documents(OBJECT_STORE)))
    with running_s3(tmp_path) as s3:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        s3.make_bucket("models")
        local = tmp_path / "local"
        local.mkdir()
        push_bundle(bf.write(local, bf.iris_model()), "s3://models/prod", endpoint_url=s3.endpoint)
        keys_file = tmp_path / "keys.json"
        from bundlegate.keys import create_key

        key = create_key(keys_file, "app", ["*"])
        env |= {  # this machine's store, cache and keys in place of the cluster's
            "BUNDLEGATE_S3_ENDPOINT_URL": s3.endpoint,
            "BUNDLEGATE_CACHE_DIR": str(tmp_path / "cache"),
            "BUNDLEGATE_KEYS_FILE": str(keys_file),
            "BUNDLEGATE_HOST": "127.0.0.1",
        }
        app = create_app(Settings.from_env(env), metrics=GatewayMetrics(CollectorRegistry()))
        await app.startup()
        await app.loaded()
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
            body = {
                "inputs": {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2}
            }
            r = await client.post(
                "/v1/models/iris/predict", json=body, headers={"Authorization": f"Bearer {key}"}
            )
        await app.shutdown()
        assert r.status_code == 200, r.text
        assert r.json()["prediction"] == "setosa"
