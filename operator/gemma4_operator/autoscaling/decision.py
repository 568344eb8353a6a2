"""Vertex-style autoscaling decision: metric samples in, desired replica count out.

Pure and deterministic: no I/O, no clock (the caller passes ``now``), no Kubernetes.
The algorithm is the Kubernetes HPA's (https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/:
the replica formula, the 10 % tolerance, missing-pod handling, stabilization) with Vertex AI metric names
and Vertex's rule "scale up when any metric is over target, down only when all are under"
(Vertex AI DedicatedResources autoscaling). One call of :func:`decide`:

1. Per metric: each ready pod's newest sample no older than ``stale_after_s`` is converted
   to target units (:func:`to_target_units`) and averaged; ``ratio = average / target``.
   Within ``tolerance`` of 1 -> keep ``current``; otherwise propose ``ceil(current × ratio)``.
2. Pods without a usable sample (missing, stale or not ready) are the gap between
   ``current_replicas`` and the pods that reported. If there are any, the average is
   recomputed as if they sat at 100 % of target (scale-down) or at 0 (scale-up); when that
   lands inside the tolerance or flips the direction, the metric proposes no change.
3. A metric with no usable sample at all proposes nothing and forbids a scale-down
   (other metrics may still scale up).
4. The recommendation is the highest proposal (so: up if any metric is over, down only if
   all are under).
5. Scale-down stabilization: never go below the highest recommendation made within the
   last ``scale_down_delay_s`` (recommendations come from ``history``; an empty history is
   seeded with ``current`` at ``now``, like the HPA after a restart; the operator keeps the
   history in status, ``autoscaling.history``, so a restart does not start empty).
6. Scale-up rate limit: over any ``scale_up_period_s`` at most
   ``max(+scale_up_percent %, +scale_up_pods)`` replicas, counting scale-ups already made in
   that period (also from ``history``).
7. Clamp to ``[min_replicas, max_replicas]`` (also when there are no metrics at all).

Caveat (measured in tests/benchmarks/autoscaling): a queue target alone is 0 whenever the
replicas keep up, so step 1 proposes 0 and, after the delay, the count falls to ``min_replicas``,
then overflows and jumps to ``max_replicas``. Pair ``vllm/num_requests_waiting`` with a
utilization signal (KV cache or batch size); that is HPA math, not a bug here.

Per-pod metrics cannot scale *from* zero (no pod, no sample): that needs an activator or an
external signal and is not handled here; with ``current_replicas == 0`` only the clamp acts.

Units: a :class:`Sample` carries the value as its source exposes it. The only conversion is
done here, in :func:`to_target_units`: ``vllm:kv_cache_usage_perc`` is a 0..1 fraction and is
multiplied by 100, so its target is a percentage like every other utilization target.
Duty cycle (DCGM, 0..100) and CPU utilization (percent of the CPU request, computed by the
caller from metrics.k8s.io) are already percentages; queue length and batch size are counts;
``request_count`` is a rate in requests per minute per pod, computed by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from gemma4_operator.api.metric_names import DEFAULT_TARGETS, Signal, signal_for_metric_name

_EPSILON = 1e-9  # keeps float noise (3 × 1.1 = 3.3000000000000003) from adding a replica


def to_target_units(signal: Signal, value: float) -> float:
    """Convert a sample's raw value to the unit of its target (KV cache: 0..1 -> percent)."""
    return value * 100.0 if signal is Signal.KV_CACHE_USAGE else value


@dataclass(frozen=True)
class MetricTarget:
    signal: Signal
    target: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target) and self.target > 0):
            raise ValueError(f"target for {self.signal.value} must be a positive number, got {self.target}")

    @classmethod
    def from_spec(cls, metric_name: str, target: float | None = None) -> MetricTarget:
        """Build from a ``{metricName, target}`` spec entry, filling in the default target."""
        signal = signal_for_metric_name(metric_name)
        if target is None:
            target = DEFAULT_TARGETS[signal]
            if target is None:
                raise ValueError(f"metricName {metric_name!r} has no default target; set target")
        return cls(signal, float(target))


