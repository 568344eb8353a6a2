"""vLLM 0.32.0's own KV-cache reservation for Gemma 4 variants, from our test suite (see vllm_kvcheck.py).

Like vllm_parser.py, this runs a script in the vLLM venv (vllm_venv.sh): one subprocess per batch of cases,
about 15 s to import vLLM, then milliseconds per case.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gemma4_operator.catalog import VariantInfo
from tests.tools.vllm_parser import TOOLS_DIR, VllmToolError, run_in_vllm_venv

KVCHECK_SCRIPT = TOOLS_DIR / "vllm_kvcheck.py"


@dataclass(frozen=True)
class KvCase:
    """One variant served at one shape, in the terms vLLM sizes it by."""

    variant: VariantInfo
    kv_cache_dtype: str  # the planner's name: bf16 or fp8
    max_model_len: int
    tensor_parallel_size: int
    max_num_batched_tokens: int

    def to_vllm(self) -> dict[str, Any]:
        """The variant's text config (as config.json spells it) from the catalog, plus vLLM's serving settings."""
        v = self.variant
        return {
            "layer_types": ["full_attention" if v.is_full_attention(i) else "sliding_attention"
                            for i in range(v.layers)],
            "num_kv_shared_layers": v.kv_shared_layers,
            "num_key_value_heads": v.kv_heads,
            "num_global_key_value_heads": v.global_kv_heads,
            "head_dim": v.head_dim,
            "global_head_dim": v.global_head_dim,
            "sliding_window": v.sliding_window,
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.max_model_len,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "kv_cache_dtype": "fp8" if self.kv_cache_dtype == "fp8" else "auto",  # as the renderer passes it
        }


@dataclass(frozen=True)
class KvReservation:
    bytes: int  # what one request of max_model_len needs, per GPU
    in_flight_tokens: int  # VllmConfig.max_in_flight_tokens
    block_size: int  # vLLM's default cache block size
    groups: tuple[str, ...]  # vLLM's KV-cache groups, for failure messages


def vllm_kv_reservations(cases: Sequence[KvCase], *, timeout: float = 600.0) -> list[KvReservation]:
    """vLLM's answer for each case, in order."""
    if not cases:
        return []
    raw: Any = json.loads(run_in_vllm_venv(KVCHECK_SCRIPT, json.dumps([c.to_vllm() for c in cases]),
                                           timeout=timeout))
    if not isinstance(raw, list) or len(raw) != len(cases):
        raise VllmToolError(f"{KVCHECK_SCRIPT.name} returned {type(raw).__name__} for {len(cases)} cases")
    return [KvReservation(int(r["bytes"]), int(r["in_flight_tokens"]), int(r["block_size"]), tuple(r["groups"]))
            for r in raw]
