"""Status from what the Deployment controller and the kubelet report (simulated: kmock runs no controllers).

kmock has no server-side apply: kmock_plus applies with a hand-written stand-in; real SSA is the e2e tier's job.
"""

from __future__ import annotations

from typing import Any

import harness as h
from harness import DEPLOYMENTS, G4D, PODS, SERVICES
from kmock_plus import Emulator

LABELS = {"app.kubernetes.io/name": "gemma4", "app.kubernetes.io/instance": "chat",
          "app.kubernetes.io/managed-by": "gemma4-operator", "app.kubernetes.io/component": "server"}


def pod(name: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "labels": LABELS},
            "spec": {"containers": [{"name": "server", "image": "vllm/vllm-openai:v0.32.0"}]}, "status": status}


def crash_looping(restarts: int, last_reason: str = "Error") -> dict[str, Any]:
    return {"phase": "Running", "containerStatuses": [{
        "name": "server", "image": "vllm/vllm-openai:v0.32.0", "ready": False, "restartCount": restarts,
        "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
        "lastState": {"terminated": {"reason": last_reason, "exitCode": 137 if last_reason == "OOMKilled" else 1}}}]}


def status(k: Emulator) -> dict[str, Any]:
    cr = h.obj(k, G4D, "default", "chat")
    assert cr is not None
    s: dict[str, Any] = cr.get("status", {})
    return s


def cond(k: Emulator, type_: str) -> dict[str, Any]:
    return next(c for c in status(k).get("conditions", []) if c["type"] == type_)


def event_reasons(k: Emulator) -> list[tuple[str, str]]:
    return [(e["type"], e["reason"]) for e in h.objects(k, h.EVENTS) if e["involvedObject"]["name"] == "chat"]


async def test_ready_then_degraded_then_recovered(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        progressing_since = cond(k, "Progressing")["lastTransitionTime"]
        assert cond(k, "Progressing")["status"] == "True" and status(k)["phase"] == "Progressing"

        # the Deployment controller reports the rollout done and one ready replica
        await h.create(k, PODS, pod("chat-a", {"phase": "Running", "conditions": [
            {"type": "PodScheduled", "status": "True"}, {"type": "Ready", "status": "True"}]}))
        await h.patch(k, DEPLOYMENTS, "default", "chat", {"status": {
            "observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
            "availableReplicas": 1}}, subresource="status")
        await h.wait_for(lambda: status(k).get("phase") == "Ready", what="Ready")
        await h.settle(k)
        assert status(k)["ready"] == "1/1" and status(k)["readyReplicas"] == 1 and status(k)["replicas"] == 1
        assert cond(k, "Ready")["status"] == "True"
        assert cond(k, "Ready")["message"] == "1/1 replicas serving at http://chat.default.svc:8000/v1"
        assert cond(k, "Available")["status"] == "True"
        assert cond(k, "Progressing")["status"] == "False"
        assert cond(k, "Progressing")["lastTransitionTime"] >= progressing_since
        assert ("Normal", "Ready") in event_reasons(k)

        # the pod starts crash-looping with OOM kills
        await h.patch(k, PODS, "default", "chat-a", {"status": crash_looping(4, "OOMKilled")})
        await h.wait_for(lambda: status(k).get("phase") == "Degraded", what="Degraded")
        await h.settle(k)
        degraded = cond(k, "Degraded")
        assert degraded["status"] == "True" and degraded["reason"] == "OOMKilled"
        assert "OOM-killed" in degraded["message"] and "chat-a" in degraded["message"]
        assert cond(k, "Ready")["status"] == "False" and cond(k, "Ready")["reason"] == "OOMKilled"
        assert ("Warning", "OOMKilled") in event_reasons(k) and ("Warning", "NotReady") in event_reasons(k)

        # idle: nothing changes, nothing is written
        mark = len(h.operator_requests(k))
        await h.settle(k, quiet=1.0)
        assert h.writes(k, mark) == []

        await h.patch(k, PODS, "default", "chat-a", {"status": {"phase": "Running", "containerStatuses": None,
                                                                "conditions": [{"type": "Ready", "status": "True"}]}})
        await h.wait_for(lambda: status(k).get("phase") == "Ready", what="Ready again")
        await h.settle(k)
        assert ("Normal", "Recovered") in event_reasons(k)


async def test_unschedulable_for_lack_of_gpus(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="deployment")
        await h.create(k, PODS, pod("chat-b", {"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}))
        await h.wait_for(lambda: status(k).get("phase") == "Degraded", what="Degraded")
        degraded = cond(k, "Degraded")
        assert degraded["reason"] == "Unschedulable"
        assert "insufficient nvidia.com/gpu" in degraded["message"]
        assert "the plan needs 1 per replica" in degraded["message"]
