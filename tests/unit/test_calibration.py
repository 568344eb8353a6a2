"""The planner reproduces every published Gemma 4 start-up log in catalog/measurements.yaml.

Tolerances (README "Calibration" states the same):
- weights: the catalog's load for the row's checkpoint equals vLLM's `Model loading took` to the log's two decimals;
- KV arithmetic: from the logged available KV memory, the planner's per-request reservation gives vLLM's logged
  maximum concurrency to its two decimals, and its token count to within one block per KV-cache group;
- runtime overhead: CUDA's total x gpu_memory_utilization - logged weights - the fitted overhead is the logged
  available KV memory within 0.1 GiB (where a row logs no available memory, the one its token count implies).
The expected numbers are the logs', never the functions under test: a wrong coefficient, capacity, formula or row
moves a prediction off its log.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import GIB, Accelerator, RuntimeOverhead, VariantInfo, load_catalog
from gemma4_operator.catalog.measurements import LlamaCppMeasurement, VllmMeasurement, load_measurements
from gemma4_operator.engines import llamacpp, vllm
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan

CATALOG = load_catalog()
ROWS = load_measurements()
VLLM = CATALOG.engines["vllm"]
OVERHEAD_TOLERANCE_GIB = 0.1
LOGGED_DECIMALS = 0.01  # vLLM logs GiB and concurrency with two decimals
MIB = 1024**2


def _ids(rows: tuple[Any, ...]) -> list[str]:
    return [r.id for r in rows]


def _overhead() -> RuntimeOverhead:
    assert VLLM.runtime_overhead is not None
    return VLLM.runtime_overhead


def _page_and_groups(variant: VariantInfo, kv_dtype: str, tp: int) -> tuple[float, int, int]:
    """vLLM's KV-cache layout for Gemma 4, as the log's numbers need it (vllm/v1/core/kv_cache_utils.py): one page
    size for both layer types (the larger one's 16-token page), layers grouped by type into groups of as many
    layers as there are full-attention layers; (page bytes, layers per group, groups)."""
    sliding, full = variant.kv_layer_counts
    per_element = CATALOG.engines["vllm"].kv_bytes_per_element[kv_dtype]
    sliding_token = 2 * max(variant.kv_heads // tp, 1) * variant.head_dim * per_element
    full_token = 2 * max(variant.global_kv_heads // tp, 1) * variant.global_head_dim * per_element
    return max(sliding_token, full_token) * VLLM.block_size, full, sliding // full + 1


def _reservation(row: VllmMeasurement) -> float:
    assert row.kv_cache_dtype is not None
    return vllm.kv_reservation_per_gpu(
        CATALOG.variants[row.variant], row.max_model_len, VLLM.kv_bytes_per_element[row.kv_cache_dtype],
        row.tensor_parallel, row.max_num_batched_tokens * row.in_flight_batches, VLLM.block_size)


def _logged_available_gib(row: VllmMeasurement) -> float:
    """The row's logged available KV memory, or (0.19's per-group token count) the blocks its tokens imply."""
    if row.available_kv_gib is not None:
        return row.available_kv_gib
    assert row.kv_tokens is not None and row.kv_tokens_reporting == "per_group_blocks" and row.kv_cache_dtype
    page, per_group, groups = _page_and_groups(CATALOG.variants[row.variant], row.kv_cache_dtype, row.tensor_parallel)
    return row.kv_tokens // VLLM.block_size * groups * page * per_group / GIB


KV_ROWS = [r for r in ROWS.vllm if r.available_kv_gib is not None and r.max_concurrency is not None]
FIT_ROWS = [r for r in ROWS.vllm if r.accelerator is not None and (r.available_kv_gib or r.kv_tokens)]


def test_the_table_has_rows_for_each_check() -> None:
    assert len(ROWS.vllm) >= 4 and len(ROWS.llamacpp) >= 1
    assert KV_ROWS and len(FIT_ROWS) >= 3
    assert all(r.source.startswith("https://") for r in (*ROWS.vllm, *ROWS.llamacpp))


@pytest.mark.parametrize("row", ROWS.vllm, ids=_ids(ROWS.vllm))
def test_catalog_weights_are_the_logged_load(row: VllmMeasurement) -> None:
    checkpoint = CATALOG.checkpoint(row.variant, row.instruction_tuned, row.weights_format, "vllm")
    assert checkpoint is not None and checkpoint.resident_bytes is not None
    assert abs(checkpoint.resident_bytes / GIB / row.tensor_parallel - row.weights_gib) <= LOGGED_DECIMALS / 2


@pytest.mark.parametrize("row", KV_ROWS, ids=_ids(tuple(KV_ROWS)))
def test_kv_reservation_gives_the_logged_concurrency_and_tokens(row: VllmMeasurement) -> None:
    assert row.kv_cache_dtype is not None and row.available_kv_gib is not None and row.max_concurrency is not None
    page, per_group, groups = _page_and_groups(CATALOG.variants[row.variant], row.kv_cache_dtype, row.tensor_parallel)
    blocks = math.floor(row.available_kv_gib * GIB / (page * per_group))
    concurrency = blocks * page * per_group / _reservation(row)
    assert abs(concurrency - row.max_concurrency) <= LOGGED_DECIMALS / 2 + 1e-9
    if row.kv_tokens is not None and row.kv_tokens_reporting == "per_group_blocks":
        # available memory logged to 0.01 GiB: a few blocks either way, at most one per group in the count
        assert abs(blocks // groups * VLLM.block_size - row.kv_tokens) <= VLLM.block_size


@pytest.mark.parametrize("row", [r for r in ROWS.vllm if r.kv_tokens_reporting == "concurrency_x_length"],
                         ids=lambda r: r.id)
def test_newer_vllm_reports_tokens_as_concurrency_times_length(row: VllmMeasurement) -> None:
    assert row.kv_tokens is not None and row.max_concurrency is not None
    assert round(row.kv_tokens / row.max_model_len, 2) == row.max_concurrency


def _accelerator(row: VllmMeasurement) -> Accelerator:
    assert row.accelerator is not None
    return CATALOG.accelerators[row.accelerator]


@pytest.mark.parametrize("row", FIT_ROWS, ids=_ids(tuple(FIT_ROWS)))
def test_fitted_overhead_reproduces_the_logged_available_kv_memory(row: VllmMeasurement) -> None:
    accel, variant = _accelerator(row), CATALOG.variants[row.variant]
    assert row.gpu_memory_utilization is not None and VLLM.max_num_batched_tokens is not None
    overhead = _overhead().gib(variant, batch_tokens=row.max_num_batched_tokens,
                               max_num_seqs=VLLM.max_num_batched_tokens.seqs_for_accelerator(accel),
                               cuda_graphs=row.cuda_graphs, multimodal=row.multimodal)
    predicted = accel.capacity_gib * row.gpu_memory_utilization - row.weights_gib - overhead
    assert abs(predicted - _logged_available_gib(row)) <= OVERHEAD_TOLERANCE_GIB


def test_overhead_is_not_one_constant() -> None:
    """What drives it moves it: the GPU's batch tier, the variant, CUDA graphs and the encoders."""
    e4b, w31b = CATALOG.variants["e4b"], CATALOG.variants["31b"]
    small = {"batch_tokens": 2048, "max_num_seqs": 256, "cuda_graphs": True, "multimodal": True}
    large = {**small, "batch_tokens": 8192, "max_num_seqs": 1024}
    o = _overhead()
    assert o.gib(e4b, **large) - o.gib(e4b, **small) > 1.0
    assert o.gib(w31b, **small) > o.gib(e4b, **small)
    assert o.gib(e4b, **{**small, "cuda_graphs": False}) == pytest.approx(o.gib(e4b, **small) - o.cuda_graphs_gib)
    assert o.gib(e4b, **{**small, "multimodal": False}) < o.gib(e4b, **small) - 0.3


