"""RoutingReady and the endpoint clients use, pure: from the spec, why routing was not rendered, the
InferencePool's status (gateway mode: written by the Gateway) and the endpoint picker's Deployment.

- Not asked for: no RoutingReady condition; clients use the Service NAME.
- Refused (the CRD not served, routing not installed, a scorer the engine cannot feed): False with the reason;
  the model keeps serving through the Service NAME.
- standalone: True once the endpoint picker (with its Envoy sidecar) is ready; clients use NAME-router.
- gateway: True once the EPP is ready and the Gateway accepted the InferencePool and resolved its endpoint picker
  (``status.parents[].conditions`` Accepted and ResolvedRefs); clients use the Gateway's address.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gemma4_operator.api import GatewayRef, Gemma4DeploymentSpec, RoutingMode
from gemma4_operator.reconcile.status import ROUTING_READY, ConditionValue
from gemma4_operator.render import routing as r
from gemma4_operator.render.children import Owner, endpoint

# the Gateway's condition types on the pool, and our reason when one is not True
GATEWAY_CONDITIONS = {"Accepted": "GatewayNotAccepted", "ResolvedRefs": "GatewayRefsNotResolved"}


@dataclass(frozen=True)
class RoutingState:
    condition: ConditionValue
    endpoint: str  # where clients go: the router Service in standalone mode once ready, else the Service NAME


def router_endpoint(owner: Owner) -> str:
    return f"http://{r.router_name(owner.name)}.{owner.namespace}.svc:{r.routing_catalog().ports.router}/v1"


def _conditions(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {str(c.get("type")): c for c in obj.get("conditions") or [] if isinstance(c, Mapping)}


def _parent_of(parents: Sequence[Mapping[str, Any]], ref: GatewayRef, namespace: str) -> Mapping[str, Any] | None:
    """The pool's status entry written for our Gateway (a pool may be used by others too)."""
    for parent in parents:
        p = parent.get("parentRef") or {}
        if p.get("name") == ref.name and (p.get("namespace") or namespace) == (ref.namespace or namespace):
            return parent
    return None


def gateway_verdict(pool: Mapping[str, Any] | None, ref: GatewayRef, namespace: str) -> tuple[bool, str, str]:
    """(accepted, reason, message) from the InferencePool's status.parents for the Gateway ``ref``."""
    gateway = f"Gateway {ref.namespace or namespace}/{ref.name}"
    parents = [p for p in ((pool or {}).get("status") or {}).get("parents") or [] if isinstance(p, Mapping)]
    parent = _parent_of(parents, ref, namespace)
    if parent is None:
        return False, "WaitingForGateway", (
            f"{gateway} has not reported on the InferencePool yet (status.parents): is a Gateway API "
            "implementation that supports InferencePool installed, and does the Gateway exist?")
    conditions = _conditions(parent)
    for type_, ours in GATEWAY_CONDITIONS.items():
        c = conditions.get(type_) or {}
        if c.get("status") != "True":
            return False, ours, (f"{gateway}: {type_} is {c.get('status', 'Unknown')} ({c.get('reason', 'Pending')}): "
                                 f"{c.get('message') or 'no message'}")
    return True, "Accepted", f"{gateway} accepted the InferencePool and resolved its endpoint picker"


def _epp_ready(deployment: Mapping[str, Any] | None) -> bool:
    return int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0) >= 1


def routing_state(owner: Owner, spec: Gemma4DeploymentSpec | None, planned: bool,
                  refusal: r.RoutingRefusal | None, pool: Mapping[str, Any] | None,
                  epp: Mapping[str, Any] | None) -> RoutingState | None:
    """RoutingReady and the endpoint; None when the spec asks for no routing (nor could be read)."""
    routing = r.wants_routing(spec) if spec is not None else None
    if routing is None:
        return None
    service = endpoint(owner)
    if refusal is not None:
        return RoutingState(ConditionValue(ROUTING_READY, False, refusal.reason, refusal.message), service)
    if not planned:
        return RoutingState(ConditionValue(ROUTING_READY, None, "NotPlanned", "routing waits for a plan"), service)
    if not _epp_ready(epp):
        return RoutingState(ConditionValue(ROUTING_READY, False, "EndpointPickerNotReady", (
            f"the endpoint picker Deployment {r.epp_name(owner.name)} has no ready replica yet; the model serves "
            f"through the Service {owner.name} meanwhile")), service)
    if routing.mode is RoutingMode.STANDALONE:
        url = router_endpoint(owner)
        return RoutingState(ConditionValue(ROUTING_READY, True, "Routing", (
            f"requests to {url} are routed by the endpoint picker")), url)
    assert routing.gateway_ref is not None  # the API requires it in mode gateway
    ok, reason, message = gateway_verdict(pool, routing.gateway_ref, owner.namespace)
    if ok:
        message += f"; clients call the Gateway's address (HTTPRoute {owner.name})"
    return RoutingState(ConditionValue(ROUTING_READY, ok, reason, message), service)
