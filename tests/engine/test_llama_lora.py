"""LoRA adapters on llama.cpp's real server: the rendered flags load a tiny random LoRA GGUF for the tiny Gemma 4
(tests/data/tiny-gemma4-lora-f32.gguf, made by tests/engine/make_tiny_lora.py), the server lists it, a request's
`lora` field applies it (the greedy completion changes) and the OpenAI `model` field does not select it; without
the rendered --no-cache-prompt, a base request after an adapter request reads the adapter's cached prompt."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.api.adapters import ADAPTER_GGUF, adapter_dir
from gemma4_operator.engines import llamacpp
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from tests.engine.conftest import DATA_DIR, StartServer
from tests.engine.llama_server import LlamaServer, settings_from_argv

TINY_LORA = DATA_DIR / "tiny-gemma4-lora-f32.gguf"
ADAPTERS = ("support", "legal")


def _rendered_argv() -> list[str]:
    obj = {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment", "metadata": {"name": "chat"},
           "spec": {"model": {"variant": "e2b", "adapters": [{"name": n, "uri": f"hf://acme/{n}"} for n in ADAPTERS]},
                    "accelerator": {"type": "cpu"}, "serving": {"maxModelLen": 512, "concurrency": 2}}}
    d = Gemma4Deployment.model_validate(obj)
    return ["llama-server", *llamacpp.command_line(plan(d.spec, ClusterFacts.every_catalog_type()), d.spec)]


def _complete(srv: LlamaServer, **extra: Any) -> str:
    body = {"prompt": "The adapter says", "max_tokens": 12, "temperature": 0, "seed": 1, **extra}
    r = httpx.post(f"{srv.base_url}/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    text: str = r.json()["choices"][0]["text"]
    return text


@pytest.fixture
def lora_server(start_llama_server: StartServer, tiny_gguf: Path) -> LlamaServer:
    settings = settings_from_argv(_rendered_argv())
    # the rendered paths are where the weights path stages each adapter in the pod, each loaded at scale 0
    assert settings.lora == tuple((Path(f"{adapter_dir(n)}/{ADAPTER_GGUF}"), 0.0) for n in ADAPTERS)
    assert not settings.cache_prompt
    local = settings.localized(model_path=tiny_gguf, n_ctx=1024)
    return start_llama_server(local.replace(lora=tuple((TINY_LORA, scale) for _, scale in settings.lora)))


def test_rendered_lora_flags_load_the_adapters_at_scale_zero(lora_server: LlamaServer) -> None:
    listed = httpx.get(f"{lora_server.base_url}/lora-adapters", timeout=10).json()
    assert [(a["id"], Path(a["path"]).name, a["scale"]) for a in listed] == \
        [(0, TINY_LORA.name, 0.0), (1, TINY_LORA.name, 0.0)]


def test_a_requests_lora_field_applies_an_adapter_and_model_does_not(lora_server: LlamaServer) -> None:
    base = _complete(lora_server)
    adapted = _complete(lora_server, lora=[{"id": 0, "scale": 1.0}])
    assert adapted != base
    assert _complete(lora_server, lora=[{"id": 1, "scale": 1.0}]) == adapted  # the same file under id 1
    # what the README says: on llama.cpp the adapter's name as `model` serves the base model
    assert _complete(lora_server, model=ADAPTERS[0]) == base
    assert _complete(lora_server) == base  # a per-request adapter leaves no trace on the next request


def test_without_no_cache_prompt_a_base_request_reads_the_adapters_cached_prompt(
        start_llama_server: StartServer, tiny_gguf: Path) -> None:
    """Why the renderer turns the prompt cache off: this llama-server does not key it by adapter."""
    settings = settings_from_argv(_rendered_argv()).localized(model_path=tiny_gguf, n_ctx=1024)
    srv = start_llama_server(settings.replace(lora=((TINY_LORA, 0.0),), cache_prompt=True))
    base = _complete(srv)
    _complete(srv, lora=[{"id": 0, "scale": 1.0}])
    assert _complete(srv) != base
