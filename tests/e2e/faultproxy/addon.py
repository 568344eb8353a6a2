"""mitmproxy addon: API faults between the operator and kube-apiserver (tests/e2e/test_api_faults.py).

Runs inside mitmproxy's own venv (``tests/tools/mitmproxy_venv.sh``), loaded by
``mitmdump --mode reverse:https://127.0.0.1:PORT -s addon.py``; it imports nothing from the project.

Every request through the proxy is the operator's (the tests talk to the API server directly), and every one of
them, watches included, may get a fault. With probability ``fault_rate`` (``fault_watch_rate`` for a watch) a
request draws one of ``fault_kinds`` (a ``random.Random(fault_seed)``: the same sequence of draws for the same
order of requests):

* ``429``: answered by the proxy with a Kubernetes ``Status`` (reason TooManyRequests), ``Retry-After:
  fault_retry_after`` and ``details.retryAfterSeconds``, as kube-apiserver's max-in-flight filter does;
* ``500`` / ``503``: answered by the proxy with an InternalError / ServiceUnavailable ``Status``;
* ``reset``: forwarded, and the client's connection is closed when the server's response headers arrive, so the
  server did the work (a write took effect) but the client never sees the answer. A watch is cut as its stream
  starts: mitmproxy 11 cannot kill a flow in the middle of a streamed body (mitmproxy issue 4711);
* ``stall``: held for ``fault_stall_s`` seconds, then forwarded.

An outage (``POST /_faultproxy/outage``) answers every request whose path contains a string with 429 and
Retry-After for some seconds: a persistent failure, which is what shows whether a client backs off.

The test reads and steers the proxy through ``/_faultproxy/...`` (never forwarded, never faulted, not counted):

* ``GET /_faultproxy/log``: ``{"now": <monotonic>, "requests": [{"t", "method", "path", "watch", "fault",
  "status", "error"}, ...]}`` in arrival order (``t`` and ``now`` are ``time.monotonic()``, which on Linux is
  one clock for every process);
* ``POST /_faultproxy/outage`` with ``{"path_contains": str, "seconds": float, "retry_after": int}``.

Responses are streamed (``response.stream = True``): a watch is a response that never ends, which mitmproxy
would otherwise buffer until it does.
"""

# No `from __future__ import annotations`: mitmproxy loads this file as a script that is not in sys.modules,
# where @dataclass cannot resolve string annotations.
import asyncio
import json
import random
import time
from dataclasses import asdict, dataclass
from typing import Any

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

CONTROL = "/_faultproxy/"
KINDS = ("429", "500", "503", "reset", "stall")
REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}
META = "faultproxy"  # flow.metadata key of a request's log entry


@dataclass
class Entry:
    """One request the operator sent, what the proxy did to it and what came back."""

    t: float
    method: str
    path: str  # without the query
    watch: bool
    fault: str | None = None  # one of KINDS, "outage", or None
    status: int | None = None  # what the client got (None: reset or a transport error)
    error: str | None = None


@dataclass
class Outage:
    path_contains: str
    until: float
    retry_after: int


