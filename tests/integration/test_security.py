"""Security children and refusals on the emulated API server: the NetworkPolicy child (applied, and pruned when
an object turns it off) and a download Job whose pods the namespace's admission refused (its FailedCreate Event)
turning the object Degraded."""

from __future__ import annotations

from typing import Any

import harness as h
import pytest
from harness import EVENTS, G4D, JOBS, NETWORK_POLICIES
from kmock_plus import Emulator

from gemma4_operator.config import ChildrenMode

CPU = {"type": "cpu"}


def degraded(k: Emulator, name: str) -> dict[str, Any] | None:
    cr = h.obj(k, G4D, "default", name)
    return next((c for c in (cr or {}).get("status", {}).get("conditions", []) if c["type"] == "Degraded"), None)


async def test_the_network_policy_follows_the_operator_default_and_the_spec(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("open", accelerator=CPU, networkPolicy={"enabled": False}))
    await h.create(k, G4D, h.g4d("chat", accelerator=CPU))
    async with h.OperatorRun(k, network_policy=True, operator_namespace="gemma4-system"):
        policy = await h.wait_for(lambda: h.obj(k, NETWORK_POLICIES, "default", "chat"), what="NetworkPolicy")
        peers = policy["spec"]["ingress"][0]["from"]
        assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gemma4-system"}}} in peers
        assert policy["metadata"]["ownerReferences"][0]["name"] == "chat"
        await h.settle(k)
        assert h.obj(k, NETWORK_POLICIES, "default", "open") is None

        await h.patch(k, G4D, "default", "chat", {"spec": {"networkPolicy": {"enabled": False}}})
        await h.wait_for(lambda: h.obj(k, NETWORK_POLICIES, "default", "chat") is None, what="NetworkPolicy pruned")


async def test_poll_mode_re_reads_the_network_policy(k: Emulator) -> None:
    await h.create(k, G4D, h.g4d("chat", accelerator=CPU, networkPolicy={"enabled": True}))
    async with h.OperatorRun(k, children=ChildrenMode.POLL, resync_interval=0.2):
        await h.wait_for(lambda: h.obj(k, NETWORK_POLICIES, "default", "chat"), what="NetworkPolicy")
        await h.wait_for(lambda: any(r.method.value == "GET" and r.resource is not None
                                     and r.resource.plural == "networkpolicies" and r.name == "chat"
                                     for r in h.operator_requests(k)), what="a GET of the NetworkPolicy")


REFUSAL = ('pods "chat-download-8kq2v" is forbidden: violates PodSecurity "restricted:latest": runAsNonRoot != true '
           "(pod must not set securityContext.runAsNonRoot=false), runAsUser=0 (pod must not set runAsUser=0)")


def failed_create(job: dict[str, Any]) -> dict[str, Any]:
    """The Event the Job controller records when the namespace refuses the Job's pod."""
    return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "chat-download.1", "namespace": "default"},
            "type": "Warning", "reason": "FailedCreate", "message": f"Error creating: {REFUSAL}",
            "lastTimestamp": "2026-12-07T21:00:00Z", "source": {"component": "job-controller"},
            "involvedObject": {"apiVersion": "batch/v1", "kind": "Job", "namespace": "default",
                               "name": "chat-download", "uid": job["metadata"]["uid"]}}


@pytest.mark.parametrize("job_update", [True, False], ids=["event-then-job-update", "event-after-the-last-update"])
async def test_a_download_job_whose_pods_are_refused_turns_the_object_degraded(k: Emulator, job_update: bool) -> None:
    """The Event may land after the Job's last status update (the controller records it asynchronously and its
    retries change nothing on the Job): the operator looks again a few times while the Job has no pod."""
    await h.create(k, G4D, h.g4d("chat", accelerator=CPU, storage={"modelCache": {}},
                                 serving={"securityContext": {"runAsUser": 0}}))
    async with h.OperatorRun(k):
        job = await h.wait_for(lambda: h.obj(k, JOBS, "default", "chat-download"), what="download Job")
        await h.settle(k)
        assert degraded(k, "chat")["status"] == "False"  # type: ignore[index]
        await h.create(k, EVENTS, failed_create(job))
        if job_update:
            await h.patch(k, JOBS, "default", "chat-download", {"status": {"startTime": "2026-12-07T21:00:00Z"}},
                          subresource="status")
        condition = await h.wait_for(lambda: (c := degraded(k, "chat")) and c["status"] == "True" and c,
                                     what="Degraded FailedCreate")
        assert condition["reason"] == "FailedCreate"
        assert condition["message"].startswith(f"Job chat-download cannot create its pods: {REFUSAL}; the "
                                               "namespace enforces a Pod Security level")
