"""Changes after creation: spec updates, scaling, autoscaling, bad specs, drift and deleted children,
new accelerator nodes.

kmock has no server-side apply: kmock_plus applies with a hand-written stand-in; real SSA is the e2e tier's job.
"""

from __future__ import annotations

from typing import Any

import harness as h
from harness import DEPLOYMENTS, G4D, JOBS, NODES, PDBS, SERVICES
from kmock_plus import APPLY_PATCH, Emulator

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.planner.plan import ClusterFacts, PlanError
from gemma4_operator.planner.select import plan

L4 = {"nvidia.com/gpu.product": "NVIDIA-L4"}
H100 = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}


def args(k: Emulator, ns: str, name: str) -> list[str]:
    d = h.obj(k, DEPLOYMENTS, ns, name)
    assert d is not None
    a: list[str] = d["spec"]["template"]["spec"]["containers"][0]["args"]
    return a


def applies(k: Emulator, since: int, plural: str | None = None) -> list[Any]:
    return [r for r in h.writes(k, since) if str(r.headers.get("Content-Type", "")).startswith(APPLY_PATCH)
            and (plural is None or r.resource.plural == plural)]


def conditions(k: Emulator, ns: str, name: str) -> dict[str, dict[str, Any]]:
    cr = h.obj(k, G4D, ns, name)
    assert cr is not None
    return {c["type"]: c for c in cr.get("status", {}).get("conditions", [])}


async def test_spec_update_re_renders_only_what_changed(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "auto"}))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        planned_at = conditions(k, "default", "chat")["Planned"]["lastTransitionTime"]

        mark = len(h.operator_requests(k))
        await h.patch(k, G4D, "default", "chat", {"spec": {"serving": {"maxModelLen": 8192}}})
        await h.wait_for(lambda: "8192" in args(k, "default", "chat"), what="maxModelLen in args")
        await h.settle(k)
        assert [r.resource.plural for r in applies(k, mark)] == ["deployments"]  # the Service did not change
        cr = h.obj(k, G4D, "default", "chat")
        assert cr is not None and cr["metadata"]["generation"] == 2
        assert cr["status"]["observedGeneration"] == 2 and cr["status"]["plan"]["maxModelLen"] == 8192
        assert conditions(k, "default", "chat")["Planned"]["lastTransitionTime"] == planned_at  # still True

        await h.patch(k, G4D, "default", "chat", {"spec": {"model": {"variant": "e2b"}}})
        await h.wait_for(lambda: "google/gemma-4-E2B-it" in args(k, "default", "chat"), what="variant e2b")
        await h.settle(k)
        d = h.obj(k, DEPLOYMENTS, "default", "chat")
        assert d is not None and d["metadata"]["labels"]["serving.gemma4.dev/variant"] == "e2b"
        svc = h.obj(k, SERVICES, "default", "chat")
        assert svc is not None and svc["metadata"]["labels"]["serving.gemma4.dev/variant"] == "e2b"


async def test_kubectl_scale_path_and_pdb_lifecycle(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="deployment")
        # `kubectl scale g4d chat --replicas=3` writes spec.replicas through the scale subresource
        await h.patch(k, G4D, "default", "chat", {"spec": {"replicas": 3}})
        await h.wait_for(lambda: (h.obj(k, DEPLOYMENTS, "default", "chat") or {})["spec"]["replicas"] == 3,
                         what="3 replicas")
        await h.wait_for(lambda: h.obj(k, PDBS, "default", "chat"), what="PDB for 3 replicas")
        await h.settle(k)
        assert h.obj(k, G4D, "default", "chat")["status"]["ready"] == "0/3"  # type: ignore[index]
        await h.patch(k, G4D, "default", "chat", {"spec": {"replicas": 1}})
        await h.wait_for(lambda: h.obj(k, PDBS, "default", "chat") is None, what="PDB removed")
        await h.settle(k)
        assert h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["replicas"] == 1  # type: ignore[index]