def status_response(code: int, message: str, retry_after: int | None = None) -> http.Response:
    """A Kubernetes ``Status`` answer, as kube-apiserver would send it."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": REASONS[code], "code": code}
    headers = {"Content-Type": "application/json"}
    if retry_after is not None:
        body["details"] = {"retryAfterSeconds": retry_after}
        headers["Retry-After"] = str(retry_after)
    return http.Response.make(code, json.dumps(body), headers)


class FaultInjector:
    def __init__(self) -> None:
        self.rng = random.Random(0)
        self.entries: list[Entry] = []
        self.outages: list[Outage] = []
        self.rate = self.watch_rate = 0.0
        self.stall_s = 10.0
        self.kinds: list[str] = list(KINDS)

    def load(self, loader: Loader) -> None:
        # mitmproxy's --set parses str, int and bool options only: the fractions are strings, parsed once here.
        loader.add_option("fault_rate", str, "0", "fraction of requests that get a fault")
        loader.add_option("fault_watch_rate", str, "", "fraction of watch requests that get a fault (default: "
                          "fault_rate); an operator makes few, long-lived ones")
        loader.add_option("fault_seed", int, 0, "seed of the fault draws")
        loader.add_option("fault_kinds", str, ",".join(KINDS), f"comma-separated subset of {','.join(KINDS)}")
        loader.add_option("fault_stall_s", str, "10", "how long a stalled request is held (seconds)")
        loader.add_option("fault_retry_after", int, 1, "Retry-After seconds of an injected 429")

    def configure(self, updated: set[str]) -> None:
        if "fault_seed" in updated:
            self.rng.seed(ctx.options.fault_seed)
        self.rate = float(ctx.options.fault_rate)
        self.watch_rate = float(ctx.options.fault_watch_rate or self.rate)
        self.stall_s = float(ctx.options.fault_stall_s)
        self.kinds = [k.strip() for k in str(ctx.options.fault_kinds).split(",") if k.strip()]
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"fault_kinds: unknown {sorted(unknown)}; known: {', '.join(KINDS)}")

    def draw(self, watch: bool) -> str | None:
        """The fault for the next request, or None. Two draws per request whatever the outcome, so that one
        request's fault never shifts the draws of the requests after it."""
        hit, pick = self.rng.random(), self.rng.random()
        if hit >= (self.watch_rate if watch else self.rate) or not self.kinds:
            return None
        return self.kinds[int(pick * len(self.kinds))]

    def outage_for(self, path: str, now: float) -> Outage | None:
        return next((o for o in self.outages if o.path_contains in path and now < o.until), None)

    async def request(self, flow: http.HTTPFlow) -> None:
        req = flow.request
        if req.path.startswith(CONTROL):
            self.control(flow)
            return
        now = time.monotonic()
        entry = Entry(now, req.method, req.path.split("?", 1)[0], req.query.get("watch") in ("true", "1"))
        self.entries.append(entry)
        flow.metadata[META] = entry
        outage = self.outage_for(entry.path, now)
        if outage is not None:
            entry.fault = "outage"
            flow.response = status_response(429, "fault proxy: outage", outage.retry_after)
            return
        entry.fault = self.draw(entry.watch)
        if entry.fault == "stall":
            await asyncio.sleep(self.stall_s)
        elif entry.fault in ("429", "500", "503"):
            code = int(entry.fault)
            retry_after = int(ctx.options.fault_retry_after) if code == 429 else None
            flow.response = status_response(code, f"fault proxy: injected {code}", retry_after)

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        entry = flow.metadata.get(META)
        if not isinstance(entry, Entry) or flow.response is None:
            return
        if entry.fault == "reset":
            flow.kill()  # type: ignore[no-untyped-call]  # mitmproxy 11 leaves Flow.kill unannotated
            return
        entry.status = flow.response.status_code
        flow.response.stream = True

    def response(self, flow: http.HTTPFlow) -> None:
        """Answers the proxy made itself (faults, outages) skip responseheaders."""
        entry = flow.metadata.get(META)
        if isinstance(entry, Entry) and flow.response is not None and entry.status is None:
            entry.status = flow.response.status_code

    def error(self, flow: http.HTTPFlow) -> None:
        entry = flow.metadata.get(META)
        if isinstance(entry, Entry) and flow.error is not None:
            entry.error = flow.error.msg

    def control(self, flow: http.HTTPFlow) -> None:
        action = flow.request.path[len(CONTROL):].split("?", 1)[0]
        if flow.request.method == "GET" and action == "log":
            body: dict[str, Any] = {"now": time.monotonic(), "requests": [asdict(e) for e in self.entries]}
            flow.response = http.Response.make(200, json.dumps(body), {"Content-Type": "application/json"})
        elif flow.request.method == "POST" and action == "outage":
            spec = json.loads(flow.request.get_text() or "{}")
            outage = Outage(str(spec["path_contains"]), time.monotonic() + float(spec["seconds"]),
                            int(spec["retry_after"]))
            self.outages.append(outage)
            flow.response = http.Response.make(200, json.dumps(asdict(outage)), {"Content-Type": "application/json"})
        else:
            flow.response = http.Response.make(404, f"unknown control request {flow.request.method} {action}")


addons = [FaultInjector()]