@dataclass(frozen=True)
class Policy:
    min_replicas: int
    max_replicas: int
    targets: tuple[MetricTarget, ...]
    scale_down_delay_s: float
    tolerance: float = 0.1
    scale_up_period_s: float = 15.0
    scale_up_percent: float = 100.0
    scale_up_pods: int = 4
    stale_after_s: float = 60.0
    # A replica's request slots (the plan's maxConcurrency); 0: unknown. With it, a queue that the pods
    # without a sample yet (starting) will absorb does not propose a scale-up: they are capacity on its way.
    slots: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 0 <= self.min_replicas <= self.max_replicas or self.max_replicas < 1:
            problems.append(
                f"need 0 <= min_replicas <= max_replicas and max_replicas >= 1, "
                f"got {self.min_replicas}..{self.max_replicas}"
            )
        signals = [t.signal for t in self.targets]
        if len(set(signals)) != len(signals):
            problems.append("at most one target per metric (spellings of one metric count as one)")
        if self.scale_down_delay_s < 0 or self.scale_up_period_s <= 0 or self.stale_after_s <= 0:
            problems.append("scale_down_delay_s must be >= 0, scale_up_period_s and stale_after_s > 0")
        if not 0 <= self.tolerance < 1 or self.scale_up_percent < 0 or self.scale_up_pods < 0:
            problems.append("need 0 <= tolerance < 1, scale_up_percent >= 0, scale_up_pods >= 0")
        if self.slots < 0:
            problems.append(f"slots must be >= 0, got {self.slots}")
        if problems:
            raise ValueError("invalid autoscaling policy: " + "; ".join(problems))


@dataclass(frozen=True)
class Sample:
    """One scraped value: ``value`` is raw (as the source exposes it), ``at`` in seconds."""

    pod: str
    signal: Signal
    value: float
    at: float
    ready: bool


@dataclass(frozen=True)
class Recommendation:
    """What one :func:`decide` call at ``at`` recommended from metrics (before stabilization,
    rate limit and clamping), and how many replicas it added (for the scale-up rate limit)."""

    at: float
    replicas: int
    scaled_up_by: int = 0


@dataclass(frozen=True)
class MetricStatus:
    signal: Signal
    current: float | None  # average over usable pods, in target units; None: no usable sample
    target: float
    proposal: int | None  # None: no usable sample (blocks scale-down)
    reason: str


@dataclass(frozen=True)
class Decision:
    desired: int
    reasons: tuple[MetricStatus, ...]
    summary: str
    history: tuple[Recommendation, ...]  # pass to the next decide() call


def _ceil(x: float) -> int:
    return math.ceil(x - _EPSILON)


