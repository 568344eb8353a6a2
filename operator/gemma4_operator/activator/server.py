"""The activator's HTTP server (aiohttp): holds requests while no replica serves, forwards them once one does.

- A request is held (its body read, at most ``max_body_bytes``; 413 past it) until the upstream answers its
  readiness path with 200, then forwarded there, the response streamed back chunk by chunk (server-sent events
  included). At most ``max_held`` requests wait at once and none longer than the plan's startup budget: past either
  bound the answer is 503 with ``Retry-After`` (``autoscaling.activator.retry_after_seconds``).
- Readiness is probed only while requests are held, once a second: in a cluster the upstream is the serving pods'
  headless Service, whose DNS name lists Ready pods only, and the engine's readiness path answers 200 only once
  the model is served, the check the kubelet's readiness probe makes.
- The admin port serves ``/metrics`` (the held requests gauge the operator's autoscaler reads to wake a replica)
  and ``/healthz``. The activator needs no Kubernetes API access.
- Client-controlled input is bounded: the body (above), the request line and each header (8 KiB), the number of
  headers (128); a client that goes away frees its place (handler cancellation). Bodies pass verbatim (no
  decompression either way).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from yarl import URL

from gemma4_operator.activator.settings import ActivatorSettings
from gemma4_operator.autoscaling.activator import (
    HELD_REQUESTS,
    REQUESTS_TOTAL,
    forwarded_headers,
    retry_after_seconds,
)

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 5.0
# An engine may think for minutes before its first byte (a long prefill); a stalled replica still ends.
READ_TIMEOUT_S = 900.0
CHUNK_BYTES = 64 << 10
# aiohttp's request parser limits, written out: they bound what a client can make the activator hold per request.
SERVER_LIMITS: dict[str, Any] = {"max_line_size": 8190, "max_field_size": 8190, "max_headers": 128,
                                 "auto_decompress": False, "handler_cancellation": True}


class _BodyTooLargeError(Exception):
    """The request body is over max_body_bytes."""


class Upstream:
    """Whether a replica serves: ``ready`` is set while the upstream answers the readiness path with 200.
    Probed by one task that runs only while some request is held."""

    def __init__(self, session: aiohttp.ClientSession, settings: ActivatorSettings) -> None:
        self.session, self.settings = session, settings
        self.ready = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    async def probe(self) -> bool:
        try:
            async with self.session.get(self.settings.upstream + self.settings.ready_path, allow_redirects=False,
                                        timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)) as answer:
                return answer.status == 200
        except (aiohttp.ClientError, TimeoutError):  # no Ready pod yet: the name does not resolve, or refuses
            return False

    def watch_while(self, holding: Callable[[], bool]) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._watch(holding))

    async def _watch(self, holding: Callable[[], bool]) -> None:
        while holding():
            if await self.probe():
                self.ready.set()
            else:
                self.ready.clear()
            await asyncio.sleep(self.settings.probe_interval_s)
        self.ready.clear()  # the next hold probes afresh: a replica may have gone since

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()


class Activator:
    def __init__(self, settings: ActivatorSettings, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings, self.session, self.clock = settings, session, clock
        self.upstream = Upstream(session, settings)
        self.registry = CollectorRegistry()
        self.held_gauge = Gauge(HELD_REQUESTS, "Requests waiting for a replica", registry=self.registry)
        self.answered = Counter(REQUESTS_TOTAL.removesuffix("_total"), "Requests answered, by outcome",
                                ["outcome"], registry=self.registry)
        self.held = 0
        self.wake_started: float | None = None

    def _unavailable(self, outcome: str, why: str) -> web.Response:
        self.answered.labels(outcome=outcome).inc()
        seconds = retry_after_seconds(self.clock(), self.wake_started, self.settings.cold_start_s)
        return web.json_response(
            {"error": {"message": f"{why}; a replica is starting, retry in {seconds} s", "type": "unavailable",
                       "code": 503}}, status=503, headers={"Retry-After": str(seconds)})

    def _too_large(self) -> web.Response:
        self.answered.labels(outcome="too_large").inc()
        limit = self.settings.max_body_bytes
        return web.json_response({"error": {"message": f"request body over {limit} bytes", "type": "too_large",
                                            "code": 413}}, status=413)

    async def _body(self, request: web.Request) -> bytes:
        limit = self.settings.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise _BodyTooLargeError
        body = bytearray()
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            body += chunk
            if len(body) > limit:
                raise _BodyTooLargeError
        return bytes(body)

    def _hold(self) -> None:
        if self.held == 0 and not self.upstream.ready.is_set():
            self.wake_started = self.clock()
        self.held += 1
        self.held_gauge.set(self.held)
        self.upstream.watch_while(lambda: self.held > 0)

    def _release(self) -> None:
        self.held -= 1
        self.held_gauge.set(self.held)
        if self.held == 0:
            self.wake_started = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.held >= self.settings.max_held:
            return self._unavailable("rejected", f"{self.held} requests already wait for a replica")
        try:
            body = await self._body(request)
        except _BodyTooLargeError:
            return self._too_large()
        deadline = self.clock() + self.settings.hold_timeout_s
        self._hold()
        try:
            answer = await self._connect(request, body, deadline)
        finally:
            self._release()
        if answer is None:
            return self._unavailable("timed_out",
                                     f"no replica became ready within {self.settings.hold_timeout_s:g} s")
        try:
            return await self._relay(request, answer)
        finally:
            answer.release()

    async def _connect(self, request: web.Request, body: bytes, deadline: float) -> aiohttp.ClientResponse | None:
        """The upstream's response headers, once a replica is ready; None past the deadline. A replica that
        refuses the connection (gone since the probe) sends the request back to waiting."""
        while (remaining := deadline - self.clock()) > 0:
            try:
                await asyncio.wait_for(self.upstream.ready.wait(), remaining)
            except TimeoutError:
                return None
            try:
                return await self.session.request(
                    request.method, URL(self.settings.upstream + request.raw_path, encoded=True), data=body,
                    headers=CIMultiDict(forwarded_headers(request.headers.items())), allow_redirects=False)
            except aiohttp.ClientConnectionError as e:
                logger.info("upstream refused a held request (%s); waiting for a ready replica again", e)
                self.upstream.ready.clear()
        return None

    async def _relay(self, request: web.Request, answer: aiohttp.ClientResponse) -> web.StreamResponse:
        out = web.StreamResponse(status=answer.status, reason=answer.reason,
                                 headers=CIMultiDict(forwarded_headers(answer.headers.items())))
        if answer.content_length is not None:
            out.content_length = answer.content_length
        await out.prepare(request)
        try:
            async for chunk in answer.content.iter_any():
                await out.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as e:  # the replica went away mid-answer: end the client's too
            self.answered.labels(outcome="failed").inc()
            logger.warning("upstream answer broke off: %s", e)
            raise
        self.answered.labels(outcome="forwarded").inc()
        await out.write_eof()
        return out

    async def metrics(self, _: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _empty_metrics(_: web.Request) -> web.Response:
    return web.Response(body=b"", headers={"Content-Type": CONTENT_TYPE_LATEST})


async def _healthz(_: web.Request) -> web.Response:
    return web.Response(text="ok")


def upstream_session() -> aiohttp.ClientSession:
    """No DNS cache: the headless Service's name resolves to the pods Ready now, not ten seconds ago."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(use_dns_cache=False), auto_decompress=False,
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_S, sock_read=READ_TIMEOUT_S))


