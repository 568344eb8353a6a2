"""The routing children as objects (render.routing holds the choices: scorers, the EPP config, sizing, refusals).

``common`` is the children's name, namespace, labels, ownerReferences and serving-pod selector, as
render.children computes them for every child.
"""

from __future__ import annotations

import functools
from typing import Any

import jinja2
import yaml

from gemma4_operator.api import Gemma4DeploymentSpec, InferencePoolRouting, RoutingMode
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines.base import K8sObject
from gemma4_operator.planner.plan import Plan
from gemma4_operator.render import routing as r
from gemma4_operator.render.pod_security import DEFAULT_GID, DEFAULT_UID, container_security_context

EPP_CONTAINER = "epp"
ENVOY_CONTAINER = "envoy"
RBAC_API_VERSION = "rbac.authorization.k8s.io/v1"


def routing_render(common: dict[str, Any], spec: Gemma4DeploymentSpec, plan: Plan, cluster: r.RoutingCluster,
                   metrics_path: str, *, adapters: bool) -> tuple[list[K8sObject], r.RoutingRefusal | None]:
    """The routing children of an object that asks for routing, or none and why (serving goes on)."""
    routing = r.wants_routing(spec)
    if routing is None:
        return [], None
    refusal = (r.cluster_refusal(common["name"], routing, cluster)
               or _engine_refusal(common["name"], spec, plan, routing, metrics_path))
    if refusal is not None:
        return [], refusal
    scorers = r.chosen_scorers(engine_named(plan.engine), routing, adapters)
    config = r.epp_config(plan.engine, scorers, metrics_path, adapters=adapters)
    children = [inference_pool(common, plan.port, routing), epp_service(common),
                epp_config_map(common, routing, config), service_account(common),
                role_binding(common, cluster.epp_cluster_role), epp_deployment(common, spec, routing)]
    if routing.mode is RoutingMode.STANDALONE:
        children.append(router_service(common))
    else:
        children.append(http_route(common, routing))
    return children, None


def _engine_refusal(name: str, spec: Gemma4DeploymentSpec, plan: Plan, routing: InferencePoolRouting,
                    metrics_path: str) -> r.RoutingRefusal | None:
    scorers = r.scorer_refusal(plan.engine, routing)
    if scorers is not None:
        return r.RoutingRefusal("ScorersUnavailable", scorers)
    key_guards_metrics = not engine_named(plan.engine).info.api_key.is_open(metrics_path)
    if spec.serving.api_key_secret_ref is not None and key_guards_metrics:
        return r.RoutingRefusal("MetricsNeedAPIKey", (
            f"serving.apiKeySecretRef: {plan.engine} requires the API key on {metrics_path}, where the endpoint "
            "picker reads each replica's load, and the operator hands no tenant Secret to it; remove the API key "
            f"or spec.routing.inferencePool; the model serves through the Service {name} meanwhile"))
    return None


def _metadata(common: dict[str, Any], name: str, component: str = r.EPP_COMPONENT) -> K8sObject:
    meta: K8sObject = {"name": name, "namespace": common["namespace"],
                       "labels": {**common["labels"], "app.kubernetes.io/component": component}}
    if common["owner_references"]:
        meta["ownerReferences"] = common["owner_references"]
    return meta


def inference_pool(common: dict[str, Any], port: int, routing: InferencePoolRouting) -> K8sObject:
    """The pool over the serving pods (the Service NAME's selector) with the EPP as its endpoint picker."""
    ports = r.routing_catalog().ports
    return {"apiVersion": r.POOL_API_VERSION, "kind": "InferencePool",
            "metadata": _metadata(common, common["name"], "server"),
            "spec": {"selector": {"matchLabels": dict(common["selector"])},
                     "targetPorts": [{"number": port}],
                     "endpointPickerRef": {"group": "", "kind": "Service", "name": r.epp_name(common["name"]),
                                           "port": {"number": ports.ext_proc},
                                           "failureMode": routing.failure_mode.value}}}


def epp_service(common: dict[str, Any]) -> K8sObject:
    ports = r.routing_catalog().ports
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(common, r.epp_name(common["name"])),
            "spec": {"selector": r.epp_pod_labels(common["name"]),
                     "ports": [{"name": "grpc-ext-proc", "port": ports.ext_proc, "targetPort": ports.ext_proc,
                                "protocol": "TCP", "appProtocol": "http2"},
                               {"name": "http-metrics", "port": ports.metrics, "targetPort": ports.metrics,
                                "protocol": "TCP"}]}}


def router_service(common: dict[str, Any]) -> K8sObject:
    """Standalone mode: where clients go (the Envoy sidecar's listener)."""
    port = r.routing_catalog().ports.router
    return {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(common, r.router_name(common["name"])),
            "spec": {"selector": r.epp_pod_labels(common["name"]),
                     "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}]}}


def http_route(common: dict[str, Any], routing: InferencePoolRouting) -> K8sObject:
    """Gateway mode: every path of the Gateway's listener to the InferencePool."""
    ref = routing.gateway_ref
    assert ref is not None  # the API requires gatewayRef in mode gateway
    parent: K8sObject = {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref.name,
                         **({"namespace": ref.namespace} if ref.namespace else {}),
                         **({"sectionName": ref.section_name} if ref.section_name else {})}
    return {"apiVersion": r.HTTPROUTE_API_VERSION, "kind": "HTTPRoute",
            "metadata": _metadata(common, common["name"], "server"),
            "spec": {"parentRefs": [parent],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                                "backendRefs": [{"group": r.POOL_GROUP, "kind": "InferencePool",
                                                 "name": common["name"]}],
                                "timeouts": {"request": r.REQUEST_TIMEOUT}}]}}


