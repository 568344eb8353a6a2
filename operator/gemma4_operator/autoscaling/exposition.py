"""Metric samples from what the engines and metrics.k8s.io expose. Pure.

Parses the Prometheus text format with prometheus-client's parser, maps engine metric names to
autoscaling signals (the names come from each engine's catalog row), and turns counter totals
into per-minute rates. The HTTP client that fetches the text is ``controller.scraper``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import Sample

# Signals read as counters (turned into rates); the others are gauges.
_COUNTERS = frozenset({Signal.REQUEST_COUNT})
# A fraction is averaged across series (e.g. data-parallel engines); counts are summed.
_AVERAGED = frozenset({Signal.KV_CACHE_USAGE})

MetricNames = Mapping[Signal, Sequence[str]]


@dataclass(frozen=True)
class PodMetrics:
    """Raw values from one scrape: gauges as read, counters as totals."""

    pod: str
    at: float
    values: Mapping[Signal, float]


@dataclass(frozen=True)
class ScrapeFailure:
    pod: str
    at: float
    reason: str


def parse_exposition(text: str, names: MetricNames) -> dict[Signal, float]:
    """Values per signal from a Prometheus text exposition. Raises ValueError when the body is
    not the Prometheus format; a signal whose metric is absent is simply left out."""
    series: dict[str, list[float]] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                series.setdefault(sample.name, []).append(float(sample.value))
    except (ValueError, TypeError, IndexError) as e:
        raise ValueError(f"not Prometheus text format: {e}") from e
    values: dict[Signal, float] = {}
    for signal, candidates in names.items():
        found = next((series[n] for n in candidates if n in series), None)
        if found:
            values[signal] = sum(found) / len(found) if signal in _AVERAGED else sum(found)
    return values


_CPU_SUFFIXES = {"n": 1e-9, "u": 1e-6, "m": 1e-3}


def cpu_cores(quantity: str) -> float:
    """A CPU quantity as metrics.k8s.io and pod specs spell it ("250m", "2", "1534021n") in cores."""
    unit = _CPU_SUFFIXES.get(quantity[-1:], 1.0)
    return float(quantity[:-1] if unit != 1.0 else quantity) * unit


def cpu_utilization_samples(pod_metrics: Sequence[Mapping[str, Any]], ready: Collection[str],
                            requested_cores: float, now: float) -> list[Sample]:
    """metrics.k8s.io PodMetrics -> cpu/utilization samples: usage of all containers as a percent of
    the pod's CPU request (the HPA's definition), for ready pods only."""
    samples = []
    for item in pod_metrics:
        pod = str((item.get("metadata") or {}).get("name", ""))
        if pod in ready and requested_cores > 0:
            used = sum(cpu_cores(str((c.get("usage") or {}).get("cpu", "0"))) for c in item.get("containers") or [])
            samples.append(Sample(pod, Signal.CPU_UTILIZATION, 100 * used / requested_cores, now, True))
    return samples


def to_samples(current: Sequence[PodMetrics], previous: Mapping[str, PodMetrics]) -> list[Sample]:
    """Gauges become samples as they are; counters become per-minute rates against the pod's
    previous scrape (no sample on the first scrape or after a counter reset)."""
    samples: list[Sample] = []
    for scraped in current:
        before = previous.get(scraped.pod)
        for signal, value in scraped.values.items():
            if signal not in _COUNTERS:
                samples.append(Sample(scraped.pod, signal, value, scraped.at, True))
                continue
            if before is None or signal not in before.values or scraped.at <= before.at:
                continue
            delta = value - before.values[signal]
            if delta >= 0:
                samples.append(Sample(scraped.pod, signal, delta * 60 / (scraped.at - before.at), scraped.at, True))
    return samples
