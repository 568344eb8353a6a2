"""vLLM 0.32.0's own KV-cache reservation for one request of max_model_len (runs in the vLLM venv, not ours).

Run with the interpreter made by tests/tools/vllm_venv.sh (see vllm_kvreservation.py for the caller):

stdin:  a JSON list of cases, each the text config of a Gemma 4 variant plus the serving shape:
        {"layer_types": [...], "num_kv_shared_layers", "num_key_value_heads", "num_global_key_value_heads",
         "head_dim", "global_head_dim", "sliding_window", "tensor_parallel_size", "max_model_len",
         "max_num_batched_tokens", "kv_cache_dtype": "auto" | "fp8"}
stdout: a JSON list, one object per case:
        {"bytes": int, "in_flight_tokens": int, "block_size": int, "groups": [str, ...]}
        (block_size: vLLM's default cache block size, as `vllm serve` without --block-size gets it)

No GPU and no model config: per case this builds the per-layer KV-cache specs the way vLLM does for Gemma 4 and
runs vLLM's own grouping and sizing functions on them:
- the layers: vllm/model_executor/models/gemma4.py (layers from num_hidden_layers - num_kv_shared_layers on share
  an earlier layer's KV and get no spec; KV heads per GPU max(1, total // tp), Gemma4Attention.__init__; full
  layers use num_global_key_value_heads and global_head_dim);
- each layer's spec: vllm/model_executor/layers/attention/attention.py Attention.get_kv_cache_spec
  (SlidingWindowSpec with the block size _largest_kernel_block_within picks for the backend, FullAttentionSpec
  with cache_config.block_size). That module cannot be imported here (it needs packages the venv leaves out), so
  _largest_kernel_block_within is read from its source and executed as is. The backend is TRITON_ATTN, the one
  vLLM picks for Gemma 4's mixed head sizes where FA4 is unavailable (vllm/model_executor/models/config.py
  Gemma4Config);
- the KV-cache layout: vllm/v1/attention/backends/utils.py resolve_kv_cache_layout;
- the groups and the bytes one request needs: vllm/v1/core/kv_cache_utils.py get_kv_cache_groups and
  _max_memory_usage_bytes_from_groups, which get_kv_cache_configs checks at start-up
  (_check_enough_kv_cache_memory: "To serve at least one request with the model's max seq len ...").
The cache block size is the one the CUDA platform picks when `vllm serve` gets no --block-size
(vllm/platforms/interface.py update_block_size_for_backend: the backend's get_preferred_block_size of
CacheConfig.DEFAULT_BLOCK_SIZE; the CPU platform, where this runs, would pick 128).
The scheduler runs asynchronously, as vLLM decides on CUDA by default (vllm/config/vllm.py: async_scheduling None
-> True unless speculative decoding etc. rule it out; the CPU platform, where this runs, turns it off), so
VllmConfig.max_in_flight_tokens counts two batches.
"""

from __future__ import annotations

import ast
import json
import os
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

BACKEND_BLOCK_HELPER = "_largest_kernel_block_within"


def _load_block_helper() -> Any:
    """vLLM's _largest_kernel_block_within, compiled from attention.py's source without importing the module."""
    import vllm  # type: ignore[import-not-found,unused-ignore]

    source_path = Path(vllm.__file__).parent / "model_executor" / "layers" / "attention" / "attention.py"
    tree = ast.parse(source_path.read_text(encoding="utf-8"))
    func = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == BACKEND_BLOCK_HELPER)
    func.decorator_list = []
    module = ast.Module(body=[func], type_ignores=[])
    namespace: dict[str, Any] = {"KVCacheSpec": object}
    exec(compile(module, str(source_path), "exec"), namespace)
    return namespace[BACKEND_BLOCK_HELPER]


