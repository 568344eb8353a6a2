"""JSON schemas of the routing objects the operator renders, written from the upstream v1 API field lists.

- InferencePool: kubernetes-sigs/gateway-api-inference-extension v1.5.0, api/v1/inferencepool_types.go
  (InferencePoolSpec: selector.matchLabels 1-64 labels; targetPorts 1-8 items {number 1-65535}; appProtocol
  http | kubernetes.io/h2c; endpointPickerRef {group, kind, name (required), port {number} (required for a
  Service), failureMode FailOpen | FailClose}, required through v1.5).
- HTTPRoute: kubernetes-sigs/gateway-api v1.2+, apis/v1/httproute_types.go and shared_types.go (ParentReference
  {group, kind, namespace, name, sectionName, port}; HTTPRouteRule {matches, backendRefs, timeouts {request,
  backendRequest}}; HTTPBackendRef {group, kind, name, namespace, port, weight}; Duration
  ^([0-9]{1,5}(h|m|s|ms)){1,4}$).
Only the fields the operator may render are allowed (additionalProperties false), so a misspelt field fails.
"""

from __future__ import annotations

from typing import Any

_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_PORT_NUMBER = {"type": "integer", "minimum": 1, "maximum": 65535}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}


def _object(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_METADATA = {"type": "object", "required": ["name", "namespace"]}

INFERENCE_POOL_V1: dict[str, Any] = _object({
    "apiVersion": {"const": "inference.networking.k8s.io/v1"},
    "kind": {"const": "InferencePool"},
    "metadata": _METADATA,
    "spec": _object({
        "selector": _object({"matchLabels": {"type": "object", "minProperties": 1, "maxProperties": 64,
                                             "additionalProperties": {"type": "string", "maxLength": 63}}},
                            ("matchLabels",)),
        "targetPorts": {"type": "array", "minItems": 1, "maxItems": 8,
                        "items": _object({"number": _PORT_NUMBER}, ("number",))},
        "appProtocol": {"enum": ["http", "kubernetes.io/h2c"]},
        "endpointPickerRef": _object({
            "group": {"type": "string", "maxLength": 253},
            "kind": {"type": "string", "minLength": 1, "maxLength": 63},
            "name": _NAME,
            "port": _object({"number": _PORT_NUMBER}, ("number",)),
            "failureMode": {"enum": ["FailOpen", "FailClose"]},
        }, ("name", "port")),
    }, ("selector", "targetPorts", "endpointPickerRef")),
}, ("apiVersion", "kind", "metadata", "spec"))

HTTPROUTE_V1: dict[str, Any] = _object({
    "apiVersion": {"const": "gateway.networking.k8s.io/v1"},
    "kind": {"const": "HTTPRoute"},
    "metadata": _METADATA,
    "spec": _object({
        "parentRefs": {"type": "array", "minItems": 1, "maxItems": 32, "items": _object({
            "group": {"type": "string"}, "kind": {"type": "string"}, "namespace": {"type": "string"},
            "name": _NAME, "sectionName": {"type": "string"}, "port": _PORT_NUMBER}, ("name",))},
        "rules": {"type": "array", "minItems": 1, "maxItems": 16, "items": _object({
            "matches": {"type": "array", "items": _object({"path": _object({
                "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                "value": {"type": "string", "maxLength": 1024}})})},
            "backendRefs": {"type": "array", "items": _object({
                "group": {"type": "string"}, "kind": {"type": "string"}, "name": _NAME,
                "namespace": {"type": "string"}, "port": _PORT_NUMBER, "weight": {"type": "integer"}}, ("name",))},
            "timeouts": _object({"request": _DURATION, "backendRequest": _DURATION}),
        })},
    }),
}, ("apiVersion", "kind", "metadata", "spec"))
