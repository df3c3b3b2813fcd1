"""CustomResourceDefinitions of the Prometheus Operator kinds k8s/ uses, generated from the models
of `cloudcoil-models-prometheus-operator` (the same models tests/k8s/test_manifests.py validates
against), so a real API server can store, validate and prune PodMonitor and PrometheusRule objects.

An API server accepts only *structural* schemas: every node has a type, no `$ref`, no `anyOf` of
different types, no defaults that do not validate. `structural()` turns pydantic's JSON Schema
into one: references inlined, `X | None` as `nullable`, integer-or-string as
`x-kubernetes-int-or-string`, `const` as a one-value `enum`, titles and defaults dropped.
"""

from __future__ import annotations

from typing import Any

from cloudcoil.models.prometheus_operator import v1 as prometheus_v1
from pydantic import BaseModel

GROUP = "monitoring.coreos.com"
KINDS: dict[str, tuple[type[BaseModel], str]] = {
    "PodMonitor": (prometheus_v1.PodMonitor, "podmonitors"),
    "PrometheusRule": (prometheus_v1.PrometheusRule, "prometheusrules"),
}
DROPPED = {"title", "default", "$defs", "description", "examples"}


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def structural(node: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """One node of a pydantic JSON Schema as a structural OpenAPI v3 schema."""
    node = _resolve(dict(node), defs)
    if "anyOf" in node:
        options = [_resolve(option, defs) for option in node["anyOf"]]
        concrete = [option for option in options if option.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k not in {"anyOf", *DROPPED}}
        if len(concrete) == 1:
            out = {**structural(concrete[0], defs), **rest}
        elif {option.get("type") for option in concrete} == {"integer", "string"}:
            out = {"x-kubernetes-int-or-string": True}
        else:
            raise ValueError(f"no structural form for anyOf {concrete}")
        if len(concrete) < len(options):
            out["nullable"] = True
        return out
    return structural_keys(node, defs)


def structural_keys(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in DROPPED:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in {"items", "additionalProperties"} and isinstance(value, dict):
            out[key] = structural(value, defs)
        else:
            out[key] = value
    if "type" not in out and "x-kubernetes-int-or-string" not in out:
        if "properties" in out or "additionalProperties" in out:
            out["type"] = "object"
        else:  # an untyped value (`Any`): kept as given
            out["x-kubernetes-preserve-unknown-fields"] = True
    if out.get("type") == "object" and not {"properties", "additionalProperties"} & set(out):
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def crd(kind: str) -> dict[str, Any]:
    """The `apiextensions.k8s.io/v1` CustomResourceDefinition of `kind` (version v1 only)."""
    model, plural = KINDS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    defs = schema.get("$defs", {})
    properties = {name: structural(sub, defs) for name, sub in schema["properties"].items()}
    properties["apiVersion"] = {"type": "string"}
    properties["kind"] = {"type": "string"}
    properties["metadata"] = {"type": "object"}  # the API server owns ObjectMeta's schema
    root = {"type": "object", "properties": properties, "required": schema.get("required", [])}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
            },
            "versions": [
                {"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": root}}
            ],
        },
    }


def all_crds() -> list[dict[str, Any]]:
    return [crd(kind) for kind in KINDS]
