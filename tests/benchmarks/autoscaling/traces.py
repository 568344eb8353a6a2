"""Seeded request traces for the autoscaling benchmark.

A trace is a rate function (requests/s over time) turned into Poisson arrivals by thinning,
each request carrying prompt and output token counts drawn from log-normal distributions.
Everything is drawn from one ``random.Random(seed)``, so a trace is the same on every run.

Rates are given as a fraction of ``PEAK_RATE``; with the default replica model (16 slots,
~13 s per request) the peak needs about 12 replicas.
"""

from __future__ import annotations

import csv
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache

PEAK_RATE = 13.0  # requests/s at the peak of every trace
PROMPT_TOKENS = (math.log(600), 0.8, 8000)  # log-normal (mu, sigma) and cap: median 600, mean ~830
OUTPUT_TOKENS = (math.log(250), 0.7, 2000)  # median 250, mean ~320

HOUR = 3600.0
RateFn = Callable[[float], float]


@dataclass(frozen=True)
class Trace:
    name: str
    description: str
    duration_s: float
    arrivals: tuple[float, ...]  # seconds, sorted
    prompt_tokens: tuple[int, ...]
    output_tokens: tuple[int, ...]
    peak_rate: float  # highest rate over any 60 s step of the rate function, requests/s
    mean_rate: float  # mean of the rate function, requests/s
    start_rate: float  # rate at t=0, requests/s (autoscaled runs start warm, sized for it)
    rate_per_min: tuple[float, ...]  # the rate function at t = 0, 60, 120, ... s (for the oracle)


def _diurnal(t: float) -> float:
    """24 h sinusoid: trough 20 % of peak at midnight (t=0), peak at noon; mean 60 %."""
    return 0.2 + 0.8 * (1 - math.cos(2 * math.pi * t / (24 * HOUR))) / 2


def _bursty(rng: random.Random, duration: float) -> RateFn:
    """40 % baseline plus bursts (every ~15 min on average) of +30..60 % lasting 2..10 min."""
    bursts: list[tuple[float, float, float]] = []
    t = rng.expovariate(1 / 900)
    while t < duration:
        bursts.append((t, t + rng.uniform(120, 600), rng.uniform(0.3, 0.6)))
        t += rng.expovariate(1 / 900)
    return lambda x: min(1.0, 0.4 + sum(a for start, end, a in bursts if start <= x < end))


def _flash_crowd(t: float) -> float:
    """25 % for 1 h, then up to 100 % within 60 s, held 20 min, decaying back (tau 15 min)."""
    start, plateau_end = HOUR, HOUR + 60 + 20 * 60
    if t < start:
        return 0.25
    if t < start + 60:
        return 0.25 + 0.75 * (t - start) / 60
    if t < plateau_end:
        return 1.0
    return 0.25 + 0.75 * math.exp(-(t - plateau_end) / (15 * 60))


def _slow_ramp(t: float) -> float:
    """10 % -> 100 % linearly over 4 h, held 1 h, back to 10 % over 1 h."""
    if t < 4 * HOUR:
        return 0.1 + 0.9 * t / (4 * HOUR)
    if t < 5 * HOUR:
        return 1.0
    return 1.0 - 0.9 * min(1.0, (t - 5 * HOUR) / HOUR)


def _idle_nights(t: float) -> float:
    """Two days of office hours: nothing from 20:00 to 08:00, a half-sine from 08:00 to 20:00 (t=0 is midnight)."""
    hour = (t / HOUR) % 24
    return math.sin(math.pi * (hour - 8) / 12) if 8 <= hour < 20 else 0.0


def _long_shape(t: float) -> float:
    """4 h, 30 % base with a 1 h hump to 100 % in the middle (a batch job on top of interactive use)."""
    return 0.3 + 0.7 * max(0.0, math.sin(math.pi * (t - 1.5 * HOUR) / HOUR)) if 1.5 * HOUR <= t < 2.5 * HOUR else 0.3


Tokens = tuple[float, float, int]
# Shapes with other token mixes than the conversation-like default (log-normal (mu, sigma) and cap), and the
# peak rate each is run at (requests/s): a long prompt costs prefill, a long context costs both.
_MIXES: dict[str, tuple[Tokens, Tokens, float]] = {
    "long_prompts": ((math.log(6000), 0.5, 30000), (math.log(40), 0.6, 300), 8.0),  # RAG / summarization
    "long_context": ((math.log(24000), 0.3, 30000), (math.log(400), 0.5, 2000), 1.0),  # documents, agents
    "idle_nights": (PROMPT_TOKENS, OUTPUT_TOKENS, 1.5),  # a small deployment: 1 to 3 replicas
}


