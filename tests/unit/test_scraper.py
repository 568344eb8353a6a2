"""Scraping engine /metrics from real HTTP servers on 127.0.0.1 serving what vLLM 0.32.0 and
llama.cpp really emit (tests/data/metrics: vLLM's own PrometheusStatLogger output, and a
capture from llama.cpp's server with requests in flight), plus the ways a pod fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.exposition import (
    PodMetrics,
    ScrapeFailure,
    cpu_cores,
    cpu_utilization_samples,
    parse_exposition,
    to_samples,
)
from gemma4_operator.controller.autoscaler_loop import duty_cycle
from gemma4_operator.controller.scraper import ScrapeTarget, scrape
from gemma4_operator.engines import engine

METRICS = Path(__file__).resolve().parents[1] / "data" / "metrics"
VLLM_TEXT = (METRICS / "vllm-0.32.0.txt").read_text(encoding="utf-8")
LLAMA_TEXT = (METRICS / "llamacpp-real.txt").read_text(encoding="utf-8")
VLLM_NAMES = engine("vllm").metric_names()
LLAMA_NAMES = engine("llamacpp").metric_names()


def test_vllm_exposition_maps_to_signals() -> None:
    values = parse_exposition(VLLM_TEXT, VLLM_NAMES)
    assert values[Signal.QUEUE_LENGTH] == 7.0
    assert values[Signal.BATCH_SIZE] == 3.0
    assert values[Signal.KV_CACHE_USAGE] == pytest.approx(0.42)
    assert values[Signal.REQUEST_COUNT] == 10.0  # summed over finished_reason


def test_llamacpp_exposition_maps_to_signals_and_has_no_kv_or_request_counter() -> None:
    values = parse_exposition(LLAMA_TEXT, LLAMA_NAMES)
    assert values == {Signal.QUEUE_LENGTH: 2.0, Signal.BATCH_SIZE: 2.0}


def test_old_vllm_kv_name_is_read_only_when_the_new_one_is_absent() -> None:
    old = "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc{engine=\"0\"} 0.5\n"
    assert parse_exposition(old, VLLM_NAMES) == {Signal.KV_CACHE_USAGE: 0.5}
    both = old + "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc{engine=\"0\"} 0.25\n"
    assert parse_exposition(both, VLLM_NAMES) == {Signal.KV_CACHE_USAGE: 0.25}


def test_kv_fraction_is_averaged_across_engines_and_counts_are_summed() -> None:
    text = ("vllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.6\n"
            "vllm:num_requests_waiting{engine=\"0\"} 2\nvllm:num_requests_waiting{engine=\"1\"} 5\n")
    values = parse_exposition(text, VLLM_NAMES)
    assert values[Signal.KV_CACHE_USAGE] == pytest.approx(0.4)
    assert values[Signal.QUEUE_LENGTH] == 7


def test_garbage_is_refused() -> None:
    with pytest.raises(ValueError, match="not Prometheus text format"):
        parse_exposition("<html><body>502 Bad Gateway</body></html>", VLLM_NAMES)


def test_counters_become_per_minute_rates_and_resets_are_skipped() -> None:
    before = {"a": PodMetrics("a", 100.0, {Signal.REQUEST_COUNT: 10.0}),
              "b": PodMetrics("b", 100.0, {Signal.REQUEST_COUNT: 50.0})}
    now = [PodMetrics("a", 115.0, {Signal.REQUEST_COUNT: 15.0, Signal.QUEUE_LENGTH: 1.0}),
           PodMetrics("b", 115.0, {Signal.REQUEST_COUNT: 3.0}),       # restarted: counter reset
           PodMetrics("c", 115.0, {Signal.REQUEST_COUNT: 7.0})]       # first scrape: no rate yet
    samples = to_samples(now, before)
    assert [(s.pod, s.signal, s.value) for s in samples] == [
        ("a", Signal.REQUEST_COUNT, 20.0), ("a", Signal.QUEUE_LENGTH, 1.0)]


@pytest.mark.parametrize(("quantity", "cores"), [("250m", 0.25), ("2", 2.0), ("1534021n", 0.001534021),
                                                ("1500u", 0.0015), ("0.5", 0.5)])
def test_cpu_quantities(quantity: str, cores: float) -> None:
    assert cpu_cores(quantity) == pytest.approx(cores)


def test_cpu_utilization_is_usage_over_request_for_ready_pods() -> None:
    items = [{"metadata": {"name": "a"}, "containers": [{"usage": {"cpu": "1500m"}}, {"usage": {"cpu": "500m"}}]},
             {"metadata": {"name": "b"}, "containers": [{"usage": {"cpu": "4"}}]},       # not ready: left out
             {"metadata": {"name": "c"}, "containers": [{"usage": {"cpu": "100000000n"}}]}]
    samples = cpu_utilization_samples(items, {"a", "c"}, requested_cores=4.0, now=9.0)
    assert [(s.pod, s.signal, round(s.value, 6), s.at) for s in samples] == [
        ("a", Signal.CPU_UTILIZATION, 50.0, 9.0), ("c", Signal.CPU_UTILIZATION, 2.5, 9.0)]
    assert cpu_utilization_samples(items, {"a"}, requested_cores=0, now=9.0) == []


@pytest.fixture
async def engines() -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1 with one route per pod behaviour."""

    async def text(body: str) -> web.Response:
        return web.Response(text=body, content_type="text/plain")

    async def slow(_: web.Request) -> web.Response:
        await asyncio.sleep(1.5)
        return await text(VLLM_TEXT)

    async def hang_up(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()  # the pod went away mid-scrape
        return web.Response()

    async def vllm_route(_: web.Request) -> web.Response:
        return await text(VLLM_TEXT)

    async def llama_route(_: web.Request) -> web.Response:
        return await text(LLAMA_TEXT)

    async def error_route(_: web.Request) -> web.Response:
        return web.Response(status=500, text="engine dead")

    async def garbage_route(_: web.Request) -> web.Response:
        return await text("{not: prometheus")

    async def prometheus_route(request: web.Request) -> web.Response:
        assert request.query["query"].startswith("avg by (pod) (DCGM_FI_DEV_GPU_UTIL{")
        return web.json_response({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"pod": "chat-0"}, "value": [1.0, "87.5"]}]}})

    app = web.Application()
    app.router.add_get("/prometheus/api/v1/query", prometheus_route)
    app.router.add_get("/error/api/v1/query", error_route)
    app.router.add_get("/vllm/metrics", vllm_route)
    app.router.add_get("/llama/metrics", llama_route)
    app.router.add_get("/slow/metrics", slow)
    app.router.add_get("/error/metrics", error_route)
    app.router.add_get("/garbage/metrics", garbage_route)
    app.router.add_get("/gone/metrics", hang_up)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_scrape_real_servers_isolates_every_failure(engines: str) -> None:
    targets = [ScrapeTarget(name, f"{engines}/{name}/metrics")
               for name in ("vllm", "slow", "error", "garbage", "gone")]
    targets.append(ScrapeTarget("refused", "http://127.0.0.1:9/metrics"))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=0.5)) as session:
        results = {r.pod: r for r in await scrape(session, targets, VLLM_NAMES, now=42.0, concurrency=3)}
    ok = results["vllm"]
    assert isinstance(ok, PodMetrics) and ok.values[Signal.QUEUE_LENGTH] == 7.0 and ok.at == 42.0
    failures = {pod: r.reason for pod, r in results.items() if isinstance(r, ScrapeFailure)}
    assert failures["slow"] == "timed out"
    assert failures["error"] == "HTTP 500"
    assert failures["garbage"].startswith("not Prometheus text format")
    assert failures["gone"] == "ServerDisconnectedError: Server disconnected"
    assert failures["refused"].startswith("ClientConnectorError: Cannot connect to host 127.0.0.1:9")


async def test_scrape_llamacpp_pod(engines: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        result, = await scrape(session, [ScrapeTarget("p", f"{engines}/llama/metrics")], LLAMA_NAMES, now=1.0)
    assert isinstance(result, PodMetrics)
    assert result.values == {Signal.QUEUE_LENGTH: 2.0, Signal.BATCH_SIZE: 2.0}


async def test_duty_cycle_reads_prometheus_and_words_its_failures(engines: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        samples = await duty_cycle(session, f"{engines}/prometheus", "chat", "ml", ["chat-0"], now=5.0)
        assert [(s.pod, s.signal, s.value, s.ready) for s in samples] == [("chat-0", Signal.DUTY_CYCLE, 87.5, True)]
        with pytest.raises(ValueError, match=r"^Prometheus answered HTTP 500$"):
            await duty_cycle(session, f"{engines}/error", "chat", "ml", [], now=5.0)
        with pytest.raises(ValueError, match=r"^Prometheus unreachable: ClientConnectorError: Cannot connect"):
            await duty_cycle(session, "http://127.0.0.1:9", "chat", "ml", [], now=5.0)
