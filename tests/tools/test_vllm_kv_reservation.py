"""The planner's KV bytes per request equal vLLM 0.32.0's own start-up reservation, byte for byte.

vLLM's sizing code (vllm/v1/core/kv_cache_utils.py and the KV-cache specs in vllm/v1/kv_cache_interface.py) runs
in the vLLM venv on per-layer specs built from each variant's architecture numbers in our catalog; see
vllm_kvcheck.py. Every variant x KV dtype x length x tensor-parallel size x vLLM batch-token default the planner
can choose is compared for equality: a dropped sliding-window block, a block rounding or a wrong in-flight batch
count is off by at least one block of one layer.
"""

from __future__ import annotations

import itertools

import pytest

from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines import vllm
from tests.tools.vllm_kvreservation import KvCase, vllm_kv_reservations

pytestmark = pytest.mark.slow

CATALOG = load_catalog()
# Below the smallest window, between windows, powers of two, unaligned to any block, and the longest contexts
LENGTHS = (500, 1000, 4096, 8192, 32768, 33001, 100000, 131072, 262144)


def _engine() -> vllm.Engine:
    e = engine_named("vllm")
    assert isinstance(e, vllm.Engine)
    return e


def _grid() -> list[tuple[KvCase, float]]:
    """(case, the planner's bytes) for every combination; one GPU type per distinct batch-token default."""
    e = _engine()
    gpus = [a for a in CATALOG.accelerators.values()
            if a.is_gpu and a.compute_capability >= e.info.devices.gpu_min_compute_capability]
    by_batch = {e.batch_tokens(a): a for a in sorted(gpus, key=lambda a: a.name)}
    cases = []
    for variant, kv_dtype, length, (batch, accel) in itertools.product(
            CATALOG.variants.values(), e.info.kv_bytes_per_element, LENGTHS, sorted(by_batch.items())):
        if length > variant.context_length:
            continue
        for tp in variant.valid_tensor_parallel_sizes(accel.max_per_node):
            case = KvCase(variant, kv_dtype, length, tp, batch)
            cases.append((case, e.kv_reservation(variant, accel, length, kv_dtype, tp)))
    return cases


def test_planner_kv_reservation_equals_vllms_own_for_every_planned_shape() -> None:
    grid = _grid()
    assert len(grid) > 500, "every variant x dtype x length x TP x batch default"
    results = vllm_kv_reservations([case for case, _ in grid])
    info = _engine().info
    mismatches = []
    for (case, ours), theirs in zip(grid, results, strict=True):
        assert theirs.block_size == info.block_size, "the catalog's block size is vLLM's default"
        assert theirs.in_flight_tokens == case.max_num_batched_tokens * info.in_flight_batches
        if ours != theirs.bytes:
            mismatches.append(f"{case.variant.name} {case.kv_cache_dtype} L={case.max_model_len} "
                              f"tp={case.tensor_parallel_size} mnbt={case.max_num_batched_tokens}: ours {ours:.0f}, "
                              f"vLLM {theirs.bytes} ({'; '.join(theirs.groups)})")
    assert mismatches == [], f"{len(mismatches)} of {len(grid)} differ:\n" + "\n".join(mismatches[:20])
