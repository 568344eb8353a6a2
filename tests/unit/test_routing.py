"""spec.routing.inferencePool: rendered objects against the upstream v1 schemas, engine-aware scorers, the EPP
config's metric names against what each engine exports, refusals, RoutingReady and stale routing children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gemma4_operator.api import Gemma4DeploymentSpec, InferencePoolRouting, Scorer
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.planner.plan import ClusterFacts
from gemma4_operator.planner.select import plan
from gemma4_operator.reconcile.desired import stale_children
from gemma4_operator.reconcile.routing_status import routing_state
from gemma4_operator.reconcile.status import ROUTING_READY
from gemma4_operator.render import routing as r
from gemma4_operator.render.children import Owner, RenderOptions, render_all, selector_labels
from tests.support.inference_schemas import HTTPROUTE_V1, INFERENCE_POOL_V1
from tests.support.pod_security import restricted_violations

DATA = Path(__file__).resolve().parents[1] / "data" / "metrics"
OWNER = Owner("chat", "ml", "uid-1")
FACTS = ClusterFacts(accelerator_types=frozenset({"nvidia-h100-80gb"}))
GATEWAY = {"mode": "gateway", "gatewayRef": {"name": "inference-gateway", "namespace": "gateways"}}
ENGINES: dict[str, dict[str, Any]] = {"vllm": {"accelerator": {"type": "nvidia-h100-80gb"}, "engine": "vllm"},
           "llamacpp": {"accelerator": {"type": "cpu"}}}


def _spec(engine: str = "vllm", routing: dict[str, Any] | None = None, **extra: Any) -> Gemma4DeploymentSpec:
    return Gemma4DeploymentSpec.model_validate({
        "model": {"variant": "e2b"}, "serving": {"maxModelLen": 4096}, **ENGINES[engine],
        "autoscaling": {"minReplicaCount": 1, "maxReplicaCount": 4},
        "routing": {"inferencePool": routing if routing is not None else {}}, **extra})


def _render(spec: Gemma4DeploymentSpec, **cluster: Any) -> tuple[dict[tuple[str, str], Any], Any]:
    options = RenderOptions(routing=r.RoutingCluster(**cluster))
    children, refusal = render_all(OWNER, spec, plan(spec, FACTS), options)
    return {(c["kind"], c["metadata"]["name"]): c for c in children}, refusal


def _epp_config(children: dict[tuple[str, str], Any]) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(children[("ConfigMap", "chat-epp")]["data"][r.EPP_CONFIG_FILE])
    return config


# ---- rendered objects ------------------------------------------------------------------------------------------

def test_standalone_renders_the_pool_the_picker_and_the_router_service() -> None:
    children, refusal = _render(_spec())
    assert refusal is None
    assert {k for k in children if k[1] != "chat" or k[0] == "InferencePool"} >= {
        ("InferencePool", "chat"), ("Deployment", "chat-epp"), ("Service", "chat-epp"), ("ConfigMap", "chat-epp"),
        ("ServiceAccount", "chat-epp"), ("RoleBinding", "chat-epp"), ("Service", "chat-router")}
    assert ("HTTPRoute", "chat") not in children
    pool = children[("InferencePool", "chat")]
    jsonschema.validate(pool, INFERENCE_POOL_V1)
    assert pool["spec"]["selector"]["matchLabels"] == selector_labels("chat")  # the serving pods, as the Service
    assert pool["spec"]["targetPorts"] == [{"number": engine_named("vllm").info.port}]
    assert pool["spec"]["endpointPickerRef"] == {"group": "", "kind": "Service", "name": "chat-epp",
                                                 "port": {"number": 9002}, "failureMode": "FailClose"}
    router = children[("Service", "chat-router")]
    assert router["spec"]["selector"] == r.epp_pod_labels("chat")
    envoy = yaml.safe_load(children[("ConfigMap", "chat-epp")]["data"][r.ENVOY_CONFIG_FILE])
    listeners = {li["name"]: li["address"]["socket_address"]["port_value"]
                 for li in envoy["static_resources"]["listeners"]}
    assert listeners == {"ready": 19001, "router": 8081}


def test_gateway_mode_renders_an_httproute_to_the_pool_and_no_router() -> None:
    children, _ = _render(_spec(routing={**GATEWAY, "failureMode": "FailOpen"}))
    route = children[("HTTPRoute", "chat")]
    jsonschema.validate(route, HTTPROUTE_V1)
    jsonschema.validate(children[("InferencePool", "chat")], INFERENCE_POOL_V1)
    assert route["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                            "name": "inference-gateway", "namespace": "gateways"}]
    assert route["spec"]["rules"][0]["backendRefs"] == [
        {"group": "inference.networking.k8s.io", "kind": "InferencePool", "name": "chat"}]
    assert children[("InferencePool", "chat")]["spec"]["endpointPickerRef"]["failureMode"] == "FailOpen"
    assert ("Service", "chat-router") not in children
    assert [c["name"] for c in children[("Deployment", "chat-epp")]["spec"]["template"]["spec"]["containers"]] \
        == ["epp"]


def test_the_schemas_refuse_what_the_v1_api_refuses() -> None:
    """The hand-written schemas are strict enough to catch a wrong field (else the tests above prove little)."""
    children, _ = _render(_spec())
    pool = children[("InferencePool", "chat")]
    for broken in ({**pool["spec"], "targetPortNumber": 8000},  # the v1alpha2 spelling
                   {**pool["spec"], "targetPorts": []},
                   {**pool["spec"], "endpointPickerRef": {"name": "chat-epp", "port": {"number": 9002},
                                                          "failureMode": "Fail"}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**pool, "spec": broken}, INFERENCE_POOL_V1)


def test_the_picker_pod_is_restricted_and_never_a_serving_pod() -> None:
    children, _ = _render(_spec())
    epp = children[("Deployment", "chat-epp")]
    template = epp["spec"]["template"]
    assert restricted_violations(template) == {}
    assert epp["spec"]["strategy"] == {"type": "Recreate"} and epp["spec"]["replicas"] == 1
    labels = template["metadata"]["labels"]
    assert not set(selector_labels("chat").items()) <= set(labels.items())  # the pool never picks the picker
    assert "app.kubernetes.io/managed-by" not in labels  # outside the operator's pod watch
    assert template["spec"]["serviceAccountName"] == "chat-epp"
    binding = children[("RoleBinding", "chat-epp")]
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": r.DEFAULT_EPP_CLUSTER_ROLE}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "chat-epp", "namespace": "ml"}]
    args = template["spec"]["containers"][0]["args"]
    assert args[:4] == ["--pool-name", "chat", "--pool-namespace", "ml"]


@pytest.mark.parametrize(("replicas", "cpu", "memory"), [(1, "750m", "768Mi"), (4, "1500m", "1536Mi"),
                                                         (100, "4000m", "8192Mi")])
def test_picker_resources_follow_the_most_replicas(replicas: int, cpu: str, memory: str) -> None:
    spec = _spec(autoscaling={"minReplicaCount": 1, "maxReplicaCount": replicas})
    children, _ = _render(spec)
    epp = children[("Deployment", "chat-epp")]["spec"]["template"]["spec"]["containers"][0]
    assert epp["resources"]["requests"] == {"cpu": cpu, "memory": memory}


# ---- scorers and metric names ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("engine", "adapters", "expected"), [
    ("vllm", False, (Scorer.PREFIX, Scorer.QUEUE, Scorer.KV_CACHE)),
    ("vllm", True, (Scorer.PREFIX, Scorer.QUEUE, Scorer.KV_CACHE, Scorer.LORA_AFFINITY)),
    ("llamacpp", False, (Scorer.PREFIX, Scorer.QUEUE)),  # llama-server exports no KV-cache use
    ("llamacpp", True, (Scorer.PREFIX, Scorer.QUEUE)),  # nor adapter info
])
def test_default_scorers_are_what_the_engine_can_feed(engine: str, adapters: bool,
                                                      expected: tuple[Scorer, ...]) -> None:
    assert r.default_scorers(engine_named(engine), adapters) == expected


def test_the_rendered_config_weighs_the_default_scorers() -> None:
    children, _ = _render(_spec("llamacpp"))
    profile = _epp_config(children)["schedulingProfiles"][0]["plugins"]
    assert [p["pluginRef"] for p in profile] == ["prefix-cache-scorer", "queue-scorer", "max-score-picker"]


def test_adapters_in_the_spec_turn_on_lora_affinity_and_its_metric() -> None:
    adapters = [{"name": "support-bot", "uri": "hf://example/gemma-4-e2b-support-lora"}]
    # hf:// adapters fetched by the download Job into a cache PVC every replica can mount
    cache = {"modelCache": {"accessModes": ["ReadWriteMany"]}}
    with_adapters, _ = _render(_spec(model={"variant": "e2b", "adapters": adapters}, storage=cache))
    config = _epp_config(with_adapters)
    assert "lora-affinity-scorer" in [p["pluginRef"] for p in config["schedulingProfiles"][0]["plugins"]]
    assert "vllm:lora_requests_info" in r.referenced_metrics(config)
    without, _ = _render(_spec())
    assert "lora-affinity-scorer" not in [p["type"] for p in _epp_config(without)["plugins"]]


def _served_vllm_metrics(*, lora: bool) -> set[str]:
    """vLLM 0.32.0's metric names from its source (tests/tools/gen_vllm_metrics.py): those served by default,
    and with LoRA enabled lora_requests_info."""
    names = set()
    for line in (DATA / "vllm-0.32.0-names.txt").read_text(encoding="utf-8").splitlines():
        fields = line.split()
        if line.startswith("#") or len(fields) < 3:
            continue
        if fields[2] == "yes" or (lora and fields[0] == "vllm:lora_requests_info"):
            names.add(fields[0])
    return names


def _llamacpp_metrics() -> set[str]:
    """A real llama-server's /metrics (tests/engine/capture_llamacpp_metrics.py); the engine tier checks live."""
    return {line.split()[2] for line in (DATA / "llamacpp-real.txt").read_text(encoding="utf-8").splitlines()
            if line.startswith("# TYPE ")}