def epp_config_map(common: dict[str, Any], routing: InferencePoolRouting, config: K8sObject) -> K8sObject:
    data = {r.EPP_CONFIG_FILE: yaml.safe_dump(config, sort_keys=False)}
    if routing.mode is RoutingMode.STANDALONE:
        data[r.ENVOY_CONFIG_FILE] = envoy_bootstrap(routing.failure_mode.value == "FailOpen")
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(common, r.epp_name(common["name"])),
            "data": data}


@functools.cache
def envoy_bootstrap(fail_open: bool) -> str:
    """Standalone mode's Envoy (render/templates/envoy-router.yaml.j2), its ports from the catalog."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("gemma4_operator.render", "templates"),
                             undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)
    ports = r.routing_catalog().ports
    return env.get_template("envoy-router.yaml.j2").render(
        envoy_ready_port=ports.envoy_ready, router_port=ports.router, ext_proc_port=ports.ext_proc,
        request_timeout=r.REQUEST_TIMEOUT, fail_open=str(fail_open).lower())


def service_account(common: dict[str, Any]) -> K8sObject:
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _metadata(common, r.epp_name(common["name"]))}


def role_binding(common: dict[str, Any], cluster_role: str) -> K8sObject:
    """The EPP's ServiceAccount bound, in this namespace only, to the ClusterRole the chart ships for it."""
    return {"apiVersion": RBAC_API_VERSION, "kind": "RoleBinding",
            "metadata": _metadata(common, r.epp_name(common["name"])),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role},
            "subjects": [{"kind": "ServiceAccount", "name": r.epp_name(common["name"]),
                          "namespace": common["namespace"]}]}


def epp_deployment(common: dict[str, Any], spec: Gemma4DeploymentSpec, routing: InferencePoolRouting) -> K8sObject:
    """One EPP replica (its prefix index lives in memory: Recreate, never two at once), with the Envoy sidecar in
    standalone mode; Pod Security restricted like every pod the operator creates."""
    name = common["name"]
    labels = r.epp_pod_labels(name)
    containers = [_epp_container(common, spec)]
    if routing.mode is RoutingMode.STANDALONE:
        containers.append(_envoy_container())
    pod = {"serviceAccountName": r.epp_name(name),
           "securityContext": {"runAsNonRoot": True, "runAsUser": DEFAULT_UID, "runAsGroup": DEFAULT_GID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": containers,
           "volumes": [{"name": "config", "configMap": {"name": r.epp_name(name)}}],
           **_scheduling(spec)}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(common, r.epp_name(name)),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def _scheduling(spec: Gemma4DeploymentSpec) -> K8sObject:
    """The serving pods' pull secrets and node selector also hold for the EPP (a private mirror, a node pool);
    never their GPU tolerations or accelerator affinity."""
    overrides = spec.pod_template.spec
    settings: K8sObject = {"imagePullSecrets": [s.model_dump() for s in overrides.image_pull_secrets],
                           "nodeSelector": dict(overrides.node_selector)}
    return {k: v for k, v in settings.items() if v}


def _grpc_probe(port: int, service: str, period: int) -> K8sObject:
    return {"grpc": {"port": port, "service": service}, "periodSeconds": period}


def _epp_container(common: dict[str, Any], spec: Gemma4DeploymentSpec) -> K8sObject:
    catalog = r.routing_catalog()
    ports = catalog.ports
    return {"name": EPP_CONTAINER, "image": catalog.images.epp, "imagePullPolicy": "IfNotPresent",
            "args": ["--pool-name", common["name"], "--pool-namespace", common["namespace"],
                     "--pool-group", r.POOL_GROUP, "--config-file", f"{r.CONFIG_MOUNT}/{r.EPP_CONFIG_FILE}",
                     "--grpc-port", str(ports.ext_proc), "--grpc-health-port", str(ports.health),
                     "--metrics-port", str(ports.metrics),
                     # no TokenReview/SubjectAccessReview rights for its /metrics: the ClusterRole stays small
                     "--metrics-endpoint-auth=false"],
            "ports": [{"name": "grpc", "containerPort": ports.ext_proc},
                      {"name": "grpc-health", "containerPort": ports.health},
                      {"name": "metrics", "containerPort": ports.metrics}],
            "readinessProbe": _grpc_probe(ports.health, "readiness", 2),
            "livenessProbe": _grpc_probe(ports.health, "liveness", 10),
            "resources": r.epp_resources(r.most_replicas(spec)),
            "securityContext": container_security_context(True),
            "volumeMounts": [{"name": "config", "mountPath": r.CONFIG_MOUNT, "readOnly": True}]}


def _envoy_container() -> K8sObject:
    catalog = r.routing_catalog()
    ports = catalog.ports
    return {"name": ENVOY_CONTAINER, "image": catalog.images.envoy, "imagePullPolicy": "IfNotPresent",
            "args": ["-c", f"{r.CONFIG_MOUNT}/{r.ENVOY_CONFIG_FILE}", "--log-level", "warn"],
            "ports": [{"name": "http", "containerPort": ports.router},
                      {"name": "ready", "containerPort": ports.envoy_ready}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": ports.envoy_ready}, "periodSeconds": 5},
            "resources": r.envoy_resources(),
            "securityContext": container_security_context(True),
            "volumeMounts": [{"name": "config", "mountPath": r.CONFIG_MOUNT, "readOnly": True}]}
