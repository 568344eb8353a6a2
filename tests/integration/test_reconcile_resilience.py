"""Restarts, replayed watch events, API failures, malformed objects, namespace scoping, poll mode.

kmock has no server-side apply: kmock_plus applies with a hand-written stand-in; real SSA is the e2e tier's job.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import harness as h
import kmock
import pytest
from harness import DEPLOYMENTS, G4D, SERVICES
from kmock_plus import APPLY_PATCH, Emulator, Fault

from gemma4_operator.config import ChildrenMode

L4_ONLY = {"accelerator_types": ("nvidia-l4",)}


def counts(k: Emulator) -> dict[str, int]:
    return {res: len(h.objects(k, res)) for res in (DEPLOYMENTS, SERVICES, h.PDBS, h.PVCS, h.JOBS, G4D)}


async def create_two(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    await h.create(k, G4D, h.g4d("big", accelerator={"type": "nvidia-l4"}, replicas=2,
                                 storage={"modelCache": {"accessModes": ["ReadWriteMany"]}}))


async def test_restart_resumes_without_duplicates_or_writes(k: Emulator) -> None:
    await create_two(k)
    async with h.OperatorRun(k, **L4_ONLY):
        await h.complete_download(k, "default", "big")
        await h.wait_for(lambda: len(h.objects(k, DEPLOYMENTS)) == 2 and h.obj(k, h.PDBS, "default", "big"),
                         what="children")
        await h.settle(k)
    before, status_before = counts(k), h.obj(k, G4D, "default", "big")["status"]  # type: ignore[index]
    mark = len(h.operator_requests(k))

    async with h.OperatorRun(k, **L4_ONLY) as op:
        await h.settle(k, quiet=1.0)
        assert op.metrics.value("gemma4_operator_reconciles_total", trigger="resume", result="unchanged") == 2
    after = h.operator_requests(k)[mark:]
    assert [h.describe(r) for r in after if h.is_write(r)] == []
    assert all(r.method.value == "GET" for r in after)
    assert counts(k) == before == {DEPLOYMENTS: 2, SERVICES: 2, h.PDBS: 1, h.PVCS: 1, h.JOBS: 1, G4D: 2}
    assert h.obj(k, G4D, "default", "big")["status"] == status_before  # type: ignore[index]


async def _replay(k: Emulator, resource: str, obj: dict[str, Any], kind: str = "MODIFIED") -> None:
    await k._buses[kmock.resource(resource)].put({"type": kind, "object": obj})


async def test_replayed_watch_events_are_idempotent(k: Emulator) -> None:
    created = await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        before = counts(k)

        # the same state delivered again (a watch re-connect or a duplicate event)
        mark = len(h.operator_requests(k))
        for res in (G4D, DEPLOYMENTS, SERVICES):
            await _replay(k, res, h.obj(k, res, "default", "chat"))  # type: ignore[arg-type]
        await h.settle(k)
        assert [h.describe(r) for r in h.writes(k, mark)] == []

        # an old state of the object (as first created, before kopf recorded it as handled):
        # kopf re-runs the create handler; children and status are already right, nothing is applied
        mark = len(h.operator_requests(k))
        await _replay(k, G4D, created, "ADDED")
        await h.settle(k)
        assert [h.describe(r) for r in h.writes(k, mark) if r.resource.plural != "gemma4deployments"] == []
        assert all(r.subresource is None for r in h.writes(k, mark))  # at most kopf's own annotations
        assert counts(k) == before


@pytest.mark.parametrize(("fault", "reason"), [
    (Fault("PATCH", "deployments", status=409, content_type=APPLY_PATCH), "Conflict"),
    (Fault("PATCH", "deployments", status=500, content_type=APPLY_PATCH), "ServerError"),
    (Fault("PATCH", "deployments", status=429, retry_after=1, content_type=APPLY_PATCH), "Throttled"),
    (Fault("PATCH", "deployments", delay=1.5, content_type=APPLY_PATCH), "Timeout"),
], ids=["409", "500", "429", "timeout"])
async def test_failed_first_apply_is_retried_and_converges(k: Emulator, fault: Fault, reason: str) -> None:
    k.faults.append(fault)
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, request_timeout=0.5, **L4_ONLY) as op:
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat") and h.obj(k, DEPLOYMENTS, "default", "chat")
                         and (h.obj(k, G4D, "default", "chat") or {}).get("status", {}).get("phase") == "Progressing",
                         timeout=15, what="convergence after the fault")
        await h.settle(k)
        assert fault.hits == 1
        assert op.metrics.value("gemma4_operator_reconcile_errors_total", reason=reason) == 1
        assert op.metrics.value("gemma4_operator_reconciles_total", trigger="create", result="retry") == 1
    assert counts(k)[DEPLOYMENTS] == 1
    annotations = h.obj(k, G4D, "default", "chat")["metadata"]["annotations"]  # type: ignore[index]
    assert "serving.gemma4.dev/reconcile" not in annotations  # kopf's retry state is gone once it succeeded


async def test_a_child_the_api_server_rejects_is_reported_not_retried(k: Emulator) -> None:
    k.faults.append(Fault("PATCH", "deployments", status=422, content_type=APPLY_PATCH))
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY) as op:
        await h.wait_for(lambda: (h.obj(k, G4D, "default", "chat") or {}).get("status", {}).get("phase") == "Degraded",
                         what="Degraded")
        await h.settle(k)
        degraded = next(c for c in h.obj(k, G4D, "default", "chat")["status"]["conditions"]  # type: ignore[index]
                        if c["type"] == "Degraded")
        assert degraded["reason"] == "ApplyRejected" and "HTTP 422" in degraded["message"]
        assert op.metrics.value("gemma4_operator_reconcile_errors_total", reason="ApplyRejected") == 1
        mark = len(h.operator_requests(k))
        await asyncio.sleep(1.5)
        assert h.writes(k, mark) == []  # permanent: no retry loop until the spec changes


async def test_a_failed_repair_from_a_watch_event_is_retried(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        # kopf does not retry event handlers: the operator schedules its own retry
        k.faults.append(fault := Fault("PATCH", "services", status=503, content_type=APPLY_PATCH))
        await h.delete(k, SERVICES, "default", "chat")
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), timeout=10, what="Service back after 503")
        assert fault.hits == 1


async def test_retry_after_holds_both_retry_loops_of_an_object(k: Emulator) -> None:
    """A spec change (kopf's handler, retried by kopf) and a deleted Service (the operator's own watch-triggered
    repair, retried by the operator) both apply the Service while the server answers 429 with Retry-After 2:
    the Service is asked for no sooner than the server said, whichever loop asks (found by
    tests/e2e/test_api_faults.py: each loop honoured the Retry-After it got, the two together did not)."""
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY) as op:
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        await h.settle(k)
        k.faults.append(fault := Fault("PATCH", "services", status=429, retry_after=2, times=3,
                                       content_type=APPLY_PATCH))
        await h.delete(k, SERVICES, "default", "chat")
        await h.patch(k, G4D, "default", "chat", {"spec": {"serving": {"maxModelLen": 4096}}})
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), timeout=20, what="Service back after 429s")
        assert fault.hits == 3
        gaps = [b - a for a, b in itertools.pairwise(fault.hit_at)]
        assert min(gaps) >= 1.9, f"Service applied again {min(gaps):.2f}s after a Retry-After of 2 s"
        assert op.metrics.value("gemma4_operator_reconcile_errors_total", reason="HeldOff") >= 1


async def _refused_beside_a_valid_object(k: Emulator, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Once the valid object "fine" is served and ``name`` has a status: that status and its Planned condition."""
    await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "fine"), what="the valid object served")
    await h.wait_for(lambda: (h.obj(k, G4D, "default", name) or {}).get("status"), what="status")
    await h.settle(k)
    status: dict[str, Any] = h.obj(k, G4D, "default", name)["status"]  # type: ignore[index]
    return status, next(c for c in status["conditions"] if c["type"] == "Planned")