@pytest.mark.parametrize(("engine", "adapters"), [("vllm", False), ("vllm", True), ("llamacpp", False)])
def test_the_config_names_only_metrics_the_engine_exports(engine: str, adapters: bool) -> None:
    config = r.epp_config(engine, r.default_scorers(engine_named(engine), adapters), "/metrics",
                          adapters=adapters)
    referenced = r.referenced_metrics(config)
    exported = _served_vllm_metrics(lora=adapters) if engine == "vllm" else _llamacpp_metrics()
    assert referenced and referenced <= exported, referenced - exported
    assert ("vllm:lora_requests_info" in referenced) == adapters


def test_the_config_takes_the_engines_metric_names_from_the_catalog() -> None:
    entry = r.engine_metrics("vllm", adapters=False)
    vllm = engine_named("vllm")
    assert entry["queuedRequestsSpec"] == vllm.exposed_metric("queue_length") == "vllm:num_requests_waiting"
    assert entry["kvUsageSpec"] == vllm.exposed_metric("kv_cache_usage")
    assert entry["loraSpec"] == ""  # vLLM exports it only with LoRA enabled
    assert r.engine_metrics("llamacpp", adapters=False)["kvUsageSpec"] == ""


# ---- refusals --------------------------------------------------------------------------------------------------

