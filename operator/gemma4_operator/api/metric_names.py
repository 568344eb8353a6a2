"""The autoscaling metric names the API accepts (Vertex AI spellings) and their default targets.

Part of the API: the CRD's ``metricName`` enum is generated from :data:`ACCEPTED_METRIC_NAMES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType


class Signal(StrEnum):
    """What a metric measures. The value is the canonical (short) ``metricName``."""

    DUTY_CYCLE = "accelerator/duty_cycle"
    CPU_UTILIZATION = "cpu/utilization"
    REQUEST_COUNT = "request_count"
    QUEUE_LENGTH = "vllm/num_requests_waiting"
    KV_CACHE_USAGE = "vllm/kv_cache_usage_perc"
    BATCH_SIZE = "vllm/num_requests_running"


_VERTEX_PREFIX = "aiplatform.googleapis.com/prediction/online/"
_PROMETHEUS_PREFIX = "prometheus.googleapis.com/"
# Vertex AutoMetrics names (scraped `vllm:*` series renamed `vertex_*`), plus DCGM GPU utilization.
_AUTOMETRICS: dict[str, Signal] = {
    "vertex_vllm_num_requests_waiting": Signal.QUEUE_LENGTH,
    "vertex_vllm_num_requests_running": Signal.BATCH_SIZE,
    "vertex_vllm_kv_cache_usage_perc": Signal.KV_CACHE_USAGE,
    "vertex_vllm_gpu_cache_usage_perc": Signal.KV_CACHE_USAGE,  # old vLLM name, still used by Vertex
    "vertex_dcgm_fi_dev_gpu_util": Signal.DUTY_CYCLE,
}
_METRIC_NAMES: dict[str, Signal] = {
    **{signal.value: signal for signal in Signal},
    **{
        _VERTEX_PREFIX + signal.value: signal
        for signal in (Signal.DUTY_CYCLE, Signal.CPU_UTILIZATION, Signal.REQUEST_COUNT)
    },
    **{_PROMETHEUS_PREFIX + name: signal for name, signal in _AUTOMETRICS.items()},
    **_AUTOMETRICS,
}

ACCEPTED_METRIC_NAMES: tuple[str, ...] = tuple(_METRIC_NAMES)
"""Every accepted ``metricName`` spelling (short ones first), e.g. for the CRD enum."""

DEFAULT_TARGETS: Mapping[Signal, float | None] = MappingProxyType(
    {
        Signal.DUTY_CYCLE: 60.0,
        Signal.CPU_UTILIZATION: 60.0,
        Signal.REQUEST_COUNT: None,
        Signal.QUEUE_LENGTH: 5.0,
        Signal.KV_CACHE_USAGE: 80.0,
        Signal.BATCH_SIZE: None,
    }
)
"""Target used when a metric spec omits one; ``None`` means the user must set it."""


def signal_for_metric_name(name: str) -> Signal:
    """Map any accepted ``metricName`` spelling to its signal; ``ValueError`` otherwise."""
    try:
        return _METRIC_NAMES[name]
    except KeyError:
        accepted = ", ".join(ACCEPTED_METRIC_NAMES)
        raise ValueError(f"unknown metricName {name!r}; accepted: {accepted}") from None
