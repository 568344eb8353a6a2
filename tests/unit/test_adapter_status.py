"""status.adapters, adaptersReady and AdaptersReady (reconcile/adapter_status.py) through their transitions, from
the download Job's report as cli/download.py writes it; the Job's identity and the serving children's wait on an
edited adapter list; the adapter mounts; hf:// adapters without a model cache (an adapters-only Job, and an init
container in each serving pod)."""

from __future__ import annotations

from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile import status as observe
from gemma4_operator.reconcile.adapter_status import adapter_state
from gemma4_operator.reconcile.model_status import model_state
from gemma4_operator.render.children import Owner, render_children
from gemma4_operator.render.download import CHECKPOINT_ANNOTATION, download_id
from gemma4_operator.weights.artifacts import Kind, Manifest, Report
from gemma4_operator.weights.preflight import AdapterVerdict

OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
FACTS = ClusterFacts.every_catalog_type()
SUPPORT = {"name": "support", "uri": "hf://me/support-lora", "tokenSecretRef": {"name": "hf", "key": "support"}}
FAQ = {"name": "faq", "uri": "hf://me/faq-lora@v2"}
LOCAL = {"name": "local", "uri": "pvc://adapters/team/local"}
ACCEPTED = AdapterVerdict("support", "Accepted", "LoRA rank 16 on q_proj", 16, ("q_proj",))
REFUSED = AdapterVerdict("faq", "ModulesToSave", "modules_to_save ['lm_head'] ...: merge it", 16, ("q_proj",))
COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}], "succeeded": 1,
            "startTime": "2026-12-07T10:00:00Z", "completionTime": "2026-12-07T10:05:00Z"}


def spec_of(*adapters: dict[str, Any], cache: bool = True) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({
        "model": {"variant": "31b", "adapters": list(adapters)}, "quantization": "bf16",
        "accelerator": {"type": "nvidia-h100-80gb"},
        **({"storage": {"modelCache": {"accessModes": ["ReadWriteMany"]}}} if cache else {})})


def children(spec: Gemma4DeploymentSpec) -> dict[str, dict[str, Any]]:
    return {c["kind"]: c for c in render_children(OWNER, spec, plan(spec, FACTS))}


def job_for(spec: Gemma4DeploymentSpec, **status: Any) -> dict[str, Any]:
    return {"kind": "Job", "metadata": {"name": "chat-download", "annotations": {
        CHECKPOINT_ANNOTATION: download_id(plan(spec, FACTS), spec)}}, "status": status}


def pod(report: Report) -> dict[str, Any]:
    return {"metadata": {"labels": {"app.kubernetes.io/component": "download"}}, "status": {"containerStatuses": [
        {"name": "download", "state": {"terminated": {"exitCode": report.exit_code, "message": report.to_json(),
                                                      "finishedAt": "2026-12-07T10:05:00Z"}}}]}}


def status_of(spec: Gemma4DeploymentSpec, job: dict[str, Any] | None, pods: list[dict[str, Any]],
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    p = plan(spec, FACTS)
    model = model_state(p, spec, job, pods, None, 0)
    return observe.compute_status(owner=OWNER, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                  deployment=None, pods=[], previous=previous or {}, now="2026-12-07T10:06:00Z",
                                  model=model)


def condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "AdaptersReady")


def test_pending_then_downloading_then_one_ready_and_one_refused() -> None:
    spec = spec_of(SUPPORT, FAQ)
    pending = status_of(spec, None, [])
    assert [(a["name"], a["phase"]) for a in pending["adapters"]] == [("support", "Pending"), ("faq", "Pending")]
    assert (pending["adaptersReady"], condition(pending)["reason"]) == ("0/2", "AdaptersPending")
    downloading = status_of(spec, job_for(spec, startTime="2026-12-07T10:00:00Z"), [])
    assert {a["phase"] for a in downloading["adapters"]} == {"Downloading"}
    done = status_of(spec, job_for(spec, **COMPLETE), [pod(Report(0, 10, 1.0, None, [ACCEPTED, REFUSED]))],
                     previous=downloading)
    by_name = {a["name"]: a for a in done["adapters"]}
    assert by_name["support"] == {"name": "support", "phase": "Ready", "rank": 16, "targetModules": ["q_proj"],
                                  "reason": ""}
    assert by_name["faq"]["phase"] == "Refused"
    assert by_name["faq"]["reason"] == "ModulesToSave: modules_to_save ['lm_head'] ...: merge it"
    c = condition(done)
    assert (done["adaptersReady"], c["status"], c["reason"]) == ("1/2", "False", "AdaptersRefused")
    assert c["message"].startswith("1 of 2 adapters serve; faq refused (ModulesToSave")
    assert observe.status_patch(done, status_of(spec, job_for(spec, **COMPLETE), [
        pod(Report(0, 10, 1.0, None, [ACCEPTED, REFUSED]))], previous=done)) is None  # no idle write


