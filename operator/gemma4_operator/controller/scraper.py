"""Fetch every ready serving pod's /metrics for the built-in autoscaler (the shell half of scraping).

One shared httpx.AsyncClient under bounded concurrency; parsing is ``autoscaling.exposition``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from gemma4_operator.autoscaling.exposition import MetricNames, PodMetrics, ScrapeFailure, parse_exposition


@dataclass(frozen=True)
class ScrapeTarget:
    pod: str
    url: str



async def _scrape_one(client: httpx.AsyncClient, target: ScrapeTarget, names: MetricNames,
                      limit: asyncio.Semaphore, clock: float) -> PodMetrics | ScrapeFailure:
    async with limit:
        try:
            response = await client.get(target.url)
            response.raise_for_status()
            return PodMetrics(target.pod, clock, parse_exposition(response.text, names))
        except httpx.TimeoutException:
            return ScrapeFailure(target.pod, clock, "timed out")
        except httpx.HTTPStatusError as e:
            return ScrapeFailure(target.pod, clock, f"HTTP {e.response.status_code}")
        except httpx.HTTPError as e:
            return ScrapeFailure(target.pod, clock, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except ValueError as e:
            return ScrapeFailure(target.pod, clock, str(e))


async def scrape(client: httpx.AsyncClient, targets: Sequence[ScrapeTarget], names: MetricNames, *,
                 now: float, concurrency: int = 16) -> list[PodMetrics | ScrapeFailure]:
    """Scrape every target; a failing pod yields a ScrapeFailure, never an exception."""
    limit = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(_scrape_one(client, t, names, limit, now) for t in targets)))
