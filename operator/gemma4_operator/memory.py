"""Memory arithmetic for Gemma 4: KV cache and weights. Pure functions over catalog facts.

Formulas: gemma4-serving.md §3.1 (KV per sequence), §3.3 (vLLM and llama.cpp reservations),
§2.2 (bytes per parameter).
"""

from __future__ import annotations

import math

from gemma4_operator.catalog import Checkpoint, FormatInfo, VariantInfo

KV_BYTES_PER_ELEMENT = {"bf16": 2.0, "fp8": 1.0}
LLAMACPP_KV_BYTES_PER_ELEMENT = {"bf16": 2.0, "fp8": 1.0625}  # f16, or q8_0 standing in for fp8


def kv_bytes_per_sequence(variant: VariantInfo, tokens: int, bytes_per_element: float) -> float:
    """The reference formula: sliding layers bounded by the window, shared-KV layers free,
    K and V both stored (also where attention_k_eq_v, as vLLM and llama.cpp do)."""
    sliding, full = variant.kv_layer_counts
    window = min(tokens, variant.sliding_window)
    return (sliding * 2 * variant.kv_heads * variant.head_dim * bytes_per_element * window
            + full * 2 * variant.global_kv_heads * variant.global_head_dim * bytes_per_element * tokens)


def _heads_per_gpu(heads: int, tp: int) -> int:
    # Heads are split when there are enough of them, otherwise each GPU keeps one replica.
    return heads // tp if heads >= tp else 1


def vllm_kv_reservation_per_gpu(variant: VariantInfo, max_model_len: int, bytes_per_element: float,
                                tp: int, max_num_batched_tokens: int, block_size: int) -> float:
    """Bytes one request of max_model_len reserves on one GPU in vLLM's start-up check:
    full layers hold every token; sliding layers hold min(W - 1 + mnbt, L) tokens plus a block."""
    sliding, full = variant.kv_layer_counts
    sliding_tokens = min(variant.sliding_window - 1 + max_num_batched_tokens, max_model_len) + block_size
    full_tokens = math.ceil(max_model_len / block_size) * block_size
    return (sliding * 2 * _heads_per_gpu(variant.kv_heads, tp) * variant.head_dim * bytes_per_element
            * sliding_tokens
            + full * 2 * _heads_per_gpu(variant.global_kv_heads, tp) * variant.global_head_dim
            * bytes_per_element * full_tokens)


def llamacpp_kv_bytes(variant: VariantInfo, max_model_len: int, slots: int, bytes_per_element: float,
                      ubatch: int) -> float:
    """llama.cpp with a unified KV buffer (-kvu): full layers hold n_ctx = slots x len cells,
    sliding layers PAD256(min(n_ctx, W x slots + n_ubatch)) cells."""
    sliding, full = variant.kv_layer_counts
    n_ctx = max_model_len * slots
    swa_cells = min(n_ctx, variant.sliding_window * slots + ubatch)
    swa_cells = math.ceil(swa_cells / 256) * 256
    return (sliding * 2 * variant.kv_heads * variant.head_dim * bytes_per_element * swa_cells
            + full * 2 * variant.global_kv_heads * variant.global_head_dim * bytes_per_element * n_ctx)


def encoder_bytes(variant: VariantInfo) -> int:
    """Vision and audio towers stay BF16 in every vLLM checkpoint."""
    return variant.params.encoders * 2


def estimate_weight_bytes(variant: VariantInfo, fmt: FormatInfo) -> int:
    """Weights from bytes per parameter. GGUF files are text-only (the projector is a separate
    mmproj file); safetensors checkpoints include the encoders."""
    if fmt.bytes_per_param is None:
        raise ValueError(f"{fmt.name} has no bytes-per-parameter estimate; use a published size")
    p = variant.params
    if fmt.quantizes == "all":
        return round(p.total * fmt.bytes_per_param)
    if fmt.quantizes == "all_text":
        return round(p.text * fmt.bytes_per_param)
    kept_bf16 = p.token_embedding + p.per_layer_embedding + p.encoders
    # mlp: the MLPs and experts (ModelOpt NVFP4); linear: every decoder linear layer
    quantized = p.dense_mlp + p.experts if fmt.quantizes == "mlp" else p.total - kept_bf16
    return round(quantized * fmt.bytes_per_param + (p.total - quantized) * 2)


def gguf_text_only_bytes(variant: VariantInfo, fmt: FormatInfo) -> int:
    """BF16 GGUF files hold the text decoder only."""
    if fmt.bytes_per_param is None:
        raise ValueError(f"{fmt.name} has no bytes-per-parameter estimate")
    return round(variant.params.text * fmt.bytes_per_param)


def resident_weight_bytes(variant: VariantInfo, fmt: FormatInfo, checkpoint: Checkpoint | None,
                          *, llamacpp: bool) -> tuple[int, bool]:
    """(bytes of weights loaded, whether that is an estimate)."""
    if checkpoint is not None:
        if checkpoint.resident_bytes is not None:
            return checkpoint.resident_bytes, False
        if checkpoint.download_bytes is not None and checkpoint.online_quantization is None:
            return checkpoint.download_bytes, False
    if llamacpp:
        return gguf_text_only_bytes(variant, fmt), True
    return estimate_weight_bytes(variant, fmt), True
