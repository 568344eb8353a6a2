"""KV-cache and weight arithmetic against worked numbers derived from the variants' config.json
(huggingface.co/google/gemma-4-*) and vLLM's start-up logs, and against published checkpoint sizes."""

from __future__ import annotations

import pytest

from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines import llamacpp, vllm
from gemma4_operator.planner import memory

CATALOG = load_catalog()


@pytest.mark.parametrize(("variant", "tokens", "bytes_per_element", "expected"), [
    ("31b", 32768, 2, 3_523_215_360),       # exact: matches a third-party fixture byte for byte
    ("31b", 262144, 2, 22_313_697_280),     # the full 256K context
])
def test_kv_formula_reproduces_exact_reference_numbers(variant: str, tokens: int, bytes_per_element: int,
                                                       expected: int) -> None:
    assert memory.kv_bytes_per_sequence(CATALOG.variants[variant], tokens, bytes_per_element) == expected


# Worked table, from each config.json (GB = 1e9 bytes, printed to 3-4 significant digits).
@pytest.mark.parametrize(("variant", "tokens", "bf16_gb", "fp8_gb"), [
    ("e2b", 4096, 0.0315, 0.0157), ("e2b", 32768, 0.208, 0.104), ("e2b", 131072, 0.812, 0.406),
    ("e4b", 4096, 0.0881, 0.0440), ("e4b", 32768, 0.558, 0.279), ("e4b", 131072, 2.168, 1.084),
    ("26b-a4b", 8192, 0.377, 0.189), ("26b-a4b", 32768, 0.881, 0.440), ("26b-a4b", 262144, 5.578, 2.789),
    ("31b", 4096, 1.174, 0.587), ("31b", 8192, 1.510, 0.755), ("31b", 131072, 11.58, 5.79),
])
def test_kv_formula_matches_worked_table(variant: str, tokens: int, bf16_gb: float, fp8_gb: float) -> None:
    v = CATALOG.variants[variant]
    assert memory.kv_bytes_per_sequence(v, tokens, 2) / 1e9 == pytest.approx(bf16_gb, rel=0.005)
    assert memory.kv_bytes_per_sequence(v, tokens, 1) / 1e9 == pytest.approx(fp8_gb, rel=0.005)


@pytest.mark.parametrize(("variant", "sliding", "full"), [
    ("e2b", 12, 3), ("e4b", 20, 4), ("26b-a4b", 25, 5), ("31b", 50, 10),
])
def test_kv_owning_layers_follow_layer_pattern_and_sharing(variant: str, sliding: int, full: int) -> None:
    assert CATALOG.variants[variant].kv_layer_counts == (sliding, full)


# vLLM 0.32.0's start-up reservation for one max_model_len request, exact (bf16, one GPU, block 16):
# sliding layers (cdiv(min(W - 1 + in-flight tokens, L), b) + 1) x b tokens, full layers cdiv(L, b) x b
# (vllm/v1/kv_cache_interface.py), where b is 16 grown to equal pages (kv_cache_utils.unify_kv_cache_spec_page_size):
# 31B and 26B pages are 16384 / 8192 B per sliding token and 8192 / 4096 B per full token, so full layers use
# b = 32; E2B / E4B are 1024 / 2048 sliding and 2048 / 4096 full, so sliding layers use b = 32. The tools tier
# checks the same function against vLLM's own code for every planned shape (tests/tools/test_vllm_kv_reservation.py).
@pytest.mark.parametrize(("variant", "in_flight", "tokens", "expected"), [
    # W - 1 + in-flight = 5119 -> 320 + 1 blocks of 16
    ("31b", 4096, 8192, 50 * 16384 * (321 * 16) + 10 * 8192 * 8192),
    # 17407 -> 1088 + 1 blocks of 16: 16,958,095,360 B, as vLLM 0.32.0 computes it
    ("31b", 16384, 32768, 50 * 16384 * (1089 * 16) + 10 * 8192 * 32768),
    # shorter than the window: 1000 -> 63 + 1 blocks of 16; full layers 1000 -> 32 blocks of 32
    ("31b", 4096, 1000, 50 * 16384 * (64 * 16) + 10 * 8192 * (32 * 32)),
    # an unaligned length: full layers 33001 -> 1032 blocks of 32
    ("26b-a4b", 4096, 33001, 25 * 8192 * (321 * 16) + 5 * 4096 * (1032 * 32)),
    # sliding blocks of 32: 511 + 16384 = 16895 -> 528 + 1 blocks of 32
    ("e2b", 16384, 131072, 12 * 1024 * (529 * 32) + 3 * 2048 * 131072),
    ("e4b", 4096, 8192, 20 * 2048 * ((144 + 1) * 32) + 4 * 4096 * 8192),  # 4607 -> 144 + 1 blocks of 32
])
def test_vllm_reservation_is_exact(variant: str, in_flight: int, tokens: int, expected: int) -> None:
    assert vllm.kv_reservation_per_gpu(CATALOG.variants[variant], tokens, 2, 1, in_flight, 16) == expected


