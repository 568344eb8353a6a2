"""LoRA adapter slots as memory: what serving.lora resolves to, and the bytes its slots take per GPU.

An engine that preallocates adapter slots (vLLM: `--max-loras` slots of `--max-lora-rank` on every wrapped layer,
created at load before the KV profile) describes the layers it wraps in its catalog row (``lora``: name, where the
layer exists, how tensor parallelism splits it, its input and output slices); the arithmetic here is the same for
every layer: per slot, ``rank x input`` for each slice's lora_a plus ``output x rank`` for its lora_b, input and
output taken whole or per GPU as the layer's parallel kind says. The sources of each shape are in engines.yaml.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gemma4_operator.api import Gemma4DeploymentSpec, LoraSpec
from gemma4_operator.api.adapters import MAX_LORA_RANKS
from gemma4_operator.catalog import GIB, LoraLayout, LoraModule, VariantInfo

DEFAULT_RANK = 16  # vLLM's --max-lora-rank default (vllm/config/lora.py line 33), until the adapters are read
DEFAULT_ACTIVE_CAP = 4  # derived maxActiveAdapters: the adapters, at most this many slots
# vLLM packs these checkpoint modules into one layer (gemma4.py Gemma4ForCausalLM.packed_modules_mapping); a
# --lora-target-modules entry naming either side selects the layer (vllm/lora/utils.py is_in_target_modules)
PACKED = {"qkv_proj": ("q_proj", "k_proj", "v_proj"), "gate_up_proj": ("gate_proj", "up_proj")}


@dataclass(frozen=True)
class AdapterFacts:
    """What the adapters' preflight learned, as a plan input: their ranks (r and every rank_pattern value) and
    whether any targets the vision or audio towers (vLLM serves those only with --enable-tower-connector-lora)."""

    ranks: tuple[int, ...] = ()
    towers: bool = False
    refused: frozenset[str] = frozenset()  # adapters the preflight refused: not served, the others still are


@dataclass(frozen=True)
class LoraSlots:
    """serving.lora with what was derived: the engine's flags and the memory they cost."""

    adapters: tuple[str, ...]  # the names served (spec order, refused ones left out)
    max_rank: int
    active: int  # GPU slots (--max-loras)
    cached: int  # host cache (--max-cpu-loras)
    target_modules: tuple[str, ...]  # empty: every layer the engine wraps
    towers: bool


def ladder_rank(rank: int) -> int:
    """The smallest of vLLM's --max-lora-rank values at or above ``rank`` (the largest when above them all)."""
    return next((r for r in MAX_LORA_RANKS if r >= rank), MAX_LORA_RANKS[-1])


def resolve(spec: Gemma4DeploymentSpec, facts: AdapterFacts) -> LoraSlots | None:
    """serving.lora for spec.model.adapters, each unset field derived (the API descriptions say how)."""
    served = tuple(a.name for a in spec.model.adapters if a.name not in facts.refused)
    if not served:
        return None
    lora = spec.serving.lora or LoraSpec()
    rank = lora.max_rank or ladder_rank(max(facts.ranks, default=DEFAULT_RANK))
    active = lora.max_active_adapters or min(len(served), DEFAULT_ACTIVE_CAP)
    cached = lora.cached_adapters or max(len(served), active)
    return LoraSlots(served, rank, active, cached, tuple(lora.target_modules or ()), facts.towers)


