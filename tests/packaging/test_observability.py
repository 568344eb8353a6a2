"""The chart's Grafana dashboards and PrometheusRule: generated files in sync, every query valid PromQL
(promtool) naming only metrics that exist, and every alert unit-tested with ``promtool test rules``."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.packaging import dashboards
from tests.packaging.chart import NAMESPACE, RELEASE, HelmError, Manifest, of_kind, one
from tests.packaging.conftest import Renderer
from tests.packaging.observability import (
    ENGINE_TARGET_LABELS,
    OPERATOR_OBJECT_METRICS,
    known_metric_names,
    metric_names,
    operator_registry_names,
)
from tests.tools.promtool import promtool_path

RULE_API = "monitoring.coreos.com/v1/PrometheusRule"
RULES_ON = ("--set", "metrics.prometheusRule.enabled=true", "--api-versions", RULE_API)
DASHBOARDS_ON = ("--set", "metrics.dashboards.enabled=true")
JOB = f"{RELEASE}-metrics"  # the metrics Service's name: the ServiceMonitor's job label
ALERTS = ("Gemma4OperatorDown", "Gemma4OperatorReconcileErrors", "Gemma4DeploymentDegraded",
          "Gemma4DeploymentNotReady", "Gemma4DeploymentQueueGrowingAtMaxReplicas",
          "Gemma4DeploymentKVCacheSaturated", "Gemma4DeploymentModelDownloadFailed")


# --- dashboards ----------------------------------------------------------------------------------

def committed_dashboards() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(dashboards.DASHBOARDS_DIR.glob("*.json"))}


def test_dashboards_are_the_generated_ones() -> None:
    assert committed_dashboards() == dashboards.generated(), (
        "charts/gemma4-operator/dashboards/ is stale: run `make manifests` (python -m tests.packaging.dashboards)")


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) of every panel target and every query variable of the committed dashboards."""
    found = []
    for name, text in committed_dashboards().items():
        board = json.loads(text)
        for panel in _panels(board):
            for target in panel["targets"]:
                found.append((f"{name} panel {panel['title']!r} {target['refId']}", target["expr"]))
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                inner = re.fullmatch(r"label_values\((.*), *\w+\)", var["query"]["query"])
                assert inner, var["query"]
                found.append((f"{name} variable {var['name']}", inner.group(1)))
    return found