def applications(activator: Activator) -> tuple[web.Application, web.Application]:
    """(the requests' app, the admin app)."""
    proxy = web.Application(client_max_size=activator.settings.max_body_bytes)
    # an endpoint picker (routing) scrapes each endpoint's /metrics: answered, never held (a scrape must not wake)
    proxy.router.add_get("/metrics", _empty_metrics)
    proxy.router.add_route("*", "/{tail:.*}", activator.handle)
    admin = web.Application()
    admin.router.add_get("/metrics", activator.metrics)
    admin.router.add_get("/healthz", _healthz)
    return proxy, admin


async def start(settings: ActivatorSettings) -> tuple[Activator, Callable[[], Awaitable[None]]]:
    """Start both servers; returns the activator and a coroutine function that stops everything."""
    session = upstream_session()
    activator = Activator(settings, session)
    proxy, admin = applications(activator)
    runners = [web.AppRunner(proxy, **SERVER_LIMITS), web.AppRunner(admin)]
    for runner, port in zip(runners, (settings.port, settings.admin_port), strict=True):
        await runner.setup()
        await web.TCPSite(runner, settings.host, port).start()

    async def stop() -> None:
        for runner in runners:
            await runner.cleanup()
        await activator.upstream.close()
        await session.close()
    return activator, stop


async def serve(settings: ActivatorSettings) -> None:
    """Run until cancelled (SIGINT/SIGTERM end the process: cli.entry)."""
    _, stop = await start(settings)
    logger.info("activator on :%d (admin :%d), upstream %s", settings.port, settings.admin_port, settings.upstream)
    try:
        await asyncio.Event().wait()
    finally:
        await stop()
