"""The wake path, pure: the activator's answers (Retry-After, forwarded headers, held requests), its children
(render.activator), the Service's switch between the serving pods and the activator (reconcile.desired.routed),
the KEDA activation trigger and the ScaledToZero status."""

from __future__ import annotations

import argparse
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from gemma4_operator.activator.settings import add_arguments, settings_from_args
from gemma4_operator.api import Gemma4Deployment, Gemma4DeploymentSpec
from gemma4_operator.api.metric_names import Signal
from gemma4_operator.autoscaling import idle
from gemma4_operator.autoscaling.activator import (
    HELD_REQUESTS,
    forwarded_headers,
    held_requests,
    retry_after_seconds,
    routes_to_activator,
)
from gemma4_operator.autoscaling.decision import MetricTarget, Policy, Sample
from gemma4_operator.autoscaling.exposition import PodMetrics, ScrapeFailure
from gemma4_operator.autoscaling.policy import ZeroInput, tick
from gemma4_operator.config import OperatorConfig
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile import desired as rc
from gemma4_operator.reconcile import status as observe
from gemma4_operator.render import routing as r
from gemma4_operator.render.activator import ADMIN_PORT, PORT
from gemma4_operator.render.children import Owner, RenderOptions, render_children
from tests.support.inference_schemas import INFERENCE_POOL_V1
from tests.support.pod_security import restricted_violations

OWNER = Owner("chat", "ml", "0b7d3c1e-1111-4a5b-9c9d-123456789abc")
ZERO = {"minReplicaCount": 0, "maxReplicaCount": 4,
        "scaleToZeroSpec": {"idleScaledownPeriod": "15m", "minScaleupPeriod": "5m"}}
E4B_L4: dict[str, Any] = {"model": {"variant": "e4b"}, "accelerator": {"type": "nvidia-l4"}}


def _spec(autoscaling: dict[str, Any] | None = None, **more: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({**E4B_L4, **({"autoscaling": autoscaling} if autoscaling else {}),
                                                **more})


def _children(spec: Gemma4DeploymentSpec, options: RenderOptions | None = None) -> dict[tuple[str, str], Any]:
    p = plan(spec, ClusterFacts.every_catalog_type())
    return {(c["kind"], c["metadata"]["name"]): c for c in render_children(OWNER, spec, p, options)}


# --- the activator's answers ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "started", "expected"), [
    (100.0, 100.0, 300),  # a wake just began: the whole cold start
    (100.0, 0.0, 200),  # 100 s into a 300 s cold start: the rest of it
    (299.5, 0.0, 1),  # half a second left: rounded up
    (400.0, 0.0, 300),  # overdue: another whole cold start
    (50.0, None, 300),  # no wake under way (a timeout's answer after the hold ended)
])
def test_retry_after_is_the_rest_of_the_cold_start_else_a_whole_one(now: float, started: float | None,
                                                                     expected: int) -> None:
    assert retry_after_seconds(now, started, 300.0) == expected


def test_forwarded_headers_drop_hop_by_hop_ones_and_those_connection_names() -> None:
    headers = [("Authorization", "Bearer t"), ("Connection", "keep-alive, X-Secret-Hop"), ("X-Secret-Hop", "1"),
               ("Transfer-Encoding", "chunked"), ("Host", "chat.ml.svc"), ("Content-Length", "12"),
               ("Content-Type", "application/json"), ("Accept", "text/event-stream")]
    assert forwarded_headers(headers) == [("Authorization", "Bearer t"), ("Content-Type", "application/json"),
                                          ("Accept", "text/event-stream")]


def test_held_requests_sum_every_activator_pod_and_unknown_is_never_zero() -> None:
    ok = [PodMetrics("a", 0.0, {Signal.QUEUE_LENGTH: 2.0}), PodMetrics("b", 0.0, {Signal.QUEUE_LENGTH: 1.0})]
    assert held_requests(ok) == 3
    assert held_requests([PodMetrics("a", 0.0, {Signal.QUEUE_LENGTH: 0.0})]) == 0
    assert held_requests([]) is None  # no activator pod answered: no scale to zero without a way back
    assert held_requests([*ok, ScrapeFailure("c", 0.0, "timed out")]) is None
    assert held_requests([PodMetrics("a", 0.0, {})]) is None  # the series is missing


