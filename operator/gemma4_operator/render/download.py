"""The download Job of storage.modelCache (templates/job.yaml.j2): ``gemma4-operator download`` in the operator's
own image (huggingface_hub's Python API, cli/download.py) fetches the plan's checkpoint and the adapters into the
cache PVC, once, runs the adapter preflight, and reports the outcome (bytes, seconds, the Hub's typed error, one
verdict per adapter) in the termination message. The Job's pod template is immutable: a new checkpoint or adapter
list gets a new Job, told apart by the checkpoint annotation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines.base import SCRATCH_ENV, K8sObject, hub_env, with_user_env
from gemma4_operator.planner.plan import Plan
from gemma4_operator.planner.weights import CACHE_MOUNT, WeightsMode
from gemma4_operator.render.pod_security import container_security_context, pod_security_context, scratch_volumes
from gemma4_operator.weights.artifacts import KIND_DIRS, Artifact, Kind, Manifest
from gemma4_operator.weights.preflight import AdapterRules

DOWNLOAD_COMPONENT = "download"
COMPONENT_LABEL = "app.kubernetes.io/component"
CHECKPOINT_ANNOTATION = "serving.gemma4.dev/checkpoint"
DOWNLOADER_IMAGE_KEY = "downloader"  # --image downloader=IMAGE
BACKOFF_LIMIT = 2
# Children that start engines on the weights: withheld until the download has succeeded.
NEEDS_WEIGHTS = frozenset({"Deployment", "ScaledObject"})
# hf download streams to disk; its memory stays small (hf_xet's chunk buffers included)
RESOURCES: K8sObject = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}


def is_download_pod(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT_LABEL) == DOWNLOAD_COMPONENT


def needs_download(plan: Plan) -> bool:
    return plan.weights.mode is WeightsMode.CACHE


def checkpoint_id(plan: Plan) -> str:
    """What was downloaded, as the Job's annotation: repository, revision and files."""
    w = plan.weights
    files = f" {' '.join(w.download_files)}" if w.download_files else ""
    return f"{w.repo}@{w.revision or 'main'}{files}"


def checkpoint_artifact(plan: Plan) -> Artifact:
    w = plan.weights
    return Artifact(Kind.CHECKPOINT, "model", w.repo, w.directory, w.revision, w.download_files, "HF_TOKEN")


def download_manifest(plan: Plan, adapters: tuple[Artifact, ...] = (), max_rank: int = 0) -> Manifest:
    """The Job's task: the checkpoint, then the adapters, checked as the plan's engine loads them."""
    gguf = load_catalog().engines[plan.engine].weights == "gguf"
    return Manifest(plan.variant, AdapterRules(max_rank=max_rank, gguf=gguf), (checkpoint_artifact(plan), *adapters))


def adapter_directory(name: str) -> str:
    return f"{CACHE_MOUNT}/{KIND_DIRS[Kind.ADAPTER]}/{name}"


def download_command(manifest: Manifest) -> list[str]:
    """The Job's whole command line: the operator's CLI (its image's ENTRYPOINT runs the operator)."""
    return ["gemma4-operator", "download", "--manifest", manifest.to_json()]


# HF_XET_CHUNK_CACHE_SIZE_BYTES=0: hf_xet keeps a chunk cache under HF_HOME/xet, up to 10 GB unless built
# without it (xet-runtime src/config/groups/chunk_cache.rs); HF_HOME is on the cache PVC, sized for one checkpoint
# plus 20%, and a one-time download reads no chunk twice.
HF_ENV: tuple[K8sObject, ...] = ({"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"},)


def download_env(spec: Gemma4DeploymentSpec) -> list[K8sObject]:
    """HF_HOME and the token (this pod downloads), huggingface_hub's settings, HOME on its volume;
    serving.env too (e.g. HF_ENDPOINT for a mirror)."""
    return with_user_env([*hub_env(spec, token=True), *HF_ENV, *SCRATCH_ENV], spec)


def downloader_image() -> str:
    """The catalog's; the operator's `--image downloader=IMAGE` wins (RenderOptions.downloader_image)."""
    return load_catalog().weights.downloader.image


# The downloader writes only HF_HOME on the cache PVC, HOME and /tmp: a read-only root.
READ_ONLY_ROOT_FILESYSTEM = True


def job_values(name: str, spec: Gemma4DeploymentSpec, plan: Plan, image: str) -> dict[str, object]:
    """The Job's pod runs as the serving pods' identity (serving.securityContext), so both agree on who owns
    the cache PVC's files."""
    pod = spec.pod_template.spec
    pod_settings = {"imagePullSecrets": [s.model_dump() for s in pod.image_pull_secrets],
                    "tolerations": list(pod.tolerations), "priorityClassName": pod.priority_class_name}
    scratch, scratch_mounts = scratch_volumes()
    return {"annotations": {CHECKPOINT_ANNOTATION: checkpoint_id(plan)}, "backoff_limit": BACKOFF_LIMIT,
            "pod_settings": {k: v for k, v in pod_settings.items() if v}, "image": image,
            "command": download_command(download_manifest(plan)), "env": download_env(spec), "resources": RESOURCES,
            "pod_security": pod_security_context(spec),
            "container_security": container_security_context(READ_ONLY_ROOT_FILESYSTEM),
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": f"{name}-model-cache"}}, *scratch],
            "volume_mounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, *scratch_mounts]}
