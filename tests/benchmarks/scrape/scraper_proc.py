"""The operator's scraper in a process of its own, measured: ``python -m tests.benchmarks.scrape.scraper_proc
PORTS_JSON ROUNDS``. Scrapes every port's /metrics ROUNDS times back to back with the operator's
``controller.scraper.scrape`` and its default session settings (5 s total timeout, 16 in flight), and prints
one JSON line: RSS after start-up, after the first round and at the end, peak RSS, results, seconds.

Which ``gemma4_operator`` runs is whatever PYTHONPATH puts first (``--against`` runs an older commit's).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from collections import Counter
from typing import Any

import aiohttp

from gemma4_operator.config import OperatorConfig
from gemma4_operator.controller.scraper import ScrapeTarget, scrape
from gemma4_operator.engines import engine

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def _run(ports: list[int], rounds: int) -> dict[str, Any]:
    config = OperatorConfig()
    names = engine("vllm").metric_names()
    targets = [ScrapeTarget(f"pod-{i}", f"http://127.0.0.1:{port}/metrics") for i, port in enumerate(ports)]
    start = rss_mib()
    outcomes: Counter[str] = Counter()
    first = 0.0
    began = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.scrape_timeout),
                                     connector=aiohttp.TCPConnector(limit=config.scrape_concurrency)) as session:
        for n in range(rounds):
            results = await scrape(session, targets, names, now=float(n), concurrency=config.scrape_concurrency)
            outcomes.update(getattr(r, "reason", "ok") for r in results)
            first = first or rss_mib()
    return {"rss_start_mib": start, "rss_first_round_mib": first, "rss_end_mib": rss_mib(), "peak_mib": peak_mib(),
            "outcomes": dict(outcomes), "seconds": time.monotonic() - began}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_run(json.loads(sys.argv[1]), int(sys.argv[2])))))