async def test_autoscaling_leaves_replicas_to_the_autoscaler(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}, replicas=2))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="deployment")
        await h.settle(k)
        assert h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["replicas"] == 2  # type: ignore[index]
        await h.patch(k, G4D, "default", "chat", {"spec": {"autoscaling": {"minReplicaCount": 1,
                                                                           "maxReplicaCount": 4}}})
        await h.wait_for(lambda: "replicas" not in (h.obj(k, DEPLOYMENTS, "default", "chat") or {})["spec"],
                         what="replicas dropped from the applied Deployment")
        await h.settle(k)
        # the autoscaler (another field manager) sets replicas; the operator does not fight it
        mark = len(h.operator_requests(k))
        await h.patch(k, DEPLOYMENTS, "default", "chat", {"spec": {"replicas": 3}})
        await h.settle(k)
        assert applies(k, mark) == []
        assert h.obj(k, G4D, "default", "chat")["status"]["ready"] == "0/3"  # type: ignore[index]


async def test_bad_spec_creates_nothing_and_says_why_then_recovers(k: Emulator) -> None:
    spec = {"model": {"variant": "31b"}, "quantization": "nvfp4", "accelerator": {"type": "nvidia-h100-80gb"}}
    with_planner = Gemma4Deployment.model_validate(h.g4d("bad", **spec))
    try:
        plan(with_planner.spec, ClusterFacts(frozenset({"nvidia-h100-80gb"})))
        raise AssertionError("the planner was expected to refuse 31b nvfp4 on H100")
    except PlanError as e:
        refusal = e
    await h.create(k, NODES, h.node("gpu-1", H100))
    await h.create(k, G4D, h.g4d("bad", **spec))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: "Planned" in conditions(k, "default", "bad"), what="status")
        await h.settle(k)
        planned = conditions(k, "default", "bad")["Planned"]
        assert planned["status"] == "False" and planned["reason"] == "PlanFailed"
        assert planned["message"] == refusal.one_line
        cr = h.obj(k, G4D, "default", "bad")
        assert cr is not None and cr["status"]["phase"] == "Failed" and "plan" not in cr["status"]
        assert h.obj(k, DEPLOYMENTS, "default", "bad") is None and h.obj(k, SERVICES, "default", "bad") is None
        warnings = [e for e in h.objects(k, h.EVENTS) if e["type"] == "Warning" and e["reason"] == "PlanFailed"]
        assert len(warnings) == 1 and warnings[0]["message"] == refusal.message
        assert warnings[0]["involvedObject"]["uid"] == cr["metadata"]["uid"]

        await h.patch(k, G4D, "default", "bad", {"spec": {"quantization": "fp8"}})
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "bad"), what="children after the fix")
        await h.settle(k)
        assert conditions(k, "default", "bad")["Planned"]["status"] == "True"
        assert h.obj(k, G4D, "default", "bad")["status"]["phase"] == "Progressing"  # type: ignore[index]


async def test_deleted_or_edited_children_come_back(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)) as op:
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        first_uid = h.obj(k, DEPLOYMENTS, "default", "chat")["metadata"]["uid"]  # type: ignore[index]

        await h.delete(k, DEPLOYMENTS, "default", "chat")
        recreated = await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="Deployment back")
        assert recreated["metadata"]["uid"] != first_uid
        await h.delete(k, SERVICES, "default", "chat")
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="Service back")
        await h.settle(k)

        # someone edits a field the operator owns: it is put back; a field it does not own stays
        await h.patch(k, DEPLOYMENTS, "default", "chat", {
            "metadata": {"labels": {"team": "ml"}},
            "spec": {"template": {"spec": {"containers": [{"name": "server", "image": "evil/image:latest"}]}}}})
        def server() -> dict[str, Any]:
            c: dict[str, Any] = (h.obj(k, DEPLOYMENTS, "default", "chat") or {})["spec"]["template"]["spec"][
                "containers"][0]
            return c

        await h.wait_for(lambda: server()["image"] == "vllm/vllm-openai:v0.32.0", what="image back")
        await h.settle(k)
        assert "--max-model-len" in server()["args"]  # the merge patch had dropped them too
        d = h.obj(k, DEPLOYMENTS, "default", "chat")
        assert d is not None and d["metadata"]["labels"]["team"] == "ml"
        assert op.metrics.value("gemma4_operator_children_applied_total", kind="Deployment", reason="drifted") == 1
        assert op.metrics.value("gemma4_operator_children_applied_total", kind="Deployment", reason="missing") == 2