@pytest.mark.parametrize(("scales", "deployment", "expected"), [
    (True, None, True),  # not created yet: requests wait for it
    (True, {"spec": {"replicas": 0}, "status": {}}, True),
    (True, {"spec": {"replicas": 1}, "status": {"replicas": 1}}, True),  # woken, still loading: held, not refused
    (True, {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}}, False),  # a replica serves: out of the path
    (False, {"spec": {"replicas": 0}, "status": {}}, False),  # no scale to zero: never the activator
])
def test_service_routes_to_the_activator_only_while_no_replica_is_ready(
        scales: bool, deployment: dict[str, Any] | None, expected: bool) -> None:
    assert routes_to_activator(scales, deployment) is expected


# --- its children -----------------------------------------------------------------------------------------------

def test_no_activator_without_scale_to_zero() -> None:
    kinds = {k for k, _ in _children(_spec({"minReplicaCount": 1, "maxReplicaCount": 4}))}
    assert {"Deployment", "Service"} <= kinds
    assert ("Deployment", "chat-activator") not in _children(_spec({"minReplicaCount": 1, "maxReplicaCount": 4}))


def test_scale_to_zero_renders_the_activator_and_the_replicas_headless_service() -> None:
    objs = _children(_spec(ZERO))
    activator = objs[("Deployment", "chat-activator")]
    pod = activator["spec"]["template"]["spec"]
    assert restricted_violations(activator["spec"]["template"]) == {}
    assert pod["automountServiceAccountToken"] is False  # no Kubernetes API access
    container = pod["containers"][0]
    assert container["command"] == ["gemma4-operator", "activator"]
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "64Mi"}
    assert container["resources"]["limits"] == {"memory": "192Mi"}  # 64 MiB + 32 held x 4 MiB bodies
    labels = activator["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "gemma4-activator"  # never the serving Service's selector
    assert labels["app.kubernetes.io/component"] == "activator"
    headless = objs[("Service", "chat-replicas")]["spec"]
    assert headless["clusterIP"] == "None"
    assert headless["selector"] == {"app.kubernetes.io/name": "gemma4", "app.kubernetes.io/instance": "chat"}
    assert headless["publishNotReadyAddresses"] is False  # its DNS name lists Ready pods only
    for obj in objs.values():
        kubernetes_validate.validate(obj, "1.37.0", strict=True) if obj["apiVersion"] in ("v1", "apps/v1") else None


def test_rendered_activator_args_parse_with_the_activators_own_flags() -> None:
    spec = _spec(ZERO)
    p = plan(spec, ClusterFacts.every_catalog_type())
    objs = _children(spec)
    args = objs[("Deployment", "chat-activator")]["spec"]["template"]["spec"]["containers"][0]["args"]
    readiness = objs[("Deployment", "chat")]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(args))
    assert settings.upstream == f"http://chat-replicas.ml.svc:{p.port}"
    assert settings.ready_path == readiness["httpGet"]["path"] == "/v1/models"  # vLLM's: the model is served
    assert settings.cold_start_s == p.start.first_s  # no shared model cache: a woken replica starts afresh
    assert settings.hold_timeout_s == max(p.startup_budget_s, p.start.first_s)
    assert (settings.port, settings.admin_port) == (PORT, ADMIN_PORT)


@pytest.mark.parametrize(("args", "message"), [
    (["--upstream=https://x:1"], "expected http://HOST:PORT"),
    (["--upstream=http://x:1/v1"], "expected http://HOST:PORT"),
    (["--max-held=0"], "0 is outside 1..1024"),
    (["--max-body-bytes=999999999999"], "is outside 0..67108864"),
    (["--ready-path=health"], "expected an absolute path"),
])
def test_activator_flags_are_bounded(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    base = ["--upstream=http://x:8000", "--ready-path=/health", "--cold-start-seconds=60"]
    with pytest.raises(SystemExit):
        parser.parse_args(base + args)
    assert message in capsys.readouterr().err


def test_activator_network_policy_admits_the_serving_pods_peers_on_its_ports() -> None:
    objs = _children(_spec(ZERO), RenderOptions(network_policy=True, operator_namespace="gemma4-system"))
    serving, activator = objs[("NetworkPolicy", "chat")], objs[("NetworkPolicy", "chat-activator")]
    assert activator["spec"]["ingress"][0]["from"] == serving["spec"]["ingress"][0]["from"]
    assert activator["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": PORT},
                                                        {"protocol": "TCP", "port": ADMIN_PORT}]
    assert activator["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "gemma4-activator"


def test_activator_image_comes_from_the_operators_image_option() -> None:
    objs = _children(_spec(ZERO), RenderOptions(activator_image="registry.example.com/gemma4-operator:1.2.3"))
    pod = objs[("Deployment", "chat-activator")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry.example.com/gemma4-operator:1.2.3"


# --- the Service switch -----------------------------------------------------------------------------------------

def _desired(autoscaling: dict[str, Any] | None) -> tuple[Gemma4Deployment, rc.Desired]:
    parent = Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                              "metadata": {"name": "chat", "namespace": "ml"},
                                              "spec": _spec(autoscaling).model_dump(by_alias=True)})
    return parent, rc.desired_state(parent, OWNER.uid, ClusterFacts.every_catalog_type(), OperatorConfig())


