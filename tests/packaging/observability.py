"""The metrics contract of the chart's Grafana dashboards and PrometheusRule, in one place.

The dashboards (``tests/packaging/dashboards.py``) and the alerting rules
(``charts/gemma4-operator/templates/prometheusrule.yaml``) may only name series that exist:

- the engines' own metrics, as served by vLLM 0.32.0 and llama.cpp (``tests/data/metrics/``);
- the operator's registry (``gemma4_operator.controller.metrics.Metrics``);
- :data:`OPERATOR_OBJECT_METRICS`: per-Gemma4Deployment gauges the operator exports (kube-state-metrics
  style, ``Metrics.observe_object``); the list is the specification for the operator side;
- :data:`PROMETHEUS_SERIES`: the series Prometheus itself writes for each target.

Label conventions the queries rely on:

- Operator series: per-object ones carry ``namespace`` and ``name`` (the Gemma4Deployment); the operator's
  ServiceMonitor sets ``honorLabels: true`` so that Prometheus keeps that ``namespace``.
- Engine series: :data:`ENGINE_TARGET_LABELS` are target labels added at scrape time by the engine pods'
  PodMonitor (relabelled from the serving pod's labels), so engine and operator series join
  ``on (namespace, name)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
METRICS_FIXTURES = ROOT / "tests" / "data" / "metrics"
VLLM_FIXTURE = METRICS_FIXTURES / "vllm-0.32.0.txt"
LLAMACPP_FIXTURE = METRICS_FIXTURES / "llamacpp-real.txt"

# Target labels of engine series -> the serving pod label the PodMonitor's relabeling copies them from.
# `namespace` is Prometheus' own pod-namespace target label.
ENGINE_TARGET_LABELS = {
    "name": "app.kubernetes.io/instance",  # the Gemma4Deployment's name (render.selector_labels)
    "variant": "serving.gemma4.dev/variant",  # the planned variant (render.VARIANT_LABEL)
}


@dataclass(frozen=True)
class MetricSpec:
    type: str  # gauge | counter | histogram (prometheus_client's family type)
    labels: tuple[str, ...]
    help: str


# Per-Gemma4Deployment series the dashboards and alerts need from the operator. Each is a gauge
# refreshed on every reconcile and removed (Metrics.forget) when the object is deleted.
OPERATOR_OBJECT_METRICS: dict[str, MetricSpec] = {
    "gemma4_operator_deployment_info": MetricSpec(
        "gauge", ("namespace", "name", "variant", "engine"),
        "Always 1: one series per Gemma4Deployment, labelled with its planned variant and engine "
        "(llamacpp|vllm); the dashboards' namespace/deployment variables list these."),
    "gemma4_operator_deployment_condition": MetricSpec(
        "gauge", ("namespace", "name", "type", "status"),
        "1 for the condition's current status, 0 for the other two: one series per condition type "
        "(Planned, Available, Progressing, Degraded, Ready, ModelReady, ScalingActive) and status "
        "(True, False, Unknown), like kube-state-metrics' kube_pod_status_condition."),
    "gemma4_operator_deployment_replicas": MetricSpec(
        "gauge", ("namespace", "name"), "status.replicas: the serving Deployment's current replicas."),
    "gemma4_operator_deployment_ready_replicas": MetricSpec(
        "gauge", ("namespace", "name"), "status.readyReplicas."),
    "gemma4_operator_deployment_min_replicas": MetricSpec(
        "gauge", ("namespace", "name"), "spec.minReplicaCount."),
    "gemma4_operator_deployment_max_replicas": MetricSpec(
        "gauge", ("namespace", "name"), "spec.maxReplicaCount (minReplicaCount when unset)."),
    "gemma4_operator_model_phase": MetricSpec(
        "gauge", ("namespace", "name", "phase"),
        "1 for status.model.phase, 0 for the others: one series per phase (Downloading, Ready, Failed)."),
}

# Written by Prometheus for every scrape target.
PROMETHEUS_SERIES = frozenset({"up"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "info": ("_info",),
}


def exposed_names(name: str, type_: str) -> set[str]:
    """The sample names prometheus_client exposes for a family (counters ``_total``, histograms ``_bucket``...)."""
    return {name + suffix for suffix in _SUFFIXES.get(type_, ("",))}


def fixture_names(path: Path) -> set[str]:
    """Every sample name in a /metrics capture."""
    text = path.read_text(encoding="utf-8")
    return {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}


def operator_registry_names() -> set[str]:
    """Every sample name the operator's registry can expose (labelled families have no samples until used)."""
    from gemma4_operator.controller.metrics import Metrics
    registry = Metrics().registry
    return {n for family in registry.collect() for n in exposed_names(family.name, family.type)}


def documented_object_names() -> set[str]:
    return {n for name, spec in OPERATOR_OBJECT_METRICS.items() for n in exposed_names(name, spec.type)}


def known_metric_names() -> dict[str, set[str]]:
    """The names queries may use, by source."""
    return {
        "vLLM 0.32.0 (tests/data/metrics/vllm-0.32.0.txt)": fixture_names(VLLM_FIXTURE),
        "llama.cpp (tests/data/metrics/llamacpp-real.txt)": fixture_names(LLAMACPP_FIXTURE),
        "the operator's registry (gemma4_operator Metrics)": operator_registry_names(),
        "the operator's per-object metrics (OPERATOR_OBJECT_METRICS)": documented_object_names(),
        "Prometheus (PROMETHEUS_SERIES)": set(PROMETHEUS_SERIES),
    }


# --- metric names in a PromQL expression -------------------------------------------------------

_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_GRAFANA_VAR = re.compile(r"\$\{?\w+(?::\w+)?\}?")
_IDENT = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (identifiers that are not functions, keywords or labels)."""
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VAR.sub("1", text)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        ident, call = match.groups()
        if call or ident.lower() in _KEYWORDS:
            continue
        names.add(ident)
    return names
