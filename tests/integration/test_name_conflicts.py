"""Never adopt what we did not create: an object with a child's name that is not this Gemma4Deployment's is
left untouched and reported (Degraded, reason NameConflict, a Warning event); the children that are ours are
still applied and repaired; once the name is free the object recovers. A child the index holds is never read
again (no GET on an idle cluster)."""

from __future__ import annotations

from typing import Any

import harness as h
import pytest
from harness import DEPLOYMENTS, G4D, JOBS, PVCS, SERVICES
from kmock_plus import Emulator

from gemma4_operator.config import ChildrenMode
from gemma4_operator.controller import handlers

L4_ONLY = {"accelerator_types": ("nvidia-l4",)}
OUR_LABELS = {"app.kubernetes.io/managed-by": "gemma4-operator", "app.kubernetes.io/instance": "chat"}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
SERVICE_CONFLICT = ("Service/chat already exists and was not created by this Gemma4Deployment (it has no "
                    "controller): the operator leaves it untouched; delete or rename it, or rename this "
                    "Gemma4Deployment")


@pytest.fixture(autouse=True)
def quick_conflict_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The other object is not watched: the operator looks again after the back-off (1, 2, 4 s ... here)."""
    monkeypatch.setattr(handlers, "CONFLICT_RETRY_S", 0.0)


def foreign_service(**meta: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "chat", "namespace": "default", **meta},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "web", "port": 80}]}}


def status(k: Emulator) -> dict[str, Any]:
    s: dict[str, Any] = (h.obj(k, G4D, "default", "chat") or {}).get("status") or {}
    return s


def degraded(k: Emulator) -> dict[str, Any]:
    return next((c for c in status(k).get("conditions") or [] if c["type"] == "Degraded"), {})


def warnings(k: Emulator) -> list[tuple[str, str]]:
    return [(e["reason"], e["message"]) for e in h.objects(k, h.EVENTS)
            if e["involvedObject"]["name"] == "chat" and e["type"] == "Warning"]


def gets(k: Emulator, since: int = 0) -> list[str]:
    """Single-object reads (``get``) of children the operator made."""
    return [h.describe(r) for r in h.operator_requests(k)[since:]
            if h.is_resource(r) and h.rbac_verb(r) == "get" and r.resource.plural != "gemma4deployments"]


async def test_an_unowned_service_is_left_untouched_until_it_goes(k: Emulator) -> None:
    theirs = await h.create(k, SERVICES, foreign_service())
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: degraded(k).get("reason") == "NameConflict", what="Degraded/NameConflict")
        await h.wait_for(lambda: ("NameConflict", SERVICE_CONFLICT) in warnings(k), what="the Warning event")
        assert degraded(k) | {"lastTransitionTime": None} == {
            "type": "Degraded", "status": "True", "reason": "NameConflict", "message": SERVICE_CONFLICT,
            "observedGeneration": 1, "lastTransitionTime": None}
        assert status(k)["phase"] == "Degraded"
        assert h.obj(k, SERVICES, "default", "chat") == theirs  # not one field written
        assert [h.describe(r) for r in h.writes(k) if r.resource is not None and r.resource.plural == "services"] \
            == []
        # what is ours is still applied, and repaired
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.patch(k, DEPLOYMENTS, "default", "chat", {"spec": {"template": {"spec": {"containers": [
            {"name": "server", "image": "evil/image:latest"}]}}}})
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"]["spec"][  # type: ignore[index]
            "containers"][0]["image"] == "vllm/vllm-openai:v0.32.0", what="the Deployment repaired")
        assert h.obj(k, SERVICES, "default", "chat") == theirs
        assert degraded(k)["reason"] == "NameConflict"  # a Deployment event does not forget the Service

        await h.delete(k, SERVICES, "default", "chat")
        service = await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), timeout=15, what="our Service")
        await h.wait_for(lambda: degraded(k).get("status") == "False", what="no longer degraded")
        await h.settle(k)
    assert service["metadata"]["ownerReferences"][0]["name"] == "chat"
    assert service["spec"]["selector"] == {"app.kubernetes.io/name": "gemma4", "app.kubernetes.io/instance": "chat"}
    assert any(e["reason"] == "Recovered" for e in h.objects(k, h.EVENTS) if e["involvedObject"]["name"] == "chat")


async def test_a_child_whose_controller_changed_is_not_overwritten(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        other = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "web-uid", "controller": True}]
        taken = await h.patch(k, SERVICES, "default", "chat", {"metadata": {"ownerReferences": other},
                                                               "spec": {"selector": {"app": "web"}}})
        await h.wait_for(lambda: degraded(k).get("reason") == "NameConflict", what="Degraded/NameConflict")
        await h.settle(k)
        assert degraded(k)["message"].startswith("Service/chat already exists and is controlled by Deployment/web:")
        assert h.obj(k, SERVICES, "default", "chat") == taken


async def test_a_retained_cache_pvc_is_reused_and_a_foreign_download_job_holds_the_deployment(k: Emulator) -> None:
    """The cache PVC left by an earlier object of this name (retainPolicy Retain: no ownerReference, the
    operator's labels) is this object's; a Job named like the download Job is not, and without the download
    the Deployment is never created."""
    pvc = await h.create(k, PVCS, {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                                   "metadata": {"name": "chat-model-cache", "namespace": "default",
                                                "labels": OUR_LABELS},
                                   "spec": {"accessModes": ["ReadWriteMany"],
                                            "resources": {"requests": {"storage": "20Gi"}}}})
    job = await h.create(k, JOBS, {"apiVersion": "batch/v1", "kind": "Job",
                                   "metadata": {"name": "chat-download", "namespace": "default"},
                                   "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "busybox"}],
                                                                  "restartPolicy": "Never"}}},
                                   "status": {"succeeded": 1}})
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}, storage=CACHE))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: degraded(k).get("reason") == "NameConflict", what="Degraded/NameConflict")
        await h.settle(k)
        assert degraded(k)["message"] == (
            "Job/chat-download already exists and was not created by this Gemma4Deployment (it has no controller): "
            "the operator leaves it untouched; delete or rename it, or rename this Gemma4Deployment")
        assert h.obj(k, JOBS, "default", "chat-download") == job
        assert h.obj(k, DEPLOYMENTS, "default", "chat") is None  # its download never ran
        cache = h.obj(k, PVCS, "default", "chat-model-cache")
        assert cache is not None and cache["metadata"]["uid"] == pvc["metadata"]["uid"]
        assert "serving.gemma4.dev/applied-hash" in cache["metadata"]["annotations"]  # applied: it is ours


async def test_conflict_retries_write_nothing_and_known_children_are_never_read(k: Emulator) -> None:
    await h.create(k, SERVICES, foreign_service())
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    await h.create(k, G4D, h.g4d("calm", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: degraded(k).get("reason") == "NameConflict", what="Degraded/NameConflict")
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "calm"), what="the other object's children")
        await h.settle(k, quiet=1.0)
        mark = len(h.operator_requests(k))
        await h.settle(k, quiet=3.0)  # the conflicted object's retries look again: reads only
        assert h.writes(k, mark) == []
        assert set(gets(k, mark)) <= {"GET /api/v1/namespaces/default/services/chat"}
    mark = len(h.operator_requests(k))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.settle(k, quiet=1.0)
        # a restart re-reads nothing the index holds: only the conflicted Service's name is looked up
        assert set(gets(k, mark)) <= {"GET /api/v1/namespaces/default/services/chat"}
        assert h.writes(k, mark) == []


async def test_poll_mode_reports_the_conflict_from_its_own_reads(k: Emulator) -> None:
    theirs = await h.create(k, SERVICES, foreign_service())
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, children=ChildrenMode.POLL, resync_interval=0.5, **L4_ONLY):
        await h.wait_for(lambda: degraded(k).get("reason") == "NameConflict", what="Degraded/NameConflict")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        assert degraded(k)["message"] == SERVICE_CONFLICT
        assert h.obj(k, SERVICES, "default", "chat") == theirs
        await h.delete(k, SERVICES, "default", "chat")
        await h.wait_for(lambda: (h.obj(k, SERVICES, "default", "chat") or {}).get("metadata", {}).get(
            "ownerReferences"), timeout=15, what="our Service")
        await h.wait_for(lambda: degraded(k).get("status") == "False", what="no longer degraded")
