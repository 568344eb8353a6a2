"""The optional NetworkPolicy of a Gemma4Deployment (spec.networkPolicy; the operator's --network-policy default):
ingress to the serving pods' port only from pods of the same namespace, from the operator's namespace (its
built-in autoscaler scrapes each pod's /metrics) and from the peers the spec names. Other ports of the serving
pods get no ingress at all; the download Job's pods are not selected (they take no connections).

A NetworkPolicy is enforced by the cluster's network plugin (Calico, Cilium, ...); without one it is stored and
has no effect.
"""

from __future__ import annotations

from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.engines.base import K8sObject

API_VERSION = "networking.k8s.io/v1"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set on every namespace by the API server (1.21+)


def wants_network_policy(spec: Gemma4DeploymentSpec, default: bool) -> bool:
    chosen = spec.network_policy.enabled if spec.network_policy is not None else None
    return default if chosen is None else chosen


def ingress_peers(spec: Gemma4DeploymentSpec, operator_namespace: str) -> list[K8sObject]:
    """Every pod of this namespace, the operator's namespace (unknown to an offline render: left out), then the
    spec's peers."""
    peers: list[K8sObject] = [{"podSelector": {}}]
    if operator_namespace:
        peers.append({"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: operator_namespace}}})
    extra = spec.network_policy.ingress_from if spec.network_policy is not None else []
    return peers + [dict(p) for p in extra]


def network_policy(common: dict[str, Any], spec: Gemma4DeploymentSpec, port: int,
                   operator_namespace: str) -> K8sObject:
    """``common``: the children's name, namespace, labels, ownerReferences and serving-pod selector."""
    metadata: K8sObject = {"name": common["name"], "namespace": common["namespace"], "labels": dict(common["labels"])}
    if common["owner_references"]:
        metadata["ownerReferences"] = common["owner_references"]
    return {"apiVersion": API_VERSION, "kind": "NetworkPolicy", "metadata": metadata,
            "spec": {"podSelector": {"matchLabels": dict(common["selector"])}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": ingress_peers(spec, operator_namespace),
                                  "ports": [{"protocol": "TCP", "port": port}]}]}}
