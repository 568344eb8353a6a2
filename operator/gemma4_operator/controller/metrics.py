"""The operator's own Prometheus metrics (prometheus-client), served on ``--metrics-port``.

Each :class:`Metrics` owns its registry, so tests and several in-process operators do not
share counters. Names use the ``gemma4_operator_`` prefix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily

# Reconcile results: applied (children written), unchanged, plan_failed, invalid (malformed
# object), retry (temporary API failure, retried with backoff), error (anything else).
RESULTS = ("applied", "unchanged", "plan_failed", "invalid", "retry", "error")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONDITION_STATUSES = ("True", "False", "Unknown")
MODEL_PHASES = ("Downloading", "Ready", "Failed")
PHASES = ("Pending", "Progressing", "Ready", "Degraded", "Failed")  # status.phase


@dataclass(frozen=True, slots=True)
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


PER_OBJECT = ("namespace", "name")
# The per-Gemma4Deployment gauges (tests/packaging/observability.py OPERATOR_OBJECT_METRICS): name -> (help,
# labels after namespace and name). Built at scrape time from one ObjectState per object: prometheus-client's
# labelled Gauges keep an object with a lock per series, ~32 series and ~20 KiB per Gemma4Deployment.
OBJECT_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "gemma4_operator_deployment_info": (
        "Always 1: one series per Gemma4Deployment, labelled with its planned variant and engine.",
        ("variant", "engine")),
    "gemma4_operator_deployment_condition": (
        "1 for the condition's current status, 0 for the other two.", ("type", "status")),
    "gemma4_operator_deployment_replicas": ("status.replicas: the serving Deployment's current replicas.", ()),
    "gemma4_operator_deployment_ready_replicas": ("status.readyReplicas.", ()),
    "gemma4_operator_deployment_min_replicas": ("spec.minReplicaCount (spec.replicas without autoscaling).", ()),
    "gemma4_operator_deployment_max_replicas": ("spec.maxReplicaCount (minReplicaCount when unset).", ()),
    "gemma4_operator_deployment_phase": ("1 for status.phase, 0 for the other phases.", ("phase",)),
    "gemma4_operator_deployment_desired_replicas": (
        "Replicas the object asks for now: spec.replicas, or the autoscaler's count within its bounds.", ()),
    "gemma4_operator_model_phase": ("1 for status.model.phase, 0 for the others.", ("phase",)),
    "gemma4_operator_autoscaler_desired_replicas": ("Replicas the built-in autoscaler last decided on.", ()),
    "gemma4_operator_autoscaler_current_replicas": (
        "The Deployment's replicas when the autoscaler last looked.", ()),
}
Sample = tuple[str, tuple[str, ...], float]  # gauge name, label values after namespace and name, value


def _one_of(name: str, choices: Sequence[str], current: str | None, *before: str) -> list[Sample]:
    return [(name, (*before, choice), 1.0 if choice == current else 0.0) for choice in choices]


def object_samples(state: ObjectState) -> list[Sample]:
    """The series of one object in ``state`` (the autoscaler's two come from its ticks)."""
    samples: list[Sample] = [("gemma4_operator_deployment_info", (state.variant, state.engine), 1.0)]
    for type_, current in state.conditions.items():
        samples += _one_of("gemma4_operator_deployment_condition", CONDITION_STATUSES, current, type_)
    samples += [("gemma4_operator_deployment_replicas", (), state.replicas),
                ("gemma4_operator_deployment_ready_replicas", (), state.ready_replicas),
                ("gemma4_operator_deployment_min_replicas", (), state.min_replicas),
                ("gemma4_operator_deployment_max_replicas", (), state.max_replicas),
                ("gemma4_operator_deployment_desired_replicas", (), state.desired_replicas)]
    samples += _one_of("gemma4_operator_deployment_phase", PHASES, state.phase)
    if state.model_phase is not None:
        samples += _one_of("gemma4_operator_model_phase", MODEL_PHASES, state.model_phase)
    return samples


class ObjectSeries:
    """The collector of the per-object gauges: each object's last state, turned into samples when scraped."""

    def __init__(self) -> None:
        self.states: dict[tuple[str, str], ObjectState] = {}
        self.autoscaler: dict[tuple[str, str], tuple[int, int]] = {}  # (current, desired) of the last tick

    def describe(self) -> list[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> list[GaugeMetricFamily]:
        families = {f.name: f for f in self._families()}
        for (namespace, name), state in list(self.states.items()):
            for metric, labels, value in object_samples(state):
                families[metric].add_metric([namespace, name, *labels], value)
        for (namespace, name), (current, desired) in list(self.autoscaler.items()):
            families["gemma4_operator_autoscaler_current_replicas"].add_metric([namespace, name], current)
            families["gemma4_operator_autoscaler_desired_replicas"].add_metric([namespace, name], desired)
        return list(families.values())

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, help_, labels=[*PER_OBJECT, *labels])
                for name, (help_, labels) in OBJECT_GAUGES.items()]


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
        self.autoscaler_scrapes = Counter(
            "gemma4_operator_autoscaler_scrapes", "Engine /metrics scrapes by result (ok, failed).", ["result"],
            registry=self.registry)
        self.objects = ObjectSeries()
        self.registry.register(self.objects)

    def observe_object(self, namespace: str, name: str, state: ObjectState) -> None:
        """Set the object's per-object series to ``state`` (those it no longer has go)."""
        self.objects.states[(namespace, name)] = state

    def observe_condition(self, namespace: str, name: str, type_: str, status: str) -> None:
        """One condition changed outside a reconcile (the built-in autoscaler's ScalingActive); only for
        objects a reconcile has exported, so that forget drops it too."""
        state = self.objects.states.get((namespace, name))
        if state is not None:
            self.objects.states[(namespace, name)] = dataclasses.replace(
                state, conditions={**state.conditions, type_: status})

    def observe_autoscaler(self, namespace: str, name: str, current: int, desired: int) -> None:
        """The built-in autoscaler's last tick: the Deployment's replicas and its decision."""
        self.objects.autoscaler[(namespace, name)] = (current, desired)

    def forget(self, namespace: str, name: str) -> None:
        """Drop the per-object series of a deleted Gemma4Deployment."""
        self.objects.states.pop((namespace, name), None)
        self.objects.autoscaler.pop((namespace, name), None)

    def serve(self, port: int, addr: str) -> WSGIServer:
        """Start the /metrics HTTP endpoint on ``addr`` (``--metrics-bind-address``) in a daemon thread; the
        server, for its bound address and ``shutdown``."""
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        return server

    def value(self, name: str, /, **labels: str) -> float:
        """Current value of a sample (tests and benchmarks)."""
        got = self.registry.get_sample_value(name, labels)
        return float(got) if got is not None else 0.0

    def has(self, name: str, /, **labels: str) -> bool:
        """Whether the sample exists (tests)."""
        return self.registry.get_sample_value(name, labels) is not None
