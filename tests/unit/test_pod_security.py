"""Every pod the operator creates passes Pod Security "restricted" (tests/support/pod_security.py has the
checks and their sources), writes only to volumes, and keeps secrets out of pods that do not need them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from gemma4_operator.api import LITERAL_TOKEN_MESSAGE, Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, UnrenderableError, render_children
from tests.support.pod_security import CHECKS, restricted_violations

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
TOKEN: dict[str, Any] = {"uri": "hf://google/gemma-4-E2B-it", "tokenSecretRef": {"name": "hf", "key": "token"}}
CACHE: dict[str, Any] = {"modelCache": {}}
# both engines, every way the weights arrive (per-pod download, download Job, pvc://, oci://), multi-GPU,
# hf:// adapters without a cache
SPECS: dict[str, dict[str, Any]] = {
    "vllm-hub": {"model": {"variant": "e2b"}, "engine": "vllm", "accelerator": {"type": "nvidia-l4"}},
    "vllm-cache-job": {"model": {"variant": "e2b", "source": TOKEN}, "engine": "vllm",
                       "accelerator": {"type": "nvidia-l4"}, "storage": CACHE},
    "vllm-tp2-shm": {"model": {"variant": "31b"}, "quantization": "bf16", "accelerator": {"type": "nvidia-h100-80gb"}},
    "vllm-pvc": {"model": {"variant": "e2b", "source": {"uri": "pvc://weights/gemma"}}, "engine": "vllm",
                 "accelerator": {"type": "nvidia-l4"}},
    "vllm-oci": {"model": {"variant": "e2b", "source": {"uri": "oci://registry.example.com/gemma/e2b:1"}},
                 "engine": "vllm", "accelerator": {"type": "nvidia-l4"}},
    "llamacpp-cpu-hub": {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}},
    "llamacpp-cpu-cache-job": {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, "storage": CACHE},
    "llamacpp-gpu": {"model": {"variant": "e4b"}, "engine": "llamacpp", "accelerator": {"type": "nvidia-l4"}},
    # no cache: an adapters-only Job, and each serving pod's init container fetches the adapters
    "vllm-hub-adapters": {"model": {"variant": "e2b", "adapters": [{"name": "support", "uri": "hf://me/lora",
                                                                    "tokenSecretRef": {"name": "hf", "key": "a"}}]},
                          "engine": "vllm", "accelerator": {"type": "nvidia-l4"}},
}


def rendered(spec: Gemma4DeploymentSpec, owner: Owner = OWNER) -> dict[str, dict[str, Any]]:
    return {o["kind"]: o for o in render_children(owner, spec, plan(spec, ClusterFacts.every_catalog_type()))}


def pod_templates(spec: Gemma4DeploymentSpec) -> dict[str, dict[str, Any]]:
    """kind -> pod template of every child that makes pods (the Deployment's, the download Job's)."""
    return {kind: obj["spec"]["template"] for kind, obj in rendered(spec).items() if kind in ("Deployment", "Job")}


def spec_of(fields: dict[str, Any]) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate(fields)


ALL_SPECS = {**{p.stem: Gemma4Deployment.model_validate(yaml.safe_load(p.read_text(encoding="utf-8"))).spec
                for p in EXAMPLES}, **{k: spec_of(v) for k, v in SPECS.items()}}


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_every_rendered_pod_passes_pod_security_restricted(name: str) -> None:
    templates = pod_templates(ALL_SPECS[name])
    assert templates
    for kind, template in templates.items():
        assert restricted_violations(template) == {}, kind


def test_the_matrix_renders_both_engines_and_the_download_job() -> None:
    engines = {rendered(s)["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"].split(":")[0]
               for s in ALL_SPECS.values()}
    assert engines == {"vllm/vllm-openai", "ghcr.io/ggml-org/llama.cpp"}
    assert sum("Job" in pod_templates(s) for s in ALL_SPECS.values()) >= 3


GOOD = pod_templates(spec_of(SPECS["vllm-tp2-shm"]))["Deployment"]


def _server(t: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = t["spec"]["containers"][0]
    return c


# check ID -> a change to a passing pod that breaks that check and no other: every check can fail
BREAKS: dict[str, Any] = {
    "windowsHostProcess": lambda t: t["spec"]["securityContext"].update(windowsOptions={"hostProcess": True}),
    "hostNamespaces": lambda t: t["spec"].update(hostPID=True),
    "privileged": lambda t: _server(t)["securityContext"].update(privileged=True),
    "hostPorts": lambda t: _server(t)["ports"][0].update(hostPort=8000),
    "appArmorProfile": lambda t: t["metadata"].setdefault("annotations", {}).update(
        {"container.apparmor.security.beta.kubernetes.io/server": "unconfined"}),
    "seLinuxOptions": lambda t: t["spec"]["securityContext"].update(seLinuxOptions={"type": "spc_t"}),
    "procMount_restricted": lambda t: _server(t)["securityContext"].update(procMount="Unmasked"),
    "sysctls": lambda t: t["spec"]["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]),
    "hostProbesAndHostLifecycle": lambda t: _server(t)["livenessProbe"]["httpGet"].update(host="10.0.0.1"),
    "restrictedVolumes": lambda t: t["spec"]["volumes"].append({"name": "node", "hostPath": {"path": "/"}}),
    "allowPrivilegeEscalation": lambda t: _server(t)["securityContext"].pop("allowPrivilegeEscalation"),
    "runAsNonRoot": lambda t: t["spec"]["securityContext"].pop("runAsNonRoot"),
    "runAsUser": lambda t: _server(t)["securityContext"].update(runAsUser=0),
    "seccompProfile_restricted": lambda t: t["spec"]["securityContext"].update(seccompProfile={"type": "Unconfined"}),
    "capabilities_restricted": lambda t: _server(t)["securityContext"].update(capabilities={"add": ["SYS_ADMIN"],
                                                                                            "drop": ["ALL"]}),
}


@pytest.mark.parametrize("check", list(CHECKS))
def test_each_check_refuses_what_the_standard_forbids(check: str) -> None:
    template = copy.deepcopy(GOOD)
    BREAKS[check](template)
    assert set(restricted_violations(template)) == {check}


def test_a_spec_forced_to_root_renders_a_root_pod_the_profile_refuses() -> None:
    spec = spec_of({**SPECS["llamacpp-cpu-cache-job"], "serving": {"securityContext": {"runAsUser": 0}}})
    for template in pod_templates(spec).values():
        assert template["spec"]["securityContext"]["runAsNonRoot"] is False
        assert set(restricted_violations(template)) == {"runAsNonRoot", "runAsUser"}


def test_serving_security_context_sets_the_identity_of_both_pods() -> None:
    spec = spec_of({**SPECS["vllm-cache-job"], "serving": {"securityContext": {
        "runAsUser": 4242, "runAsGroup": 4343, "fsGroup": 4444, "readOnlyRootFilesystem": True}}})
    templates = pod_templates(spec)
    for template in templates.values():
        assert {k: template["spec"]["securityContext"][k] for k in ("runAsUser", "runAsGroup", "fsGroup")} == {
            "runAsUser": 4242, "runAsGroup": 4343, "fsGroup": 4444}
    assert _server(templates["Deployment"])["securityContext"]["readOnlyRootFilesystem"] is True


@pytest.mark.parametrize(("name", "read_only"), [("vllm-hub", False), ("llamacpp-cpu-hub", True),
                                                 ("llamacpp-gpu", True)])
def test_read_only_root_is_the_engines_choice(name: str, read_only: bool) -> None:
    templates = pod_templates(spec_of(SPECS[name]))
    assert _server(templates["Deployment"])["securityContext"]["readOnlyRootFilesystem"] is read_only
    job = pod_templates(spec_of(SPECS["vllm-cache-job"]))["Job"]
    assert _server(job)["securityContext"]["readOnlyRootFilesystem"] is True


# env variables that name a directory a process writes to; the download caches only while something downloads
WRITTEN_PATHS = ("HOME", "XDG_CACHE_HOME", "VLLM_CACHE_ROOT", "TRITON_CACHE_DIR", "HF_HOME", "LLAMA_CACHE")
DOWNLOAD_CACHES = ("HF_HOME", "LLAMA_CACHE")


@pytest.mark.parametrize("name", list(ALL_SPECS))
def test_every_path_the_processes_write_is_on_a_writable_volume(name: str) -> None:
    """The download caches may sit on the read-only cache only where the Hub is offline (the weights are local:
    vLLM and llama-server load a directory or a file and download nothing)."""
    for template in pod_templates(ALL_SPECS[name]).values():
        container = _server(template)
        env = {e["name"]: e.get("value") for e in container["env"]}
        writable = [m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")]
        assert "/tmp" in writable
        for var in WRITTEN_PATHS:
            if var not in env or (var in DOWNLOAD_CACHES and env.get("HF_HUB_OFFLINE") == "1"):
                continue
            assert any(env[var] == m or env[var].startswith(m + "/") for m in writable), (var, env[var])


def _env(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in _server(template)["env"]}


def test_the_hf_token_reaches_only_pods_that_download() -> None:
    with_job = pod_templates(spec_of(SPECS["vllm-cache-job"]))
    assert "HF_TOKEN" not in _env(with_job["Deployment"])  # loads the cache offline
    assert _env(with_job["Job"])["HF_TOKEN"] == {
        "name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
    per_pod = pod_templates(spec_of({**SPECS["vllm-hub"], "model": {"variant": "e2b", "source": TOKEN}}))
    assert "HF_TOKEN" in _env(per_pod["Deployment"])  # each pod downloads at start


KEY = {"apiKeySecretRef": {"name": "openai", "key": "key"}}


@pytest.mark.parametrize(("name", "variable", "readiness"), [("vllm-hub", "VLLM_API_KEY", "/health"),
                                                              ("llamacpp-cpu-hub", "LLAMA_API_KEY", "/health")])
def test_the_api_key_goes_through_the_engines_variable_and_probes_stay_on_open_paths(
        name: str, variable: str, readiness: str) -> None:
    spec = spec_of({**SPECS[name], "serving": KEY})
    server = _server(pod_templates(spec)["Deployment"])
    assert _env(pod_templates(spec)["Deployment"])[variable] == {
        "name": variable, "valueFrom": {"secretKeyRef": {"name": "openai", "key": "key"}}}
    assert "--api-key" not in server["args"] and "openai" not in " ".join(server["args"])
    assert server["readinessProbe"]["httpGet"]["path"] == readiness
    # without the key vLLM's readiness proves the model is registered (/v1/models, which the key guards)
    assert _server(pod_templates(spec_of(SPECS[name]))["Deployment"])["readinessProbe"]["httpGet"][
        "path"] == ("/v1/models" if variable == "VLLM_API_KEY" else "/health")


def test_an_api_key_on_llamacpp_with_autoscaling_is_refused_in_words() -> None:
    spec = spec_of({**SPECS["llamacpp-cpu-hub"], "serving": KEY, "autoscaling": {"maxReplicaCount": 2}})
    with pytest.raises(UnrenderableError) as caught:
        rendered(spec)
    assert str(caught.value) == (
        "serving.apiKeySecretRef: llamacpp requires the API key on /metrics too, where autoscaling reads its "
        "metrics, and the operator does not read Secrets; remove spec.autoscaling or the API key")
    # vLLM leaves /metrics open: the autoscaler still scrapes
    rendered(spec_of({**SPECS["vllm-hub"], "serving": KEY, "autoscaling": {"maxReplicaCount": 2}}))


@pytest.mark.parametrize("name", ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"])
def test_a_literal_hub_token_in_serving_env_is_refused_with_the_reason(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        spec_of({"model": {"variant": "e2b"}, "serving": {"env": [{"name": name, "value": "hf_abc"}]}})
    assert LITERAL_TOKEN_MESSAGE in str(caught.value)
    assert LITERAL_TOKEN_MESSAGE.startswith("serving.env: HF_TOKEN and HUGGING_FACE_HUB_TOKEN must not have a "
                                            "literal value")
    spec_of({"model": {"variant": "e2b"}, "serving": {"env": [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]}})