def test_all_accepted_is_ready_and_a_fetch_failure_is_failed() -> None:
    spec = spec_of(SUPPORT)
    ready = status_of(spec, job_for(spec, **COMPLETE), [pod(Report(0, 10, 1.0, None, [ACCEPTED]))])
    assert (ready["adaptersReady"], condition(ready)["status"], condition(ready)["reason"]) == (
        "1/1", "True", "AdaptersServed")
    gated = AdapterVerdict("support", "GatedRepository", "the Hub refused me/support-lora (HTTP 401): ...")
    failed = status_of(spec, job_for(spec, **COMPLETE), [pod(Report(0, 10, 1.0, None, [gated]))])
    assert failed["adapters"][0]["phase"] == "Failed" and condition(failed)["status"] == "False"


def test_an_adapter_the_report_does_not_name_is_not_served() -> None:
    state = adapter_state(spec_of(SUPPORT, FAQ), (ACCEPTED,), fetched=True)
    assert state is not None
    assert (state.served, state.ready, state.ok) == (frozenset({"support"}), "1/2", False)


def test_mounted_adapters_are_ready_without_a_job_and_no_adapters_means_no_condition() -> None:
    state = adapter_state(spec_of(LOCAL), (), fetched=False)
    assert state is not None and state.served == frozenset({"local"}) and state.ok
    plain = status_of(spec_of(), None, [])
    assert plain["adapters"] is None and plain["adaptersReady"] is None
    assert "AdaptersReady" not in {c["type"] for c in plain["conditions"]}


def test_editing_the_adapter_list_is_a_new_job_that_the_serving_children_wait_for() -> None:
    before, after = spec_of(SUPPORT), spec_of(SUPPORT, FAQ)
    p = plan(after, FACTS)
    desired = rc.Desired(p, None, tuple(render_children(OWNER, after, p)))
    old_job = job_for(before, **COMPLETE)
    assert download_id(p, before) != download_id(p, after)
    assert ("Deployment", "chat") in rc.withheld(desired, old_job)  # the old download does not start the new pods
    assert rc.withheld(desired, job_for(after, **COMPLETE)) == frozenset()
    assert children(before)["Job"]["spec"] != children(after)["Job"]["spec"]  # replaced, not patched


def test_the_job_fetches_hf_adapters_with_their_own_token_and_pods_mount_them() -> None:
    objs = children(spec_of(SUPPORT, FAQ, LOCAL))
    container = objs["Job"]["spec"]["template"]["spec"]["containers"][0]
    manifest = Manifest.from_json(container["command"][-1])
    assert [(a.name, a.repo, a.revision, a.local_dir, a.token_env) for a in manifest.of(Kind.ADAPTER)] == [
        ("support", "me/support-lora", "", "/cache/adapters/support", "HF_TOKEN_ADAPTER_0"),
        ("faq", "me/faq-lora", "v2", "/cache/adapters/faq", "")]
    assert {"name": "HF_TOKEN_ADAPTER_0", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "support"}}} in (
        container["env"])
    pod_spec = objs["Deployment"]["spec"]["template"]["spec"]
    mounts = pod_spec["containers"][0]["volumeMounts"]
    assert {"name": "cache", "mountPath": "/models/adapters", "subPath": "adapters", "readOnly": True} in mounts
    assert {"name": "adapter-2", "mountPath": "/models/adapters/local", "subPath": "team/local",
            "readOnly": True} in mounts
    assert {"name": "adapter-2", "persistentVolumeClaim": {"claimName": "adapters", "readOnly": True}} in (
        pod_spec["volumes"])


