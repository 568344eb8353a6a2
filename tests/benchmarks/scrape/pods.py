"""N fake serving pods on 127.0.0.1 for the scrape benchmark, in their own process (their memory is not the
operator's): ``python -m tests.benchmarks.scrape.pods MODE N HOSTILE_BYTES``.

MODE ``good``: each pod answers vLLM 0.32's real /metrics (tests/data/metrics, 56 KiB). MODE ``hostile``:
each pod answers an endless body of distinct series, stopping only when the scraper hangs up or after
HOSTILE_BYTES (a safety bound for this benchmark; a hostile image has none). Prints the ports as one JSON
line, then serves until its stdin closes (at most 15 minutes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path

from aiohttp import web

VLLM_METRICS = (Path(__file__).resolve().parents[2] / "data" / "metrics" / "vllm-0.32.0.txt").read_bytes()
CHUNK_SERIES = 1024
LIFETIME_S = 900.0


def _hostile_chunk(n: int) -> bytes:
    """64 KiB or so of series no engine has (distinct label values, as a cardinality bomb would)."""
    return "".join(f'hostile_series{{pod="p",i="{n * CHUNK_SERIES + i}"}} 1\n'
                   for i in range(CHUNK_SERIES)).encode()


def _app(mode: str, hostile_bytes: int) -> web.Application:
    chunk = _hostile_chunk(0)

    async def good(_: web.Request) -> web.Response:
        return web.Response(body=VLLM_METRICS, content_type="text/plain")

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        try:
            for _ in range(hostile_bytes // len(chunk) + 1):
                await response.write(chunk)
        except ConnectionError:
            pass  # the scraper stopped reading
        return response

    app = web.Application()
    app.router.add_get("/metrics", good if mode == "good" else endless)
    return app


async def _serve(mode: str, n: int, hostile_bytes: int) -> None:
    runner = web.AppRunner(_app(mode, hostile_bytes), handle_signals=False)
    await runner.setup()
    ports = []
    for _ in range(n):
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ports.append(runner.addresses[-1][1])
    print(json.dumps(ports), flush=True)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), LIFETIME_S)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