def _service(d: rc.Desired) -> dict[str, Any]:
    service = d.child("Service", "chat")
    assert service is not None
    return service


def test_service_points_at_the_activator_at_zero_and_back_at_the_pods_when_one_is_ready() -> None:
    parent, desired = _desired(ZERO)
    at_zero = rc.routed(desired, parent, {"spec": {"replicas": 0}, "status": {}})
    assert _service(at_zero)["spec"]["selector"]["app.kubernetes.io/name"] == "gemma4-activator"
    # a changed selector is a changed child: the hash differs, so the reconcile applies it
    assert rc.apply_reason(_service(at_zero), _service(desired), None) is not None
    serving = rc.routed(desired, parent, {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}})
    assert _service(serving) == _service(desired)
    assert _service(serving)["spec"]["selector"]["app.kubernetes.io/name"] == "gemma4"


def test_without_scale_to_zero_the_service_never_switches() -> None:
    parent, desired = _desired({"minReplicaCount": 1, "maxReplicaCount": 4})
    assert rc.routed(desired, parent, {"spec": {"replicas": 0}, "status": {}}) is desired


def test_a_deployment_event_may_rewrite_the_service_it_routes() -> None:
    assert ("Service", "chat") in rc.written_on_event("Deployment", "chat", "chat")
    assert ("Service", "chat") not in rc.written_on_event("Deployment", "chat-activator", "chat")


def test_activator_children_are_deleted_when_scale_to_zero_is_turned_off() -> None:
    _, with_zero = _desired(ZERO)
    _, without = _desired({"minReplicaCount": 1, "maxReplicaCount": 4})
    live = [{**c, "metadata": {**c["metadata"], "ownerReferences": OWNER.references}} for c in with_zero.children]
    stale = {(k.kind, k.name) for k in rc.stale_children(without.children, live, OWNER.uid)}
    assert stale == {("Deployment", "chat-activator"), ("Service", "chat-replicas")}


# --- KEDA -------------------------------------------------------------------------------------------------------

def test_keda_scale_to_zero_activates_on_held_requests_and_a_missing_series_is_an_error() -> None:
    spec = _spec({**ZERO, "backend": "keda",
                  "autoscalingMetricSpecs": [{"metricName": "vllm/num_requests_waiting", "target": 5}]})
    scaled = _children(spec, RenderOptions(prometheus_url="http://prometheus.monitoring:9090"))[
        ("ScaledObject", "chat")]["spec"]
    assert scaled["minReplicaCount"] == 0
    assert scaled["cooldownPeriod"] == 900  # idleScaledownPeriod 15m
    wake = next(t for t in scaled["triggers"] if t.get("name") == "held-requests")
    assert wake["metadata"]["activationThreshold"] == "0"
    assert wake["metadata"]["ignoreNullValues"] == "false"  # no series is an error, never "nothing held"
    assert wake["metadata"]["query"] == (
        f'sum({HELD_REQUESTS}{{namespace="ml",pod=~"chat-activator-[a-z0-9]+-[a-z0-9]+"}})')


# --- status -----------------------------------------------------------------------------------------------------

