"""Smoke test of the vLLM 0.32.0 argument checker (builds the ~5.1 GB vLLM venv on first use, ~3-4 min)."""

from __future__ import annotations

import pytest

from tests.tools.vllm_parser import VllmParseResult, check_vllm_command_lines, registered_vllm_parsers

pytestmark = pytest.mark.slow

MODEL = "google/gemma-4-E4B-it"
GOOD = [
    "vllm", "serve", MODEL,
    "--served-model-name", "gemma-4-e4b",
    "--max-model-len", "32768",
    "--tensor-parallel-size", "2",
    "--gpu-memory-utilization", "0.90",
    "--dtype", "bfloat16",
    "--port", "8000",
    "--host", "0.0.0.0",
    "--limit-mm-per-prompt", '{"image": 2, "audio": 1}',
    "--enable-auto-tool-choice",
    "--tool-call-parser", "gemma4",
    "--reasoning-parser", "gemma4",
]  # fmt: skip
BAD_FLAG = ["vllm", "serve", MODEL, "--max-model-length", "5"]
BAD_INT = ["vllm", "serve", MODEL, "--tensor-parallel-size", "two"]
BAD_REASONING = ["vllm", "serve", MODEL, "--reasoning-parser", "nope"]
BAD_TOOL = ["vllm", "serve", MODEL, "--enable-auto-tool-choice", "--tool-call-parser", "nope"]
AFTER_REASONING = ["vllm", "serve", MODEL, "--language-model-only"]  # no state may leak from GOOD
NOT_VLLM = ["python3", "-m", "vllm.entrypoints.openai.api_server"]


@pytest.fixture(scope="module")
def results() -> list[VllmParseResult]:
    batch = [GOOD, BAD_FLAG, BAD_INT, BAD_REASONING, BAD_TOOL, AFTER_REASONING, NOT_VLLM]
    checked: list[VllmParseResult] = check_vllm_command_lines(batch)
    return checked


def test_accepts_good_command_line(results: list[VllmParseResult]) -> None:
    good = results[0]
    assert good.ok, good.error
    assert good.error is None
    assert good.argv == tuple(GOOD)
    p = good.parsed
    assert p["model"] == MODEL
    assert p["served_model_name"] == ["gemma-4-e4b"]
    assert p["tensor_parallel_size"] == 2
    assert p["max_model_len"] == 32768
    assert p["gpu_memory_utilization"] == pytest.approx(0.90)
    assert p["limit_mm_per_prompt"] == {"image": 2, "audio": 1}
    assert p["port"] == 8000
    assert p["host"] == "0.0.0.0"
    assert p["tool_call_parser"] == "gemma4"
    assert p["reasoning_parser"] == "gemma4"
    assert good.non_default["model_tag"] == MODEL


def test_rejects_unknown_flag(results: list[VllmParseResult]) -> None:
    r = results[1]
    assert not r.ok
    assert r.error is not None
    assert "unrecognized arguments: --max-model-length 5" in r.error


def test_rejects_bad_int(results: list[VllmParseResult]) -> None:
    r = results[2]
    assert not r.ok
    assert r.error is not None
    assert "--tensor-parallel-size" in r.error
    assert "invalid int value: 'two'" in r.error


def test_rejects_unknown_parsers(results: list[VllmParseResult]) -> None:
    assert not results[3].ok
    assert results[3].error is not None
    assert results[3].error.startswith("invalid reasoning parser: nope")
    assert not results[4].ok
    assert results[4].error is not None
    assert results[4].error.startswith("invalid tool call parser: nope")


def test_no_state_leaks_between_command_lines(results: list[VllmParseResult]) -> None:
    r = results[5]
    assert r.ok, r.error
    assert not r.parsed["reasoning_parser"]
    assert r.parsed["language_model_only"] is True
    assert r.parsed["tensor_parallel_size"] == 1


def test_rejects_non_vllm_serve(results: list[VllmParseResult]) -> None:
    assert not results[6].ok
    assert results[6].error is not None
    assert "must start with 'vllm', 'serve'" in results[6].error


def test_gemma4_parsers_registered() -> None:
    names = registered_vllm_parsers()
    assert "gemma4" in names["tool_call_parsers"]
    assert "gemma4" in names["reasoning_parsers"]
