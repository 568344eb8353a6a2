"""Rendering: the child objects of a Gemma4Deployment (Deployment, Service, PVC, PDB, ScaledObject) for a plan."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, RenderOptions, render_children

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
K8S_VERSIONS = ("1.29.0", "1.37.0")


def children(**spec_fields: Any) -> dict[str, dict[str, Any]]:
    spec = Gemma4DeploymentSpec.model_validate(spec_fields)
    objects = render_children(OWNER, spec, plan(spec, ClusterFacts.every_catalog_type()))
    return {o["kind"]: o for o in objects}


def server(deployment: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def test_every_child_is_owned_and_labelled() -> None:
    objs = children(model={"variant": "31b"}, quantization="bf16", accelerator={"type": "nvidia-h100-80gb"},
                    replicas=2, storage={"modelCache": {"accessModes": ["ReadWriteMany"], "retainPolicy": "Delete"}})
    assert set(objs) == {"Deployment", "Service", "PersistentVolumeClaim", "Job", "PodDisruptionBudget"}
    for obj in objs.values():
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment", "name": "chat",
            "uid": OWNER.uid, "controller": True, "blockOwnerDeletion": True}]
        # the download Job's pods must never match the serving Service's selector
        component, name = ("download", "gemma4-download") if obj["kind"] == "Job" else ("server", "gemma4")
        assert obj["metadata"]["labels"] == {
            "app.kubernetes.io/name": name, "app.kubernetes.io/instance": "chat",
            "app.kubernetes.io/managed-by": "gemma4-operator", "app.kubernetes.io/component": component,
            "serving.gemma4.dev/variant": "31b"}
        assert obj["metadata"]["namespace"] == "ml"
    assert objs["PersistentVolumeClaim"]["metadata"]["name"] == "chat-model-cache"
    # (62.5 GB checkpoint + 0.94 GB MTP drafter) x 1.2
    assert objs["PersistentVolumeClaim"]["spec"]["resources"]["requests"]["storage"] == "71Gi"


def test_without_a_cache_the_pod_asks_for_the_disk_its_download_needs() -> None:
    # 31B BF16: the 62,546,177,752-byte repository (huggingface.co/google/gemma-4-31B-it) and its 0.94 GB MTP drafter
    # (speculativeDecoding auto) + 20% -> 71 GiB
    deployment = children(model={"variant": "31b"}, quantization="bf16",
                          accelerator={"type": "nvidia-h100-80gb"})["Deployment"]
    cache = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "cache")
    assert cache == {"name": "cache", "emptyDir": {"sizeLimit": "71Gi"}}
    assert server(deployment)["resources"]["requests"]["ephemeral-storage"] == "71Gi"
    # llama.cpp downloads the mmproj too when images are served: e4b q8_0 8,031,223,872 + 560,000,000 bytes
    multimodal = server(children(model={"variant": "e4b"}, quantization="q8_0", accelerator={"type": "cpu"},
                                 serving={"modalities": ["text", "image"]})["Deployment"])
    assert multimodal["resources"]["requests"]["ephemeral-storage"] == f"{math.ceil(8_591_223_872 * 1.2 / 2**30)}Gi"


def test_with_a_cache_pvc_the_pod_asks_for_no_node_disk() -> None:
    deployment = children(model={"variant": "e2b"}, storage={"modelCache": {}})["Deployment"]
    cache = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "cache")
    assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": "chat-model-cache"}}
    assert "ephemeral-storage" not in server(deployment)["resources"]["requests"]


def test_gpu_pod_has_limits_toleration_affinity_and_shm_for_tensor_parallel() -> None:
    deployment = children(model={"variant": "31b"}, quantization="bf16",
                          accelerator={"type": "nvidia-h100-80gb"})["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    c = server(deployment)
    assert c["resources"]["limits"] == {"nvidia.com/gpu": "2"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    products = ["NVIDIA-H100-80GB-HBM3", "NVIDIA-H100-PCIe", "NVIDIA-H100-SXM5-80GB"]
    assert {"key": "nvidia.com/gpu.product", "operator": "In", "values": products} in terms[0]["matchExpressions"]
    assert terms[1]["matchExpressions"][0]["values"] == ["nvidia-h100-80gb", "nvidia-h100-mega-80gb"]
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}} in pod["volumes"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}


def test_single_gpu_pod_has_no_shm_and_gb200_is_arm64() -> None:
    deployment = children(model={"variant": "31b"}, accelerator={"type": "nvidia-gb200"})["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert all(v["name"] != "dshm" for v in pod["volumes"])
    expressions = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"]
    assert {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]} in expressions


ANTI_AFFINITY = {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "podAffinityTerm": {
    "labelSelector": {"matchLabels": {"app": "chat"}}, "topologyKey": "kubernetes.io/hostname"}}]}


def test_user_node_affinity_is_anded_with_the_accelerator_requirement() -> None:
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-central1-a"]}
    affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [zone]}]}}, "podAntiAffinity": ANTI_AFFINITY}
    pod = children(model={"variant": "e4b"}, accelerator={"type": "nvidia-l4"},
                   podTemplate={"spec": {"affinity": affinity}})["Deployment"]["spec"]["template"]["spec"]
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert len(terms) == 2 and all(zone in t["matchExpressions"] for t in terms)
    assert pod["affinity"]["podAntiAffinity"] == ANTI_AFFINITY


def test_token_only_through_secret_key_ref() -> None:
    deployment = children(model={"variant": "e4b", "source": {
        "uri": "hf://google/gemma-4-E4B-it", "tokenSecretRef": {"name": "hf-token", "key": "token"}}},
        accelerator={"type": "nvidia-l4"})["Deployment"]
    c = server(deployment)
    assert {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}} in c["env"]
    assert not any("hf-token" in a or "HF_TOKEN" in a for a in c["args"] + c["command"])
    assert all("value" not in e for e in c["env"] if e["name"] == "HF_TOKEN")


def test_probes_budget_startup_from_checkpoint_size() -> None:
    small = server(children(model={"variant": "e2b"}, accelerator={"type": "nvidia-l4"})["Deployment"])
    large = server(children(model={"variant": "31b"}, quantization="bf16",
                            accelerator={"type": "nvidia-h100-80gb"})["Deployment"])
    assert small["startupProbe"]["failureThreshold"] < large["startupProbe"]["failureThreshold"]
    assert large["startupProbe"]["failureThreshold"] * large["startupProbe"]["periodSeconds"] >= 600 + 300
    assert large["readinessProbe"]["httpGet"] == {"path": "/v1/models", "port": "http"}
    assert large["livenessProbe"]["httpGet"]["path"] == "/health"
    cpu = server(children(model={"variant": "e2b"}, accelerator={"type": "cpu"})["Deployment"])
    assert cpu["readinessProbe"]["httpGet"]["path"] == "/health"  # llama.cpp: 503 while loading


def test_autoscaling_leaves_replicas_to_the_autoscaler_and_adds_a_pdb() -> None:
    objs = children(model={"variant": "e2b"}, accelerator={"type": "nvidia-l4"},
                    autoscaling={"minReplicaCount": 1, "maxReplicaCount": 3})
    assert "replicas" not in objs["Deployment"]["spec"]
    assert objs["PodDisruptionBudget"]["spec"] == {
        "maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "gemma4",
                                                          "app.kubernetes.io/instance": "chat"}}}
    single = children(model={"variant": "e2b"}, accelerator={"type": "nvidia-l4"})
    assert single["Deployment"]["spec"]["replicas"] == 1 and "PodDisruptionBudget" not in single


def test_cpu_pod_requests_and_caps_the_memory_the_plan_needs() -> None:
    c = server(children(model={"variant": "e2b"}, accelerator={"type": "cpu"})["Deployment"])
    assert "nvidia.com/gpu" not in c["resources"].get("limits", {})
    assert c["resources"]["requests"]["memory"] == c["resources"]["limits"]["memory"]
    assert c["command"] == ["/app/llama-server"]


def test_offline_render_without_uid_has_no_owner_references() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}})
    for obj in render_children(Owner("a", "b", ""), spec, plan(spec, ClusterFacts.every_catalog_type())):
        assert "ownerReferences" not in obj["metadata"]


def test_pdb_api_version_follows_the_server() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "replicas": 3})
    objs = render_children(OWNER, spec, plan(spec, ClusterFacts.every_catalog_type()),
                           RenderOptions(pdb_api_version="policy/v1beta1"))
    assert [o["apiVersion"] for o in objs if o["kind"] == "PodDisruptionBudget"] == ["policy/v1beta1"]


def _rendered_examples() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in EXAMPLES:
        d = Gemma4Deployment.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        for obj in render_children(Owner(d.name, d.namespace, OWNER.uid), d.spec,
                                   plan(d.spec, ClusterFacts.every_catalog_type())):
            out.append((f"{path.stem}/{obj['kind']}", obj))
    return out


RENDERED = _rendered_examples()


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("obj", [o for _, o in RENDERED], ids=[n for n, _ in RENDERED])
def test_rendered_examples_validate_strictly(obj: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_a_wrong_field() -> None:
    _, deployment = next(r for r in RENDERED if r[0].endswith("/Deployment"))
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError, match="livenessprobe"):
        kubernetes_validate.validate(broken, "1.37.0", strict=True)