@pytest.mark.parametrize("name", sorted(dashboards.DASHBOARDS))
def test_dashboard_shape(name: str) -> None:
    board = json.loads(committed_dashboards()[name])
    assert board["uid"] == name.removesuffix(".json")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for panel in _panels(board):
        assert panel["title"] and panel["description"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    if name == "gemma4-serving.json":
        assert {"namespace", "deployment"} <= set(variables)
        for panel in _panels(board):  # every panel shows the selected Gemma4Deployment (and maybe more)
            assert any('namespace="$namespace",name="$deployment"' in t["expr"] for t in panel["targets"]), \
                panel["title"]


def test_serving_dashboard_covers_the_serving_signals() -> None:
    board = json.loads(committed_dashboards()["gemma4-serving.json"])
    exprs = " ".join(t["expr"] for p in _panels(board) for t in p["targets"])
    for needle in ("gemma4_operator_autoscaler_desired_replicas", "gemma4_operator_deployment_ready_replicas",
                   "vllm:num_requests_waiting", "llamacpp:requests_deferred", "vllm:num_requests_running",
                   "llamacpp:requests_processing", "vllm:kv_cache_usage_perc",
                   "histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket",
                   "histogram_quantile(0.99, sum by (le) (rate(vllm:inter_token_latency_seconds_bucket",
                   "rate(vllm:generation_tokens_total", "rate(llamacpp:tokens_predicted_total",
                   "gemma4_operator_autoscaler_decisions_total", "vllm:lora_requests_info"):
        assert needle in exprs, needle


def test_operator_dashboard_covers_the_operator_signals() -> None:
    board = json.loads(committed_dashboards()["gemma4-operator.json"])
    exprs = " ".join(t["expr"] for p in _panels(board) for t in p["targets"])
    for needle in ("gemma4_operator_reconciles_total", "gemma4_operator_reconcile_errors_total",
                   "rate(gemma4_operator_reconcile_duration_seconds_bucket",
                   "sum by (outcome) (rate(gemma4_operator_plans_total"):
        assert needle in exprs, needle


# --- metric names ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (pod) (vllm:num_requests_waiting{namespace="$namespace",name="$deployment"})',
     {"vllm:num_requests_waiting"}),
    ("histogram_quantile(0.9, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket{a=\"b\"}[$__rate_interval])))",
     {"vllm:e2e_request_latency_seconds_bucket"}),
    ("absent(up{job=\"x\"} == 1)", {"up"}),
    ("a > 0.95 and on (namespace, name) b{job=~\"x|y\"} unless ignoring(pod) c offset 5m", {"a", "b", "c"}),
    ("sum without (instance) (rate(x_total[5m])) / 1e3 or vector(0)", {"x_total"}),
])
def test_metric_names_extractor(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def _unknown(exprs: list[tuple[str, str]]) -> list[str]:
    known = set().union(*known_metric_names().values())
    problems = []
    for where, expr in exprs:
        names = metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric found in {expr!r}")
        problems += [f"{where}: {name} is exported by nothing we know" for name in sorted(names - known)]
    return problems


def test_unknown_metrics_are_caught() -> None:
    assert _unknown([("old name", "max(vllm:gpu_cache_usage_perc)"), ("suffix", "rate(vllm:generation_tokens[5m])"),
                     ("histogram", "vllm:time_to_first_token_seconds > 1"), ("nothing", "vector(1)")]) == [
        "old name: vllm:gpu_cache_usage_perc is exported by nothing we know",
        "suffix: vllm:generation_tokens is exported by nothing we know",
        "histogram: vllm:time_to_first_token_seconds is exported by nothing we know",
        "nothing: no metric found in 'vector(1)'"]


def test_dashboards_name_only_existing_metrics() -> None:
    assert _unknown(dashboard_queries()) == []


def test_alerts_name_only_existing_metrics(rule_groups: list[dict[str, Any]]) -> None:
    exprs = [(r["alert"], r["expr"]) for g in rule_groups for r in g["rules"]]
    assert _unknown(exprs) == []


def test_metric_sources_are_the_real_captures() -> None:
    sources = list(known_metric_names().values())
    vllm, llamacpp, registry = sources[0], sources[1], sources[2]
    assert {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc", "vllm:time_to_first_token_seconds_bucket",
            "vllm:generation_tokens_total"} <= vllm
    assert "vllm:gpu_cache_usage_perc" not in vllm  # removed from vLLM: queries must not use it
    assert {"llamacpp:requests_deferred", "llamacpp:requests_processing", "llamacpp:tokens_predicted_total"} <= llamacpp
    assert {"gemma4_operator_reconciles_total", "gemma4_operator_reconcile_duration_seconds_bucket"} <= registry


def _registry_metrics() -> dict[str, tuple[str, tuple[str, ...]]]:
    """name -> (type, label names) of the operator's registry: prometheus_client's wrappers, and the per-object
    gauges as one exported object's samples show them."""
    from prometheus_client.metrics import MetricWrapperBase

    from gemma4_operator.controller.metrics import Metrics, ObjectState

    metrics = Metrics()
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            found[value._name] = (value._type, tuple(value._labelnames))
    metrics.observe_object("ml", "chat", ObjectState("e4b", "vllm", {"Ready": "True"}, 1, 1, 1, 2, model_phase="Ready",
                                                     phase="Ready", desired_replicas=1))
    metrics.observe_autoscaler("ml", "chat", 1, 2)
    for family in metrics.objects.collect():
        assert family.samples, f"{family.name}: no sample for an exported object"
        found[family.name] = (family.type, tuple(family.samples[0].labels))
    return found


def test_operator_exports_per_object_metrics_as_specified() -> None:
    """Every metric of OPERATOR_OBJECT_METRICS is in the operator's registry, with the type and labels specified."""
    registry = _registry_metrics()
    for name, spec in OPERATOR_OBJECT_METRICS.items():
        assert name in registry, f"the operator does not export {name}"
        assert registry[name] == (spec.type, spec.labels), name
    # the ones that existed first use the same per-object labels
    assert registry["gemma4_operator_autoscaler_desired_replicas"][1] == ("namespace", "name")


def test_documented_metrics_do_not_shadow_registry_metrics() -> None:
    documented = set(OPERATOR_OBJECT_METRICS)
    assert all(name.startswith("gemma4_operator_") for name in documented)
    assert not {f"{name}_total" for name in documented} & operator_registry_names()
    assert set(ENGINE_TARGET_LABELS) == {"name", "variant"}


# --- chart: dashboards ----------------------------------------------------------------------------

def dashboard_configmaps(objects: list[Manifest]) -> list[Manifest]:
    """The dashboards' ConfigMaps (the tenant policy's parameters are a ConfigMap too)."""
    return [o for o in of_kind(objects, "ConfigMap") if "-dashboard-" in o["metadata"]["name"]]


def test_nothing_observability_by_default(renderer: Renderer) -> None:
    objects = renderer.value_set("default")
    assert not dashboard_configmaps(objects) and not of_kind(objects, "PrometheusRule")


def test_dashboards_render_as_sidecar_configmaps(renderer: Renderer) -> None:
    configmaps = dashboard_configmaps(renderer.objects(*DASHBOARDS_ON))
    assert [c["metadata"]["name"] for c in configmaps] == [
        f"{RELEASE}-dashboard-operator", f"{RELEASE}-dashboard-serving"]
    committed = committed_dashboards()
    for cm in configmaps:
        assert cm["metadata"]["namespace"] == NAMESPACE
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert "annotations" not in cm["metadata"]
        ((key, text),) = cm["data"].items()
        assert json.loads(text) == json.loads(committed[key])  # the committed file, unchanged


def test_dashboards_sidecar_label_and_namespace_follow_values(renderer: Renderer) -> None:
    configmaps = dashboard_configmaps(renderer.value_set("ha-namespaced"))
    assert len(configmaps) == 2
    for cm in configmaps:
        assert cm["metadata"]["name"].startswith("g4op-dashboard-")
        assert cm["metadata"]["namespace"] == "monitoring"
        assert cm["metadata"]["labels"]["example.com/grafana-dashboard"] == "gemma4"
        assert "grafana_dashboard" not in cm["metadata"]["labels"]
        assert cm["metadata"]["annotations"] == {"grafana_folder": "Gemma 4"}


# --- chart: PrometheusRule ------------------------------------------------------------------------

def test_prometheusrule_follows_the_cluster_capabilities(renderer: Renderer) -> None:
    assert one(renderer.objects(*RULES_ON), "PrometheusRule")
    assert one(renderer.objects("--set", "metrics.prometheusRule.enabled=true",
                                "--set", "metrics.prometheusRule.force=true"), "PrometheusRule")
    with pytest.raises(HelmError) as e:
        renderer.objects("--set", "metrics.prometheusRule.enabled=true")
    assert "does not serve monitoring.coreos.com/v1 PrometheusRule" in e.value.output
    assert "metrics.prometheusRule.force=true" in e.value.output


@pytest.fixture(scope="session")
def rule_groups(renderer: Renderer) -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = one(renderer.objects(*RULES_ON), "PrometheusRule")["spec"]["groups"]
    return groups


def test_prometheusrule_defaults(renderer: Renderer, rule_groups: list[dict[str, Any]]) -> None:
    rule = one(renderer.objects(*RULES_ON), "PrometheusRule")
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert [r["alert"] for g in rule_groups for r in g["rules"]] == list(ALERTS)
    for r in (r for g in rule_groups for r in g["rules"]):
        assert set(r) == {"alert", "expr", "for", "labels", "annotations"}
        assert r["labels"]["severity"] in ("warning", "critical")
        assert set(r["annotations"]) == {"summary", "description"}
        if r["alert"] != "Gemma4OperatorDown":  # absent() has no labels to select by
            assert f'job="{JOB}"' in r["expr"], r["alert"]


def test_prometheusrule_follows_values(renderer: Renderer) -> None:
    rule = one(renderer.value_set("ha-namespaced"), "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    rules = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert "Gemma4DeploymentModelDownloadFailed" not in rules
    assert rules["Gemma4DeploymentDegraded"]["for"] == "30m"
    assert "> 0.9\n" in rules["Gemma4DeploymentKVCacheSaturated"]["expr"]
    assert all(r["labels"]["team"] == "ml-platform" for r in rules.values())
    assert all('job="g4op-metrics"' in r["expr"] for r in rules.values() if r["alert"] != "Gemma4OperatorDown")
    job = one(renderer.objects(*RULES_ON, "--set", "metrics.prometheusRule.job=operators"), "PrometheusRule")
    assert 'job="operators"' in job["spec"]["groups"][0]["rules"][0]["expr"]


@pytest.mark.parametrize(("args", "line"), [
    (["--set", "metrics.prometheusRule.alerts.degraded.for=10 minutes"],
     "at '/metrics/prometheusRule/alerts/degraded/for'"),
    (["--set", "metrics.prometheusRule.alerts.kvCacheSaturated.threshold=95"],
     "at '/metrics/prometheusRule/alerts/kvCacheSaturated/threshold': maximum"),
    (["--set", "metrics.prometheusRule.alerts.degraded.window=5m"],
     "at '/metrics/prometheusRule/alerts/degraded': additional properties 'window' not allowed"),
    (["--set", "metrics.prometheusRule.alerts.unknown.enabled=true"],
     "at '/metrics/prometheusRule/alerts': additional properties 'unknown' not allowed"),
    (["--set", "metrics.dashboards.label=grafana dashboard"], "at '/metrics/dashboards/label'"),
    (["--set", "metrics.dashboards.labelValue=yes please"], "at '/metrics/dashboards/labelValue'"),
    (["--set", 'metrics.prometheusRule.job=a"b'], "at '/metrics/prometheusRule/job'"),
])
def test_observability_values_schema(args: list[str], line: str, renderer: Renderer) -> None:
    with pytest.raises(HelmError) as e:
        renderer.objects(*RULES_ON, *args)
    assert line in e.value.output


# --- promtool -------------------------------------------------------------------------------------

def promtool(*args: str, cwd: Path) -> str:
    proc = subprocess.run([str(promtool_path()), *args], capture_output=True, text=True, check=False, cwd=cwd)
    assert proc.returncode == 0, f"promtool {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


def write_rules(path: Path, groups: list[dict[str, Any]], annotations: bool = True) -> Path:
    groups = copy.deepcopy(groups)
    if not annotations:  # the unit tests below check expressions, `for` and labels
        for rule in (r for g in groups for r in g["rules"]):
            rule.pop("annotations", None)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("value_set", ["observability", "ha-namespaced"])
def test_promtool_check_rules(value_set: str, renderer: Renderer, tmp_path: Path) -> None:
    rule = one(renderer.value_set(value_set), "PrometheusRule")
    out = promtool("check", "rules", str(write_rules(tmp_path / "rules.yaml", rule["spec"]["groups"])), cwd=tmp_path)
    assert "SUCCESS" in out


@pytest.mark.slow
def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every panel and variable query, with Grafana's variables filled in, as a recording rule."""
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries()):
        filled = expr.replace("$__rate_interval", "5m")
        filled = re.sub(r"\$(\w+)", r"\1", filled)
        rules.append({"record": f"dashboard:query_{i}", "expr": filled, "labels": {"where": where}})
    path = write_rules(tmp_path / "dashboards.yaml", [{"name": "dashboards", "rules": rules}])
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path), cwd=tmp_path)


