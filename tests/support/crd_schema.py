"""Check objects against the generated CRD the way an API server would, without one:
structural defaulting, OpenAPI validation (jsonschema) and the CEL rules (cel-python)."""

from __future__ import annotations

import copy
import functools
from typing import Any

import celpy
import jsonschema

from gemma4_operator.api.crd import crd_manifest

Json = dict[str, Any]


@functools.cache
def crd_schema() -> Json:
    schema: Json = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def apply_defaults(schema: Json, value: Any) -> Any:
    """Structural defaulting: fill missing properties that declare a default, recursively."""
    if isinstance(value, dict) and "properties" in schema:
        out = dict(value)
        for name, sub in schema["properties"].items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(sub, out[name])
        return out
    if isinstance(value, list) and "items" in schema:
        return [apply_defaults(schema["items"], v) for v in value]
    return value


def _openapi_to_jsonschema(node: Any) -> Any:
    """Unknown fields are errors, as under kubectl's default strict field validation."""
    if isinstance(node, dict):
        out = {k: _openapi_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_openapi_to_jsonschema(v) for v in node]
    return node


def schema_errors(obj: Json) -> list[str]:
    """OpenAPI errors as 'path: message', after defaulting."""
    validator = jsonschema.Draft7Validator(_openapi_to_jsonschema(crd_schema()))
    defaulted = apply_defaults(crd_schema(), obj)
    return [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
            for e in sorted(validator.iter_errors(defaulted), key=lambda e: list(e.absolute_path))]


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(obj: Json) -> list[str]:
    """Messages of every x-kubernetes-validations rule the (defaulted) object breaks."""
    failures: list[str] = []

    def walk(schema: Json, value: Any) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            result = _program(rule["rule"]).evaluate({"self": celpy.json_to_cel(value)})
            if isinstance(result, Exception) or not bool(result):
                failures.append(rule["message"])
        if isinstance(value, dict):
            for name, sub in schema.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name])
        elif isinstance(value, list) and "items" in schema:
            for item in value:
                walk(schema["items"], item)

    walk(crd_schema(), apply_defaults(crd_schema(), obj))
    return failures
