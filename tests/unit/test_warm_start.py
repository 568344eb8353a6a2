"""Warm starts: vLLM's compile cache (VLLM_CACHE_ROOT, Triton's) on the model cache volume, writable on its own
mount while the weights stay read-only, and the plan's first and warm start estimates (the startup probe covers
a first start)."""

from __future__ import annotations

import math
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.planner.plan import ClusterFacts, StartEstimate
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, render_children

OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
FACTS = ClusterFacts.every_catalog_type()
E4B_L4 = {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}, "engine": "vllm"}
CACHE = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
VLLM = load_catalog().engines["vllm"]
MIB = 1024 * 1024


def spec_of(**fields: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({**E4B_L4, **fields})


def pod_spec(spec: Gemma4DeploymentSpec) -> dict[str, Any]:
    deployment = next(o for o in render_children(OWNER, spec, plan(spec, FACTS)) if o["kind"] == "Deployment")
    pod: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return pod


def test_vllm_keeps_its_compile_cache_on_the_model_cache_pvc_beside_read_only_weights() -> None:
    pod = pod_spec(spec_of(storage=CACHE, autoscaling={"maxReplicaCount": 4}))
    container = pod["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert (env["VLLM_CACHE_ROOT"], env["TRITON_CACHE_DIR"]) == ("/var/cache/vllm", "/var/cache/vllm/triton")
    mounts = [m for m in container["volumeMounts"] if m["name"] == "cache"]
    assert mounts == [{"name": "cache", "mountPath": "/cache", "readOnly": True},
                      {"name": "cache", "mountPath": "/var/cache/vllm", "subPath": "vllm-cache"}]
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert cache == {"name": "cache", "persistentVolumeClaim": {"claimName": "chat-model-cache"}}


def test_without_a_model_cache_the_compile_cache_is_the_pods_own() -> None:
    pod = pod_spec(spec_of())
    cache = next(v for v in pod["volumes"] if v["name"] == "cache")
    assert "emptyDir" in cache
    assert {"name": "cache", "mountPath": "/var/cache/vllm", "subPath": "vllm-cache"} in \
        pod["containers"][0]["volumeMounts"]


def test_a_user_may_move_the_compile_cache() -> None:
    pod = pod_spec(spec_of(serving={"env": [{"name": "VLLM_CACHE_ROOT", "value": "/scratch/vllm"}]}))
    values = [e.get("value") for e in pod["containers"][0]["env"] if e["name"] == "VLLM_CACHE_ROOT"]
    assert values == ["/scratch/vllm"]


def test_the_plan_tells_a_first_start_from_a_warm_one() -> None:
    cached = plan(spec_of(storage=CACHE), FACTS)
    disk = load_catalog().weights.disk_load_bandwidth_mib_s
    load = cached.download_bytes / (disk * MIB)
    assert VLLM.compile_s > 0
    assert cached.start == StartEstimate(first_s=math.ceil(load + VLLM.compile_s + VLLM.startup_fixed_s),
                                         warm_s=math.ceil(load + VLLM.startup_fixed_s))
    assert cached.startup_budget_s >= cached.start.first_s  # the probe waits for the pod that compiles
    hub = plan(spec_of(), FACTS)  # every pod downloads and compiles into its own emptyDir: no warm start
    assert hub.start.warm_s == hub.start.first_s > cached.start.first_s


def test_llama_cpp_compiles_nothing() -> None:
    p = plan(Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "cpu"},
                                                  "storage": CACHE, "replicas": 2}), FACTS)
    assert p.engine == "llamacpp" and p.start.first_s == p.start.warm_s
