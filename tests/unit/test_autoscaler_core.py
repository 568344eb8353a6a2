"""The pure parts of the autoscaler shell: one tick (scaling.tick), its status patch
(observe.autoscaler_patch), the KEDA child in render, and the --prometheus-url flag."""

from __future__ import annotations

from typing import Any

import pytest

from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling.decision import MetricTarget, Policy, Sample
from gemma4_operator.autoscaling.exposition import ScrapeFailure
from gemma4_operator.autoscaling.policy import tick
from gemma4_operator.cli.main import build_parser
from gemma4_operator.cli.run import config_from_args
from gemma4_operator.config import ConfigError, OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import status as observe
from gemma4_operator.reconcile.desired import desired_state
from gemma4_operator.render.children import Owner, RenderOptions, UnrenderableError, render_children

CPU_UNAVAILABLE = "cpu/utilization reads metrics.k8s.io, which this cluster does not serve: install metrics-server"
QUEUE = MetricTarget(Signal.QUEUE_LENGTH, 5)
POLICY = Policy(1, 4, (QUEUE,), 300)
NOW = 1000.0


def queue(pod: str, value: float) -> Sample:
    return Sample(pod, Signal.QUEUE_LENGTH, value, NOW, True)


def test_tick_scales_and_reports_each_metric() -> None:
    t = tick(POLICY, 1, [queue("a", 12)], (), NOW, {})
    assert (t.desired, t.active, t.reason) == (3, True, "ValidMetrics")
    assert t.metrics == (("vllm/num_requests_waiting", 12.0, 5.0),)
    assert t.summary.startswith("scale up 1 -> 3") and t.history


def test_tick_without_samples_keeps_replicas_and_says_why() -> None:
    t = tick(POLICY, 2, [], (), NOW, {}, failures=[ScrapeFailure("a", NOW, "timed out")])
    assert (t.desired, t.active, t.reason) == (2, False, "MissingMetrics")
    assert "no fresh sample" in t.message and "scrape failed: pod a: timed out" in t.message
    assert t.metrics == (("vllm/num_requests_waiting", None, 5.0),)


def test_a_pod_over_a_read_limit_is_named_while_the_others_answer() -> None:
    over = "metrics body exceeds 1 MiB (the operator's limit); the rest was not read"
    failures = [ScrapeFailure("b", NOW, over, over_limit=True), ScrapeFailure("c", NOW, "timed out")]
    t = tick(POLICY, 1, [queue("a", 12)], (), NOW, {}, failures)
    assert (t.desired, t.active, t.reason) == (3, True, "ValidMetrics")
    assert t.message == f"{t.summary}; left out pod b: {over}"  # a timeout alone is not news while others answer
    assert "left out" not in t.summary  # the Scaled event's words


def test_tick_with_an_unavailable_source_does_not_decide() -> None:
    pol = Policy(1, 4, (QUEUE, MetricTarget(Signal.CPU_UTILIZATION, 60)), 300)
    t = tick(pol, 2, [queue("a", 50)], (), NOW, {Signal.CPU_UTILIZATION: CPU_UNAVAILABLE})
    assert (t.desired, t.active, t.reason) == (2, False, "MetricUnavailable")
    assert t.message == f"replicas stay at 2: {CPU_UNAVAILABLE}" and t.history == ()
    below = tick(Policy(3, 4, (QUEUE,), 300), 1, [], (), NOW, {Signal.QUEUE_LENGTH: "no such metric"})
    assert below.desired == 3 and below.message.startswith("replicas set to 3 (bounds only)")


def test_autoscaler_patch_only_when_something_changed() -> None:
    auto = observe.autoscaling_status(3, "2026-01-01T00:00:00Z", [("vllm/num_requests_waiting", 12.0, 5.0)])
    planned = {"type": "Planned", "status": "True", "reason": "Fits", "message": "x",
               "lastTransitionTime": "t0", "observedGeneration": 1}
    patch = observe.autoscaler_patch({"conditions": [planned]}, auto, True, "ValidMetrics", "ok", 1, "t1")
    assert patch is not None and patch["autoscaling"] == auto
    assert [c["type"] for c in patch["conditions"]] == ["Planned", "ScalingActive"]
    assert patch["conditions"][0] == planned
    merged = {"conditions": patch["conditions"], "autoscaling": auto}
    assert observe.autoscaler_patch(merged, auto, True, "ValidMetrics", "ok", 1, "t2") is None
    # the message changes, the status does not: lastTransitionTime stays
    again = observe.autoscaler_patch(merged, auto, True, "ValidMetrics", "other", 1, "t2")
    assert again is not None and list(again) == ["conditions"]
    assert again["conditions"][1]["lastTransitionTime"] == "t1"
    flipped = observe.autoscaler_patch(merged, auto, False, "MetricUnavailable", "why", 1, "t3")
    assert flipped is not None and flipped["conditions"][1]["lastTransitionTime"] == "t3"


def keda_spec(**autoscaling: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({
        "model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"},
        "autoscaling": {"maxReplicaCount": 3, "backend": "keda",
                        "autoscalingMetricSpecs": [{"metricName": "vllm/num_requests_waiting", "target": 5}],
                        **autoscaling}})


def test_keda_backend_renders_a_scaled_object_child() -> None:
    spec = keda_spec()
    p = plan(spec, ClusterFacts.every_catalog_type())
    owner = Owner("chat", "ml", "uid-1")
    children = render_children(owner, spec, p, RenderOptions(prometheus_url="http://prom:9090"))
    so = next(c for c in children if c["kind"] == "ScaledObject")
    assert so["apiVersion"] == "keda.sh/v1alpha1" and so["metadata"]["ownerReferences"] == owner.references
    assert so["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gemma4-operator"
    assert so["spec"]["scaleTargetRef"]["name"] == "chat"
    deployment = next(c for c in children if c["kind"] == "Deployment")
    assert "replicas" not in deployment["spec"]


@pytest.mark.parametrize(("options", "message"), [
    (RenderOptions(keda_served=False, prometheus_url="http://prom:9090"), "KEDA is not installed"),
    (RenderOptions(), "--prometheus-url"),
])
def test_keda_backend_refusals_become_plan_failures(options: RenderOptions, message: str) -> None:
    spec = keda_spec()
    p = plan(spec, ClusterFacts.every_catalog_type())
    with pytest.raises(UnrenderableError, match=message):
        render_children(Owner("chat", "ml", "uid-1"), spec, p, options)
    parent = Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                              "metadata": {"name": "chat", "namespace": "ml"},
                                              "spec": spec.model_dump(by_alias=True)})
    desired = desired_state(parent, "uid-1", ClusterFacts.every_catalog_type(), OperatorConfig(), options)
    assert desired.plan is None and desired.children == ()
    assert desired.error is not None and message in desired.error.one_line


def test_prometheus_url_flag_and_environment() -> None:
    def run(*argv: str, env: dict[str, str] | None = None) -> OperatorConfig:
        return config_from_args(build_parser().parse_args(["run", *argv]), env=env or {})

    assert run().prometheus_url == ""
    assert run("--prometheus-url", "http://prom:9090/").prometheus_url == "http://prom:9090"
    assert run(env={"GEMMA4_PROMETHEUS_URL": "https://p.example"}).prometheus_url == "https://p.example"
    assert run("--prometheus-url", "http://a:1", env={"GEMMA4_PROMETHEUS_URL": "http://b:2"}).prometheus_url \
        == "http://a:1"
    with pytest.raises(ConfigError, match="--prometheus-url"):
        run("--prometheus-url", "prom:9090")
