"""The wake path's decisions, pure: what the activator answers, and where the Service points.

The activator (``gemma4_operator.activator``, the shell) holds requests while a scaled-to-zero object has no
ready replica. The operator learns that a wake is wanted from the activator's ``/metrics`` (the
:data:`HELD_REQUESTS` gauge, scraped like an engine's), and points the object's Service at the activator's pods
only while the Deployment has no ready replica (:func:`routes_to_activator`), so the activator is out of the data
path whenever a replica serves.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.exposition import MetricNames, PodMetrics, ScrapeFailure

# The gauge of requests the activator holds now (waiting for a replica); > 0 means "wake".
HELD_REQUESTS = "gemma4_activator_held_requests"
# What the autoscaler reads of an activator pod's /metrics: its held requests are a queue (requests waiting).
HELD_METRIC_NAMES: MetricNames = {Signal.QUEUE_LENGTH: (HELD_REQUESTS,)}
# Requests the activator answered, by outcome (forwarded, rejected: past the bound, timed_out, too_large, failed).
REQUESTS_TOTAL = "gemma4_activator_requests_total"

# Bounds on what a client controls. Memory in the worst case: max held x max body (32 x 4 MiB = 128 MiB).
DEFAULT_MAX_HELD = 32
MAX_HELD_LIMIT = 1024
DEFAULT_MAX_BODY_BYTES = 4 << 20
MAX_BODY_LIMIT = 64 << 20

# RFC 9110 7.6.1 (Connection's list, Proxy-*, TE, Trailer, Transfer-Encoding, Upgrade) and Keep-Alive (RFC 2068):
# headers of one connection, never forwarded; Host and Content-Length are set again for the next hop.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
                        "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length"})


def retry_after_seconds(now: float, wake_started: float | None, cold_start_s: float) -> int:
    """Retry-After for a request the activator turns away: the rest of the cold start of the wake under way
    (the replica is expected then), or a whole cold start when none is under way or it is overdue."""
    if wake_started is not None:
        remaining = wake_started + cold_start_s - now
        if remaining > 0:
            return max(1, math.ceil(remaining))
    return max(1, math.ceil(cold_start_s))


def forwarded_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The end-to-end headers of a request or response (hop-by-hop ones and those Connection names dropped)."""
    pairs = list(headers)
    named = {token.strip().lower() for k, v in pairs if k.lower() == "connection" for token in v.split(",")}
    return [(k, v) for k, v in pairs if k.lower() not in HOP_BY_HOP and k.lower() not in named]


def _ready_replicas(deployment: Mapping[str, Any] | None) -> int:
    status = (deployment or {}).get("status") or {}
    return int(status.get("readyReplicas") or 0)


def routes_to_activator(scales_to_zero: bool, deployment: Mapping[str, Any] | None) -> bool:
    """Whether the Service should select the activator's pods: only for an object that may scale to zero, and
    only while its Deployment has no ready replica (at zero, and while a woken replica loads: requests are held,
    not refused). Back to the serving pods as soon as one is Ready."""
    return scales_to_zero and _ready_replicas(deployment) == 0


def held_requests(results: Sequence[PodMetrics | ScrapeFailure]) -> int | None:
    """The requests held by all activator pods (one scrape each); None when no pod answered or any pod's count is
    unknown, so a missing metric never reads as "nothing held" (nor does a missing activator: no scale to zero
    without one that can wake the object)."""
    total = 0.0
    for r in results:
        value = r.values.get(Signal.QUEUE_LENGTH) if isinstance(r, PodMetrics) else None
        if value is None or math.isnan(value):
            return None
        total += value
    return int(total) if results else None