def _shapes(variant: VariantInfo, layer: int, tp: int, expert_parallel: bool) -> tuple[dict[str, int], dict[str, int]]:
    """(whole, per-GPU) sizes of every dimension a module names, on one decoder layer. Heads split over TP and
    are replicated when there are fewer than GPUs (gemma4.py Gemma4Attention lines 382-390); with expert
    parallelism the experts split and their intermediate does not (fused_moe.py FusedMoEWithLoRA, moe tp 1)."""
    full = variant.is_full_attention(layer)
    head_dim = variant.global_head_dim if full else variant.head_dim
    kv_heads = variant.global_kv_heads if full else variant.kv_heads
    ple = variant.per_layer_input_size
    expert_mlp = variant.expert_intermediate_size
    whole = {"hidden": variant.hidden_size, "q": variant.attention_heads * head_dim, "kv": kv_heads * head_dim,
             "mlp": variant.mlp_width(layer), "ple": ple, "ple_total": ple * variant.layers,
             "router": variant.experts, "expert_mlp": expert_mlp}
    sharded = {**whole, "q": variant.attention_heads // tp * head_dim, "kv": max(1, kv_heads // tp) * head_dim,
               "mlp": whole["mlp"] // tp, "ple_total": whole["ple_total"] // tp,
               "expert_mlp": expert_mlp if expert_parallel else expert_mlp // tp}
    return whole, sharded


def _present(variant: VariantInfo, layer: int) -> dict[str, bool]:
    """Which of the layout's `layers` kinds exist on this decoder layer."""
    shared, ple = variant.is_kv_shared(layer), variant.per_layer_input_size > 0
    return {"every": True, "kv_owning": not shared, "kv_shared": shared, "moe": variant.is_moe,
            "per_layer_input": ple, "once_per_layer_input": ple and layer == 0}  # the last: a model-level layer


def _elements(module: LoraModule, whole: dict[str, int], sharded: dict[str, int], rank: int, experts: int) -> int:
    """lora_a and lora_b elements of one slot of one module on one GPU (vllm/lora/layers: column layers keep the
    input whole and shard outputs, row layers the reverse, replicated ones neither)."""
    if module.parallel == "experts":
        # w13 a: 2 x [rank, hidden]; w13 b: 2 x [mlp, rank]; w2 a: [rank, mlp]; w2 b: [hidden, rank], per expert
        return experts * rank * 3 * (whole["hidden"] + sharded["expert_mlp"])
    inputs = sharded if module.parallel == "row" else whole
    outputs = sharded if module.parallel == "column" else whole
    slices = len(module.outputs)
    return rank * (slices * inputs[module.input] + sum(outputs[o] for o in module.outputs))


def targeted(module: str, targets: Iterable[str]) -> bool:
    """vLLM's --lora-target-modules match: the name, a packed child of it, or the packed parent of it."""
    wanted = set(targets)
    if not wanted or module in wanted or wanted & set(PACKED.get(module, ())):
        return True
    return any(module in children and parent in wanted for parent, children in PACKED.items())


def unknown_targets(layout: LoraLayout, targets: Iterable[str]) -> list[str]:
    """Target names no wrapped layer answers to (vLLM would give them no slot, silently)."""
    known = {m.name for m in layout.modules} | {c for children in PACKED.values() for c in children}
    return sorted(set(targets) - known)


@functools.cache
def slot_bytes_by_module(variant: VariantInfo, layout: LoraLayout, rank: int, tp: int,
                         expert_parallel: bool) -> Mapping[str, int]:
    """Bytes one adapter slot takes on one GPU, per wrapped module name, summed over the layers (cached: every
    candidate of a plan asks, and the catalog's rows are frozen)."""
    local_experts = variant.experts // tp if expert_parallel else variant.experts
    totals = {m.name: 0 for m in layout.modules}
    for layer in range(variant.layers):
        whole, sharded = _shapes(variant, layer, tp, expert_parallel)
        present = _present(variant, layer)
        for m in layout.modules:
            if present[m.layers]:
                totals[m.name] += _elements(m, whole, sharded, rank, local_experts) * layout.dtype_bytes
    return {name: total for name, total in totals.items() if total}


def slot_bytes(variant: VariantInfo, layout: LoraLayout, slots: LoraSlots, tp: int, expert_parallel: bool) -> int:
    """Bytes one slot takes on one GPU over the modules slots.target_modules selects."""
    by_module = slot_bytes_by_module(variant, layout, slots.max_rank, tp, expert_parallel)
    return sum(b for name, b in by_module.items() if targeted(name, slots.target_modules))


def host_gib(variant: VariantInfo, layout: LoraLayout, slots: LoraSlots, tp: int) -> float:
    """Host memory of the adapter cache: every TP worker keeps `cached` adapters whole (unsharded), each at most
    one slot's size at maxRank."""
    whole = slot_bytes(variant, layout, slots, 1, expert_parallel=False)
    return math.ceil(slots.cached * whole * tp / GIB * 10) / 10
