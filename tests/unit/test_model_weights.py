"""Model weights (issue 10): how the weights reach a serving pod in each mode, the download Job, what the
operator holds back until the download succeeded, and status.model from the Job and its pods."""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
from pydantic import ValidationError

from gemma4_operator.api import SOURCE_URI_PATTERN, Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.planner.sources import parse_source
from gemma4_operator.planner.weights import WeightsMode
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile import status as observe
from gemma4_operator.reconcile.model_status import model_state
from gemma4_operator.render.children import (
    Owner,
    RenderOptions,
    UnrenderableError,
    image_volume_probe,
    keeps_image_volume,
    render_children,
)
from gemma4_operator.render.download import CHECKPOINT_ANNOTATION, checkpoint_id, is_download_pod
from gemma4_operator.weights.artifacts import FetchError, Manifest, Report
from gemma4_operator.weights.preflight import AdapterRules

OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
FACTS = ClusterFacts.every_catalog_type()
DIGEST = "sha256:" + "ab" * 32
E4B_CPU = {"model": {"variant": "e4b"}, "accelerator": {"type": "cpu"}}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
# ggml-org/gemma-4-E4B-it-GGUF Q8_0 + its mmproj (catalog/checkpoints.yaml)
E4B_Q8_BYTES = 8031223872 + 560000000


def spec_of(**fields: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate(fields)


def rendered(spec: Gemma4DeploymentSpec, options: RenderOptions | None = None) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_children(OWNER, spec, plan(spec, FACTS), options)}


