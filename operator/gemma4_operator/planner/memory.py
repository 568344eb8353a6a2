"""Memory arithmetic for Gemma 4 that every engine shares: KV bytes per sequence and weight sizes.

The KV formula follows the architecture in each variant's config.json (huggingface.co/google/gemma-4-*):
sliding-window layers hold at most `sliding_window` tokens, the last `num_kv_shared_layers` reuse earlier
layers' KV, and K and V are both stored. How an engine reserves KV (vLLM's start-up check, llama.cpp's
unified cells) lives in that engine's module.
"""

from __future__ import annotations

from collections.abc import Callable

from gemma4_operator.catalog import Checkpoint, FormatInfo, VariantInfo


def kv_bytes_per_sequence(variant: VariantInfo, tokens: int, bytes_per_element: float) -> float:
    """The reference formula: sliding layers bounded by the window, shared-KV layers free,
    K and V both stored (also where attention_k_eq_v, as vLLM and llama.cpp do)."""
    sliding, full = variant.kv_layer_counts
    window = min(tokens, variant.sliding_window)
    return (sliding * 2 * variant.kv_heads * variant.head_dim * bytes_per_element * window
            + full * 2 * variant.global_kv_heads * variant.global_head_dim * bytes_per_element * tokens)


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
                          estimate: Callable[[VariantInfo, FormatInfo], int]) -> tuple[int, bool]:
    """(bytes of weights loaded, whether that is an estimate): a published size when the catalog has
    one, else the engine's estimate from bytes per parameter."""
    if checkpoint is not None:
        if checkpoint.resident_bytes is not None:
            return checkpoint.resident_bytes, False
        if checkpoint.download_bytes is not None and checkpoint.online_quantization is None:
            return checkpoint.download_bytes, False
    return estimate(variant, fmt), True
