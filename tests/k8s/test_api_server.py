"""k8s/ against a real Kubernetes API server: etcd and a kube-apiserver built from the
`k8s.io/kubernetes` module (scripts/kube_apiserver.py), on 127.0.0.1.

The server validates, defaults and admits each object the way a cluster does (strict field
validation of server-side apply, the CRD schemas of the Prometheus Operator kinds, namespace
lifecycle, quantity and selector checks); nothing runs the pods (no controllers, no kubelet), so
what is proven here is that every manifest is accepted and stored as written, and that the
README's deploy, rescale and delete commands do what it says to the stored objects.
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.kube_apiserver import KubeApiServer, KubeApiServerError
from tests.conftest import SERVICES
from tests.k8s.crds import all_crds
from tests.k8s.manifests import FLOWS, K8S, one, render

DRY_RUN = "serverside-applied (server dry run)"


@pytest.fixture(scope="module")
def api() -> Iterator[KubeApiServer]:
    started = time.monotonic()
    with KubeApiServer() as server:
        ready = time.monotonic() - started
        SERVICES["kube-apiserver"] = f"{server.version()} on {server.url}, ready in {ready:.1f} s"

        server.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(all_crds()))
        for definition in all_crds():
            server.kubectl(
                "wait", "--for=condition=Established", "--timeout=60s",
                f"crd/{definition['metadata']['name']}",
            )  # fmt: skip
        yield server


def documents(objects: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def reference(obj: dict[str, Any]) -> str:
    """`kind.group/name` for kubectl get (core kinds without a group)."""
    group = obj["apiVersion"].split("/")[0] if "/" in obj["apiVersion"] else ""
    kind = obj["kind"].lower() + (f".{group}" if group else "")
    return f"{kind}/{obj['metadata']['name']}"


def stored(api: KubeApiServer, namespace: str, obj: dict[str, Any]) -> dict[str, Any]:
    done = api.kubectl("-n", namespace, "get", reference(obj), "-o", "json")
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def missing_from(written: Any, read: Any, path: str = "") -> list[str]:
    """Paths where the object read back lacks or changes what was written (defaults may add)."""
    if isinstance(written, dict):
        if not isinstance(read, dict):
            return [f"{path}: {read!r}"]
        return [miss for key, value in written.items()
                for miss in missing_from(value, read.get(key), f"{path}.{key}")]  # fmt: skip
    if isinstance(written, list):
        if not isinstance(read, list) or len(read) != len(written):
            return [f"{path}: {read!r}"]
        return [miss for i, (w, r) in enumerate(zip(written, read, strict=True))
                for miss in missing_from(w, r, f"{path}[{i}]")]  # fmt: skip
    return [] if written == read else [f"{path}: wrote {written!r}, read {read!r}"]


def namespace(api: KubeApiServer, name: str) -> str:
    api.kubectl("create", "namespace", name)
    return name


@pytest.mark.parametrize("flow", FLOWS)
def test_every_object_passes_a_server_side_dry_run(api: KubeApiServer, flow: str) -> None:
    ns = namespace(api, f"dry-{flow}")
    objects = [*render(K8S / "overlays" / flow / "recovery"), *render(K8S / "overlays" / flow)]
    rules = yaml.safe_load((K8S / "monitoring" / "prometheus-rules.yaml").read_text())
    done = api.kubectl(
        "-n", ns, "apply", "--server-side", "--dry-run=server", "-f", "-",
        input=documents([*objects, rules]),
    )  # fmt: skip
    accepted = [line for line in done.stdout.splitlines() if line.endswith(DRY_RUN)]
    assert len(accepted) == len(objects) + 1, done.stdout
    # a dry run stores nothing
    listed = api.kubectl("-n", ns, "get", "statefulsets,configmaps,podmonitors", "-o", "name")
    assert "statefulset" not in listed.stdout and "podmonitor" not in listed.stdout


def test_the_server_refuses_a_wrong_field_in_each_kind(api: KubeApiServer) -> None:
    """The same dry run fails for one unknown or mistyped field: the checks above can fail."""
    ns = namespace(api, "wrong-fields")
    objects = render(K8S / "overlays" / "shipments")
    sts = copy.deepcopy(one(objects, "StatefulSet"))
    sts["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["prot"] = "api"
    monitor = copy.deepcopy(one(objects, "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["honorLabels"] = "yes"
    policy = copy.deepcopy(one(objects, "NetworkPolicy"))
    policy["spec"]["ingress"][0]["ports"][0]["port"] = 70000
    rules = yaml.safe_load((K8S / "monitoring" / "prometheus-rules.yaml").read_text())
    rules["spec"]["groups"][0]["rules"][0]["fourSeconds"] = "5m"
    for broken, says in [(sts, "httpGet.prot"), (monitor, "honorLabels"),
                         (policy, "port"), (rules, "fourSeconds")]:  # fmt: skip
        done = api.kubectl(
            "-n", ns, "apply", "--server-side", "--dry-run=server", "-f", "-",
            input=documents([broken]), check=False,
        )  # fmt: skip
        assert done.returncode != 0, f"{broken['kind']} accepted: {done.stdout}"
        assert says in done.stderr, done.stderr


def copy_of_k8s(tmp_path: Path) -> Path:
    target = tmp_path / "k8s"
    shutil.copytree(K8S, target)
    return target


def set_processes(tree: Path, flow: str, processes: int) -> None:
    """Edit the overlay the way k8s/README.md's rescale says: `replicas.count` and the hostfile
    init container's `BYTEWAX_REPLICAS`, together."""
    kustomization = tree / "overlays" / flow / "kustomization.yaml"
    data = yaml.safe_load(kustomization.read_text())
    data["replicas"][0]["count"] = processes
    kustomization.write_text(yaml.safe_dump(data, sort_keys=False))
    patch = tree / "overlays" / flow / "statefulset.yaml"
    data = yaml.safe_load(patch.read_text())
    init = next(c for c in data["spec"]["template"]["spec"]["initContainers"]
                if c["name"] == "init-hostfile")  # fmt: skip
    variables = [e for e in init["env"] if e["name"] == "BYTEWAX_REPLICAS"]
    assert len(variables) == 1, f"BYTEWAX_REPLICAS is not set once in {patch}"
    variables[0]["value"] = str(processes)
    patch.write_text(yaml.safe_dump(data, sort_keys=False))


