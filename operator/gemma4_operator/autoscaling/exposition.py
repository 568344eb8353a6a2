"""Metric samples from what the engines, Prometheus and metrics.k8s.io expose. Pure.

A serving pod's ``/metrics`` is whatever its image answers, so it is read with bounds
(:class:`ExpositionReader`, fed chunk by chunk by ``controller.scraper``): at most
:data:`MAX_BODY_BYTES` (1 MiB; vLLM 0.32's own body is 56 KiB per engine) and lines of at most
:data:`MAX_LINE_BYTES` (64 KiB), and only the series the autoscaler reads are kept, so a pod that
answers with an endless body costs a bounded amount of memory (one chunk, one line, a sum and a
count per needed name) and is a :class:`ScrapeFailure` naming the limit. Kept lines are parsed with
prometheus-client's parser; engine metric names map to autoscaling signals (the names come from
each engine's catalog row), and counter totals become per-minute rates. The Prometheus HTTP API's
answer (``accelerator/duty_cycle``) is read with the same size bound.
"""

from __future__ import annotations

import json
import re
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

# The most the operator reads of one HTTP body the autoscaler fetches (a pod's /metrics, Prometheus'
# answer): vLLM 0.32's /metrics is 56 KiB per engine, llama.cpp's 3 KiB.
MAX_BODY_BYTES = 1 << 20
# The longest line of a /metrics body (vLLM's longest is a few hundred bytes).
MAX_LINE_BYTES = 64 << 10
# A metric name at the start of a sample line: classic, or quoted (Prometheus 3's UTF-8 names).
_NAME = re.compile(rb'\s*(?:([a-zA-Z_:][a-zA-Z0-9_:]*)(?=[{\s]|$)|\{\s*"([^"\\]*)")')

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
    over_limit: bool = False  # the pod broke one of the operator's read limits (reported even when others answer)


class OverLimitError(ValueError):
    """A body or line larger than the operator reads; the message names the limit."""


def size_words(n: int) -> str:
    """``1048576`` -> ``1 MiB``, ``65536`` -> ``64 KiB``, else bytes."""
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


def body_too_large(what: str, limit: int) -> OverLimitError:
    return OverLimitError(f"{what} exceeds {size_words(limit)} (the operator's limit); the rest was not read")


class BoundedBody:
    """A whole body of at most ``limit`` bytes, fed in chunks; past it, OverLimitError naming ``what``."""

    def __init__(self, what: str, limit: int = MAX_BODY_BYTES) -> None:
        self.data, self._what, self._limit = bytearray(), what, limit

    def feed(self, chunk: bytes) -> None:
        if len(self.data) + len(chunk) > self._limit:
            raise body_too_large(self._what, self._limit)
        self.data += chunk


class ExpositionReader:
    """The values per signal of a Prometheus text exposition fed in chunks, in bounded memory and time.

    ``feed`` raises :class:`OverLimitError` past ``max_bytes`` in all or ``max_line`` in one line, and
    ValueError when the first sample line or a needed one is not the Prometheus format. Complete lines are
    handled a block at a time: the needed ones are found by one regular expression over the block (no
    per-line work for the rest, which is dropped as it arrives)."""

    def __init__(self, names: MetricNames, max_bytes: int = MAX_BODY_BYTES, max_line: int = MAX_LINE_BYTES) -> None:
        self._names = names
        self._max_bytes, self._max_line = max_bytes, max_line
        self._read = self._lines = 0
        self._partial = b""
        self._checked = False  # the first sample line was checked for the format
        self._series: dict[str, tuple[float, int]] = {}  # name -> (sum, count)
        self._wanted_names = sorted({n.encode() for ns in names.values() for n in ns}, key=len, reverse=True)
        names_re = b"|".join(re.escape(n) for n in self._wanted_names) or b"(?!)"
        # a whole line that starts with a needed name, classic or quoted
        self._wanted = re.compile(rb'^[ \t]*(?:(?:%b)(?=[{ \t\r]|$)|\{[ \t]*"(?:%b)")[^\n]*' % (names_re, names_re),
                                  re.MULTILINE)

    def feed(self, chunk: bytes) -> None:
        self._read += len(chunk)
        if self._read > self._max_bytes:
            raise body_too_large("metrics body", self._max_bytes)
        block = self._partial + chunk
        end = block.rfind(b"\n") + 1
        self._partial = block[end:]
        if end:
            self._block(block[:end])
        if len(self._partial) > self._max_line:
            raise self._too_long(self._lines + 1)

    def values(self) -> dict[Signal, float]:
        """The values at the end of the body; a signal whose metric is absent is left out."""
        if self._partial:
            self._block(self._partial + b"\n")
            self._partial = b""
        values: dict[Signal, float] = {}
        for signal, candidates in self._names.items():
            found = next((self._series[n] for n in candidates if n in self._series), None)
            if found is not None:
                total, count = found
                values[signal] = total / count if signal in _AVERAGED else total
        return values

    def _too_long(self, number: int) -> OverLimitError:
        return OverLimitError(f"metrics line {number} exceeds {size_words(self._max_line)} "
                              "(the operator's limit); the rest was not read")

    def _block(self, block: bytes) -> None:
        """Complete lines (``block`` ends with a newline)."""
        lines = block.split(b"\n")
        if max(map(len, lines)) > self._max_line:
            first = next(i for i, line in enumerate(lines) if len(line) > self._max_line)
            raise self._too_long(self._lines + 1 + first)
        if not self._checked:
            self._check_first(lines)
        number, counted = self._lines + 1, 0
        needed = any(name in block for name in self._wanted_names)  # a substring search is 30x a regex's speed
        for found in self._wanted.finditer(block) if needed else ():
            number += block.count(b"\n", counted, found.start())
            counted = found.start()
            self._sample(found.group(0).decode("utf-8", "replace").strip(), number)
        self._lines += len(lines) - 1

    def _check_first(self, lines: list[bytes]) -> None:
        """The first sample line names a metric (so an HTML error page or JSON is refused, not read as empty)."""
        for number, line in enumerate(lines, self._lines + 1):
            stripped = line.strip()
            if stripped and not stripped.startswith(b"#"):
                self._checked = True
                if _NAME.match(stripped) is None:
                    raise ValueError(f"not Prometheus text format: line {number}: "
                                     f"{stripped[:60].decode('utf-8', 'replace')!r}")
                return

    def _sample(self, text: str, number: int) -> None:
        try:
            samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
        except (ValueError, TypeError, IndexError) as e:
            raise ValueError(f"not Prometheus text format: line {number}: {e}") from e
        for sample in samples:
            total, count = self._series.get(sample.name, (0.0, 0))
            self._series[sample.name] = (total + float(sample.value), count + 1)


def parse_exposition(text: str, names: MetricNames) -> dict[Signal, float]:
    """Values per signal from a whole Prometheus text exposition (see :class:`ExpositionReader`)."""
    reader = ExpositionReader(names)
    reader.feed(text.encode("utf-8"))
    return reader.values()


def duty_cycle_samples(answer: bytes, ready: Collection[str], now: float) -> list[Sample]:
    """``accelerator/duty_cycle`` samples from a Prometheus instant-query answer (one series per pod).
    Raises ValueError naming what is wrong with the answer."""
    try:
        results = json.loads(answer)["data"]["result"]
        values = {str(r["metric"]["pod"]): float(r["value"][1]) for r in results if "pod" in r.get("metric", {})}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
        raise ValueError(f"unexpected Prometheus answer: {e}") from e
    return [Sample(pod, Signal.DUTY_CYCLE, value, now, pod in ready) for pod, value in values.items()]


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