def test_a_scorer_the_engine_cannot_feed_is_refused_and_serving_goes_on() -> None:
    children, refusal = _render(_spec("llamacpp", {"scorers": ["prefix", "kv-cache"]}))
    assert refusal is not None and refusal.reason == "ScorersUnavailable"
    assert refusal.message == ("routing.inferencePool.scorers: llamacpp exports no metric for kv-cache (needs "
                               "kv_cache_usage); leave scorers empty for the engine's defaults")
    assert set(children) >= {("Deployment", "chat"), ("Service", "chat")}
    assert ("InferencePool", "chat") not in children


def test_without_the_crd_routing_is_refused_with_the_install_command() -> None:
    children, refusal = _render(_spec(), inference_pool_served=False)
    assert refusal is not None and refusal.reason == "InferencePoolNotInstalled"
    assert "kubectl apply -f https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/download/" \
           in refusal.message
    assert "the model serves through the Service chat meanwhile" in refusal.message
    assert ("Deployment", "chat") in children and not [k for k in children if k[1].startswith("chat-")]


def test_gateway_mode_without_gateway_api_and_an_operator_without_routing_are_refused() -> None:
    _, refusal = _render(_spec(routing=GATEWAY), httproute_served=False)
    assert refusal is not None and refusal.reason == "GatewayAPINotInstalled"
    assert _render(_spec(), httproute_served=False)[1] is None  # standalone needs no HTTPRoute
    _, refusal = _render(_spec(), epp_cluster_role="")
    assert refusal is not None and refusal.reason == "RoutingNotEnabled"
    assert "Helm value routing.enabled" in refusal.message