# Target labels of the series below. With honorLabels the operator's per-object series keep the
# Gemma4Deployment's namespace; engine series carry the PodMonitor's namespace/name target labels.
OP = f'job="{JOB}",instance="10.0.0.5:8080",pod="{RELEASE}-7d9f"'
OP_SELF = f'{OP},namespace="{NAMESPACE}"'
OP_STANDBY = OP_SELF.replace(f"{RELEASE}-7d9f", f"{RELEASE}-standby")  # HA: a second operator pod
OBJ = f'{OP},namespace="ml",name="chat"'
ENGINE = 'job="ml/chat",namespace="ml",name="chat",variant="e4b-l4-vllm"'
CHAT = {"namespace": "ml", "name": "chat"}


def series(name: str, labels: str, values: str) -> dict[str, str]:
    return {"series": f"{name}{{{labels}}}", "values": values}


def alert_case(alert: str, at: str, *fired: dict[str, str]) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": [{"exp_labels": labels} for labels in fired]}


def condition(type_: str, status: str, values: str) -> dict[str, str]:
    return series("gemma4_operator_deployment_condition", f'{OBJ},type="{type_}",status="{status}"', values)


def max_replicas(current: int, maximum: int) -> list[dict[str, str]]:
    return [series("gemma4_operator_deployment_replicas", OBJ, f"{current}x40"),
            series("gemma4_operator_deployment_max_replicas", OBJ, f"{maximum}x40")]


