"""What a Gemma4Deployment scales on, for both autoscaler backends, and one tick of the built-in
autoscaler. Pure.

With no autoscalingMetricSpecs the engine's default signals apply (``Engine.default_signals``): the
queue paired with a utilization signal, because a queue target alone reads 0 whenever the replicas
keep up, so HPA math walks the count down to the minimum and then overflows (measured in
tests/benchmarks/autoscaling).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import MetricTarget, Policy, Recommendation, Sample, decide
from gemma4_operator.autoscaling.exposition import ScrapeFailure
from gemma4_operator.autoscaling.idle import Activity, ScaleToZero, Timers, activity, gate, next_timers
from gemma4_operator.engines.base import Engine
from gemma4_operator.planner.plan import Plan

_SHOWN = 5  # per-pod scrape problems named in ScalingActive's message at most
ENGINE_SIGNALS = frozenset({Signal.QUEUE_LENGTH, Signal.BATCH_SIZE, Signal.KV_CACHE_USAGE, Signal.REQUEST_COUNT})


def metric_targets(spec: Gemma4DeploymentSpec, plan: Plan, engine: Engine) -> tuple[MetricTarget, ...]:
    """The spec's metrics with default targets filled in, or the engine's default signals.
    Raises ValueError for a metric without a default target and without a target."""
    assert spec.autoscaling is not None
    given = spec.autoscaling.autoscaling_metric_specs
    if given:
        return tuple(MetricTarget.from_spec(m.metric_name, m.target) for m in given)
    return tuple(MetricTarget(signal, target) for signal, target in engine.default_signals(plan))


def policy(spec: Gemma4DeploymentSpec, plan: Plan, engine: Engine) -> Policy:
    """The HPA-style policy; its floor is one replica even with minReplicaCount 0: only the idle gate
    (:func:`scale_to_zero`, ``autoscaling.idle``) goes to zero, never the metric math."""
    assert spec.autoscaling is not None
    a = spec.autoscaling
    return Policy(max(1, a.min_replica_count), a.max_replica_count, metric_targets(spec, plan, engine),
                  float(a.scale_down_delay_seconds), slots=engine.slots(plan))


def scale_to_zero(spec: Gemma4DeploymentSpec, plan: Plan, engine: Engine,
                  time_scale: float = 1.0) -> ScaleToZero | None:
    """``scaleToZeroSpec`` in seconds (times ``time_scale``: the operator's test-only setting), or None."""
    zero = spec.autoscaling.scale_to_zero_spec if spec.autoscaling is not None else None
    if zero is None:
        return None
    return ScaleToZero(zero.idle_scaledown_seconds * time_scale, zero.min_scaleup_seconds * time_scale,
                       engine.slots(plan))


def unavailable(targets: tuple[MetricTarget, ...], engine: Engine, prometheus_url: str) -> dict[Signal, str]:
    """Signals that cannot be read here, with the reason (for ScalingActive=False and Planned=False).
    CPU utilization needs metrics.k8s.io, which only the operator can probe."""
    engine_signals = engine.metric_names()
    reasons: dict[Signal, str] = {}
    for t in targets:
        if t.signal is Signal.DUTY_CYCLE and not prometheus_url:
            reasons[t.signal] = ("accelerator/duty_cycle reads DCGM through Prometheus: "
                                 "start the operator with --prometheus-url")
        elif t.signal in ENGINE_SIGNALS and t.signal not in engine_signals:
            reasons[t.signal] = f"{t.signal.value}: the engine exposes no such metric"
    return reasons


# ---------------------------------------------------------------------------------------
# one tick of the built-in autoscaler, pure: what to set and what to report
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tick:
    """The outcome of one autoscaler tick: the replicas to set, ScalingActive and status.metrics."""

    desired: int
    active: bool
    reason: str  # ScalingActive reason: ValidMetrics | MetricUnavailable | MissingMetrics | InvalidMetrics
    message: str
    metrics: tuple[tuple[str, float | None, float], ...]  # (metricName, current, target)
    summary: str
    history: tuple[Recommendation, ...]
    timers: Timers | None = None  # scale to zero's, after this tick (None without scaleToZeroSpec)


@dataclass(frozen=True)
class ZeroInput:
    """What the idle gate needs besides the samples: the spec, the timers so far (memory or status),
    the requests the activator holds and the ready pods' names."""

    spec: ScaleToZero
    timers: Timers
    held: int | None  # None: the activator could not be read
    ready_pods: frozenset[str]


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def tick(pol: Policy, current: int, samples: Sequence[Sample], history: Sequence[Recommendation], now: float,
         unreadable: Mapping[Signal, str], failures: Sequence[ScrapeFailure] = (),
         zero: ZeroInput | None = None) -> Tick:
    """:func:`metric_tick`, then, with ``scaleToZeroSpec``, the idle gate (``autoscaling.idle``)."""
    result = metric_tick(pol, current, samples, history, now, unreadable, failures)
    if zero is None:
        return result
    act = activity(samples, zero.ready_pods, zero.held, now, pol.stale_after_s) if result.active \
        else Activity.UNKNOWN  # a metric missing or unreadable is never idle
    gated = gate(zero.spec, current, result.desired, pol.max_replicas, next_timers(zero.timers, act, now), act,
                 zero.held, now)
    if current == 0:  # nothing to scrape at zero: not a metrics problem
        return replace(result, desired=gated.desired, active=True,
                       reason="ScaledToZero" if gated.desired == 0 else "WakeFromZero", message=gated.note,
                       summary=gated.note, timers=gated.timers)
    if not gated.note:
        return replace(result, desired=gated.desired, timers=gated.timers)
    return replace(result, desired=gated.desired, message=f"{gated.note}; {result.message}",
                   summary=f"{gated.note}; {result.summary}", timers=gated.timers)


def metric_tick(pol: Policy, current: int, samples: Sequence[Sample], history: Sequence[Recommendation],
                now: float, unreadable: Mapping[Signal, str], failures: Sequence[ScrapeFailure] = ()) -> Tick:
    """Decide, unless a metric source is unavailable: then replicas stay put and ScalingActive=False
    names the metric and why. ``failures`` are per-pod scrape problems, reported when a metric has
    no fresh sample at all; a pod over one of the operator's read limits is named in any case."""
    if unreadable:
        # Like the HPA: without metrics only the bounds act (a count outside them is brought back).
        bounded = min(max(current, pol.min_replicas), pol.max_replicas)
        held = f"replicas stay at {current}" if bounded == current else f"replicas set to {bounded} (bounds only)"
        message = f"{held}: {'; '.join(unreadable.values())}"
        return Tick(bounded, False, "MetricUnavailable", message,
                    tuple((t.signal.value, None, t.target) for t in pol.targets), message, tuple(history))
    decision = decide(pol, current, samples, history, now)
    metrics = tuple((m.signal.value, _rounded(m.current), m.target) for m in decision.reasons)
    blind = [m.reason for m in decision.reasons if m.current is None]
    if blind:
        detail = "; ".join([*blind, *(f"scrape failed: pod {f.pod}: {f.reason}" for f in failures[:_SHOWN])])
        return Tick(decision.desired, False, "MissingMetrics", detail, metrics, decision.summary, decision.history)
    over = [f"left out pod {f.pod}: {f.reason}" for f in failures if f.over_limit][:_SHOWN]
    return Tick(decision.desired, True, "ValidMetrics", "; ".join([decision.summary, *over]), metrics,
                decision.summary, decision.history)
