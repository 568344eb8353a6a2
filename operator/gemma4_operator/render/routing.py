"""Request routing (spec.routing.inferencePool): an InferencePool over the serving pods and an endpoint picker.

The Gateway API Inference Extension's endpoint picker (EPP) scores replicas by its prefix-cache index, queue,
KV-cache use and LoRA affinity (catalog/routing.yaml); what it reads from each replica's /metrics is the
engine's own metric names (engines.yaml, through ``Engine.exposed_metric``), never spelled here.

Children, all named from the Gemma4Deployment NAME:
- InferencePool NAME (inference.networking.k8s.io/v1): selector = the serving pods' labels, the engine port,
  endpointPickerRef = the Service NAME-epp.
- NAME-epp: the EPP's Deployment, Service (ext-proc gRPC), ConfigMap (its EndpointPickerConfig, and in
  standalone mode the Envoy sidecar's bootstrap), ServiceAccount, and a RoleBinding to the ClusterRole the
  chart ships for it: the operator binds that role by name (``bind`` on it) and never holds its verbs.
- standalone: the Envoy sidecar in the EPP pod and the Service NAME-router clients call;
  gateway: an HTTPRoute NAME from the user's Gateway to the InferencePool.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec, InferencePoolRouting, RoutingMode, Scorer
from gemma4_operator.catalog import RoutingInfo, load_catalog
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines.base import LORA_INFO, Engine, K8sObject

POOL_GROUP = "inference.networking.k8s.io"
POOL_API_VERSION = f"{POOL_GROUP}/v1"
POOL_PLURAL = "inferencepools"
HTTPROUTE_API_VERSION = "gateway.networking.k8s.io/v1"
HTTPROUTE_PLURAL = "httproutes"
EPP_CONFIG_API_VERSION = "inference.networking.x-k8s.io/v1alpha1"
EPP_SUFFIX = "-epp"
ROUTER_SUFFIX = "-router"
EPP_COMPONENT = "router"
EPP_CONFIG_FILE = "epp.yaml"
ENVOY_CONFIG_FILE = "envoy.yaml"
CONFIG_MOUNT = "/config"
# Streams of reasoning and long contexts run for minutes: the HTTPRoute's request timeout is generous.
REQUEST_TIMEOUT = "3600s"
METRICS_SOURCE = "metrics-data-source"
METRICS_EXTRACTOR = "core-metrics-extractor"
PICKER = "max-score-picker"
PROFILE_HANDLER = "single-profile-handler"


def routing_catalog() -> RoutingInfo:
    return load_catalog().routing


def epp_name(name: str) -> str:
    return name + EPP_SUFFIX


def router_name(name: str) -> str:
    return name + ROUTER_SUFFIX


def epp_pod_labels(name: str) -> dict[str, str]:
    """Never the serving pods' selector (the InferencePool and the Service must not pick the EPP), and without
    the managed-by label: the operator's pod watch is for serving and download pods only."""
    return {"app.kubernetes.io/name": "gemma4-epp", "app.kubernetes.io/instance": name,
            "app.kubernetes.io/component": EPP_COMPONENT}


def wants_routing(spec: Gemma4DeploymentSpec) -> InferencePoolRouting | None:
    return spec.routing.inference_pool


# ---------------------------------------------------------------------------------------
# scorers and the EPP's config
# ---------------------------------------------------------------------------------------


def default_scorers(engine: Engine, adapters: bool) -> tuple[Scorer, ...]:
    """Every scorer whose metric the engine exports; LoRA affinity only where adapters exist."""
    catalog = routing_catalog().scorers
    return tuple(s for s in Scorer if (adapters or not catalog[s.value].adapters_only)
                 and unfed_metric(engine, s) is None)


def unfed_metric(engine: Engine, scorer: Scorer) -> str | None:
    """The catalog metric key a scorer reads that the engine does not export; None when it is fed."""
    key = routing_catalog().scorers[scorer.value].metric
    return key if key is not None and engine.exposed_metric(key) is None else None


def scorer_refusal(engine_name: str, routing: InferencePoolRouting) -> str | None:
    """Why the spec's scorers cannot all be fed by this engine, or None."""
    engine = engine_named(engine_name)
    unfed = [f"{s.value} (needs {key})" for s in routing.scorers if (key := unfed_metric(engine, s)) is not None]
    if not unfed:
        return None
    return (f"routing.inferencePool.scorers: {engine_name} exports no metric for {', '.join(unfed)}; "
            f"leave scorers empty for the engine's defaults")


def chosen_scorers(engine: Engine, routing: InferencePoolRouting, adapters: bool) -> tuple[Scorer, ...]:
    return tuple(routing.scorers) or default_scorers(engine, adapters)


def engine_metrics(engine_name: str, adapters: bool) -> dict[str, str]:
    """The core-metrics-extractor's engineConfigs entry: each spec names the engine's metric, or is empty
    (an empty spec disables that metric in the EPP instead of scraping a name the engine does not export). The
    LoRA metric only where adapters are served: vLLM exports it only with LoRA enabled."""
    engine = engine_named(engine_name)
    keys = {"queuedRequestsSpec": "queue_length", "runningRequestsSpec": "batch_size",
            "kvUsageSpec": "kv_cache_usage", "loraSpec": LORA_INFO}
    specs = {spec: engine.exposed_metric(key) or "" for spec, key in keys.items() if adapters or key != LORA_INFO}
    return {"name": engine_name, **specs, "loraSpec": specs.get("loraSpec", ""), "cacheInfoSpec": ""}