def test_vllm_keeps_two_batches_in_flight() -> None:
    # asynchronous scheduling, vLLM's default on CUDA: VllmConfig.max_in_flight_tokens = 2 x max_num_batched_tokens
    assert CATALOG.engines["vllm"].in_flight_batches == 2


def test_tensor_parallel_divides_kv_until_heads_run_out() -> None:
    v = CATALOG.variants["31b"]  # 16 sliding KV heads, 4 global KV heads
    per_tp = {tp: vllm.kv_reservation_per_gpu(v, 32768, 2, tp, 8192, 16) for tp in (1, 2, 4, 8)}
    assert per_tp[2] == pytest.approx(per_tp[1] / 2)
    assert per_tp[4] == pytest.approx(per_tp[1] / 4)
    # TP 8: sliding heads still split (16/8), but the 4 global heads are replicated: less than halving
    assert per_tp[4] / 2 < per_tp[8] < per_tp[4]


# Published sizes (bytes, from each repository's file listing on huggingface.co), and what they contain.
PUBLISHED = [
    ("e2b", "bf16", 10.25e9, "safetensors"), ("e4b", "bf16", 16.0e9, "safetensors"),
    ("26b-a4b", "bf16", 51.6e9, "safetensors"), ("31b", "bf16", 62.5e9, "safetensors"),
    ("e2b", "bf16", 9.31e9, "gguf"), ("e4b", "bf16", 15.1e9, "gguf"),
    ("26b-a4b", "bf16", 50.5e9, "gguf"), ("31b", "bf16", 61.4e9, "gguf"),
    ("e2b", "q8_0", 4.967e9, "gguf"), ("e4b", "q8_0", 8.031e9, "gguf"),
    ("26b-a4b", "q8_0", 26.86e9, "gguf"), ("31b", "q8_0", 32.64e9, "gguf"),
    ("26b-a4b", "nvfp4", 18.8e9, "safetensors"), ("31b", "nvfp4", 32.7e9, "safetensors"),
    ("31b", "int4", 23.265e9, "safetensors"),
    ("e2b", "fp8", 8.3e9, "safetensors"), ("e4b", "fp8", 11.9e9, "safetensors"),
    ("26b-a4b", "fp8", 27.0e9, "safetensors"), ("31b", "fp8", 33.0e9, "safetensors"),
]


@pytest.mark.parametrize(("variant", "fmt", "published", "container"), PUBLISHED,
                         ids=[f"{v}-{f}-{c}" for v, f, _, c in PUBLISHED])
def test_weight_estimates_within_five_percent_of_published_sizes(variant: str, fmt: str, published: float,
                                                                 container: str) -> None:
    v, f = CATALOG.variants[variant], CATALOG.formats[fmt]
    estimate = memory.gguf_text_only_bytes(v, f) if container == "gguf" else memory.estimate_weight_bytes(v, f)
    assert abs(estimate - published) / published <= 0.05, f"estimate {estimate / 1e9:.2f} GB"


def test_q4_k_m_has_no_formula_and_every_gguf_checkpoint_has_a_published_size() -> None:
    with pytest.raises(ValueError, match="use a published size"):
        memory.estimate_weight_bytes(CATALOG.variants["31b"], CATALOG.formats["q4_k_m"])
    gguf = [c for c in CATALOG.checkpoints if c.engine == "llamacpp"]
    assert gguf and all(c.download_bytes for c in gguf)


def test_llamacpp_swa_cells_are_bounded_by_window_and_padded() -> None:
    v = CATALOG.variants["26b-a4b"]  # W = 1024, 25 sliding / 5 full KV layers
    got = llamacpp.kv_bytes(v, 32768, 4, 2, 512)
    swa_cells = 4608  # PAD256(min(131072, 1024 * 4 + 512)) = PAD256(4608)
    expected = 25 * 2 * 8 * 256 * 2 * swa_cells + 5 * 2 * 2 * 512 * 2 * 32768 * 4
    assert got == expected


def test_llamacpp_pads_an_unaligned_context_to_256_cells() -> None:
    # llama.cpp rounds n_ctx up to 256 cells (src/llama-context.cpp: cparams.n_ctx = GGML_PAD(cparams.n_ctx, 256))
    # before sizing both caches; SWA layers hold min(n_ctx, PAD256(W x slots + n_ubatch)) (llama-kv-cache-iswa.cpp).
    # 3 x 1100 = 3300 cells -> 3328; the window bound 1024 x 3 + 512 = 3584 is larger, so SWA layers hold 3328 too.
    v = CATALOG.variants["26b-a4b"]
    got = llamacpp.kv_bytes(v, 1100, 3, 2, 512)
    expected = 25 * 2 * 8 * 256 * 2 * 3328 + 5 * 2 * 2 * 512 * 2 * 3328
    assert got == expected