def server(objs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return container


MODES = {
    "hub": {**E4B_CPU},
    "cache": {**E4B_CPU, "storage": CACHE, "replicas": 2},
    "volume": {**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": "pvc://weights/e4b/model-Q8_0.gguf"}}},
    "image": {**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": f"oci://registry.example.com/gemma/e4b@{DIGEST}"}}},
}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_validates_strictly_on_current_servers(mode: str) -> None:
    for obj in render_children(OWNER, spec_of(**MODES[mode]), plan(spec_of(**MODES[mode]), FACTS)):
        kubernetes_validate.validate(obj, "1.37.0", strict=True)
        if mode != "image":
            kubernetes_validate.validate(obj, "1.29.0", strict=True)


def test_image_volumes_are_unknown_to_an_older_schema() -> None:
    # why the operator checks the server before rendering one: 1.29's schema has no volumes[].image
    deployment = rendered(spec_of(**MODES["image"]))["Deployment"]
    with pytest.raises(kubernetes_validate.ValidationError, match="image"):
        kubernetes_validate.validate(deployment, "1.29.0", strict=True)


def manifest_of(job: dict[str, Any]) -> Manifest:
    """The download Job's task, as its command hands it to `gemma4-operator download`."""
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    return Manifest.from_json(command[command.index("--manifest") + 1])


def test_cache_mode_downloads_once_in_a_job_and_pods_load_offline_read_only() -> None:
    objs = rendered(spec_of(**MODES["cache"]))
    job, c = objs["Job"], server(objs)
    directory = "/cache/models/ggml-org/gemma-4-E4B-it-GGUF/main"
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:3] == ["gemma4-operator", "download", "--manifest"]
    (checkpoint,) = manifest_of(job).artifacts
    assert (checkpoint.repo, checkpoint.files, checkpoint.local_dir, checkpoint.revision) == (
        "ggml-org/gemma-4-E4B-it-GGUF", ("gemma-4-E4B-it-Q8_0.gguf", "mmproj-gemma-4-E4B-it-Q8_0.gguf"), directory, "")
    assert manifest_of(job).rules == AdapterRules(max_rank=512, gguf=True)  # llama.cpp: GGUF adapters; any rank
    assert job["metadata"]["name"] == "chat-download"
    assert job["metadata"]["annotations"][CHECKPOINT_ANNOTATION] == (
        "ggml-org/gemma-4-E4B-it-GGUF@main gemma-4-E4B-it-Q8_0.gguf mmproj-gemma-4-E4B-it-Q8_0.gguf")
    assert c["args"][:4] == ["-m", f"{directory}/gemma-4-E4B-it-Q8_0.gguf",
                             "--mmproj", f"{directory}/mmproj-gemma-4-E4B-it-Q8_0.gguf"]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in c["env"]
    assert c["volumeMounts"][0] == {"name": "cache", "mountPath": "/cache", "readOnly": True}
    assert "ephemeral-storage" not in c["resources"]["requests"]  # the weights are on the PVC
    # the PVC holds the download + 20% by default: ceil(8.59 GB x 1.2 / GiB) = 10 GiB
    assert objs["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert is_download_pod({"metadata": {"labels": job["spec"]["template"]["metadata"]["labels"]}})
    assert not set(objs["Service"]["spec"]["selector"].items()) <= set(
        job["spec"]["template"]["metadata"]["labels"].items())


def test_a_text_only_cache_skips_the_mmproj_and_vllm_loads_the_directory() -> None:
    text = rendered(spec_of(**MODES["cache"], serving={"modalities": ["text"]}))
    assert manifest_of(text["Job"]).artifacts[0].files == ("gemma-4-E4B-it-Q8_0.gguf",)
    assert "--mmproj" not in server(text)["args"]
    vllm = rendered(spec_of(model={"variant": "31b"}, quantization="bf16", accelerator={"type": "nvidia-h100-80gb"},
                            storage=CACHE))
    assert server(vllm)["args"][0] == "/cache/models/google/gemma-4-31B-it/main"
    checkpoint, drafter = manifest_of(vllm["Job"]).artifacts  # the MTP drafter too (speculativeDecoding auto)
    assert (checkpoint.repo, checkpoint.files, checkpoint.local_dir) == (  # the whole repository
        "google/gemma-4-31B-it", (), "/cache/models/google/gemma-4-31B-it/main")
    assert (drafter.repo, drafter.local_dir) == (
        "google/gemma-4-31B-it-assistant", "/cache/models/google/gemma-4-31B-it/main/mtp-drafter")
    assert not manifest_of(vllm["Job"]).rules.gguf  # vLLM: PEFT adapters


def test_a_revision_is_its_own_directory_and_the_token_only_a_secret_ref() -> None:
    source = {"uri": "hf://acme/gemma-4-31b-tuned@v2", "tokenSecretRef": {"name": "hf", "key": "token"}}
    objs = rendered(spec_of(model={"variant": "31b", "source": source}, quantization="bf16",
                            accelerator={"type": "nvidia-h100-80gb"}, storage=CACHE))
    container = objs["Job"]["spec"]["template"]["spec"]["containers"][0]
    (checkpoint,) = manifest_of(objs["Job"]).artifacts
    assert (checkpoint.revision, checkpoint.local_dir, checkpoint.token_env) == (
        "v2", "/cache/models/acme/gemma-4-31b-tuned/v2", "HF_TOKEN")
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}} in container["env"]
    assert "HF_HUB_OFFLINE" not in json.dumps(container["env"])  # the Job is the one thing that reaches the Hub


def test_a_custom_gguf_repo_named_by_its_tag_downloads_per_pod_into_the_cache() -> None:
    # only llama.cpp's -hf resolves a quant tag to a file, so there is no Job to run
    spec = spec_of(**{**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": "hf://acme/e4b-GGUF:Q8_0"}}},
                   storage=CACHE)
    objs = rendered(spec)
    assert "Job" not in objs and plan(spec, FACTS).weights.mode is WeightsMode.HUB
    assert server(objs)["args"][:2] == ["-hf", "acme/e4b-GGUF:Q8_0"]


def test_an_image_volume_holds_the_catalog_checkpoint() -> None:
    objs = rendered(spec_of(**MODES["image"]))
    volumes = {v["name"]: v for v in objs["Deployment"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["model"] == {"name": "model", "image": {"reference": f"registry.example.com/gemma/e4b@{DIGEST}",
                                                           "pullPolicy": "IfNotPresent"}}
    assert server(objs)["args"][:2] == ["-m", "/models/gemma-4-E4B-it-Q8_0.gguf"]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in server(objs)["env"]
    assert volumes["cache"]["emptyDir"]["sizeLimit"] == "1Gi"  # nothing is downloaded


def test_an_image_volume_is_refused_where_the_server_does_not_serve_them() -> None:
    refusal = "image volumes are not served by this API server (v1.30.4)"
    with pytest.raises(UnrenderableError, match=r"oci://registry.example.com/gemma/e4b@sha256:.*\(v1.30.4\)"):
        rendered(spec_of(**MODES["image"]), RenderOptions(image_volumes=False, image_volumes_refusal=refusal))


@pytest.mark.parametrize(("uri", "ok"), [
    (f"oci://registry.example.com/gemma/e4b@{DIGEST}", True),
    ("oci://registry.example.com:5000/gemma/e4b:2026-12", True),
    ("oci://registry.example.com/gemma/e4b", False),  # no tag: :latest would move under a running Deployment
    ("oci://registry.example.com/Gemma/e4b:v1", False),  # repository paths are lower case
    ("oci://registry.example.com/gemma/e4b@sha256:abc", False),
])
def test_oci_uris_need_a_tag_or_a_digest(uri: str, ok: bool) -> None:
    fields = {**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": uri}}}
    if ok:
        spec_of(**fields)
        return
    with pytest.raises(ValidationError, match="oci://REGISTRY/REPO:TAG"):
        spec_of(**fields)


def test_the_startup_budget_follows_the_path() -> None:
    # 31B BF16, 62.5 GB: at 100 MiB/s from the Hub (597 s) vs 200 MiB/s from a disk (298 s), + vLLM's 300 s
    base = {"model": {"variant": "31b"}, "quantization": "bf16", "accelerator": {"type": "nvidia-h100-80gb"},
            "serving": {"speculativeDecoding": {"mode": "off"}}}
    hub = plan(spec_of(**base), FACTS)
    cached = plan(spec_of(**base, storage=CACHE), FACTS)
    assert (hub.startup_budget_s, cached.startup_budget_s) == (900, 600)


def test_the_pvc_outlives_the_object_unless_asked() -> None:
    retained = rendered(spec_of(**MODES["cache"]))["PersistentVolumeClaim"]
    assert "ownerReferences" not in retained["metadata"]
    deleted = rendered(spec_of(**{**MODES["cache"], "storage": {"modelCache": {
        "accessModes": ["ReadWriteMany"], "retainPolicy": "Delete"}}}))["PersistentVolumeClaim"]
    assert deleted["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def test_image_volume_probe_is_judged_by_what_the_server_kept() -> None:
    probe = image_volume_probe("ml")
    kubernetes_validate.validate(probe, "1.37.0", strict=True)
    assert keeps_image_volume(probe)
    dropped = json.loads(json.dumps(probe))
    del dropped["spec"]["template"]["spec"]["volumes"][0]["image"]  # what a 1.20 or gated-off server answers
    assert not keeps_image_volume(dropped)


# ---------------------------------------------------------------------------------------
# what the reconcile holds back, and status.model
# ---------------------------------------------------------------------------------------

def _cache_plan() -> tuple[Gemma4DeploymentSpec, Plan, rc.Desired]:
    spec = spec_of(**MODES["cache"])
    p = plan(spec, FACTS)
    return spec, p, rc.Desired(p, None, tuple(render_children(OWNER, spec, p)))


def job(p: Plan, *, checkpoint: str | None = None, **status: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": "chat-download", "annotations": {
        CHECKPOINT_ANNOTATION: checkpoint if checkpoint is not None else checkpoint_id(p)}}, "status": status}


def download_pod(exit_code: int, message: str) -> dict[str, Any]:
    return {"metadata": {"labels": {"app.kubernetes.io/component": "download"}}, "status": {"containerStatuses": [
        {"name": "download", "state": {"terminated": {"exitCode": exit_code, "message": message,
                                                      "finishedAt": "2026-12-07T10:05:00Z"}}}]}}


COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1,
            "startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:05:00Z"}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                          "message": "Job has reached the specified backoff limit"}], "failed": 3}


