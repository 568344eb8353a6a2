"""LoRA adapter slots in the plan: the per-slot bytes against numbers derived by hand from vLLM 0.32's LoRA layer
code, the KV pool shrinking by exactly the slots, tensor-parallel sharding, targetModules, and what serving.lora
resolves to.

The derivations (per slot, BF16 = 2 bytes, rank r; vllm/lora/layers/base_linear.py create_lora_weights: lora_a is
[r, input] and lora_b [output, r] per output slice; column-parallel layers keep the input whole and shard the
output over TP, row-parallel layers the reverse, column_parallel_linear.py / row_parallel_linear.py; fused_moe.py:
per local expert 2 x [r, hidden] + 2 x [moe_mlp, r] for gate/up and [r, moe_mlp] + [hidden, r] for down).
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec, StorageSpec
from gemma4_operator.catalog import GIB, load_catalog
from gemma4_operator.cli.main import plan_table
from gemma4_operator.planner import lora
from gemma4_operator.planner.lora import AdapterFacts, LoraSlots
from gemma4_operator.planner.plan import ClusterFacts, PlanError
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import MEMORY_GIB_PER_GPU, Owner, render_children

CATALOG = load_catalog()
LAYOUT = CATALOG.engines["vllm"].lora
FACTS = ClusterFacts.every_catalog_type()
ADAPTERS = [{"name": "support", "uri": "hf://acme/support"}, {"name": "legal", "uri": "hf://acme/legal"}]
BF16 = 2


def _spec(variant: str, accel: str = "nvidia-h100-80gb", lora_spec: dict[str, Any] | None = None,
          adapters: list[dict[str, str]] | None = ADAPTERS, **serving: Any) -> Gemma4DeploymentSpec:
    model: dict[str, Any] = {"variant": variant, **({"adapters": adapters} if adapters else {})}
    return Gemma4DeploymentSpec.model_validate(
        {"model": model, "engine": "vllm", "accelerator": {"type": accel},
         "serving": {"maxModelLen": 8192, **serving, **({"lora": lora_spec} if lora_spec is not None else {})}})


def _slot(variant: str, rank: int = 16, tp: int = 1, *, ep: bool = False) -> dict[str, int]:
    return lora.slot_bytes_by_module(CATALOG.variants[variant], LAYOUT, rank, tp, ep)


def test_31b_slot_at_rank_16_tp_1_matches_the_hand_derivation() -> None:
    # hidden 5376, 32 heads; sliding layers: 16 KV heads x 256, full layers (every 6th: 10 of 60): 4 x 512;
    # MLP 21504. Per layer (elements):
    r, h, mlp = 16, 5376, 21504
    qkv_sliding = 3 * r * h + r * (32 * 256 + 2 * 16 * 256)  # 258048 + 262144
    qkv_full = 3 * r * h + r * (32 * 512 + 2 * 4 * 512)  # 258048 + 327680
    o_sliding, o_full = r * 32 * 256 + h * r, r * 32 * 512 + h * r  # row: input = q, output = hidden
    gate_up, down = 2 * r * h + r * 2 * mlp, r * mlp + h * r
    total = 50 * (qkv_sliding + o_sliding) + 10 * (qkv_full + o_full) + 60 * (gate_up + down)
    assert total == 123_617_280
    assert sum(_slot("31b").values()) == total * BF16 == 247_234_560  # 0.23 GiB, as the reference estimates
    assert _slot("31b")["qkv_proj"] == (50 * qkv_sliding + 10 * qkv_full) * BF16


def test_e2b_slot_counts_kv_shared_q_proj_double_wide_mlp_and_per_layer_inputs() -> None:
    # 35 layers, the last 20 share KV (only q_proj, MLP 2 x 6144 wide); 8 heads; hidden 1536; per-layer input 256
    r, h = 16, 1536
    slot = _slot("e2b")
    full = {4, 9, 14, 19, 24, 29, 34}  # every 5th, and the last
    q_shared = sum(r * h + r * 8 * (512 if i in full else 256) for i in range(15, 35))
    assert slot["q_proj"] == q_shared * BF16
    assert slot["gate_up_proj"] == (15 * (2 * r * h + r * 2 * 6144) + 20 * (2 * r * h + r * 2 * 12288)) * BF16
    assert slot["per_layer_input_gate"] == 35 * (r * h + 256 * r) * BF16  # replicated: hidden -> 256
    assert slot["per_layer_model_projection"] == (r * h + 35 * 256 * r) * BF16  # once: hidden -> 35 x 256
    assert "experts" not in slot and "proj" not in slot
    assert round(sum(slot.values()) / GIB, 3) == 0.049


def test_26b_expert_slots_dominate_and_expert_parallel_splits_them() -> None:
    # 30 layers x 128 experts x r x 3 x (hidden 2816 + moe_mlp 704)
    experts = 30 * 128 * 16 * 3 * (2816 + 704) * BF16
    slot = _slot("26b-a4b")
    assert slot["experts"] == experts
    assert slot["experts"] > 0.95 * sum(slot.values())
    assert slot["proj"] == 30 * (16 * 2816 + 128 * 16) * BF16  # the router's replicated gate
    assert _slot("26b-a4b", tp=2, ep=True)["experts"] == experts // 2  # 64 local experts, whole moe_mlp
    assert _slot("26b-a4b", tp=2, ep=False)["experts"] == 30 * 128 * 16 * 3 * (2816 + 352) * BF16


def test_tensor_parallel_shards_outputs_of_column_and_inputs_of_row_layers_only() -> None:
    r, h, mlp = 16, 5376, 21504
    tp2 = _slot("31b", tp=2)
    assert tp2["gate_up_proj"] == 60 * (2 * r * h + r * 2 * mlp // 2) * BF16  # lora_a keeps the whole hidden
    assert tp2["down_proj"] == 60 * (r * mlp // 2 + h * r) * BF16  # lora_b keeps the whole hidden
    # at TP 8 the 4 global KV heads are replicated: each GPU keeps one (512 wide) per K and V slice
    tp8 = _slot("31b", tp=8)
    qkv_full = 3 * r * h + r * (4 * 512 + 2 * 512)
    qkv_sliding = 3 * r * h + r * (4 * 256 + 2 * 2 * 256)
    assert tp8["qkv_proj"] == (50 * qkv_sliding + 10 * qkv_full) * BF16
    # less than linear: 8 GPUs hold more than an eighth each
    assert sum(tp8.values()) > sum(_slot("31b").values()) / 8


def test_rank_scales_slots_linearly() -> None:
    assert sum(_slot("e4b", rank=64).values()) == 4 * sum(_slot("e4b", rank=16).values())


@pytest.mark.parametrize("variant", ["e2b", "e4b", "26b-a4b", "31b"])
def test_kv_pool_shrinks_by_exactly_the_slots(variant: str) -> None:
    base = plan(_spec(variant, adapters=None), FACTS)
    with_lora = plan(_spec(variant, lora_spec={"maxActiveAdapters": 3, "cachedAdapters": 3}), FACTS)
    assert (base.accelerator, base.gpus_per_replica, base.quantization) == \
        (with_lora.accelerator, with_lora.gpus_per_replica, with_lora.quantization)
    tp, ep = with_lora.tensor_parallel_size, with_lora.expert_parallel
    slots_gib = 3 * sum(_slot(variant, tp=tp, ep=ep).values()) / GIB
    assert with_lora.memory.lora == round(slots_gib, 2)
    assert with_lora.memory_needed_gib - base.memory_needed_gib == pytest.approx(slots_gib, abs=1e-9)
    assert base.memory.kv_cache - with_lora.memory.kv_cache == pytest.approx(slots_gib, abs=0.1)
    assert with_lora.max_concurrency <= base.max_concurrency
    assert base.memory.lora is None and base.lora is None and base.to_status().lora is None
    # without adapters the status keeps its earlier shape: no lora keys at all
    dumped = base.to_status().model_dump(by_alias=True, mode="json")
    assert "lora" not in dumped and "lora" not in dumped["memoryGiB"]
    assert with_lora.to_status().model_dump(by_alias=True, mode="json")["memoryGiB"]["lora"] == with_lora.memory.lora


def test_target_modules_drop_the_expert_slots_and_the_note_says_what_they_would_save() -> None:
    every = plan(_spec("26b-a4b"), FACTS)
    dense = plan(_spec("26b-a4b", lora_spec={"targetModules": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}),
                 FACTS)
    tp, ep = every.tensor_parallel_size, every.expert_parallel
    slot = _slot("26b-a4b", tp=tp, ep=ep)
    assert every.memory.lora == round(2 * sum(slot.values()) / GIB, 2)
    assert dense.memory.lora == round(2 * (sum(slot.values()) - slot["experts"] - slot["proj"]) / GIB, 2)
    saving = next(n for n in every.notes if "would save" in n)
    assert f"would save {2 * slot['experts'] / GIB:.2f} GiB per GPU" in saving
    assert not any("would save" in n for n in dense.notes)
    assert not any("would save" in n for n in plan(_spec("31b"), FACTS).notes)  # dense: nothing dominates


def test_packed_names_select_the_packed_layer_as_vllm_matches_them() -> None:
    assert lora.targeted("qkv_proj", ["q_proj"]) and lora.targeted("gate_up_proj", ["up_proj"])
    assert lora.targeted("q_proj", ["qkv_proj"])  # the kv-shared layers' q_proj is qkv_proj's child
    assert not lora.targeted("experts", ["qkv_proj", "o_proj"]) and lora.targeted("experts", [])


def test_an_unknown_target_module_is_refused_in_words() -> None:
    with pytest.raises(PlanError) as refused:
        plan(_spec("31b", lora_spec={"targetModules": ["q_proj", "lm_head"]}), FACTS)
    assert "serving.lora.targetModules ['lm_head'] name no layer vLLM wraps on Gemma 4" in refused.value.message


def test_unset_fields_are_derived_from_the_adapters_and_the_preflight() -> None:
    many = [{"name": f"a{i}", "uri": f"hf://acme/a{i}"} for i in range(6)]
    slots = lora.resolve(_spec("31b", adapters=many), AdapterFacts(ranks=(8, 24), refused=frozenset({"a5"})))
    assert slots == LoraSlots(adapters=("a0", "a1", "a2", "a3", "a4"), max_rank=32, active=4, cached=5,
                              target_modules=(), towers=False)
    assert lora.resolve(_spec("31b"), AdapterFacts()) == LoraSlots(("support", "legal"), 16, 2, 2, (), False)
    assert lora.resolve(_spec("31b", adapters=None), AdapterFacts()) is None
    assert lora.resolve(_spec("31b", adapters=ADAPTERS[:1]), AdapterFacts(refused=frozenset({"support"}))) is None
    assert [lora.ladder_rank(r) for r in (1, 2, 16, 17, 300, 512, 1024)] == [1, 8, 16, 32, 320, 512, 512]


def test_status_shows_the_resolved_slots() -> None:
    status = plan(_spec("e4b", lora_spec={"maxRank": 64, "cachedAdapters": 8}), FACTS).to_status()
    assert status.lora is not None and status.memory_gib.lora is not None and status.memory_gib.lora > 0
    assert (status.lora.max_rank, status.lora.max_active_adapters, status.lora.cached_adapters) == (64, 2, 8)


def test_the_adapter_cache_is_added_to_the_pods_memory_request() -> None:
    # hf:// adapters fetched by the download Job into the cache PVC
    spec = _spec("31b", lora_spec={"cachedAdapters": 16}).model_copy(
        update={"storage": StorageSpec.model_validate({"modelCache": {}})})
    p = plan(spec, FACTS)
    whole_slot = sum(_slot("31b").values())
    assert p.lora_host_gib == pytest.approx(16 * whole_slot * p.tensor_parallel_size / GIB, abs=0.1)
    deployment = next(o for o in render_children(Owner("chat", "ml", "uid"), spec, p) if o["kind"] == "Deployment")
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    want = MEMORY_GIB_PER_GPU * p.gpus_per_replica + math.ceil(p.lora_host_gib)
    assert p.lora_host_gib > 0 and container["resources"]["requests"]["memory"] == f"{want}Gi"


def test_the_cli_plan_table_shows_the_slots_beside_the_kv_pool() -> None:
    spec = _spec("26b-a4b")
    d = Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                         "metadata": {"name": "chat"}, "spec": spec.model_dump(by_alias=True)})
    p = plan(spec, FACTS)
    assert p.memory.lora is not None
    table = plan_table(d, p, "every catalog type")
    assert f"    lora slots      {p.memory.lora:>8.1f}" in table
    assert "lora slots" not in plan_table(d, plan(_spec("26b-a4b", adapters=None), FACTS), "every catalog type")
