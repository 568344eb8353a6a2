"""Generate the Gemma4Deployment CRD from the pydantic models in api.py.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema: no $ref,
no anyOf-with-null, no const, no additionalProperties beside properties, free-form objects
marked x-kubernetes-preserve-unknown-fields, and defaults spelled out (including the ones
pydantic computes from default factories, so the API server applies them).
"""

from __future__ import annotations

import copy
from typing import Any

import yaml
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

from gemma4_operator.api import (
    GROUP,
    KIND,
    NAME_RULES,
    PLURAL,
    SINGULAR,
    VERSION,
    Gemma4DeploymentSpec,
    Gemma4DeploymentStatus,
)

Schema = dict[str, Any]
_DROP = ("title", "$defs")

PRINTER_COLUMNS: list[Schema] = [
    {"name": "Variant", "type": "string", "jsonPath": ".spec.model.variant", "description": "Gemma 4 variant"},
    {"name": "Engine", "type": "string", "jsonPath": ".status.plan.engine", "description": "Serving engine"},
    {"name": "Quant", "type": "string", "jsonPath": ".status.plan.quantization", "description": "Weight format"},
    {"name": "GPUs", "type": "string", "jsonPath": ".status.gpus", "description": "GPUs per replica"},
    {"name": "Ready", "type": "string", "jsonPath": ".status.ready", "description": "Ready/desired replicas"},
    {"name": "Status", "type": "string", "jsonPath": ".status.phase", "description": "Phase"},
    {"name": "Model", "type": "string", "jsonPath": ".status.model.phase",
     "description": "Weights: Pending, Downloading, Ready or Failed"},
    {"name": "Adapters", "type": "string", "jsonPath": ".status.adaptersReady",
     "description": "LoRA adapters serving/declared"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


class _WithFactoryDefaults(GenerateJsonSchema):
    """Also emit defaults that come from default_factory (lists, nested objects)."""

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            schema = {**schema, "default": factory()}  # type: ignore[call-arg]
            schema.pop("default_factory", None)
        return super().default_schema(schema)

    def encode_default(self, dft: Any) -> Any:
        return to_jsonable_python(dft, by_alias=True, exclude_none=True)


def _structural(node: Any, defs: Schema) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]])
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            if rest.get("default", "") is None:
                rest.pop("default")
            return _structural({**options[0], **rest}, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
            out.setdefault("type", "string")
        elif key == "properties":
            out[key] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict) and "properties" not in node:
                out[key] = _structural(value, defs)
        else:
            out[key] = _structural(value, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def openapi_schema(model: type[Gemma4DeploymentSpec] | type[Gemma4DeploymentStatus]) -> Schema:
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_WithFactoryDefaults)
    schema: Schema = _structural(raw, raw.get("$defs", {}))
    return schema


def crd_manifest() -> Schema:
    spec_schema = openapi_schema(Gemma4DeploymentSpec)
    status_schema = openapi_schema(Gemma4DeploymentStatus)
    spec_schema["description"] = "Desired Gemma 4 inference service. The operator plans and renders everything else."
    status_schema["description"] = "Observed state, written by the operator: the plan, conditions and replicas."
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}", "labels": {"app.kubernetes.io/name": "gemma4-operator"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": ["g4d"], "categories": ["gemma4"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"},
                },
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": ("Gemma4Deployment serves one Gemma 4 model on vLLM or llama.cpp. The operator "
                                    "derives engine, checkpoint, quantization, GPUs, KV-cache budget, probes and "
                                    "autoscaling from the spec and shows the plan in status.plan."),
                    "required": ["spec"],
                    # CEL may read metadata.name (and generateName) at the top level only
                    **copy.deepcopy(NAME_RULES),
                    "properties": {
                        "apiVersion": {"type": "string", "description": "serving.gemma4.dev/v1alpha1"},
                        "kind": {"type": "string", "description": "Gemma4Deployment"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


def crd_yaml() -> str:
    header = "# Generated by `gemma4-operator crd` from operator/gemma4_operator/api.py. Do not edit.\n"
    return header + yaml.safe_dump(crd_manifest(), sort_keys=False, width=120)