def test_serving_children_wait_for_this_checkpoints_download() -> None:
    _, p, desired = _cache_plan()
    held = {("Deployment", "chat")}
    assert rc.withheld(desired, None) == held  # no Job yet
    assert rc.withheld(desired, job(p)) == held  # running
    assert rc.withheld(desired, job(p, **FAILED)) == held
    assert rc.withheld(desired, job(p, checkpoint="google/gemma-4-E4B-it@main", **COMPLETE)) == held  # an old one
    assert rc.withheld(desired, job(p, **COMPLETE)) == frozenset()
    hub = spec_of(**MODES["hub"])
    assert rc.withheld(rc.Desired(plan(hub, FACTS), None, ()), None) == frozenset()  # nothing to wait for
    assert rc.written_on_event("Job", "chat-download", "chat") == [
        ("Job", "chat-download"), ("Deployment", "chat"), ("ScaledObject", "chat")]
    assert rc.written_on_event("Service", "chat", "chat") == [("Service", "chat")]


def test_model_status_follows_the_job_and_its_pods() -> None:
    spec, p, _ = _cache_plan()
    assert model_state(p, spec, None, [], None, 0).status.phase == "Pending"
    running = model_state(p, spec, job(p, startTime="2026-12-07T10:00:00Z"), [], None, 0)
    assert (running.status.phase, running.status.started_at, running.status.bytes) == (
        "Downloading", "2026-12-07T10:00:00Z", E4B_Q8_BYTES)
    report = json.dumps({"exitCode": 0, "bytes": E4B_Q8_BYTES, "seconds": 100.0, "log": ""})
    done = model_state(p, spec, job(p, **COMPLETE), [download_pod(0, report)], None, 0)
    assert done.ready and done.reason == "Downloaded"
    assert (done.status.finished_at, done.status.throughput_mbps) == ("2026-12-07T10:05:00Z", 85.9)


