"""Is the MTP drafter paying? The acceptance rate of its draft tokens from the engine's counters, pure.

The engine counts draft tokens proposed and accepted (catalog/drafters.yaml names vLLM's counters); a reading
is one pod's two counters at one time. Over the last ``window_seconds`` each pod contributes what its counters
grew by (a pod whose counters went down restarted: only its readings since then count), and the rate is
accepted / proposed over all pods. The decision table (catalog/drafters.yaml `acceptance`):

==================================  ==================  ==========  ============================================
draft tokens in the window          window covered      rate        state (Degraded)
==================================  ==================  ==========  ============================================
fewer than min_draft_tokens         any                 any         Measuring (no), rate not shown
at least min_draft_tokens           any                 >= minimum  Effective (no)
at least min_draft_tokens           less than window    < minimum   Measuring (no): not yet persistent
at least min_draft_tokens           the whole window    < minimum   Ineffective (yes: SpeculativeDecodingIneffective)
==================================  ==================  ==========  ============================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.parser import text_string_to_metric_families

from gemma4_operator.api import SpeculativeDecodingStatus
from gemma4_operator.catalog.drafters import AcceptanceRule

INEFFECTIVE = "SpeculativeDecodingIneffective"
State = Literal["Measuring", "Effective", "Ineffective"]


@dataclass(frozen=True)
class Reading:
    """One pod's draft counters at one time (seconds)."""

    at: float
    accepted: float
    drafted: float


@dataclass(frozen=True)
class Assessment:
    rate: float | None  # accepted / drafted over the window; None below min_draft_tokens
    drafted: int
    covered_s: float  # how much of the window the readings span
    state: State

    def to_status(self) -> SpeculativeDecodingStatus:
        return SpeculativeDecodingStatus(acceptance_rate=None if self.rate is None else round(self.rate, 3),
                                         draft_tokens=self.drafted, window_seconds=int(self.covered_s),
                                         state=self.state)


def reading(text: str, accepted_metric: str, draft_metric: str, at: float) -> Reading | None:
    """One pod's counters from its /metrics text (summed over the engine's series); None when the engine
    exposes neither (not yet drafting, or speculative decoding is off there). Raises ValueError on a body
    that is not the Prometheus text format."""
    totals = {accepted_metric: 0.0, draft_metric: 0.0}
    seen = False
    # only the two counters' sample lines are parsed (the rest of an engine's exposition is not ours to judge)
    wanted = "\n".join(line for line in text.splitlines() if line.lstrip().startswith(tuple(totals)))
    for family in text_string_to_metric_families(wanted):
        for sample in family.samples:
            if sample.name in totals:
                totals[sample.name] += float(sample.value)
                seen = True
    return Reading(at, totals[accepted_metric], totals[draft_metric]) if seen else None


def record(history: Mapping[str, Sequence[Reading]], readings: Mapping[str, Reading], now: float,
           rule: AcceptanceRule) -> dict[str, tuple[Reading, ...]]:
    """The history with this scrape's readings added: pods gone from the scrape are dropped, readings older
    than the window are dropped except the newest of them (the window's starting point)."""
    kept: dict[str, tuple[Reading, ...]] = {}
    start = now - rule.window_seconds
    for pod, reading in readings.items():
        series = [*(r for r in history.get(pod, ()) if r.at < reading.at), reading]  # one reading per time
        older = [r for r in series if r.at <= start]
        kept[pod] = tuple(older[-1:] + [r for r in series if r.at > start])
    return kept


def _since_restart(series: Sequence[Reading]) -> Sequence[Reading]:
    """The readings since the pod's counters last went down (an engine restart starts them at 0 again)."""
    for i in range(len(series) - 1, 0, -1):
        if series[i].accepted < series[i - 1].accepted or series[i].drafted < series[i - 1].drafted:
            return series[i:]
    return series


def assess(history: Mapping[str, Sequence[Reading]], now: float, rule: AcceptanceRule) -> Assessment:
    """The table above, over the readings of every pod."""
    accepted = drafted = 0.0
    first = now
    for series in history.values():
        usable = _since_restart(series)
        if len(usable) < 2:
            continue
        accepted += usable[-1].accepted - usable[0].accepted
        drafted += usable[-1].drafted - usable[0].drafted
        first = min(first, usable[0].at)
    covered = min(now - first, float(rule.window_seconds))
    if drafted < rule.min_draft_tokens:
        return Assessment(None, int(drafted), covered, "Measuring")
    rate = accepted / drafted
    if rate >= rule.min_acceptance_rate:
        return Assessment(rate, int(drafted), covered, "Effective")
    return Assessment(rate, int(drafted), covered, "Ineffective" if covered >= rule.window_seconds else "Measuring")


def ineffective_message(a: Assessment, drafter: str, rule: AcceptanceRule) -> str | None:
    """Degraded's message for an Ineffective drafter, saying what to change; None otherwise."""
    if a.state != "Ineffective" or a.rate is None:
        return None
    return (f"the MTP drafter {drafter} had {a.rate:.0%} of its {a.drafted} draft tokens accepted over the last "
            f"{rule.window_seconds // 60} minutes, below {rule.min_acceptance_rate:.0%}: verifying its drafts costs "
            "more than they save on this traffic; set serving.speculativeDecoding.mode: off")
