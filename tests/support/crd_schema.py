"""Check objects against the generated CRD the way an API server would, without one:
structural defaulting, OpenAPI validation (jsonschema) and the CEL rules (cel-python)."""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
from celpy.adapter import json_to_cel

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


@dataclass(frozen=True)
class CelRuleSite:
    """One ``x-kubernetes-validations`` entry and where it sits: ``location`` is the schema path of the object
    it is declared on ("" for the root, ``spec.autoscaling``, list items as ``[]``)."""

    location: str
    rule: str
    message: str
    field_path: str  # the rule's fieldPath ("" when it has none)

    @property
    def field(self) -> str:
        """The field a CEL-capable API server names when the rule fails: location + fieldPath."""
        return ".".join(p for p in (self.location, self.field_path.removeprefix(".")) if p)


def _child(location: str, name: str) -> str:
    return f"{location}.{name}" if location else name


def crd_cel_rules() -> list[CelRuleSite]:
    """Every CEL rule of the generated CRD, in schema order."""
    sites: list[CelRuleSite] = []

    def walk(schema: Json, location: str) -> None:
        sites.extend(CelRuleSite(location, r["rule"], r["message"], r.get("fieldPath", ""))
                     for r in schema.get("x-kubernetes-validations", []))
        for name, sub in schema.get("properties", {}).items():
            walk(sub, _child(location, name))
        if "items" in schema:
            walk(schema["items"], f"{location}[]")

    walk(crd_schema(), "")
    return sites


def cel_failures(obj: Json) -> list[CelRuleSite]:
    """Every x-kubernetes-validations rule the (defaulted) object breaks, where the server would evaluate it."""
    failures: list[CelRuleSite] = []

    def walk(schema: Json, value: Any, location: str) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            result = _program(rule["rule"]).evaluate({"self": json_to_cel(value)})
            if isinstance(result, Exception) or not bool(result):
                failures.append(CelRuleSite(location, rule["rule"], rule["message"], rule.get("fieldPath", "")))
        if isinstance(value, dict):
            for name, sub in schema.get("properties", {}).items():
                if name in value:
                    walk(sub, value[name], _child(location, name))
        elif isinstance(value, list) and "items" in schema:
            for item in value:
                walk(schema["items"], item, f"{location}[]")

    walk(crd_schema(), apply_defaults(crd_schema(), obj), "")
    return failures


def cel_errors(obj: Json) -> list[str]:
    """Messages of every x-kubernetes-validations rule the (defaulted) object breaks."""
    return [f.message for f in cel_failures(obj)]
