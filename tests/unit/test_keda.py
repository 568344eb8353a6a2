"""The KEDA backend's ScaledObject: equivalent triggers, valid against KEDA's own CRD schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.autoscaling.scaled_object import scaled_object_spec
from gemma4_operator.engines import registry
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan

KEDA_SCHEMA = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "data" / "keda" / "scaledobject-spec-schema.yaml").read_text())
PROMETHEUS = "http://prometheus.monitoring:9090"
ENGINES = registry()


def build(autoscaling: dict[str, Any], accelerator: str = "nvidia-h100-80gb",
          prometheus: str = PROMETHEUS) -> dict[str, Any]:
    spec = Gemma4DeploymentSpec.model_validate(
        {"model": {"variant": "26b-a4b"}, "accelerator": {"type": accelerator}, "autoscaling": autoscaling})
    p = plan(spec, ClusterFacts.every_catalog_type())
    return scaled_object_spec(spec, p, ENGINES[p.engine], "chat", "ml", prometheus)


def strict(schema: Any) -> Any:
    """KEDA's schema with unknown fields refused, as kubectl's strict field validation does."""
    if isinstance(schema, dict):
        out = {k: strict(v) for k, v in schema.items()}
        if "properties" in schema:
            out["additionalProperties"] = False
        return out
    return schema


ALL_METRICS = {"minReplicaCount": 2, "maxReplicaCount": 8, "scaleDownDelaySeconds": 600, "backend": "keda",
               "autoscalingMetricSpecs": [
                   {"metricName": "vllm/num_requests_waiting", "target": 4},
                   {"metricName": "prometheus.googleapis.com/vertex_vllm_gpu_cache_usage_perc"},
                   {"metricName": "aiplatform.googleapis.com/prediction/online/accelerator/duty_cycle", "target": 70},
                   {"metricName": "request_count", "target": 120},
                   {"metricName": "vllm/num_requests_running", "target": 12},
                   {"metricName": "cpu/utilization"}]}


def test_scaled_object_validates_against_kedas_crd_schema() -> None:
    so = build(ALL_METRICS)
    jsonschema.validate(so, strict(KEDA_SCHEMA))
    assert so["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "chat"}
    assert (so["minReplicaCount"], so["maxReplicaCount"]) == (2, 8)
    behavior = so["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleUp"]["policies"] == [{"type": "Percent", "value": 100, "periodSeconds": 15},
                                               {"type": "Pods", "value": 4, "periodSeconds": 15}]


def test_triggers_mirror_the_builtin_arithmetic() -> None:
    by_name = {t.get("name", t["type"]): t for t in build(ALL_METRICS)["triggers"]}
    selector = 'namespace="ml",pod=~"chat-[a-z0-9]+-[a-z0-9]+"'
    assert by_name["queue-length"]["metricType"] == "AverageValue"
    assert by_name["queue-length"]["metadata"] == {
        "serverAddress": PROMETHEUS, "query": f"sum(vllm:num_requests_waiting{{{selector}}})", "threshold": "4",
        "ignoreNullValues": "false"}
    assert by_name["kv-cache-usage"]["metadata"]["query"] == f"avg(vllm:kv_cache_usage_perc{{{selector}}}) * 100"
    assert (by_name["kv-cache-usage"]["metricType"], by_name["kv-cache-usage"]["metadata"]["threshold"]) == (
        "Value", "80")  # the Vertex default for the old KV metric name
    assert by_name["duty-cycle"]["metadata"]["query"] == f"avg(DCGM_FI_DEV_GPU_UTIL{{{selector}}})"
    assert by_name["request-count"]["metadata"]["query"] == (
        f"sum(rate(vllm:request_success_total{{{selector}}}[2m])) * 60")
    assert by_name["cpu"] == {"type": "cpu", "metricType": "Utilization", "metadata": {"value": "60"}}


def test_default_metrics_pair_the_queue_with_requests_in_flight_against_the_slots() -> None:
    vllm = build({"maxReplicaCount": 3})  # 26b-a4b on one H100: maxConcurrency 21 (0.925 x 21 = 19.43)
    assert [(t["name"], t["metadata"]["threshold"]) for t in vllm["triggers"]] == [
        ("queue-length", "2"), ("batch-size", "19.43")]
    spec = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
                                                "serving": {"concurrency": 5},
                                                "autoscaling": {"maxReplicaCount": 3}})
    p = plan(spec, ClusterFacts.every_catalog_type())
    llama = scaled_object_spec(spec, p, ENGINES["llamacpp"], "chat", "ml", PROMETHEUS)
    assert [(t["name"], t["metadata"]["threshold"]) for t in llama["triggers"]] == [
        ("queue-length", "2"), ("batch-size", "4.62")]  # 92.5 % of -np 5
    assert "llamacpp:requests_deferred" in llama["triggers"][0]["metadata"]["query"]


@pytest.mark.parametrize(("autoscaling", "accelerator", "prometheus", "message"), [
    ({"maxReplicaCount": 2, "backend": "keda", "autoscalingMetricSpecs": [{"metricName": "vllm/kv_cache_usage_perc"}]},
     "cpu", PROMETHEUS, "vllm/kv_cache_usage_perc: the engine exposes no such metric"),
    ({"maxReplicaCount": 2, "backend": "keda", "autoscalingMetricSpecs": [{"metricName": "request_count"}]},
     "nvidia-h100-80gb", PROMETHEUS, "has no default target; set target"),
    ({"maxReplicaCount": 2, "backend": "keda", "autoscalingMetricSpecs": [{"metricName": "vllm/num_requests_waiting"}]},
     "nvidia-h100-80gb", "", "start the operator with --prometheus-url"),
])
def test_unsupported_metrics_are_refused_with_a_reason(autoscaling: dict[str, Any], accelerator: str,
                                                       prometheus: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build(autoscaling, accelerator, prometheus)


def test_scale_to_zero_scaled_object_validates_against_kedas_crd_schema() -> None:
    so = build({**ALL_METRICS, "minReplicaCount": 0,
                "scaleToZeroSpec": {"idleScaledownPeriod": "20m", "minScaleupPeriod": "5m"}})
    jsonschema.validate(so, strict(KEDA_SCHEMA))
    assert (so["minReplicaCount"], so["cooldownPeriod"]) == (0, 1200)
    assert so["triggers"][-1]["name"] == "held-requests"
