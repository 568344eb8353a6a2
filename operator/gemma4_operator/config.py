"""Operator settings (`gemma4-operator run` flags and their environment twins) as one frozen value.

Pure: parsing and validation only. ``operator_main`` turns flags into an :class:`OperatorConfig`;
the handlers read it; nothing here talks to Kubernetes.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Mapping, Sequence

from gemma4_operator.engines import image_keys as engine_image_keys
from gemma4_operator.policy import TenantPolicy
from gemma4_operator.render.activator import ACTIVATOR_IMAGE_KEY
from gemma4_operator.render.download import DOWNLOADER_IMAGE_KEY


def image_keys() -> tuple[str, ...]:
    """`--image KEY=IMAGE` keys: each engine's, the download Job's and the activator's."""
    return tuple(dict.fromkeys((*engine_image_keys(), DOWNLOADER_IMAGE_KEY, ACTIVATOR_IMAGE_KEY)))  # engines share


class ChildrenMode(enum.StrEnum):
    """How the operator learns that a child drifted or vanished."""

    WATCH = "watch"  # watch owned kinds and pods (kopf indices): no polling reads
    POLL = "poll"  # a kopf timer per object re-reads the children every --resync-interval


class EngineMonitors(enum.StrEnum):
    """Whether each Gemma4Deployment gets a PodMonitor for its engine pods."""

    AUTO = "auto"  # when the Prometheus Operator's PodMonitors are served (discovered at start-up)
    OFF = "off"  # never: the pods carry the conventional prometheus.io/* scrape annotations


class LogFormat(enum.StrEnum):
    TEXT = "text"
    JSON = "json"


class ConfigError(ValueError):
    """A flag value that cannot work; the message names the flag."""


