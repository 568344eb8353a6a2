"""llama.cpp's real HTTP server (xllamacpp) serving the tiny Gemma 4: the endpoints the operator relies on.

Probes use /health (503 while loading, 200 when ready), the autoscaler reads /metrics, clients use /v1/*.
"""

from __future__ import annotations

import base64
import struct
import zlib
from pathlib import Path

import httpx
import pytest

from tests.engine.conftest import TINY_ALIAS, StartServer
from tests.engine.llama_server import (
    LlamaServer,
    LlamaServerSettings,
    chat_payload,
    metric_types,
    parse_metrics,
    scrape_metrics_under_load,
    settings_from_argv,
)

pytestmark = pytest.mark.engine

# The renderer's llama-server command line for a CPU E2B deployment
# (flags as in ggml-org/llama.cpp tools/server/README.md).
RENDERED_ARGV = [
    "--host", "0.0.0.0", "--port", "8000", "-m", "/models/gemma-4-E2B-it-Q8_0.gguf",
    "-c", "8192", "-np", "4", "--metrics", "--jinja", "-a", "gemma-4-e2b-it", "-ngl", "0",
]  # fmt: skip


def get(srv: LlamaServer, path: str) -> httpx.Response:
    return httpx.get(f"{srv.base_url}{path}", timeout=30)


