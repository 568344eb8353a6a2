"""Rendering: a Plan and its Gemma4Deployment -> the child objects as dicts.

Templates hold the shape of each object; this module computes the values that go in them.
Values enter the templates through ``tojson`` (JSON is YAML), so no user string can break
the document structure.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml

from gemma4_operator.api import API_VERSION, KIND, Gemma4DeploymentSpec, RetainPolicy
from gemma4_operator.catalog import Accelerator
from gemma4_operator.engines import engine as engine_named
from gemma4_operator.engines.base import EngineContainer, K8sObject
from gemma4_operator.planner.plan import Plan
from gemma4_operator.planner.sources import MODEL_MOUNT
from gemma4_operator.planner.weights import WeightsMode
from gemma4_operator.render.activator import activator_children, scales_to_zero
from gemma4_operator.render.download import (
    COMPONENT_LABEL,
    DOWNLOAD_COMPONENT,
    adapter_volumes,
    adapters_init_container,
    download_refusal,
    downloader_image,
    job_values,
    runs_download_job,
)
from gemma4_operator.render.network_policy import network_policy, wants_network_policy
from gemma4_operator.render.pod_security import (
    container_security_context,
    pod_security_context,
    scratch_volumes,
    serving_read_only_root,
)
from gemma4_operator.render.routing import RoutingCluster, RoutingRefusal
from gemma4_operator.render.routing_objects import routing_render
from gemma4_operator.weights.outcome import required_cache_gib

SERVICE_PORT = 8000
APP_NAME = "gemma4"
MANAGER = "gemma4-operator"
VARIANT_LABEL = "serving.gemma4.dev/variant"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TOLERATION = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
MEMORY_GIB_PER_GPU = 16
SERVING_CONTAINER = "server"  # the engine's container in the serving pod


@dataclass(frozen=True)
class Owner:
    """The Gemma4Deployment the children belong to."""

    name: str
    namespace: str
    uid: str

    @property
    def references(self) -> list[K8sObject]:
        """Empty without a uid (offline render): a reference to a uid that does not exist would
        make the garbage collector delete the child."""
        if not self.uid:
            return []
        return [{"apiVersion": API_VERSION, "kind": KIND, "name": self.name, "uid": self.uid,
                 "controller": True, "blockOwnerDeletion": True}]


@dataclass(frozen=True)
class RenderOptions:
    """Cluster capabilities that change the shape of the output."""

    pdb_api_version: str = "policy/v1"
    keda_served: bool = True  # keda.sh ScaledObjects exist (discovery at operator startup)
    prometheus_url: str = ""  # --prometheus-url, for KEDA's Prometheus triggers
    # a PodMonitor per object (Prometheus Operator's CRDs served and --engine-monitors auto); otherwise the
    # pods carry prometheus.io/* scrape annotations
    pod_monitors: bool = False
    # volumes[].image is served (a dry run at the first oci:// object; offline renders assume a current server)
    image_volumes: bool = True
    image_volumes_refusal: str = ""  # why not, in words (the server's version)
    downloader_image: str = ""  # --image downloader=IMAGE; empty: the catalog's
    network_policy: bool = False  # --network-policy: a NetworkPolicy per object unless its spec says otherwise
    operator_namespace: str = ""  # where the operator runs (its autoscaler's scrapes come from there)
    activator_image: str = ""  # --image activator=IMAGE (the chart: the operator's own image); empty: the default
    # spec.routing.inferencePool: what the install and the cluster offer
    routing: RoutingCluster = dataclasses.field(default_factory=RoutingCluster)


KEDA_API_VERSION = "keda.sh/v1alpha1"
PODMONITOR_API_VERSION = "monitoring.coreos.com/v1"
METRICS_PATH = "/metrics"  # both engines serve Prometheus metrics there (llama-server with --metrics)
INSTANCE_LABEL = "app.kubernetes.io/instance"
# target label of the engine series -> the serving pod label it is copied from
ENGINE_TARGET_LABELS = {"name": INSTANCE_LABEL, "variant": VARIANT_LABEL}


def image_volumes_refusal(server: str = "this cluster's API server") -> str:
    """Why an oci:// source cannot be mounted, naming the server (with its version once the operator knows it)."""
    return (f"image volumes (volumes[].image) are not served by {server}: Kubernetes 1.35+ serves them by default "
            "(1.33-1.34 behind the ImageVolume feature gate); use hf:// with storage.modelCache instead")