def test_routing_children_are_deleted_when_routing_is_turned_off() -> None:
    children, _ = _render(_spec())
    live = [{**c, "metadata": {**c["metadata"], "ownerReferences": [{"controller": True, "uid": "uid-1"}]}}
            for c in children.values()]
    plain = Gemma4DeploymentSpec.model_validate({**_spec().model_dump(by_alias=True), "routing": {}})
    stale = {(k.kind, k.name) for k in stale_children(_render(plain)[0].values(), live, "uid-1")}
    assert stale == {k for k in children if k[0] != "PodDisruptionBudget" and k != ("Deployment", "chat")
                     and k != ("Service", "chat")}


# ---- RoutingReady ----------------------------------------------------------------------------------------------

def _pool(*conditions: tuple[str, str, str]) -> dict[str, Any]:
    return {"status": {"parents": [{"parentRef": {"name": "inference-gateway", "namespace": "gateways"},
                                    "conditions": [{"type": t, "status": s, "reason": why, "message": "m"}
                                                   for t, s, why in conditions]}]}}


READY_EPP = {"status": {"readyReplicas": 1}}


def test_routing_ready_in_standalone_mode_follows_the_picker_and_moves_the_endpoint() -> None:
    spec = _spec()
    waiting = routing_state(OWNER, spec, True, None, None, {"status": {}})
    assert waiting is not None and not waiting.condition.true
    assert waiting.condition.reason == "EndpointPickerNotReady"
    assert waiting.endpoint == "http://chat.ml.svc:8000/v1"
    ready = routing_state(OWNER, spec, True, None, None, READY_EPP)
    assert ready is not None and ready.condition.true and ready.condition.type == ROUTING_READY
    assert ready.endpoint == "http://chat-router.ml.svc:8081/v1"


@pytest.mark.parametrize(("pool", "ok", "reason"), [
    (None, False, "WaitingForGateway"),
    (_pool(("Accepted", "True", "Accepted"), ("ResolvedRefs", "True", "ResolvedRefs")), True, "Accepted"),
    (_pool(("Accepted", "False", "NotSupportedByParent")), False, "GatewayNotAccepted"),
    (_pool(("Accepted", "True", "Accepted"), ("ResolvedRefs", "False", "InvalidExtensionRef")), False,
     "GatewayRefsNotResolved"),
])
def test_routing_ready_in_gateway_mode_follows_the_pools_parent_status(pool: Any, ok: bool, reason: str) -> None:
    state = routing_state(OWNER, _spec(routing=GATEWAY), True, None, pool, READY_EPP)
    assert state is not None and state.condition.true is ok and state.condition.reason == reason
    assert "Gateway gateways/inference-gateway" in state.condition.message


def test_routing_ready_is_absent_without_routing_and_false_with_a_refusal() -> None:
    plain = Gemma4DeploymentSpec.model_validate({"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}})
    assert routing_state(OWNER, plain, True, None, None, None) is None
    refused = routing_state(OWNER, _spec(), True, r.RoutingRefusal("InferencePoolNotInstalled", "install it"),
                            None, None)
    assert refused is not None and refused.condition.status == "False"
    assert refused.endpoint == "http://chat.ml.svc:8000/v1"


def test_the_api_refuses_gateway_without_a_gateway_ref_in_words() -> None:
    with pytest.raises(ValueError, match="gatewayRef: mode gateway needs the Gateway to attach the HTTPRoute to"):
        InferencePoolRouting.model_validate({"mode": "gateway"})


def test_the_desired_state_cache_keeps_why_routing_is_refused() -> None:
    """A reconcile served from the operator's desired-state cache must still know the refusal (else RoutingReady
    would read as if the routing children existed)."""
    from gemma4_operator.config import OperatorConfig
    from gemma4_operator.controller.context import CachedDesired
    from gemma4_operator.reconcile.desired import desired_state, parse_parent

    body = {"apiVersion": "serving.gemma4.dev/v1alpha1", "kind": "Gemma4Deployment",
            "metadata": {"name": "chat", "namespace": "ml"}, "spec": _spec().model_dump(by_alias=True)}
    options = RenderOptions(routing=r.RoutingCluster(inference_pool_served=False))
    desired = desired_state(parse_parent(body), "uid-1", FACTS, OperatorConfig(), options)
    assert desired.routing_refusal is not None
    assert CachedDesired.of("fingerprint", desired).desired() == desired