def chat(srv: LlamaServer, body: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{srv.base_url}/v1/chat/completions", json=body, timeout=60)


def test_health_ok_once_loaded(llama_server: LlamaServer) -> None:
    r = get(llama_server, "/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


def test_health_is_503_while_loading(start_llama_server: StartServer, tiny_settings: LlamaServerSettings) -> None:
    # The child binds the port before loading the model (like llama-server); the parent polls /health every ~2 ms
    # from the moment the child is spawned. The tiny model alone loads in ~15 ms (2-4 polls), so give it Gemma 4's
    # real 256k context with a full-size SWA cache: ~84 MB of KV to allocate and clear, ~0.1 s of "Loading model".
    srv = start_llama_server(tiny_settings.replace(n_ctx=262144, n_parallel=1, swa_full=True))
    assert srv.health_history[-1] == 200
    assert 503 in srv.health_history, f"loading phase not observed: {srv.health_history}"
    assert srv.health_history.index(503) < srv.health_history.index(200)
    assert srv.loading_response == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}


def test_models_lists_alias(llama_server: LlamaServer) -> None:
    r = get(llama_server, "/v1/models")
    assert r.status_code == 200
    data = r.json()["data"]
    assert [m["id"] for m in data] == [TINY_ALIAS]
    assert data[0]["meta"]["n_vocab"] == 370


def test_chat_completion_is_deterministic(llama_server: LlamaServer) -> None:
    body = chat_payload("Hello, Gemma!", max_tokens=8)
    first = chat(llama_server, body)
    assert first.status_code == 200, first.text
    out = first.json()
    choice = out["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str)
    assert choice["finish_reason"] == "length"  # random weights: it never stops on its own within 8 tokens
    assert out["usage"]["completion_tokens"] == 8
    assert out["model"] == TINY_ALIAS
    second = chat(llama_server, body).json()
    assert second["choices"][0]["message"]["content"] == choice["message"]["content"]


def test_chat_prompt_uses_gemma4_turn_tokens(llama_server: LlamaServer) -> None:
    # <bos><|turn>user\nhi there<turn|>\n<|turn>model\n -> 20 tokens only if <|turn>/<turn|> are single
    # control tokens (the same count transformers' tokenizer gives).
    r = chat(llama_server, chat_payload("hi there", max_tokens=1))
    assert r.status_code == 200
    assert r.json()["usage"]["prompt_tokens"] == 20


def test_metrics_exposes_autoscaling_signals(llama_server: LlamaServer) -> None:
    assert chat(llama_server, chat_payload("count me", max_tokens=4)).status_code == 200
    r = get(llama_server, "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = parse_metrics(r.text)
    types = metric_types(r.text)
    for name in ("llamacpp:requests_processing", "llamacpp:requests_deferred", "llamacpp:prompt_tokens_total"):
        assert name in samples, f"{name} missing from /metrics"
    assert types["llamacpp:requests_processing"] == "gauge"
    assert types["llamacpp:requests_deferred"] == "gauge"
    assert types["llamacpp:prompt_tokens_total"] == "counter"
    assert samples["llamacpp:prompt_tokens_total"] > 0
    assert samples["llamacpp:tokens_predicted_total"] >= 4
    assert samples["llamacpp:requests_processing"] == 0  # idle again


def test_metrics_without_flag_is_disabled(start_llama_server: StartServer, tiny_settings: LlamaServerSettings) -> None:
    srv = start_llama_server(tiny_settings.replace(metrics=False))
    assert get(srv, "/metrics").status_code == 501  # "This server does not support metrics endpoint"


def test_metrics_in_flight(start_llama_server: StartServer, tiny_settings: LlamaServerSettings) -> None:
    srv = start_llama_server(tiny_settings.replace(n_parallel=2, n_ctx=1024))
    capture = scrape_metrics_under_load(srv.base_url, requests=4, max_tokens=160)
    assert capture.statuses == (200, 200, 200, 200)
    assert capture.samples["llamacpp:requests_processing"] == 2  # both slots busy
    assert capture.samples["llamacpp:requests_deferred"] == 2  # the other two queued
    after = parse_metrics(get(srv, "/metrics").text)
    assert after["llamacpp:requests_processing"] == 0
    assert after["llamacpp:requests_deferred"] == 0
    assert after["llamacpp:tokens_predicted_total"] == 4 * 160


def test_rendered_argv_serves(start_llama_server: StartServer, tiny_gguf: Path) -> None:
    settings = settings_from_argv(RENDERED_ARGV)
    srv = start_llama_server(settings.localized(model_path=tiny_gguf))
    assert [m["id"] for m in get(srv, "/v1/models").json()["data"]] == ["gemma-4-e2b-it"]
    slots = get(srv, "/slots").json()
    assert len(slots) == 4
    assert {s["n_ctx"] for s in slots} == {8192 // 4}  # -c is the total over all slots
    r = chat(srv, chat_payload("hi", max_tokens=2, model="gemma-4-e2b-it"))
    assert r.status_code == 200
    assert "llamacpp:requests_deferred" in get(srv, "/metrics").text


def test_stop_releases_port(start_llama_server: StartServer, tiny_settings: LlamaServerSettings) -> None:
    srv = start_llama_server(tiny_settings)
    url = f"{srv.base_url}/health"
    assert srv.stop() == 0
    assert not srv.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(url, timeout=2)
    assert "main loop exited" in srv.log_text()


def _png(width: int, height: int) -> bytes:
    rows = b"".join(
        b"\x00" + b"".join(bytes(((x * 7 + y * 3) % 256, (x * y) % 256, 128)) for x in range(width))
        for y in range(height)
    )

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_multimodal_mmproj_accepts_image(
    start_llama_server: StartServer, tiny_mm_gguf: Path, tiny_mmproj_gguf: Path
) -> None:
    argv = ["llama-server", "-m", "model.gguf", "--mmproj", "mmproj.gguf", "-c", "2048", "-np", "1", "--jinja"]
    settings = settings_from_argv(argv).localized(model_path=tiny_mm_gguf, mmproj_path=tiny_mmproj_gguf)
    srv = start_llama_server(settings)
    model = get(srv, "/v1/models").json()["data"][0]
    assert "image" in model["architecture"]["input_modalities"]
    text_only = chat(srv, chat_payload("what is this", max_tokens=4)).json()["usage"]["prompt_tokens"]
    image_url = "data:image/png;base64," + base64.b64encode(_png(96, 96)).decode()
    body = {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": image_url}},
                ],
            }
        ],
        "temperature": 0,
        "max_tokens": 4,
    }
    r = chat(srv, body)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > text_only  # the image became soft tokens