async def test_new_gpu_node_re_plans_a_failed_auto_object(k: Emulator) -> None:
    await h.create(k, NODES, h.node("cpu-1", {"kubernetes.io/arch": "amd64"}))
    await h.create(k, G4D, h.g4d("big", model={"variant": "31b"}, serving={"maxModelLen": 131072, "concurrency": 8}))
    async with h.OperatorRun(k):
        await h.wait_for(lambda: conditions(k, "default", "big").get("Planned", {}).get("status") == "False",
                         what="plan refused on cpu")
        assert h.obj(k, DEPLOYMENTS, "default", "big") is None
        await h.create(k, NODES, h.node("gpu-1", {"cloud.google.com/gke-accelerator": "nvidia-h200-141gb"}))
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "big"), what="children once an H200 exists")
        await h.settle(k)
        cr = h.obj(k, G4D, "default", "big")
        assert cr is not None and cr["status"]["plan"]["accelerator"] == "nvidia-h200"


async def test_a_cheaper_gpu_type_joining_does_not_move_a_running_object(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", H100))
    await h.create(k, G4D, h.g4d("chat"))  # accelerator auto
    async with h.OperatorRun(k):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="deployment")
        await h.settle(k)
        assert h.obj(k, G4D, "default", "chat")["status"]["plan"]["accelerator"] == "nvidia-h100-80gb"  # type: ignore[index]

        mark = len(h.operator_requests(k))
        await h.create(k, NODES, h.node("gpu-2", L4))  # cheaper for e4b: less memory per GPU
        await h.settle(k)
        assert h.writes(k, mark) == []
        assert h.obj(k, G4D, "default", "chat")["status"]["plan"]["accelerator"] == "nvidia-h100-80gb"  # type: ignore[index]

        # a spec change re-plans against everything present
        await h.patch(k, G4D, "default", "chat", {"spec": {"serving": {"maxModelLen": 16384}}})
        await h.wait_for(lambda: (h.obj(k, G4D, "default", "chat") or {})["status"]["plan"]["accelerator"]
                         == "nvidia-l4", what="re-planned onto the L4")
        await h.settle(k)
        d = h.obj(k, DEPLOYMENTS, "default", "chat")
        assert d is not None and "NVIDIA-L4" in str(d["spec"]["template"]["spec"]["affinity"])


async def test_editing_the_adapter_list_rolls_the_deployment_once(k: Emulator) -> None:
    """The adapters are in the pod template (the engine's arguments), so an edit rolls the pods once, after the
    new download Job (hf:// adapters are fetched by it, on the cache PVC) has succeeded, and nothing is written
    again while nothing changes."""
    support = {"name": "support", "uri": "hf://acme/gemma-4-e4b-support-lora"}
    legal = {"name": "legal", "uri": "hf://acme/gemma-4-e4b-legal-lora"}
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", model={"variant": "e4b", "adapters": [support]},
                                 storage={"modelCache": {"accessModes": ["ReadWriteMany"]}}))
    async with h.OperatorRun(k):
        await h.complete_download(k, "default", "chat")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.settle(k)
        assert '{"name":"support","path":"/models/adapters/support","base_model_name":"gemma-4-e4b-it"}' in \
            args(k, "default", "chat")
        first = h.obj(k, JOBS, "default", "chat-download")["metadata"]["uid"]  # type: ignore[index]

        mark = len(h.operator_requests(k))
        await h.patch(k, G4D, "default", "chat", {"spec": {"model": {"adapters": [support, legal]}}})
        await h.wait_for(lambda: (h.obj(k, JOBS, "default", "chat-download") or {}).get("metadata", {}).get(
            "uid") not in (None, first), what="a new download Job")
        await h.complete_download(k, "default", "chat")
        await h.wait_for(lambda: any('"name":"legal"' in a for a in args(k, "default", "chat")), what="legal")
        await h.settle(k)
        assert len(applies(k, mark, "deployments")) == 1
        cr = h.obj(k, G4D, "default", "chat")
        assert cr is not None and cr["status"]["plan"]["lora"]["maxActiveAdapters"] == 2

        idle = len(h.operator_requests(k))
        await h.settle(k, quiet=1.5)
        assert h.writes(k, idle) == []
