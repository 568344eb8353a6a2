"""The download Job through kopf (kmock runs no Job controller: the tests write what it would): a new
checkpoint replaces the Job while the Deployment keeps serving the old one; a failed download reaches
status in words; the Job's adapter verdicts set the engine's LoRA flags (with the cache, and without it, an
adapters-only Job); an oci:// source is checked with a
dry run and mounted as an image volume."""

from __future__ import annotations

import json
from typing import Any

import harness as h
import pytest
from harness import DEPLOYMENTS, G4D, JOBS, NODES, PODS
from kmock_plus import Emulator

from gemma4_operator.weights.artifacts import Report
from gemma4_operator.weights.preflight import AdapterVerdict

L4 = {"nvidia.com/gpu.product": "NVIDIA-L4"}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}


def download_pod(message: str, exit_code: int = 1) -> dict[str, Any]:
    labels = {"app.kubernetes.io/instance": "chat", "app.kubernetes.io/managed-by": "gemma4-operator",
              "app.kubernetes.io/component": "download", "app.kubernetes.io/name": "gemma4-download"}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chat-download-x1", "namespace": "default",
                                                          "labels": labels},
            "spec": {"containers": [{"name": "download", "image": "vllm/vllm-openai:v0.32.0"}]},
            "status": {"phase": "Failed" if exit_code else "Succeeded", "containerStatuses": [
                {"name": "download", "state": {"terminated": {"exitCode": exit_code, "message": message,
                                                              "finishedAt": "2026-12-07T10:01:00Z"}}}]}}


def status_of(k: Emulator) -> dict[str, Any]:
    status: dict[str, Any] = (h.obj(k, G4D, "default", "chat") or {}).get("status") or {}
    return status


async def test_a_new_checkpoint_replaces_the_job_and_the_deployment_waits_for_it(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}, storage=CACHE))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.complete_download(k, "default", "chat")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.settle(k)
        first = h.obj(k, JOBS, "default", "chat-download")["metadata"]["uid"]  # type: ignore[index]
        served = h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"]  # type: ignore[index]

        await h.patch(k, G4D, "default", "chat", {"spec": {"model": {"instructionTuned": False}}})
        await h.wait_for(lambda: (h.obj(k, JOBS, "default", "chat-download") or {}).get("metadata", {}).get(
            "uid") not in (None, first), what="a new download Job")
        await h.settle(k)
        job = h.obj(k, JOBS, "default", "chat-download")
        assert job is not None and "google/gemma-4-E4B@main" in job["metadata"]["annotations"][
            "serving.gemma4.dev/checkpoint"]
        # the Deployment keeps serving the old checkpoint until the new one is on the PVC
        assert h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"] == served  # type: ignore[index]
        assert status_of(k)["model"]["phase"] == "Downloading"

        await h.complete_download(k, "default", "chat")
        await h.wait_for(lambda: "gemma-4-E4B/main" in json.dumps(
            h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"]), what="the new checkpoint served")
    deletes = [r for r in h.operator_requests(k) if r.method.value == "DELETE" and r.resource is not None
               and r.resource.plural == "jobs"]
    assert len(deletes) == 1 and "propagationPolicy=Foreground" in str(deletes[0].url)


@pytest.mark.parametrize(("report_first", "storage"), [(True, CACHE), (False, CACHE), (True, {})],
                         ids=["report-then-job", "job-then-report", "no-cache"])
async def test_the_jobs_adapter_verdicts_set_the_engines_lora_flags(k: Emulator, report_first: bool,
                                                                    storage: dict[str, Any]) -> None:
    """The Deployment, withheld until the Job succeeds, is rendered with its preflight: the refused adapter left
    out, the slots sized for the served adapter's rank; also when the download pod's report is seen after the
    Job's success (separate watches), the Deployment follows the report once it is seen. Without a cache the
    Job fetches the adapters alone onto an emptyDir, and each serving pod fetches them with an init container."""
    adapters = [{"name": "support", "uri": "hf://acme/support-lora"}, {"name": "faq", "uri": "hf://acme/faq-lora"}]
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", model={"variant": "e4b", "adapters": adapters},
                                 accelerator={"type": "nvidia-l4"}, storage=storage))
    # the report cli/download.py writes, one verdict per adapter
    report = Report(0, 10, 1.0, None, [
        AdapterVerdict("support", "Accepted", "LoRA rank 64", 64, ("q_proj",)),
        AdapterVerdict("faq", "ModulesToSave", "modules_to_save ['lm_head']", 8, ("q_proj",))]).to_json()
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, JOBS, "default", "chat-download"), what="the download Job")
        if report_first:
            await h.create(k, PODS, download_pod(report, exit_code=0))
        await h.complete_download(k, "default", "chat")
        await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        if not report_first:
            await h.settle(k)
            await h.create(k, PODS, download_pod(report, exit_code=0))
        await h.wait_for(lambda: '"name":"faq"' not in _command_line(k), what="faq left out")
        await h.settle(k)
    line = _command_line(k)
    assert '"name":"support"' in line and "--max-lora-rank 64" in line and "--max-loras 1" in line
    assert [(a["name"], a["phase"]) for a in status_of(k)["adapters"]] == [("support", "Ready"), ("faq", "Refused")]
    job_volumes = h.obj(k, JOBS, "default", "chat-download")["spec"]["template"]["spec"]["volumes"]  # type: ignore[index]
    pod = h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"]["spec"]  # type: ignore[index]
    if not storage:
        assert {"name": "cache", "emptyDir": {"sizeLimit": "16Gi"}} in job_volumes
        assert [c["name"] for c in pod["initContainers"]] == ["adapters"]
    else:
        assert "initContainers" not in pod