def epp_config(engine_name: str, scorers: tuple[Scorer, ...], metrics_path: str, *, adapters: bool) -> K8sObject:
    """The EndpointPickerConfig: the scorers with their catalog weights, a max-score picker, and the metrics
    data source with this engine's metric names."""
    catalog = routing_catalog().scorers
    plugins = [catalog[s.value].plugin for s in scorers]
    return {
        "apiVersion": EPP_CONFIG_API_VERSION, "kind": "EndpointPickerConfig",
        "plugins": [{"type": PROFILE_HANDLER}, *({"type": p} for p in plugins), {"type": PICKER},
                    {"type": METRICS_SOURCE, "parameters": {"scheme": "http", "path": metrics_path}},
                    {"type": METRICS_EXTRACTOR, "parameters": {"defaultEngine": engine_name,
                                                               "engineConfigs": [engine_metrics(engine_name,
                                                                                                adapters)]}}],
        "schedulingProfiles": [{"name": "default", "plugins": [
            *({"pluginRef": catalog[s.value].plugin, "weight": catalog[s.value].weight} for s in scorers),
            {"pluginRef": PICKER}]}],
    }


def referenced_metrics(config: K8sObject) -> set[str]:
    """Every engine metric name an EndpointPickerConfig reads (for the tests that check them against the
    engine's /metrics)."""
    names: set[str] = set()
    for plugin in config.get("plugins") or []:
        for entry in (plugin.get("parameters") or {}).get("engineConfigs") or []:
            names |= {v for k, v in entry.items() if k.endswith("Spec") and v}
    return names


# ---------------------------------------------------------------------------------------
# sizing
# ---------------------------------------------------------------------------------------


def most_replicas(spec: Gemma4DeploymentSpec) -> int:
    return spec.autoscaling.max_replica_count if spec.autoscaling is not None else spec.replicas


def epp_resources(replicas: int) -> K8sObject:
    r = routing_catalog().epp_resources
    n = max(replicas, 1)
    cpu = min(r.base_cpu_millis + r.cpu_millis_per_replica * n, r.max_cpu_millis)
    memory = min(r.base_memory_mib + r.memory_mib_per_replica * n, r.max_memory_mib)
    return {"requests": {"cpu": f"{cpu}m", "memory": f"{memory}Mi"}, "limits": {"memory": f"{memory}Mi"}}


def envoy_resources() -> K8sObject:
    r = routing_catalog().epp_resources
    return {"requests": {"cpu": f"{r.envoy_cpu_millis}m", "memory": f"{r.envoy_memory_mib}Mi"},
            "limits": {"memory": f"{r.envoy_memory_mib}Mi"}}


# Kinds only routing renders; its Deployment and Services carry the router component label instead.
ROUTING_KINDS = frozenset({"InferencePool", "HTTPRoute", "ConfigMap", "ServiceAccount", "RoleBinding"})
COMPONENT_LABEL = "app.kubernetes.io/component"


def is_routing_child(obj: Mapping[str, Any]) -> bool:
    """A child only routing renders: deleted when routing is turned off or changes mode."""
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return obj.get("kind") in ROUTING_KINDS or labels.get(COMPONENT_LABEL) == EPP_COMPONENT


DEFAULT_EPP_CLUSTER_ROLE = "gemma4-operator-epp"  # the chart's (FULLNAME-epp) under the default release name


@dataclass(frozen=True)
class RoutingCluster:
    """What the cluster and the operator's install offer routing (discovery at startup, re-checked)."""

    # the ClusterRole the chart ships for the EPP (--epp-cluster-role); empty: installed without routing
    epp_cluster_role: str = DEFAULT_EPP_CLUSTER_ROLE
    inference_pool_served: bool = True  # inferencepools.inference.networking.k8s.io/v1
    httproute_served: bool = True  # httproutes.gateway.networking.k8s.io/v1


@dataclass(frozen=True)
class RoutingRefusal:
    """Why an object that asks for routing gets none: the RoutingReady=False reason and message."""

    reason: str
    message: str


def install_command() -> str:
    return f"kubectl apply -f {routing_catalog().crd_manifest}"


def cluster_refusal(name: str, routing: InferencePoolRouting, cluster: RoutingCluster) -> RoutingRefusal | None:
    """What the install or the cluster lacks for this object's routing; the model serves through NAME anyway."""
    serving = f"the model serves through the Service {name} meanwhile"
    if not cluster.epp_cluster_role:
        return RoutingRefusal("RoutingNotEnabled", (
            "the operator was installed without routing (Helm value routing.enabled: the endpoint picker's "
            f"ClusterRole and the operator's permissions for InferencePools); {serving}"))
    if not cluster.inference_pool_served:
        return RoutingRefusal("InferencePoolNotInstalled", (
            f"the API server does not serve {POOL_PLURAL}.{POOL_API_VERSION}: install the Gateway API Inference "
            f"Extension CRDs ({install_command()}); {serving}"))
    if routing.mode is RoutingMode.GATEWAY and not cluster.httproute_served:
        return RoutingRefusal("GatewayAPINotInstalled", (
            f"mode gateway: the API server does not serve {HTTPROUTE_PLURAL}.{HTTPROUTE_API_VERSION}: install "
            f"the Gateway API CRDs and an implementation that supports InferencePool, or use mode standalone; "
            f"{serving}"))
    return None