class Sizer:
    """vLLM's classes and functions, imported once; one VllmConfig reused for every case."""

    def __init__(self) -> None:
        os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
        import torch  # type: ignore[import-not-found,unused-ignore]
        from vllm.config import CacheConfig, SchedulerConfig, VllmConfig  # type: ignore[import-not-found,unused-ignore]
        from vllm.v1.attention.backends.triton_attn import (  # type: ignore[import-not-found,unused-ignore]
            TritonAttentionBackend,
        )
        from vllm.v1.attention.backends.utils import (  # type: ignore[import-not-found,unused-ignore]
            get_supported_kv_cache_layouts,
            resolve_kv_cache_layout,
        )
        from vllm.v1.core import kv_cache_utils  # type: ignore[import-not-found,unused-ignore]
        from vllm.v1.kv_cache_interface import (  # type: ignore[import-not-found,unused-ignore]
            FullAttentionSpec,
            SlidingWindowSpec,
            get_kv_quant_mode,
        )

        self.torch: Any = torch
        self.config_classes = (VllmConfig, SchedulerConfig, CacheConfig)
        self.backend: Any = TritonAttentionBackend
        self.layouts = [layout.name for layout in get_supported_kv_cache_layouts([TritonAttentionBackend])]
        self.resolve_layout: Any = resolve_kv_cache_layout
        self.utils: Any = kv_cache_utils
        self.full_spec: Any = FullAttentionSpec
        self.sliding_spec: Any = SlidingWindowSpec
        self.quant_mode: Any = get_kv_quant_mode
        self.block_within: Any = _load_block_helper()
        self._configs: dict[tuple[int, str], Any] = {}

    def _config(self, case: dict[str, Any]) -> Any:
        key = (case["max_num_batched_tokens"], case["kv_cache_dtype"])
        if key not in self._configs:
            self._configs[key] = self._new_config(case)
        config = self._configs[key]
        config.model_config.max_model_len = case["max_model_len"]  # as vLLM's own estimate_max_model_len does
        return config

    def _new_config(self, case: dict[str, Any]) -> Any:
        vllm_config_cls, scheduler_cls, cache_cls = self.config_classes
        config = vllm_config_cls(
            scheduler_config=scheduler_cls(max_num_batched_tokens=case["max_num_batched_tokens"],
                                           max_model_len=case["max_model_len"], is_encoder_decoder=False),
            cache_config=cache_cls(block_size=self.backend.get_preferred_block_size(cache_cls.DEFAULT_BLOCK_SIZE),
                                   cache_dtype=case["kv_cache_dtype"]))
        config.scheduler_config.async_scheduling = True  # vLLM's default on CUDA (see the module docstring)
        config.model_config = SimpleNamespace(max_model_len=case["max_model_len"])
        return config

    def _layer_spec(self, case: dict[str, Any], full: bool, block_size: int) -> Any:
        total_heads = case["num_global_key_value_heads"] if full else case["num_key_value_heads"]
        common = {
            "num_kv_heads": max(1, total_heads // case["tensor_parallel_size"]),
            "head_size": case["global_head_dim"] if full else case["head_dim"],
            "dtype": self.torch.float8_e4m3fn if case["kv_cache_dtype"] == "fp8" else self.torch.bfloat16,
            "kv_quant_mode": self.quant_mode(case["kv_cache_dtype"]),
        }
        if full:
            return self.full_spec(block_size=block_size, **common)
        probe = self.backend.customize_spec(self.sliding_spec(block_size=1, sliding_window=case["sliding_window"],
                                                              **common))
        per_token = probe.real_page_size_bytes
        sw_block = self.block_within(self.backend, per_token, per_token * block_size, block_size, probe)
        return self.sliding_spec(block_size=sw_block, sliding_window=case["sliding_window"], **common)

    def reservation(self, case: dict[str, Any]) -> dict[str, Any]:
        config = self._config(case)
        config.cache_config.kv_cache_layout = None  # resolved per model, from this case's specs
        owning = case["layer_types"][: len(case["layer_types"]) - case["num_kv_shared_layers"]]
        block_size = config.cache_config.block_size
        specs = {f"model.layers.{i}.self_attn.attn": self._layer_spec(case, kind == "full_attention", block_size)
                 for i, kind in enumerate(owning)}
        self.resolve_layout(config, [self.layouts], specs.values())
        groups = self.utils.get_kv_cache_groups(config, dict(specs))
        needed = self.utils._max_memory_usage_bytes_from_groups(config, groups)
        return {
            "bytes": int(needed),
            "in_flight_tokens": int(config.max_in_flight_tokens),
            "block_size": int(block_size),
            "groups": [f"{type(g.kv_cache_spec).__name__} x{len(g.layer_names)} block {g.kv_cache_spec.block_size}"
                       for g in groups],
        }


def main() -> int:
    out: TextIO = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # vLLM logs to stdout: keep fd 1 for our JSON only
    cases: Any = json.load(sys.stdin)
    if not isinstance(cases, list):
        print("stdin must hold a JSON list of cases", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    sizer = Sizer()
    t1 = time.monotonic()
    results = [sizer.reservation(case) for case in cases]
    json.dump(results, out)
    out.write("\n")
    out.flush()
    print(f"vllm_kvcheck: vLLM imported in {t1 - t0:.2f}s, {len(results)} case(s) sized in "
          f"{time.monotonic() - t1:.3f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