def _command_line(k: Emulator) -> str:
    [container] = h.obj(k, DEPLOYMENTS, "default", "chat")["spec"]["template"]["spec"]["containers"]  # type: ignore[index]
    return " ".join([*container.get("command", []), *container.get("args", [])])


async def test_a_gated_repository_ends_failed_in_words(k: Emulator) -> None:
    await h.create(k, NODES, h.node("gpu-1", L4))
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}, storage=CACHE))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        await h.wait_for(lambda: h.obj(k, JOBS, "default", "chat-download"), what="the download Job")
        # the report cli/download.py writes for huggingface_hub's GatedRepoError (tests/unit/test_download_job.py)
        report = json.dumps({"exitCode": 1, "bytes": 0, "seconds": 0.3, "adapters": [], "log": "", "error": {
            "artifact": "model", "type": "GatedRepoError", "status": 401, "errno": None,
            "message": "401 Client Error. Cannot access gated repo for url https://huggingface.co/x."}})
        await h.create(k, PODS, download_pod(report))
        await h.patch(k, JOBS, "default", "chat-download", {"status": {"failed": 3, "conditions": [
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}}, subresource="status")
        await h.wait_for(lambda: status_of(k).get("phase") == "Degraded", what="Degraded")
        await h.settle(k)
    status = status_of(k)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["model"]["phase"] == "Failed"
    assert conditions["ModelReady"]["reason"] == conditions["Degraded"]["reason"] == "GatedRepository"
    assert "accept its license" in conditions["Degraded"]["message"]
    assert h.obj(k, DEPLOYMENTS, "default", "chat") is None


async def test_an_oci_source_is_checked_once_and_mounted_as_an_image_volume(k: Emulator) -> None:
    # kmock keeps what it is sent, so its dry run answers "served" (a 1.20 server's is in the e2e tier)
    await h.create(k, NODES, h.node("gpu-1", L4))
    uri = "oci://registry.example.com/gemma/e4b-it:fp8"
    await h.create(k, G4D, h.g4d("chat", accelerator={"type": "nvidia-l4"}, model={
        "variant": "e4b", "source": {"uri": uri}}))
    async with h.OperatorRun(k, accelerator_types=("nvidia-l4",)):
        deployment = await h.wait_for(lambda: h.obj(k, DEPLOYMENTS, "default", "chat"), what="the Deployment")
        await h.settle(k)
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"]["image"]["reference"] == "registry.example.com/gemma/e4b-it:fp8"
    dry_runs = [r for r in h.operator_requests(k) if r.method.value == "POST" and "dryRun=All" in str(r.url)]
    assert len(dry_runs) == 1
    assert status_of(k)["model"]["mode"] == "image"
