"""The operator's re-check of the tenant policy (for clusters without the admission policy): a refused spec gets
Planned=False with reason PolicyViolation and the policy's words, a Warning event and no children; allowing it
(or fixing the spec) recovers."""

from __future__ import annotations

from typing import Any

import harness as h
from harness import DEPLOYMENTS, G4D, SERVICES
from kmock_plus import Emulator

from gemma4_operator.policy import TenantPolicy

REFUSAL = ('spec.podTemplate.spec.serviceAccountName: ServiceAccount "admin" is not allowed by the tenant policy; '
           "an administrator allows it with the Helm value tenantPolicy.serviceAccountNames")


def conditions(k: Emulator, name: str) -> dict[str, Any]:
    obj = h.obj(k, G4D, "default", name) or {}
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


async def test_refused_spec_creates_nothing_and_says_why_then_recovers(k: Emulator) -> None:
    spec = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
            "podTemplate": {"spec": {"serviceAccountName": "admin"}}}
    await h.create(k, G4D, h.g4d("tenant", **spec))
    async with h.OperatorRun(k, accelerator_types=(), tenant_policy=TenantPolicy()):
        await h.wait_for(lambda: "Planned" in conditions(k, "tenant"), what="status")
        await h.settle(k)
        planned = conditions(k, "tenant")["Planned"]
        assert (planned["status"], planned["reason"], planned["message"]) == ("False", "PolicyViolation", REFUSAL)
        assert h.obj(k, G4D, "default", "tenant")["status"]["phase"] == "Failed"  # type: ignore[index]
        assert h.obj(k, DEPLOYMENTS, "default", "tenant") is None and h.obj(k, SERVICES, "default", "tenant") is None
        warnings = [e for e in h.objects(k, h.EVENTS) if e["reason"] == "PolicyViolation"]
        assert [(e["type"], e["message"]) for e in warnings] == [("Warning", REFUSAL)]

        await h.patch(k, G4D, "default", "tenant", {"spec": {"podTemplate": {"spec": {"serviceAccountName": ""}}}})
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "tenant"), what="children once the spec complies")
        await h.settle(k)
        assert conditions(k, "tenant")["Planned"]["status"] == "True"
