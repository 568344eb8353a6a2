"""The recommendation history that gates scale-down, as kept in ``status.autoscaling``. Pure.

Only the recommendations that can still matter are kept: within the scale-down window, each one
higher than every later one (a later, at-least-as-high recommendation expires later, so an earlier
lower one can never be the window's maximum), the newest last. The newest is written as
``recommendedReplicas`` without a time, the older ones as ``recommendations[{replicas, time}]``
with the time they were last made. So the status changes only when the recommendation changes or
the window's maximum expires, never because a tick repeated the same recommendation: no write per
tick (and a changed recommendation comes from changed metrics, which ``status.autoscaling.metrics``
writes anyway).

After an operator restart :func:`from_status` rebuilds the history: the older steps at their
times, the newest as made ``now`` (it was repeated until the restart, or it would have been
written). ``decide`` then holds a scale-down at what the window really holds, neither dropping
early nor waiting a full window.

Times are the autoscaler's clock, seconds since the epoch (wall clock: it must survive a restart).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from gemma4_operator.autoscaling.decision import Recommendation

MAX_STEPS = 16  # bounded: the window holds at most this many older steps (highest, i.e. oldest, kept)


def staircase(history: Sequence[Recommendation], now: float, window_s: float) -> tuple[Recommendation, ...]:
    """The recommendations inside the window that are higher than every later one, oldest first;
    the newest always (it is what the next ticks compare with)."""
    recent = [h for h in history if h.at > now - window_s]
    steps: list[Recommendation] = []
    for h in reversed(recent):
        if not steps or h.replicas > steps[-1].replicas:
            steps.append(Recommendation(h.at, h.replicas))
    return tuple(reversed(steps))


def rfc3339(at: float) -> str:
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def parse_rfc3339(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def to_status(history: Sequence[Recommendation], now: float, window_s: float) -> dict[str, Any]:
    """``recommendations`` and ``recommendedReplicas`` for ``status.autoscaling``."""
    steps = staircase(history, now, window_s)
    if not steps:
        return {"recommendations": []}
    *older, newest = steps
    kept = older[:MAX_STEPS]  # the oldest are the highest: they are what holds a scale-down
    return {"recommendations": [{"replicas": h.replicas, "time": rfc3339(h.at)} for h in kept],
            "recommendedReplicas": newest.replicas}


def from_status(autoscaling: Mapping[str, Any] | None, now: float, window_s: float) -> tuple[Recommendation, ...]:
    """The history written by :func:`to_status`, for the first tick after a restart; ``()`` when
    there is none (``decide`` then holds at the current count for a full window, like the HPA).
    Entries in the future (clock skew) count as made ``now``; unreadable ones are skipped."""
    if not autoscaling or autoscaling.get("recommendedReplicas") is None:
        return ()
    history: list[Recommendation] = []
    for entry in autoscaling.get("recommendations") or []:
        try:
            at, replicas = min(now, parse_rfc3339(str(entry["time"]))), int(entry["replicas"])
        except (KeyError, TypeError, ValueError):
            continue
        if at > now - window_s:
            history.append(Recommendation(at, replicas))
    try:
        history.append(Recommendation(now, int(autoscaling["recommendedReplicas"])))
    except (TypeError, ValueError):
        return ()
    return tuple(sorted(history, key=lambda h: h.at))
