"""The activator's settings: its flags, parsed and bounded. The operator renders them from the plan
(``render.activator``); every value is bounded here too, so a hand-written Deployment cannot ask for an
unbounded hold."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from gemma4_operator.autoscaling.activator import (
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_HELD,
    MAX_BODY_LIMIT,
    MAX_HELD_LIMIT,
)


@dataclass(frozen=True)
class ActivatorSettings:
    upstream: str  # http://HOST:PORT of the serving pods (their headless Service in a cluster)
    ready_path: str  # the engine's readiness path, answered 200 once the model is served
    cold_start_s: float  # the plan's expected start of a woken replica: Retry-After's basis
    max_held: int = DEFAULT_MAX_HELD
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    host: str = "0.0.0.0"  # a pod's server listens on every interface
    port: int = 8080
    admin_port: int = 9091
    probe_interval_s: float = 1.0
    hold_s: float = 0.0  # the longest a request is held (the plan's startup budget); 0: the cold start

    @property
    def hold_timeout_s(self) -> float:
        return self.hold_s or self.cold_start_s


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from e
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value
    return parse


def _upstream(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise argparse.ArgumentTypeError(f"{text!r}: expected http://HOST:PORT (the serving pods' Service)")
    return f"http://{parts.netloc}"


def _path(text: str) -> str:
    if not text.startswith("/") or len(text) > 256:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an absolute path such as /health")
    return text


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--upstream", type=_upstream, required=True,
                   help="http://HOST:PORT of the serving pods: their headless Service, which lists Ready pods only")
    p.add_argument("--ready-path", type=_path, required=True,
                   help="the engine's readiness path (200 once the model is served), e.g. /health")
    p.add_argument("--cold-start-seconds", type=_bounded_int(1, 86400), required=True,
                   help="the plan's expected start of a woken replica: Retry-After counts down from it")
    p.add_argument("--hold-seconds", type=_bounded_int(1, 86400),
                   help="the longest a request is held, then answered 503 (default: the cold start); the operator "
                        "passes the plan's startup budget, the most a start may take before the kubelet gives up")
    p.add_argument("--max-held", type=_bounded_int(1, MAX_HELD_LIMIT), default=DEFAULT_MAX_HELD,
                   help="requests held at once; past it 503 with Retry-After (default %(default)s)")
    p.add_argument("--max-body-bytes", type=_bounded_int(0, MAX_BODY_LIMIT), default=DEFAULT_MAX_BODY_BYTES,
                   help="largest request body held; past it 413 (default %(default)s)")
    p.add_argument("--host", default="0.0.0.0", help="the address both ports listen on (default: every IPv4 one)")
    p.add_argument("--port", type=_bounded_int(1, 65535), default=8080, help="the requests' port")
    p.add_argument("--admin-port", type=_bounded_int(1, 65535), default=9091,
                   help="/metrics (held requests, for the autoscaler) and /healthz")


def settings_from_args(args: argparse.Namespace) -> ActivatorSettings:
    return ActivatorSettings(upstream=args.upstream, ready_path=args.ready_path,
                             cold_start_s=float(args.cold_start_seconds), hold_s=float(args.hold_seconds or 0),
                             max_held=args.max_held,
                             max_body_bytes=args.max_body_bytes, host=args.host, port=args.port,
                             admin_port=args.admin_port)
