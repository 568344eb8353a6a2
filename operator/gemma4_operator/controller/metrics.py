"""The operator's own Prometheus metrics (prometheus-client), served on ``--metrics-port``.

Each :class:`Metrics` owns its registry, so tests and several in-process operators do not
share counters. Names use the ``gemma4_operator_`` prefix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Reconcile results: applied (children written), unchanged, plan_failed, invalid (malformed
# object), retry (temporary API failure, retried with backoff), error (anything else).
RESULTS = ("applied", "unchanged", "plan_failed", "invalid", "retry", "error")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONDITION_STATUSES = ("True", "False", "Unknown")
MODEL_PHASES = ("Downloading", "Ready", "Failed")
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")  # status.phase


@dataclass(frozen=True)
class ObjectState:
    """One Gemma4Deployment as its per-object series show it (kube-state-metrics style)."""

    variant: str
    engine: str
    conditions: Mapping[str, str]  # type -> status (True|False|Unknown)
    replicas: int
    ready_replicas: int
    min_replicas: int
    max_replicas: int
    model_phase: str | None = None  # status.model.phase, when status has one
    phase: str | None = None  # status.phase
    desired_replicas: int = 0  # the replicas the object asks for now (status.ready's denominator)


@dataclass
class _Exported:
    info: tuple[str, str]
    condition_types: frozenset[str]
    model_phase: bool


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.reconciles = Counter(
            "gemma4_operator_reconciles", "Reconciles of Gemma4Deployments by trigger and result.",
            ["trigger", "result"], registry=self.registry)
        self.reconcile_duration = Histogram(
            "gemma4_operator_reconcile_duration_seconds", "Time to reconcile one Gemma4Deployment.",
            ["trigger"], buckets=DURATION_BUCKETS, registry=self.registry)
        self.reconcile_errors = Counter(
            "gemma4_operator_reconcile_errors", "Failed reconciles by reason (Conflict, Throttled, ServerError, "
            "Timeout, ConnectionError, Forbidden, Invalid, ...).", ["reason"], registry=self.registry)
        self.plans = Counter(
            "gemma4_operator_plans", "Planner runs by variant, engine, quantization and outcome (fits|failed).",
            ["variant", "engine", "quantization", "outcome"], registry=self.registry)
        self.children_applied = Counter(
            "gemma4_operator_children_applied", "Server-side applies of child objects by kind and reason "
            "(missing, changed, drifted).", ["kind", "reason"], registry=self.registry)
        self.children_deleted = Counter(
            "gemma4_operator_children_deleted", "Children deleted because the spec no longer wants them.",
            ["kind"], registry=self.registry)
        self.status_patches = Counter(
            "gemma4_operator_status_patches", "Status subresource patches.", registry=self.registry)
        self.events = Counter(
            "gemma4_operator_events", "Kubernetes Events posted by type and reason.", ["type", "reason"],
            registry=self.registry)
        self.autoscaler_decisions = Counter(
            "gemma4_operator_autoscaler_decisions", "Built-in autoscaler decisions by direction (up, down, none) "
            "and whether they could be made (inactive: a metric source was unavailable).", ["direction"],
            registry=self.registry)
        self.autoscaler_desired = Gauge(
            "gemma4_operator_autoscaler_desired_replicas", "Replicas the built-in autoscaler last decided on.",
            ["namespace", "name"], registry=self.registry)
        self.autoscaler_current = Gauge(
            "gemma4_operator_autoscaler_current_replicas", "The Deployment's replicas when the autoscaler last looked.",
            ["namespace", "name"], registry=self.registry)
        self.autoscaler_scrapes = Counter(
            "gemma4_operator_autoscaler_scrapes", "Engine /metrics scrapes by result (ok, failed).", ["result"],
            registry=self.registry)
        self._object_gauges()
        self._exported: dict[tuple[str, str], _Exported] = {}

    def _object_gauges(self) -> None:
        """Per-Gemma4Deployment series (tests/packaging/observability.py OPERATOR_OBJECT_METRICS)."""
        per_object = ["namespace", "name"]
        self.deployment_info = Gauge(
            "gemma4_operator_deployment_info", "Always 1: one series per Gemma4Deployment, labelled with its planned "
            "variant and engine.", [*per_object, "variant", "engine"], registry=self.registry)
        self.deployment_condition = Gauge(
            "gemma4_operator_deployment_condition", "1 for the condition's current status, 0 for the other two.",
            [*per_object, "type", "status"], registry=self.registry)
        self.deployment_replicas = Gauge(
            "gemma4_operator_deployment_replicas", "status.replicas: the serving Deployment's current replicas.",
            per_object, registry=self.registry)
        self.deployment_ready_replicas = Gauge(
            "gemma4_operator_deployment_ready_replicas", "status.readyReplicas.", per_object, registry=self.registry)
        self.deployment_min_replicas = Gauge(
            "gemma4_operator_deployment_min_replicas", "spec.minReplicaCount (spec.replicas without autoscaling).",
            per_object, registry=self.registry)
        self.deployment_max_replicas = Gauge(
            "gemma4_operator_deployment_max_replicas", "spec.maxReplicaCount (minReplicaCount when unset).",
            per_object, registry=self.registry)
        self.deployment_phase = Gauge(
            "gemma4_operator_deployment_phase", "1 for status.phase, 0 for the other phases.",
            [*per_object, "phase"], registry=self.registry)
        self.deployment_desired_replicas = Gauge(
            "gemma4_operator_deployment_desired_replicas",
            "Replicas the object asks for now: spec.replicas, or the autoscaler's count within its bounds.",
            per_object, registry=self.registry)
        self.model_phase = Gauge(
            "gemma4_operator_model_phase", "1 for status.model.phase, 0 for the others.",
            [*per_object, "phase"], registry=self.registry)

    def _replica_gauges(self) -> Sequence[Gauge]:
        return (self.deployment_replicas, self.deployment_ready_replicas, self.deployment_min_replicas,
                self.deployment_max_replicas, self.deployment_desired_replicas, self.autoscaler_desired,
                self.autoscaler_current)

    def observe_object(self, namespace: str, name: str, state: ObjectState) -> None:
        """Set the object's per-object series to ``state``, dropping those it no longer has."""
        key = (namespace, name)
        before = self._exported.get(key)
        info = (state.variant, state.engine)
        if before is not None and before.info != info:
            _remove(self.deployment_info, namespace, name, *before.info)
        self.deployment_info.labels(namespace, name, *info).set(1)
        for type_, current in state.conditions.items():
            for status in CONDITION_STATUSES:
                self.deployment_condition.labels(namespace, name, type_, status).set(1 if status == current else 0)
        for type_ in (before.condition_types if before else frozenset()) - set(state.conditions):
            for status in CONDITION_STATUSES:
                _remove(self.deployment_condition, namespace, name, type_, status)
        self.deployment_replicas.labels(namespace, name).set(state.replicas)
        self.deployment_ready_replicas.labels(namespace, name).set(state.ready_replicas)
        self.deployment_min_replicas.labels(namespace, name).set(state.min_replicas)
        self.deployment_max_replicas.labels(namespace, name).set(state.max_replicas)
        self.deployment_desired_replicas.labels(namespace, name).set(state.desired_replicas)
        for phase in PHASES:
            self.deployment_phase.labels(namespace, name, phase).set(1 if phase == state.phase else 0)
        for phase in MODEL_PHASES:
            if state.model_phase is not None:
                self.model_phase.labels(namespace, name, phase).set(1 if phase == state.model_phase else 0)
            elif before is not None and before.model_phase:
                _remove(self.model_phase, namespace, name, phase)
        self._exported[key] = _Exported(info, frozenset(state.conditions), state.model_phase is not None)

    def observe_condition(self, namespace: str, name: str, type_: str, status: str) -> None:
        """One condition changed outside a reconcile (the built-in autoscaler's ScalingActive); only for
        objects a reconcile has exported, so that forget drops it too."""
        before = self._exported.get((namespace, name))
        if before is None:
            return
        for value in CONDITION_STATUSES:
            self.deployment_condition.labels(namespace, name, type_, value).set(1 if value == status else 0)
        before.condition_types = before.condition_types | {type_}

    def forget(self, namespace: str, name: str) -> None:
        """Drop the per-object series of a deleted Gemma4Deployment."""
        for gauge in self._replica_gauges():
            _remove(gauge, namespace, name)
        before = self._exported.pop((namespace, name), None)
        if before is None:
            return
        _remove(self.deployment_info, namespace, name, *before.info)
        for phase in PHASES:
            _remove(self.deployment_phase, namespace, name, phase)
        for type_ in before.condition_types:
            for status in CONDITION_STATUSES:
                _remove(self.deployment_condition, namespace, name, type_, status)
        for phase in MODEL_PHASES if before.model_phase else ():
            _remove(self.model_phase, namespace, name, phase)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Start the /metrics HTTP endpoint in a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    def value(self, name: str, /, **labels: str) -> float:
        """Current value of a sample (tests and benchmarks)."""
        got = self.registry.get_sample_value(name, labels)
        return float(got) if got is not None else 0.0

    def has(self, name: str, /, **labels: str) -> bool:
        """Whether the sample exists (tests)."""
        return self.registry.get_sample_value(name, labels) is not None


def _remove(gauge: Any, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
