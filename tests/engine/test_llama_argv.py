"""settings_from_argv: llama-server argv -> LlamaServerSettings (no server needed, runs in the fast tiers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine.llama_server import (
    N_GPU_LAYERS_ALL,
    SUPPORTED_FLAGS,
    LlamaServerSettings,
    UnsupportedFlagError,
    build_common_params,
    settings_from_argv,
)

RENDERED_ARGV = [
    "--host", "0.0.0.0", "--port", "8000", "-m", "/models/gemma-4-E2B-it-Q8_0.gguf",
    "-c", "8192", "-np", "4", "--metrics", "--jinja", "-a", "gemma-4-e2b-it", "-ngl", "0",
]  # fmt: skip


def test_example_argv() -> None:
    s = settings_from_argv(RENDERED_ARGV)
    assert s == LlamaServerSettings(
        model_path=Path("/models/gemma-4-E2B-it-Q8_0.gguf"),
        host="0.0.0.0",
        port=8000,
        n_ctx=8192,
        n_parallel=4,
        metrics=True,
        jinja=True,
        alias=("gemma-4-e2b-it",),
        n_gpu_layers=0,
    )


def test_gpu_hf_argv_with_kv_quant() -> None:
    # the shape engines/llamacpp.py renders for a GPU plan with an fp8 KV cache
    argv = [
        "/app/llama-server", "-hf", "ggml-org/gemma-4-26B-A4B-it-GGUF:Q4_K_M", "--no-mmproj",
        "--host", "0.0.0.0", "--port", "8080", "-ngl", "all", "-c", "65536", "-np", "4", "-kvu",
        "--metrics", "-a", "gemma-4-26b", "-ctk", "q8_0", "-ctv", "q8_0", "-fa", "on", "--jinja",
        "--reasoning-budget", "0",
    ]  # fmt: skip
    s = settings_from_argv(argv)
    assert s.model_path is None
    assert s.hf_repo == "ggml-org/gemma-4-26B-A4B-it-GGUF:Q4_K_M"
    assert s.no_mmproj
    assert s.n_gpu_layers == N_GPU_LAYERS_ALL
    assert s.kv_unified is True
    assert (s.cache_type_k, s.cache_type_v, s.flash_attn) == ("q8_0", "q8_0", "on")
    assert s.reasoning_budget == 0
    local = s.localized(model_path=Path("tiny.gguf"))
    assert (local.host, local.port, local.hf_repo, local.threads) == ("127.0.0.1", 0, None, 2)
    assert local.n_parallel == 4


def test_defaults_when_flags_absent() -> None:
    s = settings_from_argv(["-m", "x.gguf"])
    assert (s.host, s.port, s.n_parallel, s.n_ctx, s.metrics) == ("127.0.0.1", 8080, -1, 0, False)


def test_long_flags_accept_underscores_and_aliases_accumulate() -> None:
    s = settings_from_argv(["--model", "x.gguf", "--ctx_size", "512", "-a", "a,b", "--alias", "c", "-a", "a"])
    assert s.n_ctx == 512
    assert s.alias == ("a", "b", "c")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-m", "x.gguf", "--gpu-memory-utilization", "0.9"], "not mapped"),  # a vLLM flag
        (["-m", "x.gguf", "--ctx-size=4096"], "no --flag=value syntax"),
        (["-m", "x.gguf", "-c"], "needs a value"),
        (["-m", "x.gguf", "-c", "4k"], "expects an integer"),
        (["-m", "x.gguf", "-np", "0"], "n_parallel"),
        (["-m", "x.gguf", "-fa", "maybe"], "on|off|auto"),
        (["-m", "x.gguf", "-ctk", "fp8"], "unsupported cache type"),
        (["-m", "x.gguf", "stray"], "positional"),
        (["vllm", "-m", "x.gguf"], "positional"),
        (["--metrics"], "no model"),
    ],
)
def test_rejects(argv: list[str], message: str) -> None:
    with pytest.raises(UnsupportedFlagError, match=message):
        settings_from_argv(argv)


def test_unknown_flag_error_lists_supported_flags() -> None:
    with pytest.raises(UnsupportedFlagError) as info:
        settings_from_argv(["-m", "x.gguf", "--bogus"])
    assert "--bogus" in str(info.value)
    assert "--metrics" in str(info.value)
    assert "--metrics" in SUPPORTED_FLAGS


def test_dict_round_trip() -> None:
    s = settings_from_argv(RENDERED_ARGV).replace(extra={"n_threads_http": 2})
    assert LlamaServerSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown LlamaServerSettings keys"):
        LlamaServerSettings.from_dict({"model_path": "x", "ctx": 4})


def test_ctx_checkpoints_reaches_the_servers_parameters() -> None:
    # engines/llamacpp.py bounds Gemma 4's sliding-window checkpoints (catalog engines.yaml ctx_checkpoints)
    s = settings_from_argv(["-m", "x.gguf", "--ctx-checkpoints", "0"])
    assert s.ctx_checkpoints == 0
    assert LlamaServerSettings.from_dict(s.to_dict()) == s
    assert build_common_params(s).n_ctx_checkpoints == 0
    assert settings_from_argv(["-m", "x.gguf"]).ctx_checkpoints is None
