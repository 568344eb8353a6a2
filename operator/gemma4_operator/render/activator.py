"""The wake path's children of an object that may scale to zero (``autoscaling.minReplicaCount: 0``). Pure.

- Deployment ``NAME-activator``: one small pod running ``gemma4-operator activator`` from the operator's image
  (Pod Security restricted, no service account token: it needs no Kubernetes API access).
- Service ``NAME-replicas``: headless, over the serving pods. Its DNS name resolves to the Ready serving pods only,
  so it is where the activator forwards held requests and how it sees that a replica serves.
- NetworkPolicy ``NAME-activator`` (with the object's NetworkPolicy): the activator's ports take what the serving
  pods' port takes, from the same peers.

The object's Service ``NAME`` selects the activator's pods while the Deployment has no ready replica and the serving
pods otherwise (:func:`routed_service`, decided by ``autoscaling.activator.routes_to_activator``): at zero the
Service still answers, and with a replica serving the activator is out of the data path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.autoscaling.activator import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_HELD
from gemma4_operator.engines.base import EngineContainer, K8sObject
from gemma4_operator.planner.plan import Plan
from gemma4_operator.render.network_policy import API_VERSION as NETWORK_POLICY_API_VERSION
from gemma4_operator.render.network_policy import ingress_peers

ACTIVATOR_IMAGE_KEY = "activator"  # --image activator=IMAGE (the chart passes the operator's own image)
DEFAULT_ACTIVATOR_IMAGE = "ghcr.io/gemma4-operator/gemma4-operator:0.1.0"  # the chart's appVersion
ACTIVATOR_COMPONENT = "activator"
ACTIVATOR_APP = "gemma4-activator"
COMPONENT_LABEL = "app.kubernetes.io/component"
NAME_LABEL = "app.kubernetes.io/name"
PORT, ADMIN_PORT = 8080, 9091
UID = 65532  # the operator image's user (Dockerfile USER)
# The activator's own memory is small; on top, the bodies it may hold at once.
BASE_MEMORY_MIB = 64


def scales_to_zero(spec: Gemma4DeploymentSpec) -> bool:
    return spec.autoscaling is not None and spec.autoscaling.min_replica_count == 0


def activator_name(name: str) -> str:
    return f"{name}-activator"


def replicas_service_name(name: str) -> str:
    return f"{name}-replicas"


def activator_selector(serving_selector: Mapping[str, str]) -> dict[str, str]:
    return {**serving_selector, NAME_LABEL: ACTIVATOR_APP}


def is_activator_object(obj: Mapping[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT_LABEL) == ACTIVATOR_COMPONENT


def routed_service(service: K8sObject, to_activator: bool) -> K8sObject:
    """The object's Service selecting the activator's pods (to_activator) or, as rendered, the serving pods."""
    if not to_activator:
        return service
    spec = service["spec"]
    return {**service, "spec": {**spec, "selector": activator_selector(spec["selector"])}}


def wake_seconds(spec: Gemma4DeploymentSpec, plan: Plan) -> int:
    """The expected start of a woken replica: a warm start where the model cache (and the compile cache on it)
    is shared by every pod, else a first start (planner: Plan.start)."""
    return max(1, plan.start.warm_s if spec.storage.model_cache is not None else plan.start.first_s)


def routed_pool(pool: K8sObject) -> K8sObject:
    """The object's InferencePool (routing) following its Service: at zero the activator's pods are the pool's only
    endpoint, on the activator's requests port, so the endpoint picker sends every request there to be held."""
    spec = pool["spec"]
    selector = activator_selector(spec["selector"]["matchLabels"])
    return {**pool, "spec": {**spec, "selector": {"matchLabels": selector}, "targetPorts": [{"number": PORT}]}}