# Each alert: test groups (input series, alert checks) where it fires and where it does not.
UNIT_TESTS: dict[str, list[tuple[list[dict[str, str]], list[dict[str, Any]]]]] = {
    "Gemma4OperatorDown": [
        ([series("up", OP_SELF, "1x20")], [alert_case("Gemma4OperatorDown", "15m")]),
        ([series("up", OP_SELF, "1 1 0x20")], [
            alert_case("Gemma4OperatorDown", "5m"),  # pending
            alert_case("Gemma4OperatorDown", "10m", {"severity": "critical"})]),
        ([series("up", 'job="other",namespace="gemma4-system"', "1x20")],  # no target at all
         [alert_case("Gemma4OperatorDown", "10m", {"severity": "critical"})]),
        ([series("up", OP_SELF, "0x20"), series("up", OP_STANDBY, "1x20")],  # HA: one is up
         [alert_case("Gemma4OperatorDown", "10m")]),
    ],
    "Gemma4OperatorReconcileErrors": [
        ([series("gemma4_operator_reconcile_errors_total", f'{OP_SELF},reason="ServerError"', "0+1x40")], [
            alert_case("Gemma4OperatorReconcileErrors", "10m"),  # pending
            alert_case("Gemma4OperatorReconcileErrors", "20m",
                       {"job": JOB, "reason": "ServerError", "severity": "warning"})]),
        ([series("gemma4_operator_reconcile_errors_total", f'{OP_SELF},reason="Conflict"', "0 1 1x40")],
         [alert_case("Gemma4OperatorReconcileErrors", "20m")]),  # one error, then none: resolved
    ],
    "Gemma4DeploymentDegraded": [
        ([condition("Degraded", "True", "1x20"), condition("Degraded", "False", "0x20")], [
            alert_case("Gemma4DeploymentDegraded", "9m"),
            alert_case("Gemma4DeploymentDegraded", "11m", {**CHAT, "severity": "warning"})]),
        ([condition("Degraded", "True", "1x5 0x15"), condition("Degraded", "False", "0x5 1x15")],
         [alert_case("Gemma4DeploymentDegraded", "15m")]),
    ],
    "Gemma4DeploymentNotReady": [
        ([condition("Ready", "True", "0x20"), condition("Ready", "False", "1x20")], [
            alert_case("Gemma4DeploymentNotReady", "14m"),
            alert_case("Gemma4DeploymentNotReady", "16m", {**CHAT, "severity": "warning"})]),
        ([condition("Ready", "Unknown", "1x20")],
         [alert_case("Gemma4DeploymentNotReady", "16m", {**CHAT, "severity": "warning"})]),
        ([condition("Ready", "False", "1x20"),  # still downloading the weights: not (yet) a problem
          series("gemma4_operator_model_phase", f'{OBJ},phase="Downloading"', "1x20")],
         [alert_case("Gemma4DeploymentNotReady", "16m")]),
        ([condition("Ready", "True", "1x20"), condition("Ready", "False", "0x20")],
         [alert_case("Gemma4DeploymentNotReady", "16m")]),
    ],
    "Gemma4DeploymentQueueGrowingAtMaxReplicas": [
        ([series("vllm:num_requests_waiting", f'{ENGINE},pod="chat-a"', "0+1x40"),
          series("vllm:num_requests_waiting", f'{ENGINE},pod="chat-b"', "0+2x40"), *max_replicas(3, 3)],
         [alert_case("Gemma4DeploymentQueueGrowingAtMaxReplicas", "20m", {**CHAT, "severity": "warning"})]),
        ([series("llamacpp:requests_deferred", f'{ENGINE},pod="chat-a"', "0+1x40"), *max_replicas(2, 2)],
         [alert_case("Gemma4DeploymentQueueGrowingAtMaxReplicas", "20m", {**CHAT, "severity": "warning"})]),
        ([series("vllm:num_requests_waiting", f'{ENGINE},pod="chat-a"', "0+1x40"), *max_replicas(2, 3)],
         [alert_case("Gemma4DeploymentQueueGrowingAtMaxReplicas", "20m")]),  # room to scale up
        ([series("vllm:num_requests_waiting", f'{ENGINE},pod="chat-a"', "8x40"), *max_replicas(3, 3)],
         [alert_case("Gemma4DeploymentQueueGrowingAtMaxReplicas", "20m")]),  # steady queue
        ([series("vllm:num_requests_waiting", f'{ENGINE},pod="chat-a"', "0+1x10 10-1x10 0x20"),
          *max_replicas(3, 3)],
         [alert_case("Gemma4DeploymentQueueGrowingAtMaxReplicas", "35m")]),  # drained
    ],
    "Gemma4DeploymentKVCacheSaturated": [
        ([series("vllm:kv_cache_usage_perc", f'{ENGINE},pod="chat-a"', "0.97x20"),
          series("vllm:kv_cache_usage_perc", f'{ENGINE},pod="chat-b"', "0.5x20"),
          series("gemma4_operator_deployment_info", f'{OBJ},variant="e4b-l4-vllm",engine="vllm"', "1x20")], [
            alert_case("Gemma4DeploymentKVCacheSaturated", "9m"),
            alert_case("Gemma4DeploymentKVCacheSaturated", "11m", {**CHAT, "severity": "warning"})]),
        ([series("vllm:kv_cache_usage_perc", f'{ENGINE},pod="chat-a"', "0.9x20"),
          series("gemma4_operator_deployment_info", f'{OBJ},variant="e4b-l4-vllm",engine="vllm"', "1x20")],
         [alert_case("Gemma4DeploymentKVCacheSaturated", "15m")]),
        ([series("vllm:kv_cache_usage_perc", 'namespace="ml",name="other",pod="other-a"', "0.99x20")],
         [alert_case("Gemma4DeploymentKVCacheSaturated", "15m")]),  # not a Gemma4Deployment of this operator
    ],
    "Gemma4DeploymentModelDownloadFailed": [
        ([series("gemma4_operator_model_phase", f'{OBJ},phase="Failed"', "0 1x10"),
          series("gemma4_operator_model_phase", f'{OBJ},phase="Downloading"', "1 0x10")],
         [alert_case("Gemma4DeploymentModelDownloadFailed", "3m", {**CHAT, "severity": "critical"})]),
        ([series("gemma4_operator_model_phase", f'{OBJ},phase="Failed"', "0x10"),
          series("gemma4_operator_model_phase", f'{OBJ},phase="Ready"', "1x10")],
         [alert_case("Gemma4DeploymentModelDownloadFailed", "5m")]),
    ],
}


