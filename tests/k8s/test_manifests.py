"""The k8s/ overlays render, are valid Kubernetes objects, and hang together.

Every rendered object goes through `kubernetes-validate` in strict mode against the newest
Kubernetes it bundles; the Prometheus Operator kinds through JSON Schemas generated from
`cloudcoil-models-prometheus-operator` with unknown fields refused. Structural checks catch what
a schema cannot: a hostfile that does not list every process, too few recovery partitions, a
variable no one reads, a secret in git, a probe or a NetworkPolicy on the wrong port.
"""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from cloudcoil.models.prometheus_operator import v1 as prometheus_v1
from kubernetes_validate.utils import latest_version

from operators.config.settings import _GROUPS
from tests.k8s.manifests import FLOWS, K8S, container, env_values, one, render

# What bytewax.run (0.21.1) and its Rust side read; the settings read the rest.
BYTEWAX_VARIABLES = {
    "BYTEWAX_POD_NAME",
    "BYTEWAX_STATEFULSET_NAME",
    "BYTEWAX_HOSTFILE_PATH",
    "BYTEWAX_PROCESS_ID",
    "BYTEWAX_ADDRESSES",
    "BYTEWAX_WORKERS_PER_PROCESS",
    "BYTEWAX_DATAFLOW_API_ENABLED",
    "BYTEWAX_DATAFLOW_API_PORT",
    "BYTEWAX_DATAFLOW_API_CACHE_PATH",
}
SETTINGS_VARIABLES = {
    variable
    for group in _GROUPS.values()
    for variables in group.variables().values()
    for variable in variables
}
SECRET_KEYS = {"OPENAI_API_KEY", "REDIS_URL", "SURGEFLOW_KAFKA_SASL_PASSWORD"}
CRD_MODELS = {
    "PodMonitor": prometheus_v1.PodMonitor,
    "PrometheusRule": prometheus_v1.PrometheusRule,
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                  "CustomResourceDefinition", "StorageClass", "PriorityClass"}  # fmt: skip