def test_without_a_model_cache_an_adapters_only_job_judges_the_hf_adapters_on_an_empty_dir() -> None:
    objs = children(spec_of(SUPPORT, FAQ, LOCAL, cache=False))
    assert "PersistentVolumeClaim" not in objs
    job = objs["Job"]["spec"]["template"]["spec"]
    [container] = job["containers"]
    manifest = Manifest.from_json(container["command"][-1])
    assert manifest.of(Kind.CHECKPOINT) == () and manifest.of(Kind.DRAFTER) == ()  # each pod fetches it
    assert [a.name for a in manifest.of(Kind.ADAPTER)] == ["support", "faq"]
    assert {"name": "cache", "emptyDir": {"sizeLimit": "16Gi"}} in job["volumes"]
    assert {"name": "cache", "mountPath": "/cache"} in container["volumeMounts"]
    assert "HF_TOKEN" not in {e["name"] for e in container["env"]}  # the checkpoint's token: not this Job's
    assert "Deployment" in children(spec_of(LOCAL, cache=False)) and "Job" not in children(spec_of(LOCAL, cache=False))


def test_without_a_model_cache_each_pod_fetches_its_hf_adapters_in_an_init_container() -> None:
    spec = spec_of(SUPPORT, FAQ, cache=False)
    pod_spec = children(spec)["Deployment"]["spec"]["template"]["spec"]
    [init] = pod_spec["initContainers"]
    assert init["image"] == children(spec)["Job"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert init["command"][:3] == ["gemma4-operator", "download", "--manifest"]
    manifest = Manifest.from_json(init["command"][-1])
    assert [(a.name, a.local_dir, a.token_env) for a in manifest.artifacts] == [
        ("support", "/cache/adapters/support", "HF_TOKEN_ADAPTER_0"), ("faq", "/cache/adapters/faq", "")]
    # the token only through secretKeyRef, and no other value from a Secret
    secret_env = [e for e in init["env"] if "HF_TOKEN" in e["name"]]
    assert secret_env == [{"name": "HF_TOKEN_ADAPTER_0", "valueFrom": {"secretKeyRef": {"name": "hf",
                                                                                          "key": "support"}}}]
    assert init["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                       "readOnlyRootFilesystem": True}
    assert init["resources"]["limits"]["memory"] == "4Gi"
    writable = {m["mountPath"] for m in init["volumeMounts"] if not m.get("readOnly")}
    env = {e["name"]: e.get("value") for e in init["env"]}
    assert {"/cache", "/tmp"} <= writable and env["HF_HOME"].startswith("/cache/")
    assert env["HOME"] in writable
    # the engine reads what it fetched, read-only, where the Job's PVC would put it
    mounts = pod_spec["containers"][0]["volumeMounts"]
    assert {"name": "cache", "mountPath": "/models/adapters", "subPath": "adapters", "readOnly": True} in mounts
    assert "initContainers" not in children(spec_of(SUPPORT))["Deployment"]["spec"]["template"]["spec"]


def test_without_a_model_cache_the_pods_wait_for_the_adapters_only_job_and_status_shows_its_verdicts() -> None:
    spec = spec_of(SUPPORT, FAQ, cache=False)
    p = plan(spec, FACTS)
    desired = rc.Desired(p, None, tuple(render_children(OWNER, spec, p)))
    assert ("Deployment", "chat") in rc.withheld(desired, None)
    assert ("Deployment", "chat") in rc.withheld(desired, job_for(spec))  # running
    assert rc.withheld(desired, job_for(spec, **COMPLETE)) == frozenset()
    report = Report(exit_code=0, adapters=[ACCEPTED, REFUSED])
    status = status_of(spec, job_for(spec, **COMPLETE), [pod(report)])
    assert status["model"]["phase"] == "Pending"  # the checkpoint: each pod's, not the Job's
    assert [(a["name"], a["phase"]) for a in status["adapters"]] == [("support", "Ready"), ("faq", "Refused")]
    pending = status_of(spec, job_for(spec), [])
    assert [a["phase"] for a in pending["adapters"]] == ["Pending", "Pending"]