def replicas_of(sts: dict[str, Any]) -> tuple[int, str]:
    init = next(c for c in sts["spec"]["template"]["spec"]["initContainers"]
                if c["name"] == "init-hostfile")  # fmt: skip
    value = next(e["value"] for e in init["env"] if e["name"] == "BYTEWAX_REPLICAS")
    return sts["spec"]["replicas"], value


@pytest.mark.parametrize("flow", FLOWS)
def test_deploy_rescale_and_delete_as_the_readme_says(
    api: KubeApiServer, flow: str, tmp_path: Path
) -> None:
    ns = namespace(api, f"surgeflow-{flow}")
    tree = copy_of_k8s(tmp_path)
    overlay = tree / "overlays" / flow
    api.kubectl(
        "-n", ns, "create", "secret", "generic", "surgeflow-secrets",
        "--from-literal=OPENAI_API_KEY=sk-test-not-a-key", "--from-literal=REDIS_URL=redis://r:6379/0",
        "--from-literal=SURGEFLOW_KAFKA_SASL_PASSWORD=not-a-password",
    )  # fmt: skip
    api.kubectl("-n", ns, "apply", "-k", str(overlay / "recovery"))
    api.kubectl("-n", ns, "apply", "-k", str(overlay))
    api.kubectl("-n", ns, "apply", "-f", str(tree / "monitoring" / "prometheus-rules.yaml"))

    # every object is stored as written (the server may add defaults, never drop or change)
    objects = render(overlay)
    claim = one(render(overlay / "recovery"), "PersistentVolumeClaim")
    for obj in [*objects, claim]:
        read = stored(api, ns, obj)
        assert missing_from(obj, read) == [], reference(obj)
        assert read["metadata"]["namespace"] == ns
    sts = stored(api, ns, one(objects, "StatefulSet"))
    processes, hostfile_replicas = replicas_of(sts)
    assert str(processes) == hostfile_replicas
    secret_keys = {
        (env["valueFrom"]["secretKeyRef"]["name"], env["valueFrom"]["secretKeyRef"]["key"])
        for c in sts["spec"]["template"]["spec"]["containers"]
        for env in c.get("env", [])
        if "secretKeyRef" in env.get("valueFrom", {})
    }
    secret = json.loads(
        api.kubectl("-n", ns, "get", "secret", "surgeflow-secrets", "-o", "json").stdout
    )
    assert secret_keys == {("surgeflow-secrets", key) for key in secret["data"]}
    config_maps = {
        ref["configMapRef"]["name"]
        for c in sts["spec"]["template"]["spec"]["containers"]
        for ref in c.get("envFrom", [])
        if "configMapRef" in ref
    }
    stored_maps = api.kubectl("-n", ns, "get", "configmaps", "-o", "name").stdout.split()
    assert {f"configmap/{name}" for name in config_maps} <= set(stored_maps)

    # scale N -> 0 -> M: the README's procedure (no kubelet here, so no pod to wait for)
    name = sts["metadata"]["name"]
    api.kubectl("-n", ns, "scale", "statefulset", name, "--replicas", "0")
    assert stored(api, ns, sts)["spec"]["replicas"] == 0
    target = processes + 1
    set_processes(tree, flow, target)
    api.kubectl("-n", ns, "apply", "-k", str(overlay))
    assert replicas_of(stored(api, ns, sts)) == (target, str(target))

    # delete the flow: its objects go, the claim stays
    api.kubectl("-n", ns, "delete", "-k", str(overlay), "--wait=false")
    left = api.kubectl("-n", ns, "get", "statefulsets,services,podmonitors,persistentvolumeclaims",
                       "-o", "name").stdout.split()  # fmt: skip
    assert left == [f"persistentvolumeclaim/{claim['metadata']['name']}"]
    with pytest.raises(KubeApiServerError, match="NotFound"):
        stored(api, ns, sts)
