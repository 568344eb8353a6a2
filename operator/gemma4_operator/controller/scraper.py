"""Fetch every ready serving pod's /metrics for the built-in autoscaler (the shell half of scraping).

One shared aiohttp session (kopf's own HTTP client: no second one in the process) under bounded concurrency;
parsing is ``autoscaling.exposition``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from gemma4_operator.autoscaling.exposition import MetricNames, PodMetrics, ScrapeFailure, parse_exposition


@dataclass(frozen=True)
class ScrapeTarget:
    pod: str
    url: str



async def _scrape_one(session: aiohttp.ClientSession, target: ScrapeTarget, names: MetricNames,
                      limit: asyncio.Semaphore, clock: float) -> PodMetrics | ScrapeFailure:
    async with limit:
        try:
            async with session.get(target.url, allow_redirects=False, raise_for_status=True) as response:
                text = await response.text()
            return PodMetrics(target.pod, clock, parse_exposition(text, names))
        except TimeoutError:
            return ScrapeFailure(target.pod, clock, "timed out")
        except aiohttp.ClientResponseError as e:
            return ScrapeFailure(target.pod, clock, f"HTTP {e.status}")
        except aiohttp.ClientError as e:
            return ScrapeFailure(target.pod, clock, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except ValueError as e:
            return ScrapeFailure(target.pod, clock, str(e))


async def scrape(session: aiohttp.ClientSession, targets: Sequence[ScrapeTarget], names: MetricNames, *,
                 now: float, concurrency: int = 16) -> list[PodMetrics | ScrapeFailure]:
    """Scrape every target; a failing pod yields a ScrapeFailure, never an exception."""
    limit = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(_scrape_one(session, t, names, limit, now) for t in targets)))
