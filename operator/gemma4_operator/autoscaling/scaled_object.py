"""The KEDA backend: spec.autoscaling -> a keda.sh/v1alpha1 ScaledObject with Prometheus
triggers equivalent to the built-in autoscaler (KEDA's prometheus and cpu scalers,
https://keda.sh/docs/latest/scalers/prometheus/). Pure.

Each metric becomes one trigger whose HPA arithmetic matches ours:
counts (queue, batch, request rate) use metricType AverageValue on a sum, so the HPA divides
by the replica count; percentages (KV cache, duty cycle) use metricType Value on an average,
so desired = ceil(replicas x value / target). CPU uses KEDA's cpu scaler (Utilization).
"""

from __future__ import annotations

from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.activator import HELD_REQUESTS
from gemma4_operator.autoscaling.decision import MetricTarget
from gemma4_operator.autoscaling.policy import metric_targets, unavailable
from gemma4_operator.engines.base import Engine
from gemma4_operator.planner.plan import Plan

DCGM_GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
SCALE_UP_POLICIES = [{"type": "Percent", "value": 100, "periodSeconds": 15},
                     {"type": "Pods", "value": 4, "periodSeconds": 15}]


class UnsupportedMetricError(ValueError):
    """A metric the engine or the cluster cannot provide; the message is for status."""


def pod_selector(name: str, namespace: str) -> str:
    # Pods of Deployment NAME are NAME-<replicaset hash>-<pod hash>.
    return f'namespace="{namespace}",pod=~"{name}-[a-z0-9]+-[a-z0-9]+"'


def _query(signal: Signal, engine: Engine, selector: str) -> tuple[str, str]:
    """(PromQL, metricType) for one signal the engine exposes (checked by the caller)."""
    if signal is Signal.DUTY_CYCLE:
        return f"avg({DCGM_GPU_UTIL}{{{selector}}})", "Value"
    metric = engine.metric_names()[signal][0]
    if signal is Signal.KV_CACHE_USAGE:
        return f"avg({metric}{{{selector}}}) * 100", "Value"
    if signal is Signal.REQUEST_COUNT:
        return f"sum(rate({metric}{{{selector}}}[2m])) * 60", "AverageValue"
    return f"sum({metric}{{{selector}}})", "AverageValue"


def triggers(targets: tuple[MetricTarget, ...], engine: Engine, name: str, namespace: str,
             prometheus_url: str) -> list[dict[str, Any]]:
    problems = unavailable(targets, engine, prometheus_url)
    needs_prometheus = [t for t in targets if t.signal is not Signal.CPU_UTILIZATION]
    if needs_prometheus and not prometheus_url:
        problems.setdefault(needs_prometheus[0].signal,
                            "the keda backend builds Prometheus triggers: start the operator with --prometheus-url")
    if problems:
        raise UnsupportedMetricError("; ".join(problems.values()))
    selector = pod_selector(name, namespace)
    out: list[dict[str, Any]] = []
    for t in targets:
        if t.signal is Signal.CPU_UTILIZATION:
            out.append({"type": "cpu", "metricType": "Utilization", "metadata": {"value": f"{t.target:g}"}})
            continue
        query, metric_type = _query(t.signal, engine, selector)
        out.append({"type": "prometheus", "name": t.signal.name.lower().replace("_", "-"),
                    "metricType": metric_type,
                    "metadata": {"serverAddress": prometheus_url, "query": query, "threshold": f"{t.target:g}",
                                 "ignoreNullValues": "false"}})
    return out


def wake_trigger(name: str, namespace: str, prometheus_url: str, slots: int) -> dict[str, Any]:
    """Scale to zero's activation: the requests the activator holds (``activationThreshold`` 0, strict: one held
    request wakes the object), ``slots`` of them per replica. ``ignoreNullValues: false``: an activator whose series
    is missing is an error, never zero held requests, so it never lets the object go idle."""
    selector = f'namespace="{namespace}",pod=~"{name}-activator-[a-z0-9]+-[a-z0-9]+"'
    return {"type": "prometheus", "name": "held-requests", "metricType": "AverageValue",
            "metadata": {"serverAddress": prometheus_url, "query": f"sum({HELD_REQUESTS}{{{selector}}})",
                         "threshold": str(max(1, slots)), "activationThreshold": "0", "ignoreNullValues": "false"}}


def scaled_object_spec(spec: Gemma4DeploymentSpec, plan: Plan, engine: Engine, name: str, namespace: str,
                       prometheus_url: str) -> dict[str, Any]:
    """ScaledObject .spec targeting the child Deployment, with Vertex/HPA behaviour; with minReplicaCount 0 also
    KEDA's own scale to zero: the activator's held requests activate it, idleScaledownPeriod is the cooldown."""
    autoscaling = spec.autoscaling
    assert autoscaling is not None
    body: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "pollingInterval": 15,
        "minReplicaCount": autoscaling.min_replica_count,
        "maxReplicaCount": autoscaling.max_replica_count,
        "advanced": {"horizontalPodAutoscalerConfig": {"behavior": {
            "scaleDown": {"stabilizationWindowSeconds": autoscaling.scale_down_delay_seconds,
                          "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}]},
            "scaleUp": {"stabilizationWindowSeconds": 0, "policies": SCALE_UP_POLICIES, "selectPolicy": "Max"},
        }}},
        "triggers": triggers(metric_targets(spec, plan, engine), engine, name, namespace, prometheus_url),
    }
    zero = autoscaling.scale_to_zero_spec
    if autoscaling.min_replica_count == 0 and zero is not None:
        # KEDA's cooldownPeriod "only applies when scaling to 0": the idle period before it
        body["cooldownPeriod"] = zero.idle_scaledown_seconds
        body["triggers"] = [*body["triggers"], wake_trigger(name, namespace, prometheus_url, plan.max_concurrency)]
    return body
