"""spec.routing.inferencePool in the operator's shell (kopf, discovery, watches): the InferencePool CRD arriving
while an object waits for it is found by the re-check, with no restart; RoutingReady follows the picker's
Deployment through its watch events.

kmock runs no controllers: the test plays the Deployment controller for the picker's Deployment.
"""

from __future__ import annotations

from typing import Any

import harness as h
import kmock
import pytest
from harness import DEPLOYMENTS, G4D, SERVICES
from kmock_plus import Emulator

from gemma4_operator.controller import routing as routing_io

POOLS = "inference.networking.k8s.io/v1/inferencepools"
ALWAYS_SERVED = {"v1/configmaps": "ConfigMap", "v1/serviceaccounts": "ServiceAccount",
                 "rbac.authorization.k8s.io/v1/rolebindings": "RoleBinding"}
SPEC: dict[str, Any] = {"accelerator": {"type": "cpu"}, "model": {"variant": "e2b"}, "replicas": 2,
                        "serving": {"maxModelLen": 4096}, "routing": {"inferencePool": {}}}


def _declare(k: Emulator, resource: str, kind: str) -> None:
    k.resources[resource] = kmock.ResourceInfo(kind=kind, namespaced=True, verbs={"list", "watch", "get", "create",
                                                                                  "patch", "delete"},
                                               subresources={"status"})


def routing_ready(k: Emulator) -> dict[str, Any] | None:
    cr = h.obj(k, G4D, "default", "chat") or {}
    return next((c for c in (cr.get("status") or {}).get("conditions", []) if c["type"] == "RoutingReady"), None)


def reason_is(k: Emulator, reason: str) -> bool:
    c = routing_ready(k)
    return c is not None and c["reason"] == reason


@pytest.mark.rbac_mode("routing", "routing.enabled (--epp-cluster-role): the chart grants the routing kinds only "
                                  "then; tests/packaging/test_rbac.py lists them")
async def test_the_crd_found_by_the_recheck_and_routing_ready_follows_the_picker(
        k: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(routing_io, "RECHECK_S", 0.3)
    for resource, kind in ALWAYS_SERVED.items():
        _declare(k, resource, kind)
    await h.create(k, G4D, h.g4d("chat", **SPEC))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",), epp_cluster_role="gemma4-operator-epp"):
        await h.wait_for(lambda: reason_is(k, "InferencePoolNotInstalled"), what="RoutingReady without the CRD")
        assert h.obj(k, SERVICES, "default", "chat") is not None  # the model serves meanwhile
        assert h.obj(k, DEPLOYMENTS, "default", "chat-epp") is None

        _declare(k, POOLS, "InferencePool")  # the CRD installed: discovery now lists inferencepools
        await h.wait_for(lambda: h.obj(k, POOLS, "default", "chat"), what="the InferencePool, with no restart")
        await h.wait_for(lambda: reason_is(k, "EndpointPickerNotReady"), what="RoutingReady waiting for the picker")
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat-router"), what="the router Service")

        await h.patch(k, DEPLOYMENTS, "default", "chat-epp", {"status": {"replicas": 1, "readyReplicas": 1}},
                      subresource="status")
        await h.wait_for(lambda: reason_is(k, "Routing"), what="RoutingReady True")
        cr = h.obj(k, G4D, "default", "chat")
        assert cr is not None and cr["status"]["endpoint"] == "http://chat-router.default.svc:8081/v1"
        assert routing_ready(k)["status"] == "True"  # type: ignore[index]