def test_a_failed_download_says_what_to_do() -> None:
    spec, p, _ = _cache_plan()
    gated = Report(1, error=FetchError("model", "GatedRepoError", "401 Client Error.", 401)).to_json()
    failed = model_state(p, spec, job(p, **FAILED), [download_pod(1, gated)], None, 0)
    assert failed.failed and failed.reason == "GatedRepository"
    assert "tokenSecretRef" in failed.message and "delete Job chat-download to retry" in failed.message
    retrying = model_state(p, spec, job(p, failed=1), [download_pod(1, gated)], None, 0)
    assert retrying.downloading and "the last attempt failed" in retrying.message
    status = observe.compute_status(owner=OWNER, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                    deployment=None, pods=[], previous={}, now="2026-12-07T10:06:00Z",
                                    model=failed)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Degraded" and conditions["Degraded"]["reason"] == "GatedRepository"
    assert conditions["ModelReady"]["status"] == "False"
    assert status["model"]["phase"] == "Failed" and status["model"]["throughputMBps"] is None


def test_while_downloading_the_object_is_progressing_and_idle_reconciles_write_nothing() -> None:
    spec, p, _ = _cache_plan()
    model = model_state(p, spec, job(p, startTime="2026-12-07T10:00:00Z"), [], None, 0)
    status = observe.compute_status(owner=OWNER, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                    deployment=None, pods=[], previous={}, now="2026-12-07T10:01:00Z", model=model)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert status["phase"] == "Progressing" and conditions["Progressing"]["reason"] == "Downloading"
    stored = {k: v for k, v in status.items() if v is not None}
    stored["model"] = {k: v for k, v in stored["model"].items() if v is not None}  # as the server keeps it
    assert observe.status_patch(stored, status) is None


