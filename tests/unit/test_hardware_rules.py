"""Hardware truths (catalog/hardware_rules.yaml, the vLLM CPU refusal in engines.yaml, GH200 in accelerators.yaml):
each rule with a case that fires, the exact words a user reads, and a case that does not fire."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import registry
from gemma4_operator.planner.cluster_facts import gfd_type
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
RULES = CATALOG.hardware_rules
MIG_MESSAGE = (
    "MIG slices cannot run tensor parallel (no GPU-to-GPU peer-to-peer, PCIe or NVLink, between MIG instances): "
    "a replica uses one slice; choose a larger slice profile or whole GPUs")
FP8_KV_MESSAGE = (
    "vLLM's Triton attention, which Gemma 4's head_dim 512 requires, stores an fp8 KV cache as float8_e4m3fn, "
    "which needs compute capability 8.9 or newer (Ada, Hopper, Blackwell); use kvCacheDtype bf16 or auto here")
VLLM_CPU_MESSAGE = (
    "vLLM is not planned on CPU: vLLM has a CPU backend, but this operator's engine catalog has no vLLM CPU image "
    "(vllm/vllm-openai is a CUDA build) and no memory model for it (it sizes its KV cache from "
    "VLLM_CPU_KVCACHE_SPACE); CPU replicas are served by llama.cpp (https://docs.vllm.ai/en/latest/getting_started/"
    "installation/cpu.html (CPU backend, VLLM_CPU_KVCACHE_SPACE); head size 512 on CPU: vllm-project/vllm#38676)")


def _plan(types: set[str], **fields: Any) -> Plan:
    return plan(Gemma4DeploymentSpec.model_validate(fields), ClusterFacts(frozenset(types)), suggest=False)


def _refusal(types: set[str], **fields: Any) -> str:
    with pytest.raises(PlanError) as caught:
        _plan(types, **fields)
    return caught.value.message


# ---- no tensor parallelism across MIG slices ------------------------------------------------------------------
MIG = "nvidia-a100-80gb-mig-3g.40gb"


def test_two_mig_slices_in_one_replica_are_refused_with_the_reason() -> None:
    message = _refusal({MIG}, model={"variant": "e2b"}, engine="vllm", quantization="bf16",
                       accelerator={"type": MIG, "count": 2})
    assert message == (
        f"gemma-4-e2b does not fit on {MIG}\n"
        f"- bf16 on 2x {MIG}: refused: 2 MIG slices in one replica: {MIG_MESSAGE} ({RULES.mig_tensor_parallel.source})")


def test_one_mig_slice_plans_and_whole_gpus_may_run_tensor_parallel() -> None:
    one = _plan({MIG}, model={"variant": "e2b"}, engine="vllm", accelerator={"type": MIG, "count": 1})
    assert (one.gpus_per_replica, one.tensor_parallel_size) == (1, 1)
    whole = _plan({"nvidia-a100-80gb"}, model={"variant": "e2b"}, engine="vllm",
                  accelerator={"type": "nvidia-a100-80gb", "count": 2})
    assert whole.tensor_parallel_size == 2
    assert RULES.mig_tensor_parallel.refusal(CATALOG.accelerators["nvidia-a100-80gb"], 2) is None


def test_auto_never_spans_mig_slices() -> None:
    # 31B does not fit one 40 GB slice: auto does not try two, it says nothing fits
    message = _refusal({MIG}, model={"variant": "31b"}, engine="vllm")
    assert f"on 1x {MIG}:" in message and f"on 2x {MIG}" not in message


def test_every_mig_type_plans_at_most_the_rules_slices_per_replica() -> None:
    migs = [a for a in CATALOG.accelerators.values() if a.is_mig]
    assert migs and all(a.max_gpus_per_replica == RULES.mig_tensor_parallel.max_slices_per_replica for a in migs)


# ---- fp8 KV cache only where Gemma 4's attention kernel stores it ------------------------------------------------
def test_explicit_fp8_kv_on_ampere_is_refused_with_the_reason() -> None:
    message = _refusal({"nvidia-a100-80gb"}, model={"variant": "e2b"}, engine="vllm", quantization="bf16",
                       accelerator={"type": "nvidia-a100-80gb", "count": 1}, serving={"kvCacheDtype": "fp8"})
    assert message == (
        "gemma-4-e2b does not fit on nvidia-a100-80gb\n"
        f"- bf16 on 1x nvidia-a100-80gb: refused: fp8 KV cache on compute capability 8.0: {FP8_KV_MESSAGE} "
        f"({RULES.fp8_kv_cache.source})")


def test_explicit_fp8_kv_plans_from_compute_capability_8_9() -> None:
    for gpu in ("nvidia-l4", "nvidia-h100-80gb"):
        p = _plan({gpu}, model={"variant": "e2b"}, engine="vllm", serving={"kvCacheDtype": "fp8"})
        assert p.kv_cache_dtype == "fp8"


def test_auto_chooses_bf16_kv_on_ampere_and_fp8_on_hopper() -> None:
    ampere = _plan({"nvidia-a100-80gb"}, model={"variant": "e2b"}, engine="vllm")
    assert ampere.kv_cache_dtype == "bf16"
    assert "kv cache bf16: vllm keeps an fp8 KV cache for Gemma 4 only from compute capability 8.9 " \
        "(the Triton attention its head_dim 512 needs)" in ampere.notes
    hopper = _plan({"nvidia-h100-80gb"}, model={"variant": "e2b"}, engine="vllm")
    assert hopper.kv_cache_dtype == "fp8"


def test_llamacpp_8_bit_kv_cells_are_not_the_rule() -> None:
    # llama.cpp's q8_0 cells are its own kernels: the rule names vLLM only
    p = _plan({"nvidia-t4"}, model={"variant": "e2b"}, engine="llamacpp", serving={"kvCacheDtype": "fp8"})
    assert (p.engine, p.kv_cache_dtype) == ("llamacpp", "fp8")


# ---- vLLM on CPU: the true reason ---------------------------------------------------------------------------
def test_vllm_on_a_cpu_only_cluster_says_why_not() -> None:
    message = _refusal(set(), model={"variant": "e2b"}, engine="vllm")
    assert message == f"gemma-4-e2b does not fit on cpu (no GPU types present)\n- auto on cpu: {VLLM_CPU_MESSAGE}"


def test_llamacpp_serves_the_same_cpu_only_cluster() -> None:
    assert _plan(set(), model={"variant": "e2b"}).engine == "llamacpp"


# ---- GH200 (arm64 Hopper) -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("product", "accelerator"), [
    ("NVIDIA-GH200-480GB", "nvidia-gh200"), ("NVIDIA-GH200-144G-HBM3e", "nvidia-gh200-144gb")])
def test_gh200_nodes_are_recognised_by_their_gfd_product(product: str, accelerator: str) -> None:
    assert gfd_type(product, CATALOG) == accelerator


def test_gh200_plans_hopper_fp8_on_an_arm64_image() -> None:
    p = _plan({"nvidia-gh200"}, model={"variant": "31b"})
    assert (p.accelerator.name, p.arch, p.engine, p.quantization, p.kv_cache_dtype) == (
        "nvidia-gh200", "arm64", "vllm", "fp8", "fp8")
    assert "nvidia-gh200 nodes are arm64 (Grace): kubernetes.io/arch affinity and an arm64 image" in p.notes


# ---- llama.cpp on Gemma 4: sliding-window checkpoints bounded ------------------------------------------------
@pytest.mark.parametrize("accelerator", ["cpu", "nvidia-t4"])
def test_llamacpp_renders_its_context_checkpoints_bound(accelerator: str) -> None:
    types = set() if accelerator == "cpu" else {accelerator}
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": accelerator}})
    p = plan(spec, ClusterFacts(frozenset(types)), suggest=False)
    engine = registry()[p.engine]
    args = engine.container(p, spec).args
    assert engine.info.ctx_checkpoints == 0
    assert args[args.index("--ctx-checkpoints") + 1] == "0"


def test_vllm_renders_no_context_checkpoints_flag() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}})
    p = plan(spec, ClusterFacts(frozenset({"nvidia-l4"})), suggest=False)
    assert p.engine == "vllm" and "--ctx-checkpoints" not in registry()["vllm"].container(p, spec).args