def _status(autoscaling: dict[str, Any] | None, live_replicas: int, **more: Any) -> dict[str, Any]:
    spec = _spec(autoscaling, **more)
    p = plan(spec, ClusterFacts.every_catalog_type())
    deployment = {"metadata": {"generation": 2}, "spec": {"replicas": live_replicas},
                  "status": {"observedGeneration": 2, "replicas": 0, "updatedReplicas": 0}}
    return observe.compute_status(owner=OWNER, generation=1, spec=spec, outcome=observe.PlanOutcome(p),
                                  deployment=deployment, pods=[], previous={}, now="2026-12-08T00:00:00Z")


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == kind)


def test_an_autoscaled_zero_is_ready_with_reason_scaled_to_zero() -> None:
    status = _status(ZERO, 0)
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "ScaledToZero")
    assert ready["message"] == ("scaled to zero while idle; http://chat.ml.svc:8000/v1 still answers: the activator "
                                "holds requests and wakes a replica")
    assert _condition(status, "Available")["reason"] == "ScaledToZero"
    assert status["phase"] == "Ready"


def test_spec_replicas_zero_is_not_ready() -> None:
    status = _status(None, 0, replicas=0)  # the user's zero: nothing answers, so not Ready
    ready = _condition(status, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ScaledToZero")


# --- an activator that cannot be read (autoscaling.idle with held None) -----------------------------------------

def test_an_unreadable_activator_never_lets_the_object_go_idle() -> None:
    quiet = [Sample("a", Signal.BATCH_SIZE, 0, 1000.0, True), Sample("a", Signal.QUEUE_LENGTH, 0, 1000.0, True)]
    pol = Policy(1, 4, (MetricTarget(Signal.QUEUE_LENGTH, 2),), 300, slots=8)
    zero = idle.ScaleToZero(idle_s=600, min_scaleup_s=300, slots=8)
    long_idle = idle.Timers(idle_since=1000.0 - 5000)
    readable = tick(pol, 1, quiet, (), 1000.0, {}, (), ZeroInput(zero, long_idle, 0, frozenset({"a"})))
    assert readable.desired == 0  # the same tick with the activator read: idle long enough, to zero
    unknown = tick(pol, 1, quiet, (), 1000.0, {}, (), ZeroInput(zero, long_idle, None, frozenset({"a"})))
    assert unknown.desired == 1
    assert unknown.timers is not None and unknown.timers.idle_since is None  # the idle period starts again
    at_zero = tick(pol, 0, [], (), 1000.0, {}, (), ZeroInput(zero, idle.Timers(), None, frozenset()))
    assert (at_zero.desired, at_zero.message) == (0, "scaled to zero: the activator's held requests cannot be read")


def test_a_shared_model_cache_makes_the_wake_a_warm_start() -> None:
    spec = _spec(ZERO, storage={"modelCache": {"accessModes": ["ReadWriteMany"]}})
    p = plan(spec, ClusterFacts.every_catalog_type())
    args = _children(spec)[("Deployment", "chat-activator")]["spec"]["template"]["spec"]["containers"][0]["args"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    settings = settings_from_args(parser.parse_args(args))
    assert p.start.warm_s < p.start.first_s
    assert settings.cold_start_s == p.start.warm_s  # Retry-After counts down from the warm start
    assert settings.hold_timeout_s == max(p.startup_budget_s, p.start.warm_s)  # held as long as a start may take


def test_with_routing_the_inference_pool_follows_the_service_to_the_activator_and_back() -> None:
    spec = {**_spec(ZERO).model_dump(by_alias=True), "routing": {"inferencePool": {}}}
    parent = Gemma4Deployment.model_validate({"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
                                              "metadata": {"name": "chat", "namespace": "ml"}, "spec": spec})
    options = RenderOptions(routing=r.RoutingCluster())
    desired = rc.desired_state(parent, OWNER.uid, ClusterFacts.every_catalog_type(), OperatorConfig(), options)
    pool = desired.child("InferencePool", "chat")
    assert pool is not None, desired.error
    at_zero = rc.routed(desired, parent, {"spec": {"replicas": 0}, "status": {}}).child("InferencePool", "chat")
    assert at_zero is not None
    jsonschema.validate(at_zero, INFERENCE_POOL_V1)
    assert at_zero["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "gemma4-activator"
    assert at_zero["spec"]["targetPorts"] == [{"number": PORT}]  # the activator's requests port
    assert at_zero["spec"]["endpointPickerRef"] == pool["spec"]["endpointPickerRef"]
    serving = rc.routed(desired, parent, {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}})
    assert serving.child("InferencePool", "chat") == pool
