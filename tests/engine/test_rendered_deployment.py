"""What `render` produces for a llama.cpp plan, run for real: the container's argv is translated
into llama.cpp server settings and served from the tiny Gemma 4; the rendered probes, served
model name, Service port and the autoscaler's scraper are checked against the live server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import yaml

from gemma4_operator.api import Gemma4Deployment
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.exposition import PodMetrics
from gemma4_operator.controller.scraper import ScrapeTarget, scrape
from gemma4_operator.engines import engine
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.render.children import Owner, render_children
from tests.engine.llama_server import LlamaServer, chat_payload, settings_from_argv

pytestmark = pytest.mark.engine
EXAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "examples" / "e2b-cpu.yaml"


@pytest.fixture(scope="module")
def rendered() -> dict[str, dict[str, Any]]:
    d = Gemma4Deployment.model_validate(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
    p = plan(d.spec, ClusterFacts.every_catalog_type())
    children = render_children(Owner(d.name, d.namespace, "uid"), d.spec, p)
    return {c["kind"]: c for c in children}


def _container(rendered: dict[str, dict[str, Any]]) -> dict[str, Any]:
    container: dict[str, Any] = rendered["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    return container


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def server(rendered: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    pytest.importorskip("xllamacpp")
    container = _container(rendered)
    settings = settings_from_argv(container["args"])
    port = int(container["ports"][0]["containerPort"])
    tiny = Path(__file__).resolve().parents[1] / "data" / "tiny-gemma4-f32.gguf"
    local = settings.localized(model_path=tiny).replace(port=port if _port_free(port) else 0)
    srv = LlamaServer(local, log_path=tmp_path_factory.mktemp("rendered") / "server.log").start()
    yield srv
    srv.stop()


def test_rendered_argv_becomes_the_planned_server_settings(rendered: dict[str, dict[str, Any]]) -> None:
    # the example: e2b on cpu, 8192 tokens x 2 slots, text only
    settings = settings_from_argv(_container(rendered)["args"])
    assert (settings.n_ctx, settings.n_parallel, settings.kv_unified) == (16384, 2, True)
    assert settings.metrics and settings.jinja and settings.no_mmproj
    assert settings.alias == ("gemma-4-e2b-it",)
    assert settings.hf_repo == "ggml-org/gemma-4-E2B-it-GGUF:Q8_0"  # q8_0: the quality floor, same CPU pod cost
    assert (settings.host, settings.port, settings.n_gpu_layers) == ("0.0.0.0", 8000, 0)


def test_service_port_reaches_the_server_port(rendered: dict[str, dict[str, Any]]) -> None:
    service_port = rendered["Service"]["spec"]["ports"][0]
    container = _container(rendered)
    assert service_port["targetPort"] == container["ports"][0]["name"] == "http"
    assert service_port["port"] == container["ports"][0]["containerPort"] == int(
        container["args"][container["args"].index("--port") + 1])


def test_rendered_probes_answer_as_kubelet_expects(rendered: dict[str, dict[str, Any]], server: LlamaServer) -> None:
    container = _container(rendered)
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            path = container[probe]["httpGet"]["path"]
            assert container[probe]["httpGet"]["port"] == "http"
            response = client.get(path)
            assert 200 <= response.status_code < 400, (probe, path, response.status_code)
    # llama.cpp bound the port before loading: the startup probe saw no success before the model was in
    assert server.health_history[-1] == 200
    assert all(h in ("refused", 503) for h in server.health_history[:-1])


def test_models_lists_the_served_name_and_chat_works(server: LlamaServer) -> None:
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        models = client.get("/v1/models").json()
        assert [m["id"] for m in models["data"]] == ["gemma-4-e2b-it"]
        reply = client.post("/v1/chat/completions", json=chat_payload("hello", model="gemma-4-e2b-it"))
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["role"] == "assistant"


def test_scraper_reads_queue_and_running_while_requests_are_in_flight(server: LlamaServer) -> None:
    names = engine("llamacpp").metric_names()
    target = ScrapeTarget("pod-0", f"{server.base_url}/metrics")

    async def watch(deadline: float) -> dict[Signal, float]:
        best: dict[Signal, float] = {}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            while time.monotonic() < deadline:
                result, = await scrape(session, [target], names, now=time.time())
                assert isinstance(result, PodMetrics), result
                if sum(result.values.values()) > sum(best.values()):
                    best = dict(result.values)
                if best.get(Signal.BATCH_SIZE) == 2 and best.get(Signal.QUEUE_LENGTH, 0) >= 1:
                    break
                await asyncio.sleep(0.005)
        return best

    with httpx.Client(base_url=server.base_url, timeout=120) as client, ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(client.post, "/v1/chat/completions",
                               json=chat_payload(f"r{i}", max_tokens=256, ignore_eos=True)) for i in range(4)]
        seen = asyncio.run(watch(time.monotonic() + 60))
        assert all(f.result().status_code == 200 for f in futures)
    assert seen[Signal.BATCH_SIZE] == 2  # both rendered slots busy
    assert seen[Signal.QUEUE_LENGTH] >= 1  # the rest wait
