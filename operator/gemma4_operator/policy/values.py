"""The tenant policy's values: what an administrator lets a Gemma4Deployment author set.

The keys are the Helm chart's ``tenantPolicy`` values (camelCase, as in values.yaml); the chart hands them to the
operator as JSON (``--tenant-policy`` / ``GEMMA4_TENANT_POLICY``) and to its ValidatingAdmissionPolicy as a
ConfigMap. A key left out takes the chart's (restrictive) default; ``*`` in a list allows anything.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

ANY = "*"  # a list entry that allows every value


class TenantPolicyError(ValueError):
    """The policy's JSON is malformed; the message names the key."""


@dataclasses.dataclass(frozen=True)
class TenantPolicy:
    """Each field is a Helm value ``tenantPolicy.<camelCase name>`` with the chart's default: everything optional
    is refused but the Secret ``hf-token`` (the Hugging Face token of the documented examples)."""

    image_prefixes: tuple[str, ...] = ()  # spec.serving.image, besides the catalog's and the operator's images
    extra_arg_prefixes: tuple[str, ...] = ()  # spec.serving.extraArgs
    # env valueFrom.secretKeyRef, model.source.tokenSecretRef and serving.apiKeySecretRef
    secret_names: tuple[str, ...] = ("hf-token",)
    service_account_names: tuple[str, ...] = ()
    priority_class_names: tuple[str, ...] = ()
    runtime_class_names: tuple[str, ...] = ()
    scheduler_names: tuple[str, ...] = ()
    toleration_keys: tuple[str, ...] = ()
    node_selector_keys: tuple[str, ...] = ()
    affinity: bool = False
    pvc_claims: tuple[str, ...] = ()  # pvc://CLAIM/PATH sources
    run_as_root: bool = False  # serving.securityContext.runAsUser 0
    network_policy_opt_out: bool = False  # networkPolicy.enabled false (off where the operator's default is on)


def helm_key(field: str) -> str:
    """``service_account_names`` -> ``serviceAccountNames``: the Helm value's name under tenantPolicy."""
    head, *rest = field.split("_")
    return head + "".join(part.capitalize() for part in rest)


_FIELDS = {helm_key(f.name): f for f in dataclasses.fields(TenantPolicy)}


def _list(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v and "\n" not in v for v in value):
        raise TenantPolicyError(f"tenantPolicy.{key}: expected a list of non-empty one-line strings, got {value!r}")
    return tuple(value)


def parse_tenant_policy(text: str) -> TenantPolicy:
    """The policy from its JSON object (the Helm values' ``tenantPolicy`` without ``admission``)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise TenantPolicyError(f"tenant policy: not JSON ({e.msg} at character {e.pos})") from e
    if not isinstance(data, dict):
        raise TenantPolicyError(f"tenant policy: expected a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(_FIELDS))
    if unknown:
        raise TenantPolicyError(f"tenant policy: unknown key {', '.join(unknown)} (known: {', '.join(_FIELDS)})")
    values: dict[str, Any] = {}
    for key, value in data.items():
        field = _FIELDS[key]
        if isinstance(field.default, bool):
            if not isinstance(value, bool):
                raise TenantPolicyError(f"tenantPolicy.{key}: expected true or false, got {value!r}")
            values[field.name] = value
        else:
            values[field.name] = _list(key, value)
    return TenantPolicy(**values)