def _shape(name: str, rng: random.Random) -> tuple[str, float, RateFn]:
    if name == "idle_nights":
        return "48 h, office hours 08-20 h (half-sine), no traffic at night, ~1-3 replicas", 48 * HOUR, _idle_nights
    if name == "long_prompts":
        return "4 h, prompts median 6000 / outputs median 40 tokens, 1 h hump", 4 * HOUR, _long_shape
    if name == "long_context":
        return "4 h, prompts median 24000 / outputs median 400 tokens, 1 h hump", 4 * HOUR, _long_shape
    if name == "diurnal":
        return "24 h sinusoid, trough 20 % of peak", 24 * HOUR, _diurnal
    if name == "bursty":
        return "4 h, 40 % base + random +30..60 % bursts of 2..10 min", 4 * HOUR, _bursty(rng, 4 * HOUR)
    if name == "flash_crowd":
        return "3 h, 25 % -> 100 % within 60 s at 1 h, 20 min plateau, decay", 3 * HOUR, _flash_crowd
    if name == "slow_ramp":
        return "6 h, 10 % -> 100 % over 4 h, hold 1 h, down over 1 h", 6 * HOUR, _slow_ramp
    raise ValueError(f"unknown trace {name!r}; known: {', '.join(TRACE_NAMES)}")


TRACE_NAMES = ("diurnal", "bursty", "flash_crowd", "slow_ramp", "long_prompts", "long_context", "idle_nights")


def _tokens(rng: random.Random, spec: tuple[float, float, int]) -> int:
    mu, sigma, cap = spec
    return max(1, min(cap, round(rng.lognormvariate(mu, sigma))))


@lru_cache(maxsize=8)
def make_trace(name: str, seed: int = 1, duration_s: float | None = None, peak_rate: float | None = None) -> Trace:
    """Build a trace; ``duration_s`` cuts it short (used by the smoke test)."""
    rng = random.Random(f"{name}/{seed}")
    description, full_duration, shape = _shape(name, rng)
    prompt_spec, output_spec, shape_peak = _MIXES.get(name, (PROMPT_TOKENS, OUTPUT_TOKENS, PEAK_RATE))
    peak_rate = shape_peak if peak_rate is None else peak_rate
    duration = full_duration if duration_s is None else duration_s
    grid = [shape(60.0 * i) * peak_rate for i in range(int(duration // 60) + 1)]
    bound = peak_rate  # every shape is <= 1, so this bounds the rate for thinning
    arrivals: list[float] = []
    prompts: list[int] = []
    outputs: list[int] = []
    t = 0.0
    while True:
        t += rng.expovariate(bound)
        if t >= duration:
            break
        if rng.random() * bound < shape(t) * peak_rate:
            arrivals.append(t)
            prompts.append(_tokens(rng, prompt_spec))
            outputs.append(_tokens(rng, output_spec))
    return Trace(
        name=name,
        description=description,
        duration_s=duration,
        arrivals=tuple(arrivals),
        prompt_tokens=tuple(prompts),
        output_tokens=tuple(outputs),
        peak_rate=max(grid),
        mean_rate=sum(grid) / len(grid),
        start_rate=grid[0],
        rate_per_min=tuple(grid),
    )


def _seconds(stamp: str) -> float:
    """``2023-11-16 18:15:46.6805900`` -> seconds since the epoch (the Azure traces carry 7 digits)."""
    whole, _, fraction = stamp.strip().partition(".")
    base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()
    return base + (float("0." + fraction) if fraction else 0.0)


@lru_cache(maxsize=8)
def load_csv(path: str, stretch: float = 1.0) -> Trace:
    """An Azure-format trace (``TIMESTAMP,ContextTokens,GeneratedTokens``), time starting at its first
    request, every inter-arrival time multiplied by ``stretch``. Its rate function (for the oracle and
    the sizing) is the arrival count of each 60 s step of the stretched time."""
    if stretch <= 0:
        raise ValueError(f"--stretch must be > 0, got {stretch}")
    with open(path, newline="") as handle:
        rows = [(_seconds(r["TIMESTAMP"]), int(r["ContextTokens"]), int(r["GeneratedTokens"]))
                for r in csv.DictReader(handle)]
    if not rows:
        raise ValueError(f"{path}: no requests")
    rows.sort(key=lambda r: r[0])
    t0 = rows[0][0]
    arrivals = tuple((t - t0) * stretch for t, _, _ in rows)
    duration = max(60.0, math.ceil((arrivals[-1] + 1e-9) / 60) * 60)
    counts = [0] * int(duration // 60)
    for t in arrivals:
        counts[min(len(counts) - 1, int(t // 60))] += 1
    grid = tuple(c / 60 for c in counts)
    stem = os.path.splitext(os.path.basename(path))[0]
    name = stem if stretch == 1 else f"{stem} x{stretch:g}"
    return Trace(
        name=name,
        description=f"{path} as recorded" if stretch == 1 else f"{path}, inter-arrival times x{stretch:g}",
        duration_s=duration,
        arrivals=arrivals,
        prompt_tokens=tuple(max(1, p) for _, p, _ in rows),
        output_tokens=tuple(max(1, o) for _, _, o in rows),
        peak_rate=max(grid),
        mean_rate=len(arrivals) / duration,
        start_rate=grid[0],
        rate_per_min=grid,
    )