def _num(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _evaluate(
    policy: Policy, metric: MetricTarget, current: int, samples: Sequence[Sample], now: float
) -> MetricStatus:
    signal, target, tol = metric.signal, metric.target, policy.tolerance
    usable = [s for s in samples if s.signal is signal and s.ready and now - s.at <= policy.stale_after_s]
    newest = {s.pod: s for s in sorted(usable, key=lambda s: s.at)}  # each pod's newest sample
    if not newest:
        reason = f"{signal.value}: no fresh sample from a ready pod: no proposal, scale-down blocked"
        return MetricStatus(signal, None, target, None, reason)

    values = [to_target_units(signal, s.value) for s in newest.values()]
    average = sum(values) / len(values)
    ratio = average / target
    up = ratio > 1
    head = (
        f"{signal.value} {_num(average)} {'>' if up else '<'} target {_num(target)} "
        f"({'+' if up else '-'}{_num(tol * 100)}% tolerance)"
    )
    if 1 - tol <= ratio <= 1 + tol:
        within = f"{signal.value} {_num(average)} within target {_num(target)} ±{_num(tol * 100)}%"
        return MetricStatus(signal, average, target, current, f"{within}: keep {current}")

    missing = current - len(values)
    if missing > 0:
        fill = 0.0 if up else target
        total = sum(values)
        if up and signal is Signal.QUEUE_LENGTH and policy.slots:
            total = max(0.0, total - missing * policy.slots)
            head += f"; {missing} starting pod(s) absorb {_num(missing * policy.slots)} queued"
        ratio = (total + missing * fill) / (current * target)
        head += f"; {missing} pod(s) without a fresh sample counted at {_num(fill)} -> {_num(ratio * target)}"
        if (ratio <= 1 + tol) if up else (ratio >= 1 - tol):
            return MetricStatus(signal, average, target, current, f"{head}: keep {current}")

    proposal = _ceil(current * ratio)
    return MetricStatus(signal, average, target, proposal, f"{head}: propose {proposal}")


def _stabilized(policy: Policy, current: int, recommendation: int, history: Sequence[Recommendation], now: float,
                notes: list[str]) -> int:
    """Steps 5 and 6: hold a scale-down at the highest recent recommendation, limit a scale-up's rate."""
    if recommendation < current:
        window = [h.replicas for h in history if h.at > now - policy.scale_down_delay_s]
        desired = min(current, max([recommendation, *window]))
        if desired > recommendation:
            notes.append(
                f"scale-down held at {desired}: highest recommendation in the last {_num(policy.scale_down_delay_s)}s"
            )
        return desired
    if recommendation > current:
        added = sum(h.scaled_up_by for h in history if h.at > now - policy.scale_up_period_s)
        start = max(0, current - added)
        limit = max(current, start + policy.scale_up_pods, _ceil(start * (1 + policy.scale_up_percent / 100)))
        if recommendation > limit:
            notes.append(
                f"scale-up limited to {limit}: at most +{_num(policy.scale_up_percent)}% "
                f"or +{policy.scale_up_pods} pods per {_num(policy.scale_up_period_s)}s"
            )
            return limit
    return recommendation


def _headline(current: int, final: int, statuses: Sequence[MetricStatus]) -> str:
    if final == current:
        return f"keep {current}"
    head = f"{'scale up' if final > current else 'scale down'} {current} -> {final}"
    proposals = [s.proposal for s in statuses if s.proposal is not None]
    if proposals:
        top = next(s for s in statuses if s.proposal == max(proposals))
        head += f" ({top.signal.value} proposes {top.proposal})"
    return head


def decide(
    policy: Policy,
    current_replicas: int,
    samples: Sequence[Sample],
    history: Sequence[Recommendation],
    now: float,
) -> Decision:
    """Desired replica count for one control-loop tick; see the module docstring."""
    if current_replicas < 0:
        raise ValueError(f"current_replicas must be >= 0, got {current_replicas}")
    current = current_replicas
    if not history and policy.scale_down_delay_s > 0:
        # No memory (new object, operator restart): act as if `current` was just recommended,
        # so nothing scales down before a full delay has been observed.
        history = (Recommendation(now, current),)
    statuses = tuple(_evaluate(policy, m, current, samples, now) for m in policy.targets)
    notes: list[str] = [] if statuses else ["no autoscaling metrics"]

    proposals = [s.proposal for s in statuses if s.proposal is not None]
    recommendation = max(proposals, default=current)
    blind = [s.signal.value for s in statuses if s.proposal is None]
    if blind and recommendation < current:
        recommendation = current
        notes.append(f"scale-down blocked: no fresh samples for {', '.join(blind)}")

    desired = _stabilized(policy, current, recommendation, history, now, notes)
    final = min(max(desired, policy.min_replicas), policy.max_replicas)
    if final != desired:
        notes.append(f"clamped to {'min' if desired < final else 'max'}Replicas {final}")

    head = _headline(current, final, statuses)
    keep_s = max(policy.scale_down_delay_s, policy.scale_up_period_s)
    kept = tuple(h for h in history if h.at > now - keep_s)
    return Decision(
        desired=final,
        reasons=statuses,
        summary="; ".join([head, *notes]),
        history=(*kept, Recommendation(now, recommendation, max(0, final - current))),
    )