def run_unit_tests(groups: list[dict[str, Any]], tests: list[dict[str, Any]], tmp_path: Path,
                   annotations: bool = False) -> None:
    write_rules(tmp_path / "rules.yaml", groups, annotations=annotations)
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False),
        encoding="utf-8")
    assert "SUCCESS" in promtool("test", "rules", "tests.yaml", cwd=tmp_path)


def test_every_alert_has_unit_tests_that_fire_and_not() -> None:
    assert set(UNIT_TESTS) == set(ALERTS)
    for alert, cases in UNIT_TESTS.items():
        checks = [check for _, group in cases for check in group]
        assert all(c["alertname"] == alert for c in checks)
        assert any(c["exp_alerts"] for c in checks), f"{alert}: no case where it fires"
        assert any(not c["exp_alerts"] for c in checks), f"{alert}: no case where it stays quiet"


@pytest.mark.slow
@pytest.mark.parametrize("alert", ALERTS)
def test_promtool_test_rules(alert: str, rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    tests = [{"interval": "1m", "input_series": inputs, "alert_rule_test": checks}
             for inputs, checks in UNIT_TESTS[alert]]
    run_unit_tests(rule_groups, tests, tmp_path)


@pytest.mark.slow
def test_promtool_alert_durations_follow_values(renderer: Renderer, tmp_path: Path) -> None:
    """N minutes is configurable: Degraded for 30m fires after 30 minutes, not after 10."""
    rule = one(renderer.objects(*RULES_ON, "--set", "metrics.prometheusRule.alerts.degraded.for=30m"),
               "PrometheusRule")
    tests = [{"interval": "1m", "input_series": [condition("Degraded", "True", "1x40")], "alert_rule_test": [
        alert_case("Gemma4DeploymentDegraded", "20m"),
        alert_case("Gemma4DeploymentDegraded", "31m", {**CHAT, "severity": "warning"})]}]
    run_unit_tests(rule["spec"]["groups"], tests, tmp_path)


@pytest.mark.slow
def test_promtool_alert_annotations(rule_groups: list[dict[str, Any]], tmp_path: Path) -> None:
    """The annotations' templates expand with the alert's labels and value."""
    tests = [{"interval": "1m", "input_series": [
        condition("Degraded", "True", "1x20"),
        series("vllm:kv_cache_usage_perc", f'{ENGINE},pod="chat-a"', "0.97x20"),
        series("gemma4_operator_deployment_info", f'{OBJ},variant="e4b-l4-vllm",engine="vllm"', "1x20"),
        series("up", OP_SELF, "1x20"),
    ], "alert_rule_test": [
        {"eval_time": "12m", "alertname": "Gemma4DeploymentDegraded", "exp_alerts": [{
            "exp_labels": {**CHAT, "severity": "warning"},
            "exp_annotations": {
                "summary": "Gemma4Deployment ml/chat is Degraded.",
                "description": "The Degraded condition of Gemma4Deployment ml/chat has been True for 10m; its "
                               "reason and message say what to change (kubectl -n ml describe g4d chat)."}}]},
        {"eval_time": "12m", "alertname": "Gemma4DeploymentKVCacheSaturated", "exp_alerts": [{
            "exp_labels": {**CHAT, "severity": "warning"},
            "exp_annotations": {
                "summary": "The KV cache of Gemma4Deployment ml/chat is saturated.",
                "description": "A vLLM pod of Gemma4Deployment ml/chat has used 97% of its KV cache for 10m: "
                               "requests queue and may be preempted. Add replicas, lower serving.maxModelLen or "
                               "concurrency, or use a larger accelerator."}}]},
    ]}]
    run_unit_tests(rule_groups, tests, tmp_path, annotations=True)


def test_rendered_alert_objects_are_namespaced(renderer: Renderer) -> None:
    for obj in renderer.value_set("observability"):
        if obj["kind"] in ("PrometheusRule", "ConfigMap", "ServiceMonitor"):
            assert obj["metadata"]["namespace"] == NAMESPACE