async def test_malformed_object_is_reported_not_crash_looped(k: Emulator) -> None:
    # kmock does not validate against the CRD schema, as an API server would
    await h.create(k, G4D, h.g4d("broken", model={"variant": "99b"}, replicas="many"))
    await h.create(k, G4D, h.g4d("fine", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        status, planned = await _refused_beside_a_valid_object(k, "broken")
        assert planned["status"] == "False" and planned["reason"] == "InvalidSpec"
        assert "spec.model.variant" in planned["message"] and "spec.replicas" in planned["message"]
        assert status["phase"] == "Failed"
        assert h.obj(k, DEPLOYMENTS, "default", "broken") is None
        warnings = [e for e in h.objects(k, h.EVENTS) if e["reason"] == "InvalidSpec"]
        assert len(warnings) == 1 and warnings[0]["type"] == "Warning"
        mark = len(h.operator_requests(k))
        await asyncio.sleep(1.5)  # a permanent error is not retried
        assert h.writes(k, mark) == []


async def test_malformed_scheduling_fields_are_an_invalid_spec_with_their_paths(k: Emulator) -> None:
    """tolerations and affinity are free-form in the CRD (the API server stores them as written); the operator
    refuses a malformed one when it parses the object, naming the field, instead of failing in render."""
    await h.create(k, G4D, h.g4d("tainted", accelerator={"type": "nvidia-l4"}, podTemplate={"spec": {
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": 5}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": 5}}}}))
    await h.create(k, G4D, h.g4d("fine", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, **L4_ONLY):
        status, planned = await _refused_beside_a_valid_object(k, "tainted")
        assert planned["status"] == "False" and planned["reason"] == "InvalidSpec"
        assert "spec.podTemplate.spec.tolerations[0].effect: Input should be '', 'NoSchedule', 'PreferNoSchedule' " \
               "or 'NoExecute'; got 5" in planned["message"]
        assert "spec.podTemplate.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution: " \
               "expected a mapping (key: value), got 5" in planned["message"]
        assert status["phase"] == "Failed"
        assert h.obj(k, DEPLOYMENTS, "default", "tainted") is None
        assert [e["type"] for e in h.objects(k, h.EVENTS) if e["reason"] == "InvalidSpec"] == ["Warning"]


async def test_namespace_scoping(k: Emulator) -> None:
    for ns in ("ml", "other"):
        await h.create(k, "v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    await h.create(k, G4D, h.g4d("mine", "ml", accelerator={"type": "nvidia-l4"}))
    await h.create(k, G4D, h.g4d("theirs", "other", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, namespaces=("ml",), **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "ml", "mine"), what="child in ml")
        await h.settle(k)
    assert h.obj(k, DEPLOYMENTS, "other", "theirs") is None
    assert "status" not in (h.obj(k, G4D, "other", "theirs") or {})
    namespaced = {r.namespace for r in h.operator_requests(k) if h.is_resource(r)
                  and r.resource.plural not in ("customresourcedefinitions", "nodes", "namespaces")}
    assert namespaced == {"ml"}


@pytest.mark.rbac_mode("ha-peering", "kopf peering (--peering): recorded apart from `requests`; the chart grants "
                       "it only with ha.enabled (tests/packaging/test_rbac.py UNRECORDED)")
async def test_peering_active_operator_works_and_keeps_its_peering_alive(k: Emulator) -> None:
    # no status subresource, as in kopf's peering CRD
    k.resources["kopf.dev/v1/clusterkopfpeerings"] = kmock.ResourceInfo(
        kind="ClusterKopfPeering", namespaced=False, verbs={"list", "watch", "get", "patch"})
    await h.create(k, "kopf.dev/v1/clusterkopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering",
                                                          "metadata": {"name": "gemma4"}})
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, standalone=False, peering_name="gemma4", priority=100, **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        peering = h.obj(k, "kopf.dev/v1/clusterkopfpeerings", None, "gemma4")
        assert peering is not None and any(v and v.get("priority") == 100 for v in peering["status"].values())


async def test_poll_mode_repairs_on_its_timer(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}))
    async with h.OperatorRun(k, children=ChildrenMode.POLL, resync_interval=0.5, **L4_ONLY):
        await h.wait_for(lambda: h.obj(k, SERVICES, "default", "chat"), what="children")
        cr = h.obj(k, G4D, "default", "chat")
        assert cr is not None and cr["metadata"]["finalizers"] == ["serving.gemma4.dev/finalizer"]
        await h.delete(k, DEPLOYMENTS, "default", "chat")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), timeout=5, what="Deployment back")
        await asyncio.sleep(0.6)
        mark = len(h.operator_requests(k))
        await asyncio.sleep(1.2)  # two more ticks: reads only
        ticks = h.operator_requests(k)[mark:]
        assert ticks and all(r.method.value == "GET" for r in ticks)
    # no child watches in poll mode
    assert not [r for r in h.operator_requests(k) if r.params.get("watch") and h.is_resource(r)
                and r.resource.plural == "deployments"]
