"""Catalog facts that change plans: vLLM's batch-token default per GPU, published resident sizes,
checkpoint ids, and the accelerator rows (whole GPUs, MIG slices)."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import GIB, load_catalog
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines import vllm
from gemma4_operator.planner.plan import ClusterFacts, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
ALL_TYPES = ClusterFacts.every_catalog_type()


def spec(**fields: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate(fields)


def vllm_engine() -> vllm.Engine:
    e = engine_named("vllm")
    assert isinstance(e, vllm.Engine)
    return e


# vLLM v0.32.0 EngineArgs.get_batch_defaults, UsageContext.OPENAI_API_SERVER: >= 160 GiB -> 16384;
# >= 70 GiB and "a100" not in the device name -> 8192; otherwise 2048.
@pytest.mark.parametrize(("accelerator", "tokens"), [
    ("nvidia-t4", 2048),
    ("nvidia-l4", 2048),
    ("nvidia-l40s", 2048),
    ("nvidia-a100-40gb", 2048),
    ("nvidia-a100-80gb", 2048),       # >= 70 GiB but an A100: vLLM keeps 2048 (vllm PR #17885)
    ("nvidia-h100-80gb", 8192),
    ("nvidia-h200", 8192),
    ("nvidia-rtx-pro-6000", 8192),
    ("nvidia-b200", 16384),
    ("nvidia-gb200", 16384),
    ("nvidia-gb300", 16384),
])
def test_vllm_batch_tokens_follow_vllms_api_server_default(accelerator: str, tokens: int) -> None:
    accel = CATALOG.accelerator(accelerator)
    assert accel is not None
    assert vllm_engine().batch_tokens(accel) == tokens


def test_every_a100_type_is_named_so_the_a100_exception_applies() -> None:
    # vLLM tests the CUDA device name; the catalog rule tests the type name, so every type whose GFD
    # product is an A100 must carry "a100" in its name.
    for accel in CATALOG.accelerators.values():
        if any("A100" in product for product in accel.gfd_products):
            assert "a100" in accel.name, accel.name


@pytest.mark.parametrize(("accelerator", "concurrency", "gpus", "tokens"), [
    # 2048 batched tokens (two batches in flight): a 32768-token request reserves 6.42 GiB of BF16 KV (A100
    # has no FP8), and the 10.1 GiB left after 58.9 GiB of weights and 2.3 GiB overhead holds one. At 8192 it
    # would reserve 15.79 GiB, which does not fit: the planner would ask for two GPUs.
    ("nvidia-a100-80gb", 1, 1, 2048),
    ("nvidia-a100-80gb", 2, 2, 2048),
    ("nvidia-h100-80gb", 1, 1, 8192),  # FP8 KV on Hopper: 7.90 GiB per request
])
def test_31b_bf16_at_32k_on_80gb_gpus(accelerator: str, concurrency: int, gpus: int, tokens: int) -> None:
    p = plan(spec(model={"variant": "31b"}, quantization="bf16", accelerator={"type": accelerator},
                  serving={"maxModelLen": 32768, "concurrency": concurrency}), ALL_TYPES)
    assert (p.engine, p.gpus_per_replica, p.max_num_batched_tokens) == ("vllm", gpus, tokens)
    per_seq = vllm_engine().kv_reservation(CATALOG.variants["31b"], p.accelerator, 32768, p.kv_cache_dtype,
                                           gpus) / GIB
    assert p.concurrency * per_seq <= p.memory.kv_cache + 0.05


# ---------------------------------------------------------------------------------------
# resident weights
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("instruction_tuned", [True, False])
def test_31b_fp8_resident_weights_are_the_observed_31_49_gib(instruction_tuned: bool) -> None:
    # vLLM's "model loading" memory for 31B FP8 (https://huggingface.co/LargitData/gemma-4-31b-it-fp8): the
    # bytes-per-parameter estimate (31.0 GiB) left room for one more sequence than the GPU holds.
    checkpoint = CATALOG.checkpoint("31b", instruction_tuned, "fp8", "vllm")
    assert checkpoint is not None and checkpoint.resident_bytes is not None
    weights, estimated = vllm_engine().weight_bytes(CATALOG.variants["31b"], CATALOG.formats["fp8"], checkpoint)
    assert not estimated
    assert weights / GIB == pytest.approx(31.49, abs=0.05)


def test_31b_fp8_plan_uses_the_observed_weights() -> None:
    p = plan(spec(model={"variant": "31b"}, quantization="fp8", accelerator={"type": "nvidia-h100-80gb"},
                  serving={"maxModelLen": 32768, "speculativeDecoding": {"mode": "off"}}), ALL_TYPES)
    assert p.memory.weights == pytest.approx(31.49, abs=0.05)


# ---------------------------------------------------------------------------------------
# checkpoint ids
# ---------------------------------------------------------------------------------------


def test_no_qat_w4a16_checkpoint_of_the_moe() -> None:
    # Google's w4a16-ct QAT repos cover E2B, E4B and 31B; google/gemma-4-26B-A4B-it-qat-w4a16-ct does not exist.
    assert CATALOG.checkpoint("26b-a4b", True, "int4", "vllm") is None
    assert all("26B-A4B-it-qat-w4a16" not in c.repo for c in CATALOG.checkpoints)
    with pytest.raises(PlanError, match="no int4 checkpoint of gemma-4-26b-a4b"):
        plan(spec(model={"variant": "26b-a4b"}, quantization="int4", accelerator={"type": "nvidia-l4"}), ALL_TYPES)


# ---------------------------------------------------------------------------------------
# accelerators: new whole GPUs, MIG slices
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "memory_mib", "compute", "family"), [
    ("nvidia-h100-nvl", 95830, "9.0", "hopper"),
    ("nvidia-b300", 275040, "10.3", "blackwell"),
    ("nvidia-rtx-5090", 32607, "12.0", "blackwell"),
    ("nvidia-a100-80gb-mig-1g.10gb", 9728, "8.0", "ampere"),
    ("nvidia-a100-80gb-mig-3g.40gb", 40192, "8.0", "ampere"),
    ("nvidia-h100-80gb-mig-1g.10gb", 9984, "9.0", "hopper"),
    ("nvidia-h100-80gb-mig-3g.40gb", 40448, "9.0", "hopper"),
])
def test_new_accelerator_rows(name: str, memory_mib: int, compute: str, family: str) -> None:
    accel = CATALOG.accelerator(name)
    assert accel is not None
    assert (accel.memory_mib, accel.compute, accel.family) == (memory_mib, compute, family)


def test_mig_types_request_their_own_resource_one_slice_per_replica() -> None:
    for accel in CATALOG.accelerators.values():
        if not accel.is_mig:
            assert accel.resource == "nvidia.com/gpu" and accel.gfd_product_label == "nvidia.com/gpu.product"
            continue
        profile = accel.resource.removeprefix("nvidia.com/mig-")
        assert accel.name.endswith(f"-mig-{profile}")
        assert accel.gfd_product_label == f"nvidia.com/mig-{profile}.product"
        assert all(p.endswith(f"-MIG-{profile}") for p in accel.gfd_products)
        assert accel.max_per_replica == 1 and accel.max_gpus_per_replica == 1
        assert vllm_engine().gpu_counts(CATALOG.variants["31b"], accel) == [1]


def _render(**fields: Any) -> dict[str, Any]:
    from gemma4_operator.render.children import Owner, render_children

    s = spec(**fields)
    objs = {o["kind"]: o for o in render_children(Owner("chat", "ml", ""), s, plan(s, ALL_TYPES))}
    pod: dict[str, Any] = objs["Deployment"]["spec"]["template"]["spec"]
    return pod


def test_a_mig_slice_is_requested_by_its_resource_and_its_profile_product() -> None:
    pod = _render(model={"variant": "e4b"}, accelerator={"type": "nvidia-a100-80gb-mig-3g.40gb"})
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/mig-3g.40gb": "1"}
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [
        {"key": "nvidia.com/mig-3g.40gb.product", "operator": "In",
         "values": ["NVIDIA-A100-SXM4-80GB-MIG-3g.40gb", "NVIDIA-A100-80GB-PCIe-MIG-3g.40gb"]},
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]


def test_what_needs_more_than_one_slice_is_refused_not_tensor_parallel() -> None:
    # 31B BF16 (58 GiB) cannot span MIG slices: no tensor parallel across them.
    with pytest.raises(PlanError):
        plan(spec(model={"variant": "31b"}, quantization="bf16",
                  accelerator={"type": "nvidia-h100-80gb-mig-3g.40gb"}), ALL_TYPES)
    p = plan(spec(model={"variant": "31b"}, quantization="int4", accelerator={"type": "nvidia-h100-80gb-mig-3g.40gb"},
                  serving={"maxModelLen": 8192, "concurrency": 2}), ALL_TYPES)
    assert p.gpus_per_replica == 1 and p.max_num_batched_tokens == 2048  # a 39.5 GiB slice: vLLM's small default