@dataclasses.dataclass(frozen=True)
class OperatorConfig:
    namespaces: tuple[str, ...] = ()  # empty: cluster-wide
    images: Mapping[str, str] = dataclasses.field(default_factory=dict)
    prices: Mapping[str, float] = dataclasses.field(default_factory=dict)  # USD per GPU-hour by accelerator type
    accelerator_types: tuple[str, ...] | None = None  # static cluster facts; None: read node labels
    metrics_port: int = 8080  # 0 disables the prometheus endpoint
    # The metrics list every tenant's objects: 127.0.0.1 keeps them inside the pod (kubectl port-forward reaches it)
    metrics_bind_address: str = "0.0.0.0"
    health_port: int = 8081  # 0 disables kopf's liveness endpoint
    log_format: LogFormat = LogFormat.TEXT
    verbose: bool = False
    peering_name: str | None = None
    standalone: bool = False
    priority: int = 0
    children: ChildrenMode = ChildrenMode.WATCH
    resync_interval: float = 0.0  # seconds; only used (and required) in poll mode
    request_timeout: float = 30.0  # per API call of the operator's own client
    server: str | None = None  # API server URL without credentials (tests, benchmarks); None: kubeconfig
    prometheus_url: str = ""  # Prometheus HTTP API (duty cycle; KEDA triggers); empty: none
    engine_monitors: EngineMonitors = EngineMonitors.AUTO
    autoscale_interval: float = 15.0  # seconds between built-in autoscaler ticks per object
    # Test-only (--test-time-scale): scaleToZeroSpec's periods are multiplied by it, so that an e2e test sees an
    # object go to zero in seconds although the API's bounds are Vertex AI's (5 minutes at least)
    scale_to_zero_time_scale: float = 1.0
    scrape_timeout: float = 5.0  # per /metrics request of the built-in autoscaler
    scrape_concurrency: int = 16  # /metrics requests in flight at once
    # Where a serving pod's metrics are: {ip} and {port} are filled in. Tests point it at local servers.
    metrics_url_template: str = "http://{ip}:{port}/metrics"
    network_policy: bool = False  # --network-policy: a NetworkPolicy per object unless its spec says otherwise
    operator_namespace: str = ""  # POD_NAMESPACE (the chart sets it): the autoscaler's scrapes come from there
    # What a Gemma4Deployment may set (--tenant-policy); None: no policy (the chart always passes one)
    tenant_policy: TenantPolicy | None = None
    # The ClusterRole the chart ships for the endpoint picker (--epp-cluster-role; Helm routing.enabled): the
    # operator binds it by name for spec.routing.inferencePool. Empty: routing not installed.
    epp_cluster_role: str = ""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.images) - set(image_keys()))
        if unknown:
            raise ConfigError(f"--image {', '.join(unknown)}: unknown key (use {', '.join(image_keys())})")
        if self.children is ChildrenMode.POLL and self.resync_interval <= 0:
            raise ConfigError("--children poll needs --resync-interval > 0")
        for flag, port in (("--metrics-port", self.metrics_port), ("--health-port", self.health_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(f"{flag} {port}: not a TCP port")
        try:
            ipaddress.ip_address(self.metrics_bind_address)
        except ValueError:
            raise ConfigError(f"--metrics-bind-address {self.metrics_bind_address!r}: not an IP address "
                              "(e.g. 127.0.0.1, or 0.0.0.0 for every interface)") from None
        if self.request_timeout <= 0:
            raise ConfigError("--request-timeout must be positive")
        if self.server and not self.server.startswith(("http://", "https://")):
            raise ConfigError(f"--server {self.server!r}: expected an http(s) URL")
        if any(not ns.strip() for ns in self.namespaces):
            raise ConfigError("--namespace '': a namespace name cannot be empty")
        if self.prometheus_url and not self.prometheus_url.startswith(("http://", "https://")):
            raise ConfigError(f"--prometheus-url {self.prometheus_url!r}: expected an http(s) URL")
        if not 0 < self.scale_to_zero_time_scale <= 1:
            raise ConfigError("--test-time-scale must be in (0, 1]")
        if self.autoscale_interval <= 0 or self.scrape_timeout <= 0 or self.scrape_concurrency < 1:
            raise ConfigError("autoscaler interval and scrape timeout must be positive, concurrency >= 1")

    @property
    def clusterwide(self) -> bool:
        return not self.namespaces

    @property
    def liveness_endpoint(self) -> str | None:
        return f"http://0.0.0.0:{self.health_port}/healthz" if self.health_port else None


def parse_images(items: Sequence[str]) -> dict[str, str]:
    """``["vllm=repo/img:tag", ...]`` -> mapping; later items win."""
    images: dict[str, str] = {}
    for item in items:
        key, sep, image = item.partition("=")
        if not sep or not key.strip() or not image.strip():
            raise ConfigError(f"--image {item!r}: expected KEY=IMAGE with KEY one of {', '.join(image_keys())}")
        images[key.strip()] = image.strip()
    return images


def parse_prices(items: Sequence[str], flag: str = "--accelerator-price") -> dict[str, float]:
    """``["nvidia-h100-80gb=2.49", ...]`` -> USD per GPU-hour by catalog accelerator type (cpu: per pod)."""
    from gemma4_operator.catalog import load_catalog

    known = ["cpu", *load_catalog().gpu_types]
    prices: dict[str, float] = {}
    for item in items:
        key, sep, value = item.partition("=")
        try:
            price = float(value) if sep else -1.0
        except ValueError:
            price = -1.0
        if key.strip() not in known or not price >= 0 or price == float("inf"):
            raise ConfigError(f"{flag} {item!r}: expected TYPE=USD with TYPE a catalog accelerator type "
                              f"({', '.join(known)}) and USD a price per GPU-hour >= 0")
        prices[key.strip()] = price
    return prices


def split_list(value: str | None) -> tuple[str, ...]:
    """Comma- or space-separated environment value -> items."""
    if not value:
        return ()
    return tuple(part for part in value.replace(",", " ").split() if part)