def test_per_pod_modes_are_ready_once_a_pod_loaded_the_weights() -> None:
    spec = spec_of(**MODES["hub"])
    p = plan(spec, FACTS)
    assert model_state(p, spec, None, [], None, 0).status.phase == "Pending"
    assert model_state(p, spec, None, [], None, 1).status.phase == "Downloading"
    ready = model_state(p, spec, None, [], {"status": {"readyReplicas": 1}}, 0)
    assert ready.ready and ready.status.mode == "hub"


def test_llamacpp_refuses_a_repository_it_cannot_load_in_words() -> None:
    # a safetensors repository at a revision: llama.cpp needs one named GGUF file (-m), the Job cannot guess it
    spec = spec_of(**{**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": "hf://acme/e4b-tuned@v2"}}},
                   storage=CACHE)
    with pytest.raises(PlanError) as refused:
        plan(spec, FACTS)
    assert "llamacpp loads one GGUF file: name it with hf://REPO:QUANT or pvc://CLAIM/PATH.gguf" in (
        refused.value.message)


def test_a_catalog_gguf_repo_named_by_its_tag_is_downloaded_by_the_job() -> None:
    # hf://REPO:QUANT of a repository the catalog knows: its file names are known, so the Job can fetch them
    spec = spec_of(**{**E4B_CPU, "model": {"variant": "e4b", "source": {
        "uri": "hf://ggml-org/gemma-4-E4B-it-GGUF:q8_0", "tokenSecretRef": {"name": "hf", "key": "token"}}}},
        storage=CACHE)
    objs = rendered(spec)
    (checkpoint,) = manifest_of(objs["Job"]).artifacts
    assert (checkpoint.repo, checkpoint.files) == (
        "ggml-org/gemma-4-E4B-it-GGUF", ("gemma-4-E4B-it-Q8_0.gguf", "mmproj-gemma-4-E4B-it-Q8_0.gguf"))
    assert server(objs)["args"][1] == "/cache/models/ggml-org/gemma-4-E4B-it-GGUF/main/gemma-4-E4B-it-Q8_0.gguf"


def test_a_gguf_source_names_a_revision_and_the_job_fetches_it() -> None:
    uri = "hf://ggml-org/gemma-4-E4B-it-GGUF@v2:Q8_0"
    source = parse_source(uri)
    assert (source.repo, source.revision, source.quant_tag, source.display) == (
        "ggml-org/gemma-4-E4B-it-GGUF", "v2", "Q8_0", "ggml-org/gemma-4-E4B-it-GGUF@v2:Q8_0")
    assert re.fullmatch(SOURCE_URI_PATTERN, uri) is not None
    objs = rendered(spec_of(**{**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": uri}}}, storage=CACHE))
    (checkpoint,) = manifest_of(objs["Job"]).artifacts
    assert (checkpoint.revision, checkpoint.local_dir) == ("v2", "/cache/models/ggml-org/gemma-4-E4B-it-GGUF/v2")
    assert server(objs)["args"][1] == "/cache/models/ggml-org/gemma-4-E4B-it-GGUF/v2/gemma-4-E4B-it-Q8_0.gguf"


def test_a_gguf_revision_without_the_job_is_refused_in_words() -> None:
    spec = spec_of(**{**E4B_CPU, "model": {"variant": "e4b", "source": {"uri": "hf://acme/e4b-GGUF@v2:Q8_0"}}})
    with pytest.raises(UnrenderableError, match=r"-hf downloads REPO:QUANT at the default branch only"):
        render_children(OWNER, spec, plan(spec, FACTS))
