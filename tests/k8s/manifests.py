"""Render the kustomize trees of k8s/ and read the rendered objects.

`kubectl kustomize` when kubectl is on PATH, else the kustomize that
scripts/install_test_services.sh builds into .cache/bin: one of them must be there (no skip).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
FLOWS = ("shipments", "tickets")
CACHED_KUSTOMIZE = ROOT / ".cache" / "bin" / "kustomize"


def kustomize_command(directory: Path) -> list[str]:
    kubectl = shutil.which("kubectl")
    if kubectl is not None:
        return [kubectl, "kustomize", str(directory)]
    if CACHED_KUSTOMIZE.exists():
        return [str(CACHED_KUSTOMIZE), "build", str(directory)]
    raise AssertionError(
        "neither kubectl nor .cache/bin/kustomize: run scripts/install_test_services.sh"
    )


def render(directory: Path) -> list[dict[str, Any]]:
    done = subprocess.run(
        kustomize_command(directory), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [obj for obj in objects if obj["kind"] == kind]
    assert len(found) == 1, f"{len(found)} objects of kind {kind}"
    return found[0]


def container(pod_spec: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    key = "initContainers" if init else "containers"
    found = [c for c in pod_spec[key] if c["name"] == name]
    assert len(found) == 1, f"{key} {name}"
    return found[0]


def env_values(spec: dict[str, Any]) -> dict[str, str]:
    """Literal `value`s of a container's env (not valueFrom)."""
    return {e["name"]: e["value"] for e in spec.get("env", []) if "value" in e}
