"""Scale to zero (Vertex AI ``scaleToZeroSpec``) and the wake from zero, on top of :func:`decide`. Pure.

One tick:

1. :func:`activity`: BUSY when a ready pod served, ran or queued a request since the last tick
   (``request_count`` rate above 0, ``num_requests_running`` or ``num_requests_waiting`` above 0)
   or the activator holds requests; IDLE when every ready pod reports fresh running and waiting
   gauges of 0 and nothing else says BUSY; UNKNOWN when a ready pod lacks one of those gauges, or no
   pod is ready at all (starting pods). The request counter counts when there is a rate: not on a
   pod's first scrape (right after an operator restart), where the gauges alone decide.
2. :func:`next_timers`: ``idle_since`` is the first tick seen IDLE; BUSY and UNKNOWN clear it, so a
   missing metric never counts as idle and the period starts again once the metrics are back.
3. :func:`gate`, after ``decide`` (which, with scale to zero, never goes below one replica):
   at zero, requests held by the activator wake ``ceil(held / slots)`` replicas (at least one, at
   most ``max_replicas``), else the count stays at zero; while replicas start, held requests beyond
   their slots ask for more (the starting ones count); within ``min_scaleup_s`` of the last
   scale-up nothing scales down; IDLE for ``idle_s`` with nothing held scales to zero.

The timers are kept in ``status.autoscaling`` (:func:`timers_to_status`, :func:`timers_from_status`),
written only when they change (a transition between busy and idle, a scale-up), so an operator
restart neither shortens nor restarts an idle period and an idle deployment costs no writes.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import Sample
from gemma4_operator.autoscaling.history import parse_rfc3339, rfc3339

# The gauges that tell whether a replica has work: both must be read for a tick to count as idle.
ACTIVITY_GAUGES = (Signal.BATCH_SIZE, Signal.QUEUE_LENGTH)
ACTIVITY_SIGNALS = frozenset({*ACTIVITY_GAUGES, Signal.REQUEST_COUNT})


class Activity(enum.StrEnum):
    BUSY = "busy"
    IDLE = "idle"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ScaleToZero:
    """``scaleToZeroSpec`` in seconds, and the plan's slots per replica (what one woken replica absorbs)."""

    idle_s: float
    min_scaleup_s: float
    slots: int

    def __post_init__(self) -> None:
        if self.idle_s < 0 or self.min_scaleup_s < 0 or self.slots < 1:
            raise ValueError(f"need idle_s, min_scaleup_s >= 0 and slots >= 1, got {self}")


@dataclass(frozen=True)
class Timers:
    """Seconds since the epoch; None: not idle (or unknown) / never scaled up since the object exists."""

    idle_since: float | None = None
    last_scale_up: float | None = None


@dataclass(frozen=True)
class Gated:
    desired: int
    timers: Timers
    note: str  # why the gate changed decide's count ("" when it did not)


def activity(samples: Sequence[Sample], ready_pods: Collection[str], held: int | None, now: float,
             stale_after_s: float) -> Activity:
    """Whether any request was served, running, waiting or held since the last tick (module docstring). ``held``
    None: the activator could not be read, which is never idle (no scale to zero without a way back)."""
    if held is None:
        return Activity.UNKNOWN
    if held > 0:
        return Activity.BUSY
    fresh = [s for s in samples if s.ready and s.pod in ready_pods and now - s.at <= stale_after_s
             and s.signal in ACTIVITY_SIGNALS]
    if any(s.value > 0 for s in fresh):
        return Activity.BUSY
    seen = {(s.pod, s.signal) for s in fresh}
    if not ready_pods or any((pod, g) not in seen for pod in ready_pods for g in ACTIVITY_GAUGES):
        return Activity.UNKNOWN
    return Activity.IDLE


def next_timers(timers: Timers, act: Activity, now: float) -> Timers:
    if act is not Activity.IDLE:
        return replace(timers, idle_since=None)
    return timers if timers.idle_since is not None else replace(timers, idle_since=now)


def _seconds(x: float) -> str:
    return f"{x:.0f}s"


def gate(zero: ScaleToZero, current: int, proposed: int, max_replicas: int, timers: Timers, act: Activity,
         held: int | None, now: float) -> Gated:
    """The count to set after ``decide`` proposed ``proposed`` (its floor one replica); ``timers`` are
    this tick's (after :func:`next_timers`). The returned timers record a scale-up made now."""
    if current == 0:
        if held is None or held <= 0:
            return Gated(0, timers, "scaled to zero: no request held by the activator" if held is not None
                         else "scaled to zero: the activator's held requests cannot be read")
        wake = min(max_replicas, max(1, math.ceil(held / zero.slots)))
        return Gated(wake, replace(timers, last_scale_up=now, idle_since=None),
                     f"wake: {held} request(s) held by the activator, {wake} replica(s) of {zero.slots} slots")
    # no pod ready yet: the activator still holds (unknown: nothing more asked for)
    held_needs = min(max_replicas, math.ceil((held or 0) / zero.slots))
    if held_needs > max(current, proposed):
        proposed = held_needs
    since_up = math.inf if timers.last_scale_up is None else now - timers.last_scale_up
    if proposed > current:
        return Gated(proposed, replace(timers, last_scale_up=now), "")
    idle_for = 0.0 if timers.idle_since is None else now - timers.idle_since
    wants_down = proposed < current or (act is Activity.IDLE and idle_for >= zero.idle_s)
    if wants_down and since_up < zero.min_scaleup_s:
        return Gated(current, timers, f"scale-down held: {_seconds(since_up)} since the last scale-up, "
                                      f"minScaleupPeriod {_seconds(zero.min_scaleup_s)}")
    if act is Activity.IDLE and idle_for >= zero.idle_s:
        return Gated(0, timers, f"scale to zero: no request for {_seconds(idle_for)}, "
                                f"idleScaledownPeriod {_seconds(zero.idle_s)}")
    return Gated(proposed, timers, "")


def timers_to_status(timers: Timers, scaled_to_zero: bool) -> dict[str, Any]:
    """``idleSince``, ``lastScaleUpTime`` and ``scaledToZero`` for ``status.autoscaling`` (always all three:
    the CRD defaults them, so a status read back compares equal and nothing is written per tick)."""
    return {"idleSince": "" if timers.idle_since is None else rfc3339(timers.idle_since),
            "lastScaleUpTime": "" if timers.last_scale_up is None else rfc3339(timers.last_scale_up),
            "scaledToZero": scaled_to_zero}


def timers_from_status(autoscaling: Mapping[str, Any] | None, now: float) -> Timers:
    """The timers a previous operator process left in status; a time in the future (clock skew) counts
    as ``now``, an unreadable one as absent."""
    def read(key: str) -> float | None:
        text = (autoscaling or {}).get(key)
        if not text:
            return None
        try:
            return min(now, parse_rfc3339(str(text)))
        except ValueError:
            return None

    return Timers(idle_since=read("idleSince"), last_scale_up=read("lastScaleUpTime"))
