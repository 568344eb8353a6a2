"""Creating Gemma4Deployments: the children, their shape, status, events and metrics.

kmock has no server-side apply: kmock_plus applies with a hand-written stand-in; real SSA is the e2e tier's job.
"""

from __future__ import annotations

import json
from typing import Any

import harness as h
from harness import DEPLOYMENTS, G4D, JOBS, NODES, PDBS, PVCS, SERVICES
from kmock_plus import Emulator

from gemma4_operator.api import API_VERSION, KIND
from gemma4_operator.reconcile.desired import HASH_ANNOTATION

L4 = {"nvidia.com/gpu.product": "NVIDIA-L4"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def events(k: Emulator, name: str) -> list[dict[str, Any]]:
    return [e for e in h.objects(k, h.EVENTS) if e["involvedObject"]["name"] == name]


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return c


async def test_create_makes_deployment_and_service_owned_by_the_object(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", L4))
    cr = await h.create(k, G4D, h.g4d("chat", "ml", accelerator={"type": "auto"}))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: h.obj(k, SERVICES, "ml", "chat"), what="children")
        await h.settle(k)

    deployment, service = h.obj(k, DEPLOYMENTS, "ml", "chat"), h.obj(k, SERVICES, "ml", "chat")
    assert deployment is not None and service is not None
    for child in (deployment, service):
        assert child["metadata"]["ownerReferences"] == [{
            "apiVersion": API_VERSION, "kind": KIND, "name": "chat", "uid": cr["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": True}]
        assert child["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gemma4-operator"
        assert HASH_ANNOTATION in child["metadata"]["annotations"]
        assert child["metadata"]["managedFields"][0]["manager"] == "gemma4-operator"
    c = container(deployment)
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    # vllm serve under the termination-log wrapper (engines/termination_log.py)
    assert c["command"][:2] == ["python3", "-c"] and c["command"][-2:] == ["vllm", "serve"]
    assert c["args"][:3] == ["google/gemma-4-E4B-it", "--served-model-name", "gemma-4-e4b-it"]
    assert "--max-model-len" in c["args"] and c["args"][c["args"].index("--max-model-len") + 1] == "32768"
    assert c["startupProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert deployment["spec"]["replicas"] == 1
    assert service["spec"]["ports"] == [{"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}]
    assert h.obj(k, PDBS, "ml", "chat") is None and h.obj(k, PVCS, "ml", "chat-model-cache") is None

    status = h.obj(k, G4D, "ml", "chat")["status"]  # type: ignore[index]
    assert status["observedGeneration"] == 1
    assert status["plan"]["accelerator"] == "nvidia-l4" and status["gpus"] == "1x l4"
    assert status["endpoint"] == "http://chat.ml.svc:8000/v1"
    assert status["selector"] == "app.kubernetes.io/name=gemma4,app.kubernetes.io/instance=chat"
    assert status["ready"] == "0/1" and status["phase"] == "Progressing"
    conditions = {c["type"]: c for c in status["conditions"]}
    assert list(conditions) == ["Planned", "ModelReady", "Available", "Progressing", "Degraded", "Ready"]
    assert conditions["Planned"]["status"] == "True" and conditions["Planned"]["reason"] == "Fits"
    assert conditions["Planned"]["message"].startswith("e4b fp8 on 1x nvidia-l4")
    assert {c["observedGeneration"] for c in conditions.values()} == {1}
    reasons = [(e["type"], e["reason"]) for e in events(k, "chat")]
    assert ("Normal", "Planned") in reasons and ("Normal", "Applied") in reasons
    # kopf kept its state in annotations under our prefix, not in status
    annotations = h.obj(k, G4D, "ml", "chat")["metadata"]["annotations"]  # type: ignore[index]
    assert "serving.gemma4.dev/last-handled-configuration" in annotations
    assert not any(key.startswith("kopf.zalando.org") for key in annotations)
    assert set(status) <= {"observedGeneration", "phase", "conditions", "plan", "replicas", "readyReplicas",
                           "selector", "endpoint", "gpus", "ready", "model",
                           "speculativeDecoding"}  # the plan's MTP drafter, being measured


async def test_pvc_pdb_and_tensor_parallel_when_asked(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", H100))
    await h.create(k, G4D, h.g4d(
        "big", model={"variant": "31b"}, quantization="bf16", accelerator={"type": "nvidia-h100-80gb", "count": 2},
        replicas=2, storage={"modelCache": {"size": "100Gi", "accessModes": ["ReadWriteMany"]}}))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: h.obj(k, JOBS, "default", "big-download") and h.obj(k, PVCS, "default",
                                                                                  "big-model-cache"),
                         what="download Job and PVC")
        await h.settle(k)
        # no serving pod before the weights are on the PVC
        assert h.obj(k, DEPLOYMENTS, "default", "big") is None
        model = h.obj(k, G4D, "default", "big")["status"]["model"]  # type: ignore[index]
        # the checkpoint and its MTP drafter (speculativeDecoding auto), downloaded together
        assert (model["phase"], model["mode"], model["bytes"]) == ("Downloading", "cache", 62546177752 + 940000000)
        await h.patch(k, JOBS, "default", "big-download", {"status": {
            "succeeded": 1, "startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:10:00Z",
            "conditions": [{"type": "Complete", "status": "True"}]}}, subresource="status")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "big"), what="the Deployment after the download")
        await h.settle(k)
    deployment = h.obj(k, DEPLOYMENTS, "default", "big")
    assert deployment is not None
    c = container(deployment)
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert c["args"][c["args"].index("--tensor-parallel-size") + 1] == "2"
    assert c["args"][0] == "/cache/models/google/gemma-4-31B-it/main"
    assert json.loads(c["args"][c["args"].index("--speculative-config") + 1])["model"] == \
        "/cache/models/google/gemma-4-31B-it/main/mtp-drafter"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in c["env"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["cache"] == {"name": "cache", "persistentVolumeClaim": {"claimName": "big-model-cache"}}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    pvc = h.obj(k, PVCS, "default", "big-model-cache")
    assert pvc is not None and pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ownerReferences" not in pvc["metadata"]  # retainPolicy Retain: it outlives the object
    pdb = h.obj(k, PDBS, "default", "big")
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    assert pdb["metadata"]["ownerReferences"][0]["name"] == "big"
    assert deployment["spec"]["replicas"] == 2
    status = h.obj(k, G4D, "default", "big")["status"]  # type: ignore[index]
    assert status["model"]["phase"] == "Ready" and status["model"]["finishedAt"] == "2026-12-07T10:10:00Z"
    ready = next(c for c in status["conditions"] if c["type"] == "ModelReady")
    assert ready["status"] == "True" and ready["reason"] == "Downloaded"


async def test_cpu_only_cluster_plans_auto_onto_cpu(k: Emulator) -> None:
    await h.create(k, NODES, h.node("plain", {"kubernetes.io/arch": "amd64"}))
    await h.create(k, G4D, h.g4d("small", model={"variant": "e2b"}))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "small"), what="deployment")
        await h.settle(k)
    c = container(h.obj(k, DEPLOYMENTS, "default", "small"))  # type: ignore[arg-type]
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    status = h.obj(k, G4D, "default", "small")["status"]  # type: ignore[index]
    assert status["plan"]["engine"] == "llamacpp" and status["plan"]["accelerator"] == "cpu"
    assert status["gpus"] == "cpu"


async def test_operator_default_image_and_static_accelerators(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("a", accelerator={"type": "auto"}))
    await h.create(k, G4D, h.g4d("b", accelerator={"type": "auto"}, serving={"image": "mine/vllm:1"}))
    async with h.OperatorRun(k, images={"vllm": "mirror.local/vllm-openai:v0.32.0"},
                             accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "a") and h.obj(k, DEPLOYMENTS, "default", "b"),
                         what="deployments")
        await h.settle(k)
    assert container(h.obj(k, DEPLOYMENTS, "default", "a"))["image"] == "mirror.local/vllm-openai:v0.32.0"  # type: ignore[arg-type]
    assert container(h.obj(k, DEPLOYMENTS, "default", "b"))["image"] == "mine/vllm:1"  # type: ignore[arg-type]
    # static facts: no node watch at all
    assert not [r for r in h.operator_requests(k) if r.resource is not None and r.resource.plural == "nodes"]


async def test_metrics_count_reconciles_plans_and_applies(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "auto"}))
    async with h.OperatorRun(k) as op:
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        m = op.metrics
        assert m.value("gemma4_operator_reconciles_total", trigger="create", result="applied") == 1
        assert m.value("gemma4_operator_children_applied_total", kind="Deployment", reason="missing") == 1
        assert m.value("gemma4_operator_children_applied_total", kind="Service", reason="missing") == 1
        assert m.value("gemma4_operator_plans_total", variant="e4b", engine="vllm", quantization="fp8",
                       outcome="fits") >= 1
        assert m.value("gemma4_operator_reconcile_duration_seconds_count", trigger="create") == 1
        assert m.value("gemma4_operator_status_patches_total") >= 1
