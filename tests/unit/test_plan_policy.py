"""`quantization: auto` and `accelerator.type: auto` pick the cheapest plan that keeps quality.

Rank (planner.select.rank): formats at the catalog's quality floor (near-lossless) before lossy ones;
then the lowest hourly cost per replica (GPUs x the catalog's indicative price, catalog/prices.yaml);
then a format the GPU computes in natively; then the engine's own preference; then KV headroom.
Each case says why its answer is right; prices are the catalog's unless the case gives its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.planner.plan import ClusterFacts, Plan, PlanError
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()


def spec(**fields: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate(fields)


def only(*types: str) -> ClusterFacts:
    return ClusterFacts(frozenset(types))


@pytest.mark.parametrize(("case", "variant", "types", "expected", "why"), [
    # 31B on an A10G-only cluster: a ladder took 8x bf16; Google's QAT int4 (near-lossless, trained for
    # int4: huggingface.co/google/gemma-4-31B-it-qat-w4a16-ct) holds it on half the GPUs
    ("31b-a10g", "31b", ("nvidia-a10g",), ("int4", "vllm", 4), "2.0x the cost"),
    # E4B on A10G: a ladder took 2x bf16; int4 (vLLM, near-lossless) fits one A10G, and so does q8_0
    # on llama.cpp at the same cost, where vLLM (first in engines.yaml) is preferred
    ("e4b-a10g", "e4b", ("nvidia-a10g",), ("int4", "vllm", 1), "same cost, vllm prefers int4"),
    # 26B-A4B on L4: the only 1-GPU plan is q4_k_m, a lossy post-training 4-bit GGUF (llama.cpp's own
    # quantization table): below the floor while 2x fp8 (near-lossless, native on Ada) fits
    ("26b-l4", "26b-a4b", ("nvidia-l4",), ("fp8", "vllm", 2), "below the near-lossless quality floor"),
    # Hopper: fp8 is native (FP8 tensor cores, compute capability >= 8.9) and fits one H100; bf16 needs two
    ("31b-h100", "31b", ("nvidia-h100-80gb",), ("fp8", "vllm", 1), "2.0x the cost"),
    # Blackwell: nvfp4, fp8 and bf16 all fit one B200 at the same cost; nvfp4 is computed natively and
    # first in vLLM's order (nvidia/Gemma-4-31B-IT-NVFP4, ModelOpt, near-lossless)
    ("31b-b200", "31b", ("nvidia-b200",), ("nvfp4", "vllm", 1), "same cost, vllm prefers nvfp4"),
    # CPU: q8_0 (near-lossless) and bf16 cost the same pod; llama.cpp's order prefers the smaller q8_0
    ("e2b-cpu", "e2b", (), ("q8_0", "llamacpp", 0), "same cost, llamacpp prefers q8_0"),
])
def test_auto_picks_the_cheapest_plan_at_the_quality_floor(case: str, variant: str, types: tuple[str, ...],
                                                           expected: tuple[str, str, int], why: str) -> None:
    p = plan(spec(model={"variant": variant}), only(*types))
    assert (p.quantization, p.engine, p.gpus_per_replica) == expected, case
    assert any(why in a for a in p.alternatives), p.alternatives
    assert p.cost_per_replica_hour == pytest.approx(
        CATALOG.price(p.accelerator.name) * max(1, p.gpus_per_replica), abs=0.01)


def test_a_lossy_format_only_when_nothing_at_the_floor_fits_and_the_plan_says_so() -> None:
    # 31B on one L4 (22.5 GB): no near-lossless format fits (int4 ~19 GiB + vLLM's overhead), the
    # 18.7 GB q4_k_m GGUF (huggingface.co/ggml-org/gemma-4-31B-it-GGUF) does at 8K x 1
    p = plan(spec(model={"variant": "31b"}, accelerator={"type": "nvidia-l4", "count": 1},
                  serving={"maxModelLen": 8192, "concurrency": 1}), only("nvidia-l4"))
    assert p.quantization == "q4_k_m"
    assert any("lossy" in n and "no near-lossless or better format fits" in n for n in p.notes), p.notes


def test_kv_cache_auto_takes_8_bit_cells_on_llamacpp_when_f16_does_not_fit() -> None:
    # 26B-A4B q4_k_m on one L4 at 64K x 2: f16 KV cells do not fit the 22.5 GB card, q8_0 cells (half) do
    args: dict[str, Any] = {"model": {"variant": "26b-a4b"}, "quantization": "q4_k_m",
                            "accelerator": {"type": "nvidia-l4"}, "serving": {"maxModelLen": 65536, "concurrency": 2}}
    p = plan(spec(**args), only("nvidia-l4"))
    assert (p.engine, p.kv_cache_dtype) == ("llamacpp", "fp8")
    assert any("bf16 does not fit" in n for n in p.notes)
    with pytest.raises(PlanError):
        plan(spec(**{**args, "serving": {**args["serving"], "kvCacheDtype": "bf16"}}), only("nvidia-l4"))


def test_a_plan_within_the_engines_start_up_variance_is_refused() -> None:
    # 31B BF16 (58.9 GiB as vLLM loads it) on 1x H100 at 35328 x 1 with FP8 KV fits by 0.1 GiB of the fitted
    # overhead: less than the start-up margin, so vLLM could refuse to start
    one = spec(model={"variant": "31b"}, quantization="bf16", accelerator={"type": "nvidia-h100-80gb", "count": 1},
               serving={"maxModelLen": 35328, "concurrency": 1})
    with pytest.raises(PlanError, match=r"fits by only 0\.\d GiB per GPU, less than vLLM's start-up variance"):
        plan(one, only("nvidia-h100-80gb"))
    two = plan(one.model_copy(update={"accelerator": one.accelerator.model_copy(update={"count": 0})}),
               only("nvidia-h100-80gb"))
    assert two.gpus_per_replica == 2


def test_the_plan_shows_its_cost_and_runners_up_in_status() -> None:
    status = plan(spec(model={"variant": "31b"}), only("nvidia-h100-80gb")).to_status().model_dump(by_alias=True)
    assert status["costPerReplicaHour"] == pytest.approx(CATALOG.price("nvidia-h100-80gb"))
    assert status["alternatives"] and all(": " in a for a in status["alternatives"])


GPU_TYPES = sorted(CATALOG.gpu_types)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variant=st.sampled_from(sorted(CATALOG.variants)),
       types=st.sets(st.sampled_from(GPU_TYPES), min_size=1, max_size=3),
       max_len=st.sampled_from([8192, 32768, 131072]), concurrency=st.sampled_from([1, 4, 8]))
def test_no_feasible_plan_at_the_floor_is_cheaper_than_the_chosen_one(variant: str, types: set[str], max_len: int,
                                                                     concurrency: int) -> None:
    serving = {"maxModelLen": min(max_len, CATALOG.variants[variant].context_length), "concurrency": concurrency}
    try:
        chosen = plan(spec(model={"variant": variant}, serving=serving), only(*types), suggest=False)
    except PlanError:
        return
    below_floor = CATALOG.below_floor(chosen.quantization)
    for accel in types:
        for fmt in CATALOG.formats:
            if CATALOG.below_floor(fmt) and not below_floor:
                continue
            try:
                other: Plan = plan(spec(model={"variant": variant}, serving=serving, quantization=fmt,
                                        accelerator={"type": accel}), only(*types), suggest=False)
            except PlanError:
                continue
            assert other.cost_per_replica_hour >= chosen.cost_per_replica_hour, (
                f"{fmt} on {other.gpu_label} costs {other.cost_per_replica_hour}, chosen "
                f"{chosen.quantization} on {chosen.gpu_label} costs {chosen.cost_per_replica_hour}")