@pytest.fixture(scope="module", params=FLOWS)
def flow(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def rendered(flow: str) -> list[dict[str, Any]]:
    return render(K8S / "overlays" / flow)


@pytest.fixture(scope="module")
def claim(flow: str) -> list[dict[str, Any]]:
    return render(K8S / "overlays" / flow / "recovery")


def closed(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists properties."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def crd_validator(kind: str) -> jsonschema.Draft202012Validator:
    schema = CRD_MODELS[kind].model_json_schema(by_alias=True, mode="validation")
    return jsonschema.Draft202012Validator(closed(schema))


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in CRD_MODELS:
        crd_validator(obj["kind"]).validate(obj)
    else:
        kubernetes_validate.validate(obj, latest_version(), strict=True)


def test_overlays_render_the_cluster_objects_only(
    rendered: list[dict[str, Any]], claim: list[dict[str, Any]], flow: str
) -> None:
    kinds = sorted(obj["kind"] for obj in rendered)
    assert {"ServiceAccount", "ConfigMap", "Service", "StatefulSet", "NetworkPolicy",
            "PodMonitor"} <= set(kinds)  # fmt: skip
    # namespace-scoped objects only, namespace chosen at apply time (-n / kustomize namespace)
    assert not CLUSTER_SCOPED & set(kinds)
    assert all("namespace" not in obj["metadata"] for obj in rendered)
    # the claim is NOT in the flow's kustomization: `kubectl delete -k` leaves it
    assert "PersistentVolumeClaim" not in kinds
    assert [obj["kind"] for obj in claim] == ["PersistentVolumeClaim"]
    assert all(obj["metadata"]["name"].endswith(f"-{flow}") or obj["kind"] == "ConfigMap"
               for obj in rendered)  # fmt: skip


def test_every_object_is_valid_for_the_newest_kubernetes(
    rendered: list[dict[str, Any]], claim: list[dict[str, Any]]
) -> None:
    assert latest_version() >= "1.37"
    for obj in [*rendered, *claim]:
        validate(obj)


def test_a_wrong_field_fails_validation(rendered: list[dict[str, Any]]) -> None:
    sts = copy.deepcopy(one(rendered, "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = "api"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(sts)
    monitor = copy.deepcopy(one(rendered, "PodMonitor"))
    validate(monitor)
    monitor["spec"]["podMetricsEndpoints"][0]["prot"] = "api"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    monitor = copy.deepcopy(one(rendered, "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"] = "yes"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "r"},
        "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "expr": "up == 0"}]}]},
    }
    validate(rule)
    rule["spec"]["groups"][0]["rules"][0]["expresion"] = "up == 0"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule)


def pod_spec(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(rendered, "StatefulSet")["spec"]["template"]["spec"]
    return spec


def write_hostfile(rendered: list[dict[str, Any]], path: Path, namespace: str) -> list[str]:
    """Run the init container's own script, with its env, writing to `path`."""
    init = container(pod_spec(rendered), "init-hostfile", init=True)
    env = {**env_values(init), "BYTEWAX_HOSTFILE_PATH": str(path), "BYTEWAX_NAMESPACE": namespace}
    assert init["command"][:2] == ["sh", "-c"]
    subprocess.run(init["command"], env={"PATH": os.environ["PATH"], **env}, check=True, timeout=10)
    return [line for line in path.read_text().splitlines() if line.strip()]


def test_hostfile_lists_every_process_at_its_stable_name(
    rendered: list[dict[str, Any]], tmp_path: Path
) -> None:
    sts = one(rendered, "StatefulSet")
    service = one(rendered, "Service")
    name, replicas = sts["metadata"]["name"], sts["spec"]["replicas"]
    assert replicas >= 2
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["serviceName"] == service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    process = container(pod_spec(rendered), "process")
    ports = {p["name"]: p["containerPort"] for p in process["ports"]}
    assert ports == {"process": 9999, "api": 3030}
    assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("process", 9999)]
    assert env_values(process)["BYTEWAX_STATEFULSET_NAME"] == name
    lines = write_hostfile(rendered, tmp_path / "hostfile.txt", "prod")
    assert lines == [f"{name}-{i}.{name}.prod.svc.cluster.local:9999" for i in range(replicas)]
    # the file bytewax.run reads is the one the init container writes, on a shared volume
    init = container(pod_spec(rendered), "init-hostfile", init=True)
    path = Path(env_values(process)["BYTEWAX_HOSTFILE_PATH"])
    assert env_values(init)["BYTEWAX_HOSTFILE_PATH"] == str(path)
    assert mounted(init, path.parent) == mounted(process, path.parent) == "hostfile"


def mounted(spec: dict[str, Any], directory: Path) -> str:
    found = [m["name"] for m in spec["volumeMounts"] if Path(m["mountPath"]) == directory]
    assert found, f"{directory} not mounted in {spec['name']}"
    return str(found[0])


def test_recovery_partitions_cover_every_worker_on_one_shared_claim(
    rendered: list[dict[str, Any]], claim: list[dict[str, Any]]
) -> None:
    sts = one(rendered, "StatefulSet")
    spec = pod_spec(rendered)
    process = container(spec, "process")
    init = container(spec, "init-recovery", init=True)
    env = env_values(process)
    workers = int(env["BYTEWAX_WORKERS_PER_PROCESS"])
    parts = int(env_values(init)["BYTEWAX_RECOVERY_PARTS"])
    assert parts >= sts["spec"]["replicas"] * workers
    directory = Path(env["BYTEWAX_RECOVERY_DIRECTORY"])
    assert env_values(init)["BYTEWAX_RECOVERY_DIRECTORY"] == str(directory)
    assert int(env["BYTEWAX_SNAPSHOT_INTERVAL"]) > 0
    assert int(env["BYTEWAX_RECOVERY_BACKUP_INTERVAL"]) >= 0
    volume = mounted(process, directory)
    assert mounted(init, directory) == volume
    (source,) = [v for v in spec["volumes"] if v["name"] == volume]
    pvc = one(claim, "PersistentVolumeClaim")
    assert source["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "volumeClaimTemplates" not in sts["spec"]  # per-pod claims break rescaling
    script = init["command"][2]
    assert 'if [ -f "$dir/part-0.sqlite3" ]; then exit 0; fi' in script
    assert 'python -m bytewax.recovery "$tmp" "$BYTEWAX_RECOVERY_PARTS"' in script


def test_every_variable_set_is_one_something_reads_and_no_secret_is_in_git(
    rendered: list[dict[str, Any]],
) -> None:
    process = container(pod_spec(rendered), "process")
    (config_map,) = [obj for obj in rendered if obj["kind"] == "ConfigMap"]
    assert [ref["configMapRef"]["name"] for ref in process["envFrom"]] == [
        config_map["metadata"]["name"]
    ]
    names = {e["name"] for e in process["env"]} | set(config_map["data"])
    assert names <= BYTEWAX_VARIABLES | SETTINGS_VARIABLES, names - BYTEWAX_VARIABLES
    assert not any(obj["kind"] == "Secret" for obj in rendered)
    assert not SECRET_KEYS & set(config_map["data"])
    assert not any("PASSWORD" in key or "KEY" in key for key in config_map["data"])
    from_secret = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in process["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert set(from_secret) == SECRET_KEYS
    assert all(ref["key"] == name for name, ref in from_secret.items())
    for e in process["env"]:
        assert "value" in e or "valueFrom" in e
        if e["name"] in SECRET_KEYS:
            assert "value" not in e
    pod_name = next(e for e in process["env"] if e["name"] == "BYTEWAX_POD_NAME")
    assert pod_name["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert process["command"] == ["python", "-m", "bytewax.run"]


def test_flow_module_api_probes_grace_and_security(
    rendered: list[dict[str, Any]], flow: str
) -> None:
    spec = pod_spec(rendered)
    process = container(spec, "process")
    assert process["args"] == [f"flows.{flow}"]
    assert (K8S.parent / "flows" / f"{flow}.py").exists()
    env = env_values(process)
    assert env["BYTEWAX_DATAFLOW_API_ENABLED"]
    assert "BYTEWAX_DATAFLOW_API_PORT" not in env  # 3030, the `api` port
    assert mounted(process, Path(env["BYTEWAX_DATAFLOW_API_CACHE_PATH"])) == "api-cache"
    assert any(v["name"] == "api-cache" and "emptyDir" in v for v in spec["volumes"])
    for probe in ("readinessProbe", "livenessProbe"):
        assert process[probe]["httpGet"]["port"] == "api"
    (config_map,) = [obj for obj in rendered if obj["kind"] == "ConfigMap"]
    grace = int(config_map["data"]["SURGEFLOW_SHUTDOWN_GRACE_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] >= grace + 5 + 10
    assert spec["automountServiceAccountToken"] is False
    assert one(rendered, "ServiceAccount")["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == one(rendered, "ServiceAccount")["metadata"]["name"]
    pod = spec["securityContext"]
    assert pod["runAsUser"] == 65532 and pod["runAsNonRoot"] is True
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in [*spec["initContainers"], *spec["containers"]]:
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["image"] == process["image"]
        assert "memory" in c["resources"]["limits"]
    # one worker peaks at 824 MB RSS (docs/BENCHMARKS.md): at least that per worker, limited
    workers = int(env["BYTEWAX_WORKERS_PER_PROCESS"])
    assert mebibytes(process["resources"]["requests"]["memory"]) >= 824 * workers * 0.95
    assert mebibytes(process["resources"]["limits"]["memory"]) >= 1.5 * 824 * workers * 0.95


def mebibytes(quantity: str) -> float:
    for suffix, factor in (("Gi", 1024.0), ("Mi", 1.0)):
        if quantity.endswith(suffix):
            return float(quantity.removesuffix(suffix)) * factor
    raise AssertionError(quantity)


def test_network_policy_ports(rendered: list[dict[str, Any]]) -> None:
    policy = one(rendered, "NetworkPolicy")["spec"]
    labels = one(rendered, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"] == labels
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    ingress = {(p["port"], p["protocol"]): rule["from"] for rule in policy["ingress"]
               for p in rule["ports"]}  # fmt: skip
    assert set(ingress) == {(9999, "TCP"), (3030, "TCP")}
    # 9999 only from the same flow's pods (the instance label separates the two flows)
    assert ingress[(9999, "TCP")] == [{"podSelector": {"matchLabels": labels}}]
    assert "app.kubernetes.io/instance" in labels
    assert ingress[(3030, "TCP")] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    egress = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress == {9999, 53, 9092, 9093, 6379, 443}
    (to_pods,) = [rule for rule in policy["egress"] if rule.get("to", [{}])[0].get("podSelector")]
    assert to_pods["to"] == [{"podSelector": {"matchLabels": labels}}]
    monitor = one(rendered, "PodMonitor")["spec"]
    selector = monitor["selector"]["matchLabels"]
    assert selector.items() <= labels.items() and "app.kubernetes.io/instance" in selector
    assert monitor["podMetricsEndpoints"] == [
        {"port": "api", "path": "/metrics", "interval": "30s"}
    ]


def test_every_prometheus_operator_object_in_k8s_is_valid() -> None:
    """The PodMonitor of the base, and the PrometheusRule of k8s/monitoring (applied once per
    namespace, not through the overlays: two overlays would make two copies of every alert)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if isinstance(obj, dict) and obj.get("kind") in CRD_MODELS:
                validate(obj)
                found.append(obj["kind"])
    assert "PodMonitor" in found