IMAGE_VOLUME_PROBE = "gemma4-operator-image-volume-check"


def image_volume_probe(namespace: str) -> K8sObject:
    """A Deployment with an image volume, for a dry-run create: a server that does not serve
    volumes[].image (older than 1.31, or the ImageVolume gate off) drops the field from the answer."""
    pod = {"containers": [{"name": "probe", "image": "registry.k8s.io/pause:3.10",
                           "volumeMounts": [{"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}]}],
           "volumes": [{"name": "model", "image": {"reference": "registry.k8s.io/pause:3.10",
                                                   "pullPolicy": "IfNotPresent"}}]}
    labels = {"app.kubernetes.io/name": IMAGE_VOLUME_PROBE}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": IMAGE_VOLUME_PROBE, "namespace": namespace, "labels": labels},
            "spec": {"replicas": 0, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": pod}}}


def keeps_image_volume(answer: K8sObject) -> bool:
    volumes = answer.get("spec", {}).get("template", {}).get("spec", {}).get("volumes") or []
    return any(isinstance(v, dict) and v.get("image") for v in volumes)


class UnrenderableError(ValueError):
    """The spec asks for something this cluster or configuration cannot provide (e.g. KEDA is not
    installed); the message is for Planned=False."""


def selector_labels(name: str) -> dict[str, str]:
    """Stable across spec changes: Deployment selectors are immutable."""
    return {"app.kubernetes.io/name": APP_NAME, INSTANCE_LABEL: name}


def selector_string(name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in selector_labels(name).items())


def child_labels(name: str, variant: str) -> dict[str, str]:
    return {**selector_labels(name), "app.kubernetes.io/managed-by": MANAGER,
            "app.kubernetes.io/component": "server", VARIANT_LABEL: variant}


@functools.cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("gemma4_operator.render", "templates"),
        undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
    )


# libyaml's loader when PyYAML was built with it: the pure-Python one dominates the cost of a
# reconcile (~15 ms per Deployment); both parse the templates' JSON-valued YAML identically.
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _render(template: str, **values: Any) -> K8sObject:
    loaded: K8sObject = yaml.load(_environment().get_template(template).render(**values), Loader=YAML_LOADER)
    return loaded


def _accelerator_terms(accel: Accelerator) -> list[K8sObject]:
    """One nodeSelectorTerm per labelling scheme (terms are ORed): GFD product or GKE accelerator."""
    arch = [{"key": "kubernetes.io/arch", "operator": "In", "values": [accel.arch]}]
    if not accel.is_gpu:
        return []
    terms = [{"matchExpressions": [{"key": accel.gfd_product_label, "operator": "In",
                                    "values": list(accel.gfd_products)}, *arch]}]
    if accel.gke:
        terms.append({"matchExpressions": [{"key": "cloud.google.com/gke-accelerator", "operator": "In",
                                            "values": list(accel.gke)}, *arch]})
    return terms


def _affinity(plan: Plan, spec: Gemma4DeploymentSpec) -> K8sObject:
    """The planner's node requirement ANDed with the user's: every pair of terms is merged."""
    user = dict(spec.pod_template.spec.affinity)
    ours = _accelerator_terms(plan.accelerator)
    if not ours:
        return user
    node_affinity = dict(user.get("nodeAffinity") or {})
    required = node_affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or {}
    user_terms = required.get("nodeSelectorTerms") or [{}]
    merged = [{"matchExpressions": [*o["matchExpressions"], *u.get("matchExpressions", [])],
               **({"matchFields": u["matchFields"]} if u.get("matchFields") else {})}
              for o in ours for u in user_terms]
    node_affinity["requiredDuringSchedulingIgnoredDuringExecution"] = {"nodeSelectorTerms": merged}
    return {**user, "nodeAffinity": node_affinity}


def model_cache_gib(plan: Plan) -> int:
    """What the model cache must hold: the checkpoint's download (GGUF and mmproj for llama.cpp) plus 20%
    for the repository's small files and the engines' own caches under it. The Hub writes each file once
    (a blob, renamed from `.incomplete`), so the peak is the total; pvc:// and oci:// weights are mounted,
    not downloaded."""
    if plan.weights.mode in (WeightsMode.VOLUME, WeightsMode.IMAGE):
        return 1
    return required_cache_gib(plan.download_bytes)  # the DiskFull status names the same number


def _resources(spec: Gemma4DeploymentSpec, plan: Plan) -> K8sObject:
    # Without a cache PVC the weights land in the pod's emptyDir: request that much node disk, so the
    # scheduler picks a node where it fits and the kubelet does not evict the pod halfway.
    disk = {} if spec.storage.model_cache is not None else {"ephemeral-storage": f"{model_cache_gib(plan)}Gi"}
    if plan.accelerator.is_gpu:
        gpus = plan.gpus_per_replica
        # the engine's host-side adapter cache (vLLM --max-cpu-loras) on top of the per-GPU host memory
        host_gib = MEMORY_GIB_PER_GPU * gpus + math.ceil(plan.lora_host_gib)
        return {"requests": {"cpu": str(plan.cpu_request_cores), "memory": f"{host_gib}Gi", **disk},
                "limits": {plan.accelerator.resource: str(gpus)}}
    # On CPU the plan's memory need is the pod's memory: request it and cap it.
    memory = f"{math.ceil(plan.memory_needed_gib)}Gi"
    return {"requests": {"cpu": str(plan.cpu_request_cores), "memory": memory, **disk},
            "limits": {"memory": memory}}


def _pod_settings(spec: Gemma4DeploymentSpec, plan: Plan) -> K8sObject:
    """Pod-level fields, left out when empty so server-side apply owns nothing it does not set."""
    overrides = spec.pod_template.spec
    tolerations = ([GPU_TOLERATION] if plan.accelerator.is_gpu else []) + list(overrides.tolerations)
    settings: K8sObject = {
        "serviceAccountName": overrides.service_account_name,
        "priorityClassName": overrides.priority_class_name,
        "runtimeClassName": overrides.runtime_class_name,
        "schedulerName": overrides.scheduler_name,
        "nodeSelector": dict(overrides.node_selector),
        "imagePullSecrets": [s.model_dump() for s in overrides.image_pull_secrets],
        "tolerations": tolerations,
        "affinity": _affinity(plan, spec),
    }
    return {k: v for k, v in settings.items() if v}


def _volumes(name: str, spec: Gemma4DeploymentSpec, plan: Plan, engine: EngineContainer) -> tuple[
        list[K8sObject], list[K8sObject]]:
    cache: K8sObject = ({"name": "cache", "persistentVolumeClaim": {"claimName": f"{name}-model-cache"}}
                        if spec.storage.model_cache is not None else
                        {"name": "cache", "emptyDir": {"sizeLimit": f"{model_cache_gib(plan)}Gi"}})
    volumes, mounts = [cache], list(engine.volume_mounts)
    if engine.shm_size:
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": engine.shm_size}})
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    if plan.source is not None and plan.source.scheme == "pvc":
        volumes.append({"name": "model", "persistentVolumeClaim": {"claimName": plan.source.claim,
                                                                    "readOnly": True}})
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
    if plan.source is not None and plan.source.scheme == "oci":
        # pulled by the container runtime before the container starts and kept in its image store per node
        volumes.append({"name": "model", "image": {"reference": plan.source.image, "pullPolicy": "IfNotPresent"}})
        mounts.append({"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True})
    adapters, adapter_mounts = adapter_volumes(spec)
    scratch, scratch_mounts = scratch_volumes()
    return volumes + adapters + scratch, mounts + adapter_mounts + scratch_mounts


def scrape_annotations(plan: Plan) -> dict[str, str]:
    """The conventional annotations of annotation-based Prometheus scrape configs (no PodMonitor)."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(plan.port), "prometheus.io/path": METRICS_PATH}


def pod_label_meta(label: str) -> str:
    """Prometheus' Kubernetes discovery label of a pod label (every other character becomes ``_``)."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def relabelings() -> list[K8sObject]:
    return [{"sourceLabels": [pod_label_meta(label)], "targetLabel": target, "action": "replace"}
            for target, label in ENGINE_TARGET_LABELS.items()]


def cache_size(spec: Gemma4DeploymentSpec, plan: Plan) -> str:
    cache = spec.storage.model_cache
    if cache is not None and cache.size:
        return cache.size
    return f"{model_cache_gib(plan)}Gi"


def api_key_refusal(spec: Gemma4DeploymentSpec, plan: Plan) -> str | None:
    """An API key on an engine that guards /metrics with it leaves the autoscaler blind: the operator does not
    read tenants' Secrets, so it cannot send the key."""
    info = engine_named(plan.engine).info
    if spec.serving.api_key_secret_ref is None or spec.autoscaling is None or info.api_key.is_open(METRICS_PATH):
        return None
    return (f"serving.apiKeySecretRef: {plan.engine} requires the API key on {METRICS_PATH} too, where autoscaling "
            f"reads its metrics, and the operator does not read Secrets; remove spec.autoscaling or the API key")


def replicas_owned_by_operator(spec: Gemma4DeploymentSpec) -> bool:
    """With autoscaling, replicas belong to the autoscaler and are left out of the applied object."""
    return spec.autoscaling is None


def minimum_replicas(spec: Gemma4DeploymentSpec) -> int:
    return spec.autoscaling.min_replica_count if spec.autoscaling is not None else spec.replicas


def render_children(owner: Owner, spec: Gemma4DeploymentSpec, plan: Plan,
                    options: RenderOptions | None = None) -> list[K8sObject]:
    """Deployment, Service, and when asked for a PVC; a PDB when more than one replica runs; a PodMonitor
    where the cluster serves them; KEDA's ScaledObject for ``backend: keda``; a NetworkPolicy when asked for;
    the activator's children when the object may scale to zero (render.activator); the routing children
    (render.routing_objects) where they can be made."""
    return render_all(owner, spec, plan, options)[0]


def render_all(owner: Owner, spec: Gemma4DeploymentSpec, plan: Plan,
               options: RenderOptions | None = None) -> tuple[list[K8sObject], RoutingRefusal | None]:
    """:func:`render_children`, and why the routing the spec asks for is not rendered (None when it is, or
    when the spec asks for none)."""
    options = options or RenderOptions()
    if plan.weights.mode is WeightsMode.IMAGE and not options.image_volumes:
        refusal = options.image_volumes_refusal or image_volumes_refusal()
        raise UnrenderableError(f"model.source.uri {plan.model_ref}: {refusal}")
    if (key_refusal := api_key_refusal(spec, plan)) is not None:
        raise UnrenderableError(key_refusal)
    if (fetch_refusal := download_refusal(plan)) is not None:
        raise UnrenderableError(fetch_refusal)
    engine = engine_named(plan.engine).container(plan, spec)
    image = options.downloader_image or downloader_image()
    init = adapters_init_container(spec, plan, image)
    labels = child_labels(owner.name, plan.variant)
    common = {"name": owner.name, "namespace": owner.namespace, "labels": labels,
              "owner_references": owner.references, "selector": selector_labels(owner.name)}
    volumes, mounts = _volumes(owner.name, spec, plan, engine)
    pod_labels = {**spec.pod_template.metadata.labels, **labels}
    scrape = {} if options.pod_monitors else scrape_annotations(plan)
    # GPUs are scarce: replace pods in place rather than surging onto GPUs that may not exist.
    strategy = ({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
                if plan.accelerator.is_gpu else {"type": "RollingUpdate"})
    children = [
        _render("deployment.yaml.j2", **common, plan=plan, engine=engine, strategy=strategy,
                container_name=SERVING_CONTAINER, init_containers=[init] if init is not None else [],
                replicas=spec.replicas if replicas_owned_by_operator(spec) else None,
                pod_labels=pod_labels, pod_annotations={**scrape, **spec.pod_template.metadata.annotations},
                pod_settings=_pod_settings(spec, plan), resources=_resources(spec, plan),
                pod_security=pod_security_context(spec),
                container_security=container_security_context(
                    serving_read_only_root(spec, engine.read_only_root_filesystem)),
                volume_mounts=mounts, volumes=volumes),
        _render("service.yaml.j2", **common, service_port=SERVICE_PORT),
    ]
    if spec.storage.model_cache is not None:
        children.append(_pvc(common, spec, plan))
    if runs_download_job(spec, plan):
        children.append(_render("job.yaml.j2", **common, job_labels=download_labels(owner.name, plan.variant),
                                **job_values(owner.name, spec, plan, image)))
    if options.pod_monitors:
        children.append(_render("podmonitor.yaml.j2", **common, metrics_path=METRICS_PATH,
                                relabelings=relabelings()))
    if spec.autoscaling is not None and spec.autoscaling.backend.value == "keda":
        children.append(_scaled_object(owner, spec, plan, labels, options))
    policy = wants_network_policy(spec, options.network_policy)
    if policy:
        children.append(network_policy(common, spec, plan.port, options.operator_namespace))
    if scales_to_zero(spec):
        children += activator_children(common, spec, plan, engine, options.activator_image, policy,
                                       options.operator_namespace)
    if minimum_replicas(spec) > 1 or (spec.autoscaling is not None and spec.autoscaling.max_replica_count > 1):
        children.append(_render("pdb.yaml.j2", **common, pdb_api_version=options.pdb_api_version))
    routed, routing_refusal = routing_render(common, spec, plan, options.routing, METRICS_PATH,
                                             adapters=bool(spec.model.adapters))
    return children + routed, routing_refusal


def _pvc(common: dict[str, Any], spec: Gemma4DeploymentSpec, plan: Plan) -> K8sObject:
    """The cache PVC; owned by the object (deleted with it) only with retainPolicy Delete."""
    cache = spec.storage.model_cache
    assert cache is not None
    owned = common if cache.retain_policy is RetainPolicy.DELETE else {**common, "owner_references": []}
    return _render("pvc.yaml.j2", **owned, cache=cache, cache_size=cache_size(spec, plan))


def download_labels(name: str, variant: str) -> dict[str, str]:
    """The download Job's pods: never the serving pods' selector (the Service must not route to them)."""
    return {**child_labels(name, variant), "app.kubernetes.io/name": f"{APP_NAME}-download",
            COMPONENT_LABEL: DOWNLOAD_COMPONENT}


def _scaled_object(owner: Owner, spec: Gemma4DeploymentSpec, plan: Plan, labels: dict[str, str],
                   options: RenderOptions) -> K8sObject:
    """The KEDA ScaledObject of ``backend: keda``; UnrenderableError when KEDA is absent or a metric
    cannot become a trigger."""
    from gemma4_operator.autoscaling.scaled_object import UnsupportedMetricError, scaled_object_spec
    if not options.keda_served:
        raise UnrenderableError("autoscaling.backend keda: KEDA is not installed in this cluster (the API server "
                                "does not serve scaledobjects.keda.sh); install KEDA or use backend operator")
    try:
        body = scaled_object_spec(spec, plan, engine_named(plan.engine), owner.name, owner.namespace,
                                  options.prometheus_url)
    except UnsupportedMetricError as e:
        raise UnrenderableError(f"autoscaling.backend keda: {e}") from e
    metadata: K8sObject = {"name": owner.name, "namespace": owner.namespace, "labels": dict(labels)}
    if owner.references:
        metadata["ownerReferences"] = owner.references
    return {"apiVersion": KEDA_API_VERSION, "kind": "ScaledObject", "metadata": metadata, "spec": body}


def endpoint(owner: Owner) -> str:
    return f"http://{owner.name}.{owner.namespace}.svc:{SERVICE_PORT}/v1"
