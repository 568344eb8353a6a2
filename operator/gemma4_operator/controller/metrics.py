"""The operator's own Prometheus metrics (prometheus-client), served on ``--metrics-port``.

Each :class:`Metrics` owns its registry, so tests and several in-process operators do not
share counters. Names use the ``gemma4_operator_`` prefix.
"""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Reconcile results: applied (children written), unchanged, plan_failed, invalid (malformed
# object), retry (temporary API failure, retried with backoff), error (anything else).
RESULTS = ("applied", "unchanged", "plan_failed", "invalid", "retry", "error")
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


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

    def forget(self, namespace: str, name: str) -> None:
        """Drop the per-object series of a deleted Gemma4Deployment."""
        for gauge in (self.autoscaler_desired, self.autoscaler_current):
            with contextlib.suppress(KeyError):
                gauge.remove(namespace, name)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        """Start the /metrics HTTP endpoint in a daemon thread."""
        start_http_server(port, addr=addr, registry=self.registry)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (tests and benchmarks)."""
        got = self.registry.get_sample_value(name, labels)
        return float(got) if got is not None else 0.0