@pytest.mark.parametrize("row", ROWS.llamacpp, ids=_ids(ROWS.llamacpp))
def test_llamacpp_kv_is_the_logged_cache(row: LlamaCppMeasurement) -> None:
    variant = CATALOG.variants[row.variant]
    sliding, full = variant.kv_layer_counts
    assert full == row.full_layers
    per_element = CATALOG.engines["llamacpp"].kv_bytes_per_element[row.kv_cache_dtype]
    sliding_cell = 2 * variant.kv_heads * variant.head_dim * per_element
    logged = row.full_kv_mib * MIB + sliding * sliding_cell * row.swa_cells
    assert llamacpp.kv_bytes(variant, row.n_ctx // row.n_seq, row.n_seq, per_element, row.ubatch) == logged


# vllm-project/recipes Google/Gemma4.md: E2B and E4B on one 24 GB GPU (`vllm serve google/gemma-4-E4B-it
# --max-model-len 131072`), 26B-A4B on one 80 GB GPU at 32768, 31B with --tensor-parallel-size 2 at 32768.
RECIPES = [
    *[(v, a, 131072, None) for v in ("e2b", "e4b") for a in ("nvidia-l4", "nvidia-a10g")],
    ("26b-a4b", "nvidia-h100-80gb", 32768, None), ("26b-a4b", "nvidia-a100-80gb", 32768, None),
    ("31b", "nvidia-h100-80gb", 32768, 2), ("31b", "nvidia-a100-80gb", 32768, 2),
]


@pytest.mark.parametrize(("variant", "accelerator", "length", "count"), RECIPES,
                         ids=[f"{v}-{a}-{n or 1}" for v, a, _, n in RECIPES])
def test_recipe_deployments_plan_on_the_recipes_gpus(variant: str, accelerator: str, length: int,
                                                     count: int | None) -> None:
    spec = Gemma4DeploymentSpec.model_validate({
        "model": {"variant": variant}, "quantization": "bf16", "engine": "vllm",
        "accelerator": {"type": accelerator, **({"count": count} if count else {})},
        "serving": {"maxModelLen": length, "concurrency": 1, "kvCacheDtype": "bf16"}})
    p = plan(spec, ClusterFacts(frozenset({accelerator})), CATALOG, suggest=False)
    assert p.gpus_per_replica == (count or 1)


def test_plans_use_the_memory_cuda_reports() -> None:
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}})
    p = plan(spec, ClusterFacts(frozenset({"nvidia-l4"})), CATALOG, suggest=False)
    accel = CATALOG.accelerators["nvidia-l4"]
    assert p.memory.capacity == round(accel.capacity_gib, 1) < accel.memory_gib
    assert all(a.cuda_total_mib and a.cuda_total_source for a in CATALOG.accelerators.values())


def test_enforce_eager_in_extra_args_drops_the_cuda_graph_pool() -> None:
    def overhead(extra: list[str]) -> float:
        spec = Gemma4DeploymentSpec.model_validate({
            "model": {"variant": "26b-a4b"}, "quantization": "bf16", "accelerator": {"type": "nvidia-a100-80gb"},
            "serving": {"maxModelLen": 131072, "extraArgs": extra}})
        return plan(spec, ClusterFacts(frozenset({"nvidia-a100-80gb"})), CATALOG, suggest=False).memory.overhead

    # the myoceane row's deployment: vLLM profiled 1.39 GiB of overhead with --enforce-eager
    assert overhead(["--enforce-eager"]) == 1.4
    assert overhead([]) == round(1.387 + _overhead().cuda_graphs_gib, 1)