def activator_args(namespace: str, name: str, spec: Gemma4DeploymentSpec, plan: Plan,
                   engine: EngineContainer) -> list[str]:
    ready_path = str(((engine.readiness_probe or {}).get("httpGet") or {}).get("path") or "/health")
    return [f"--upstream=http://{replicas_service_name(name)}.{namespace}.svc:{plan.port}",
            f"--ready-path={ready_path}",
            f"--cold-start-seconds={wake_seconds(spec, plan)}",
            f"--hold-seconds={max(1, plan.startup_budget_s, wake_seconds(spec, plan))}",
            f"--max-held={DEFAULT_MAX_HELD}", f"--max-body-bytes={DEFAULT_MAX_BODY_BYTES}",
            f"--port={PORT}", f"--admin-port={ADMIN_PORT}"]


def _metadata(common: Mapping[str, Any], name: str, labels: Mapping[str, str]) -> K8sObject:
    meta: K8sObject = {"name": name, "namespace": common["namespace"], "labels": dict(labels)}
    if common["owner_references"]:
        meta["ownerReferences"] = common["owner_references"]
    return meta


def _container(image: str, args: list[str]) -> K8sObject:
    memory = f"{BASE_MEMORY_MIB + math.ceil(DEFAULT_MAX_HELD * DEFAULT_MAX_BODY_BYTES / 2**20)}Mi"
    probe = {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10, "failureThreshold": 3}
    return {"name": ACTIVATOR_COMPONENT, "image": image, "imagePullPolicy": "IfNotPresent",
            "command": ["gemma4-operator", "activator"], "args": args,
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"},
                      {"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "50m", "memory": f"{BASE_MEMORY_MIB}Mi"}, "limits": {"memory": memory}},
            "readinessProbe": probe, "livenessProbe": probe,
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                "readOnlyRootFilesystem": True}}


def _deployment(common: Mapping[str, Any], labels: Mapping[str, str], image: str, args: list[str]) -> K8sObject:
    selector = activator_selector(common["selector"])
    pod = {"automountServiceAccountToken": False, "enableServiceLinks": False,
           "securityContext": {"runAsNonRoot": True, "runAsUser": UID, "runAsGroup": UID,
                               "seccompProfile": {"type": "RuntimeDefault"}},
           "containers": [_container(image, args)]}
    # the conventional scrape annotations: KEDA's activation trigger reads the held requests from Prometheus
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(ADMIN_PORT),
                   "prometheus.io/path": "/metrics"}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": _metadata(common, activator_name(common["name"]), labels),
            "spec": {"replicas": 1, "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": dict(labels), "annotations": annotations}, "spec": pod}}}


def _replicas_service(common: Mapping[str, Any], labels: Mapping[str, str], port: int) -> K8sObject:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": _metadata(common, replicas_service_name(common["name"]), labels),
            "spec": {"clusterIP": "None", "selector": dict(common["selector"]), "publishNotReadyAddresses": False,
                     "ports": [{"name": "http", "port": port, "targetPort": "http", "protocol": "TCP"}]}}


def _network_policy(common: Mapping[str, Any], labels: Mapping[str, str], spec: Gemma4DeploymentSpec,
                    operator_namespace: str) -> K8sObject:
    ports = [{"protocol": "TCP", "port": p} for p in (PORT, ADMIN_PORT)]
    return {"apiVersion": NETWORK_POLICY_API_VERSION, "kind": "NetworkPolicy",
            "metadata": _metadata(common, activator_name(common["name"]), labels),
            "spec": {"podSelector": {"matchLabels": activator_selector(common["selector"])},
                     "policyTypes": ["Ingress"],
                     "ingress": [{"from": ingress_peers(spec, operator_namespace), "ports": ports}]}}


def activator_children(common: Mapping[str, Any], spec: Gemma4DeploymentSpec, plan: Plan, engine: EngineContainer,
                       image: str, network_policy: bool, operator_namespace: str) -> list[K8sObject]:
    """``common``: the children's name, namespace, labels, ownerReferences and serving-pod selector."""
    labels = {**common["labels"], **activator_selector(common["selector"]), COMPONENT_LABEL: ACTIVATOR_COMPONENT}
    args = activator_args(common["namespace"], common["name"], spec, plan, engine)
    children = [_deployment(common, labels, image or DEFAULT_ACTIVATOR_IMAGE, args),
                _replicas_service(common, labels, plan.port)]
    if network_policy:
        children.append(_network_policy(common, labels, spec, operator_namespace))
    return children
