"""The activator in front of the real llama.cpp server (the engine tier): the test plays the kubelet.

The activator is started first, its upstream a port where nothing listens yet (in a cluster: the serving pods'
headless Service, which resolves to no pod while none is Ready). A request is held; the test starts llama-server on
that port, which answers /health 503 while it loads and 200 once it serves, what the kubelet's readiness probe
waits for, and the held request is answered by the engine. A request past the bound gets 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from gemma4_operator.activator.server import Activator, start
from gemma4_operator.activator.settings import ActivatorSettings
from gemma4_operator.autoscaling.activator import HELD_REQUESTS
from tests.engine.conftest import TINY_ALIAS, StartServer
from tests.engine.llama_server import LlamaServerSettings, free_port

pytestmark = [pytest.mark.engine]

COLD_START_S = 120  # far more than the tiny model needs: the test never waits for it
CHAT = {"model": TINY_ALIAS, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 8, "stream": True}

Started = tuple[Activator, ActivatorSettings]


@pytest.fixture
async def activator_factory() -> AsyncIterator[Callable[..., Awaitable[Started]]]:
    stops: list[Callable[[], Awaitable[None]]] = []

    async def make(upstream_port: int, **overrides: float) -> Started:
        settings = ActivatorSettings(upstream=f"http://127.0.0.1:{upstream_port}", ready_path="/health",
                                     host="127.0.0.1", port=free_port(), admin_port=free_port(),
                                     **{"cold_start_s": COLD_START_S, "probe_interval_s": 0.2, **overrides})
        activator, stop = await start(settings)
        stops.append(stop)
        return activator, settings

    yield make
    for stop in stops:
        await stop()


async def _held(client: httpx.AsyncClient, settings: ActivatorSettings) -> float:
    body = (await client.get(f"http://127.0.0.1:{settings.admin_port}/metrics")).text
    return next(float(line.split()[-1]) for line in body.splitlines() if line.startswith(HELD_REQUESTS + " "))


async def _count_is(client: httpx.AsyncClient, settings: ActivatorSettings, expected: int) -> bool:
    return await _held(client, settings) == expected


async def _until(check: Callable[[], Awaitable[bool]], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await check():
            await asyncio.sleep(0.05)


async def _stream_chat(client: httpx.AsyncClient, url: str) -> tuple[int, list[dict[str, object]]]:
    """A streamed chat completion: the status and the server-sent events' JSON payloads."""
    events: list[dict[str, object]] = []
    async with client.stream("POST", url, json=CHAT) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                events.append(json.loads(line.removeprefix("data: ")))
        return response.status_code, events


async def test_held_request_is_answered_by_the_engine_started_meanwhile_and_the_next_past_the_bound_gets_503(
        activator_factory: Callable[..., Awaitable[Started]], start_llama_server: StartServer,
        tiny_settings: LlamaServerSettings) -> None:
    port = free_port()
    activator, settings = await activator_factory(port, max_held=1)
    url = f"http://127.0.0.1:{settings.port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=60) as client:
        held = asyncio.create_task(_stream_chat(client, url))
        await _until(lambda: _count_is(client, settings, 1))

        past_bound = await client.post(url, json=CHAT)
        assert past_bound.status_code == 503
        retry_after = int(past_bound.headers["Retry-After"])
        assert 1 <= retry_after <= COLD_START_S  # the rest of the cold start of the wake under way
        assert "already wait for a replica" in past_bound.json()["error"]["message"]
        assert not held.done()  # nothing answered the held request while no replica served

        # the kubelet's part: the pod starts, loads the model, and its readiness path turns 200
        await asyncio.to_thread(start_llama_server, tiny_settings.replace(port=port))
        status, events = await asyncio.wait_for(held, 30)

        assert status == 200
        assert events and events[-1]["choices"][0]["finish_reason"] in ("length", "stop")  # type: ignore[index]
        assert sum(1 for e in events if e["choices"][0]["delta"].get("content")) >= 1  # type: ignore[index]
        assert await _held(client, settings) == 0
        # with the replica ready, the next request goes straight through (the Service may lag the switch)
        direct = await client.post(url, json={**CHAT, "stream": False})
        assert direct.status_code == 200
        assert direct.json()["choices"][0]["message"]["content"] is not None
    assert activator.held == 0


async def test_held_request_times_out_after_the_cold_start_with_503_and_retry_after(
        activator_factory: Callable[..., Awaitable[Started]]) -> None:
    _, settings = await activator_factory(free_port(), cold_start_s=1.5, hold_s=1.5)
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"http://127.0.0.1:{settings.port}/v1/chat/completions", json=CHAT)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "2"  # the wake is overdue: a whole cold start, rounded up
        assert "no replica became ready within 1.5 s" in answer.json()["error"]["message"]
        assert await _held(client, settings) == 0


async def test_body_over_the_bound_gets_413_without_being_held(
        activator_factory: Callable[..., Awaitable[Started]]) -> None:
    _, settings = await activator_factory(free_port(), max_body_bytes=1024)
    async with httpx.AsyncClient(timeout=30) as client:
        answer = await client.post(f"http://127.0.0.1:{settings.port}/v1/completions", content=b"x" * 2048)
        assert answer.status_code == 413
        assert answer.json()["error"]["message"] == "request body over 1024 bytes"
        chunked = await client.post(f"http://127.0.0.1:{settings.port}/v1/completions",
                                    content=_chunks(b"y" * 512, 4))  # no Content-Length: counted as it arrives
        assert chunked.status_code == 413
        assert await _held(client, settings) == 0


async def _chunks(piece: bytes, times: int) -> AsyncIterator[bytes]:
    for _ in range(times):
        yield piece


async def test_an_endpoint_pickers_metrics_scrape_is_answered_not_held(
        activator_factory: Callable[..., Awaitable[Started]]) -> None:
    """With routing, the endpoint picker scrapes /metrics on each endpoint's port, the activator's at zero: a scrape
    held as a request would wake the Deployment every few seconds."""
    activator, settings = await activator_factory(free_port())
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(f"http://127.0.0.1:{settings.port}/metrics")
        assert (answer.status_code, answer.text) == (200, "")
        assert activator.held == 0 and await _held(client, settings) == 0
