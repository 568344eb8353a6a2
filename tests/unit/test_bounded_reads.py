"""Bounded reads of what a tenant's pods answer: /metrics bodies (size, line length, time, only the needed
series kept), the Prometheus answer, and termination messages. The HTTP cases run against a real aiohttp
server on 127.0.0.1 whose routes misbehave the ways a serving image can."""

from __future__ import annotations

import asyncio
import gzip
import re
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from gemma4_operator.api.limits import MAX_TERMINATION_MESSAGE_BYTES, termination_message_tail
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.exposition import (
    MAX_BODY_BYTES,
    MAX_LINE_BYTES,
    BoundedBody,
    ExpositionReader,
    OverLimitError,
    PodMetrics,
    ScrapeFailure,
    parse_exposition,
    size_words,
)
from gemma4_operator.controller.autoscaler_loop import duty_cycle
from gemma4_operator.controller.scraper import ScrapeTarget, scrape
from gemma4_operator.engines import engine

NAMES = engine("vllm").metric_names()
VLLM_METRICS = Path(__file__).resolve().parents[1] / "data" / "metrics" / "vllm-0.32.0.txt"
NEEDED = 'vllm:num_requests_waiting{engine="0"} 7\n'
OVER_BODY = "metrics body exceeds 1 MiB (the operator's limit); the rest was not read"
FILLER = b'# HELP filler not a metric the autoscaler reads\nhostile_series{pod="x"} 1\n' * 512  # ~37 KiB


def test_size_words() -> None:
    assert [size_words(n) for n in (MAX_BODY_BYTES, MAX_LINE_BYTES, 4096, 1000)] == [
        "1 MiB", "64 KiB", "4 KiB", "1000 bytes"]


def test_a_body_just_under_the_limit_parses() -> None:
    lines, rest = divmod(MAX_BODY_BYTES - len(NEEDED), 100)
    body = ("#" * 99 + "\n") * lines + "#" * (rest - 1) + "\n"  # comment lines, well under the line limit
    assert len((body + NEEDED).encode()) == MAX_BODY_BYTES
    assert parse_exposition(body + NEEDED, NAMES) == {Signal.QUEUE_LENGTH: 7.0}
    with pytest.raises(OverLimitError, match=f"^{re.escape(OVER_BODY)}$"):
        parse_exposition(body + NEEDED + "\n", NAMES)


def test_a_line_over_the_limit_is_refused_before_its_end_arrives() -> None:
    reader = ExpositionReader(NAMES)
    reader.feed(NEEDED.encode())
    with pytest.raises(OverLimitError, match=r"^metrics line 2 exceeds 64 KiB \(the operator's limit\); "
                                             r"the rest was not read$"):
        reader.feed(b"x" * (MAX_LINE_BYTES + 1))  # no newline yet: still refused


