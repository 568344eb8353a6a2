"""Fetch every ready serving pod's /metrics for the built-in autoscaler (the shell half of scraping).

One shared aiohttp session (kopf's own HTTP client: no second one in the process) under bounded concurrency;
the session's total timeout covers the body too, so a pod that drips its answer times out. Bodies are read
in chunks into ``autoscaling.exposition``'s bounded reader and never held whole; compressed answers are not
asked for nor expanded (a small compressed body can stand for gigabytes).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import aiohttp

from gemma4_operator.autoscaling.exposition import (
    BoundedBody,
    ExpositionReader,
    MetricNames,
    OverLimitError,
    PodMetrics,
    ScrapeFailure,
)

CHUNK_BYTES = 64 << 10
_PLAIN = {"Accept-Encoding": "identity"}


@dataclass(frozen=True)
class ScrapeTarget:
    pod: str
    url: str


class _Sink(Protocol):
    def feed(self, chunk: bytes) -> None: ...


async def _stream(session: aiohttp.ClientSession, url: str, sink: _Sink,
                  params: Mapping[str, str] | None = None) -> None:
    """GET ``url`` and feed its body to ``sink`` chunk by chunk (the sink enforces the size limit)."""
    async with session.get(url, params=params, headers=_PLAIN, allow_redirects=False, raise_for_status=True,
                           auto_decompress=False) as response:
        async for chunk in response.content.iter_chunked(CHUNK_BYTES):
            sink.feed(chunk)


async def get_bounded(session: aiohttp.ClientSession, url: str, params: Mapping[str, str], what: str) -> bytes:
    """A whole body of at most 1 MiB (``MAX_BODY_BYTES``); raises OverLimitError (naming ``what``) past it."""
    body = BoundedBody(what)
    await _stream(session, url, body, params)
    return bytes(body.data)


async def _scrape_one(session: aiohttp.ClientSession, target: ScrapeTarget, names: MetricNames,
                      limit: asyncio.Semaphore, clock: float) -> PodMetrics | ScrapeFailure:
    async with limit:
        try:
            reader = ExpositionReader(names)
            await _stream(session, target.url, reader)
            return PodMetrics(target.pod, clock, reader.values())
        except TimeoutError:
            return ScrapeFailure(target.pod, clock, "timed out")
        except aiohttp.ClientResponseError as e:
            return ScrapeFailure(target.pod, clock, f"HTTP {e.status}")
        except aiohttp.ClientError as e:
            return ScrapeFailure(target.pod, clock, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
        except OverLimitError as e:
            return ScrapeFailure(target.pod, clock, str(e), over_limit=True)
        except ValueError as e:
            return ScrapeFailure(target.pod, clock, str(e))


async def scrape(session: aiohttp.ClientSession, targets: Sequence[ScrapeTarget], names: MetricNames, *,
                 now: float, concurrency: int = 16) -> list[PodMetrics | ScrapeFailure]:
    """Scrape every target; a failing pod yields a ScrapeFailure, never an exception."""
    limit = asyncio.Semaphore(concurrency)
    return list(await asyncio.gather(*(_scrape_one(session, t, names, limit, now) for t in targets)))