def test_only_the_needed_series_are_kept() -> None:
    """10 MiB of other series in 64 KiB chunks: memory stays at a chunk, not the body."""
    reader = ExpositionReader(NAMES, max_bytes=64 << 20)
    tracemalloc.start()
    try:
        for i in range((10 << 20) // len(FILLER)):
            reader.feed(FILLER.replace(b'"x"', f'"{i:05d}"'.encode()))
            if i == 5:
                reader.feed(NEEDED.encode())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reader.values() == {Signal.QUEUE_LENGTH: 7.0}
    assert peak < 1 << 20, f"peak {peak} bytes while reading 10 MiB of unneeded series"


def test_a_needed_series_in_a_malformed_line_is_refused_with_its_line_number() -> None:
    with pytest.raises(ValueError, match=r"^not Prometheus text format: line 2: "):
        parse_exposition(f"# ok\nvllm:num_requests_waiting{{engine=\"0\" 7\n{NEEDED}", NAMES)


def test_chunk_boundaries_do_not_matter() -> None:
    """vLLM's real body fed 7 bytes at a time reads as it does whole; line numbers count across chunks."""
    body = VLLM_METRICS.read_bytes()
    reader = ExpositionReader(NAMES)
    for i in range(0, len(body), 7):
        reader.feed(body[i:i + 7])
    assert reader.values() == parse_exposition(body.decode(), NAMES)
    bad = body + b'vllm:num_requests_waiting{engine="1" 7\n'
    reader = ExpositionReader(NAMES)
    for i in range(0, len(body), 4096):
        reader.feed(body[i:i + 4096])
    line = body.count(b"\n") + 1
    with pytest.raises(ValueError, match=f"^not Prometheus text format: line {line}: "):
        reader.feed(bad[len(body):])


def test_quoted_utf8_names_are_read() -> None:
    assert parse_exposition('{"vllm:num_requests_waiting", engine="0"} 3\n', NAMES) == {Signal.QUEUE_LENGTH: 3.0}


def test_a_bounded_body_keeps_at_most_its_limit() -> None:
    body = BoundedBody("Prometheus answer", 10)
    body.feed(b"0123456789")
    assert body.data == b"0123456789"
    with pytest.raises(OverLimitError, match=r"^Prometheus answer exceeds 10 bytes \(the operator's limit\)"):
        body.feed(b"x")


@pytest.fixture
async def hostile() -> AsyncIterator[str]:
    """A real aiohttp server on 127.0.0.1: endless, dripping, long-lined, compressed and just-right bodies."""

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(4096):  # 150 MiB at most: the test fails long before if nothing stops reading
                await response.write(FILLER)
        except ConnectionError:
            pass  # the scraper hung up at its limit
        return response

    async def drip(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(200):  # 10 s at most
                await response.write(b"# still here\n")
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass
        return response

    async def long_line(_: web.Request) -> web.Response:
        return web.Response(body=b"a" * (MAX_LINE_BYTES + 10) + b" 1\n", content_type="text/plain")

    async def compressed(request: web.Request) -> web.Response:
        """Expanded, this would read as the queue; a few KiB can expand to gigabytes the same way."""
        assert request.headers["Accept-Encoding"] == "identity"  # asked for plain text
        return web.Response(body=gzip.compress(NEEDED.encode(), mtime=0),
                            headers={"Content-Encoding": "gzip", "Content-Type": "text/plain"})

    async def good(_: web.Request) -> web.Response:
        return web.Response(text=NEEDED, content_type="text/plain")

    async def big_answer(_: web.Request) -> web.Response:
        rows = [{"metric": {"pod": f"p{i}"}, "value": [1.0, "50"]} for i in range(40000)]
        return web.json_response({"status": "success", "data": {"result": rows}})

    app = web.Application()
    for path, handler in (("/endless/metrics", endless), ("/drip/metrics", drip), ("/long/metrics", long_line),
                          ("/gzip/metrics", compressed), ("/good/metrics", good),
                          ("/big/api/v1/query", big_answer)):
        app.router.add_get(path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_hostile_pods_are_scrape_failures_naming_the_limit(hostile: str) -> None:
    targets = [ScrapeTarget(name, f"{hostile}/{name}/metrics") for name in ("endless", "drip", "long", "gzip", "good")]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as session:
        results = {r.pod: r for r in await scrape(session, targets, NAMES, now=1.0)}
    assert results.pop("good") == PodMetrics("good", 1.0, {Signal.QUEUE_LENGTH: 7.0})
    assert results["endless"] == ScrapeFailure("endless", 1.0, OVER_BODY, over_limit=True)
    assert results["drip"] == ScrapeFailure("drip", 1.0, "timed out")
    assert results["long"] == ScrapeFailure(
        "long", 1.0, "metrics line 1 exceeds 64 KiB (the operator's limit); the rest was not read", over_limit=True)
    gz = results["gzip"]
    assert isinstance(gz, ScrapeFailure) and not gz.over_limit
    assert gz.reason.startswith("not Prometheus text format: line 1: ")


async def test_a_prometheus_answer_over_the_limit_is_an_unreadable_duty_cycle(hostile: str) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2.0)) as session:
        with pytest.raises(ValueError, match=r"^Prometheus answer exceeds 1 MiB \(the operator's limit\); "
                                             r"the rest was not read$"):
            await duty_cycle(session, f"{hostile}/big", "chat", "ml", [], now=1.0)


# ---------------------------------------------------------------------------------------
# termination messages
# ---------------------------------------------------------------------------------------

def test_a_termination_message_within_the_kubelets_limit_is_read_whole() -> None:
    text = "é" * (MAX_TERMINATION_MESSAGE_BYTES // 2)  # 4096 bytes in 2048 characters
    assert termination_message_tail(text) is text


def test_a_longer_termination_message_keeps_its_end_behind_a_marker() -> None:
    text = "x" * (1 << 20) + "é" * 3000 + "the real error"
    tail = termination_message_tail(text)
    kept = tail.split("] ", 1)[1]
    assert text.endswith(kept) and kept.endswith("the real error")
    assert len(kept.encode()) <= MAX_TERMINATION_MESSAGE_BYTES < len(kept.encode()) + 2  # a cut "é" is dropped
    assert tail == f"[{len(text) - len(kept)} characters cut: the operator reads the last 4096 bytes] {kept}"

