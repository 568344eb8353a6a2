"""The download Job (templates/job.yaml.j2): ``gemma4-operator download`` in the operator's own image
(huggingface_hub's Python API, cli/download.py) fetches the plan's checkpoint and the adapters into the cache PVC
of storage.modelCache, once (without the cache: the hf:// adapters alone, into an emptyDir), runs the adapter
preflight, and reports the outcome (bytes, seconds, the Hub's typed error, one
verdict per adapter) in the termination message. The Job's pod template is immutable: a new checkpoint or adapter
list gets a new Job, told apart by the checkpoint annotation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.api.adapters import ADAPTERS_DIR, MAX_LORA_RANKS, adapter_dir
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines.base import SCRATCH_ENV, K8sObject, hub_env, secret_env, with_user_env
from gemma4_operator.planner.plan import Plan
from gemma4_operator.planner.sources import parse_source
from gemma4_operator.planner.weights import CACHE_MOUNT, WeightsMode, drafter_directory
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
# huggingface_hub streams to disk; its memory stays small (hf_xet's chunk buffers included)
RESOURCES: K8sObject = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "4Gi"}}


def job_name(owner: str) -> str:
    return f"{owner}-download"


def is_download_pod(pod: Mapping[str, Any]) -> bool:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT_LABEL) == DOWNLOAD_COMPONENT


def needs_download(plan: Plan) -> bool:
    """The Job fetches the checkpoint (storage.modelCache): the serving pods read it from the PVC."""
    return plan.weights.mode is WeightsMode.CACHE


def runs_download_job(spec: Gemma4DeploymentSpec, plan: Plan) -> bool:
    """The Job runs with storage.modelCache and, without it, for hf:// adapters alone (adapters-only: into an
    emptyDir, once, for the preflight's verdicts that set the engine's flags; each serving pod fetches its
    adapters itself with an init container, :func:`adapters_init_container`, and its checkpoint as before)."""
    return needs_download(plan) or bool(adapter_artifacts(spec))


def checkpoint_id(plan: Plan) -> str:
    """What was downloaded, as the Job's annotation: repository, revision and files."""
    w = plan.weights
    files = f" {' '.join(w.download_files)}" if w.download_files else ""
    drafter = f" +{plan.drafter.repo}" if plan.drafter is not None else ""
    return f"{w.repo}@{w.revision or 'main'}{files}{drafter}"


def download_id(plan: Plan, spec: Gemma4DeploymentSpec) -> str:
    """Everything the Job fetches, as its annotation: a change (checkpoint or adapter list) is a new Job, and
    the serving children wait for it."""
    adapters = ", ".join(f"{a.name}={a.uri}" for a in spec.model.adapters)
    return checkpoint_id(plan) + (f"; adapters {adapters}" if adapters else "")


def checkpoint_artifact(plan: Plan) -> Artifact:
    w = plan.weights
    return Artifact(Kind.CHECKPOINT, "model", w.repo, w.directory, w.revision, w.download_files, "HF_TOKEN")


def drafter_artifacts(plan: Plan) -> tuple[Artifact, ...]:
    """Speculative decoding's MTP drafter, fetched after the checkpoint into its directory
    (planner.weights.drafter_directory): pruning older checkpoints keeps it, a new checkpoint replaces both."""
    if plan.drafter is None:
        return ()
    return (Artifact(Kind.DRAFTER, "drafter", plan.drafter.repo, drafter_directory(plan.weights),
                     token_env="HF_TOKEN"),)


def adapter_directory(name: str) -> str:
    """Where the Job stages an adapter on the cache volume (the serving pods see it at ADAPTERS_DIR/NAME)."""
    return f"{CACHE_MOUNT}/{KIND_DIRS[Kind.ADAPTER]}/{name}"


def adapter_token_env(index: int) -> str:
    return f"HF_TOKEN_ADAPTER_{index}"


def adapter_artifacts(spec: Gemma4DeploymentSpec) -> tuple[Artifact, ...]:
    """The hf:// adapters (pvc:// and oci:// ones are mounted, not fetched), each with its own token."""
    artifacts = []
    for index, adapter in enumerate(spec.model.adapters):
        source = parse_source(adapter.uri)
        if source.scheme == "hf":
            token = adapter_token_env(index) if adapter.token_secret_ref is not None else ""
            artifacts.append(Artifact(Kind.ADAPTER, adapter.name, source.repo, adapter_directory(adapter.name),
                                      source.revision, token_env=token))
    return tuple(artifacts)


def adapter_volumes(spec: Gemma4DeploymentSpec) -> tuple[list[K8sObject], list[K8sObject]]:
    """The serving pod's view of the adapters at ADAPTERS_DIR/NAME: the staging directory on the cache volume
    (hf://: the Job's on the PVC, or the init container's on the pod's emptyDir), the claim's path (pvc://), the
    artifact (oci://, an image volume), all read-only."""
    volumes: list[K8sObject] = []
    mounts: list[K8sObject] = []
    if adapter_artifacts(spec):
        mounts.append({"name": "cache", "mountPath": ADAPTERS_DIR, "subPath": KIND_DIRS[Kind.ADAPTER],
                       "readOnly": True})
    for index, adapter in enumerate(spec.model.adapters):
        source, volume = parse_source(adapter.uri), f"adapter-{index}"
        if source.scheme == "pvc":
            volumes.append({"name": volume, "persistentVolumeClaim": {"claimName": source.claim, "readOnly": True}})
            mounts.append({"name": volume, "mountPath": adapter_dir(adapter.name), "subPath": source.path,
                           "readOnly": True})
        elif source.scheme == "oci":
            volumes.append({"name": volume, "image": {"reference": source.image, "pullPolicy": "IfNotPresent"}})
            mounts.append({"name": volume, "mountPath": adapter_dir(adapter.name), "readOnly": True})
    return volumes, mounts


def download_refusal(plan: Plan) -> str | None:
    """What only the download Job with the cache can fetch, asked without one: a GGUF source's revision
    (llama.cpp's -hf takes REPO:QUANT, no revision)."""
    if needs_download(plan):
        return None
    source = plan.source
    if plan.weights.mode is WeightsMode.HUB and source is not None and source.revision and source.quant_tag:
        return (f"model.source.uri {source.display}: llama.cpp's -hf downloads REPO:QUANT at the default branch "
                "only; a revision is fetched by the download Job, which needs storage.modelCache and a repository "
                "whose quant the catalog names, or drop @REVISION")
    return None


def max_adapter_rank(spec: Gemma4DeploymentSpec) -> int:
    """serving.lora.maxRank; unset, it is derived from the adapters' own ranks, so any rank on vLLM's ladder."""
    lora = spec.serving.lora
    return lora.max_rank if lora is not None and lora.max_rank is not None else MAX_LORA_RANKS[-1]


def download_manifest(plan: Plan, spec: Gemma4DeploymentSpec) -> Manifest:
    """The Job's task: the checkpoint (with storage.modelCache), then the adapters, checked as the plan's engine
    loads them. Without the cache it is the adapters alone, for the Job and the serving pods' init container."""
    gguf = load_catalog().engines[plan.engine].weights == "gguf"
    checkpoint = (checkpoint_artifact(plan), *drafter_artifacts(plan)) if needs_download(plan) else ()
    return Manifest(plan.variant, AdapterRules(max_rank=max_adapter_rank(spec), gguf=gguf),
                    (*checkpoint, *adapter_artifacts(spec)))


def download_command(manifest: Manifest) -> list[str]:
    """The Job's whole command line: the operator's CLI (its image's ENTRYPOINT runs the operator)."""
    return ["gemma4-operator", "download", "--manifest", manifest.to_json()]


# HF_XET_CHUNK_CACHE_SIZE_BYTES=0: hf_xet keeps a chunk cache under HF_HOME/xet, up to 10 GB unless built
# without it (xet-runtime src/config/groups/chunk_cache.rs); HF_HOME is on the cache PVC, sized for one checkpoint
# plus 20%, and a one-time download reads no chunk twice.
HF_ENV: tuple[K8sObject, ...] = ({"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"},)


def download_env(spec: Gemma4DeploymentSpec, plan: Plan) -> list[K8sObject]:
    """HF_HOME and the tokens (this pod downloads; the checkpoint's only when it fetches the checkpoint), all
    through secretKeyRef, huggingface_hub's settings, HOME on its volume; serving.env too (e.g. HF_ENDPOINT)."""
    tokens = [secret_env(adapter_token_env(i), a.token_secret_ref) for i, a in enumerate(spec.model.adapters)
              if a.token_secret_ref is not None]
    return with_user_env([*hub_env(spec, token=needs_download(plan)), *tokens, *HF_ENV, *SCRATCH_ENV], spec)


def downloader_image() -> str:
    """The catalog's; the operator's `--image downloader=IMAGE` wins (RenderOptions.downloader_image)."""
    return load_catalog().weights.downloader.image


# The downloader writes only HF_HOME on the cache PVC, HOME and /tmp: a read-only root.
READ_ONLY_ROOT_FILESYSTEM = True
# The adapters-only Job's emptyDir: at most MAX_ADAPTERS adapters, a LoRA of Gemma 4 is MiBs to about 1 GiB.
ADAPTERS_ONLY_CACHE = "16Gi"
ADAPTERS_CONTAINER = "adapters"


def job_cache_volume(name: str, plan: Plan) -> K8sObject:
    if needs_download(plan):
        return {"name": "cache", "persistentVolumeClaim": {"claimName": f"{name}-model-cache"}}
    return {"name": "cache", "emptyDir": {"sizeLimit": ADAPTERS_ONLY_CACHE}}


def adapters_init_container(spec: Gemma4DeploymentSpec, plan: Plan, image: str) -> K8sObject | None:
    """Without storage.modelCache, each serving pod fetches its hf:// adapters (small) before the engine starts,
    into the pod's cache emptyDir, where the engine sees them at ADAPTERS_DIR (:func:`adapter_volumes`). Which
    of them the engine is given is the adapters-only Job's preflight's say, as with the cache."""
    if needs_download(plan) or not adapter_artifacts(spec):
        return None
    _, scratch_mounts = scratch_volumes()
    return {"name": ADAPTERS_CONTAINER, "image": image, "imagePullPolicy": "IfNotPresent",
            "command": download_command(download_manifest(plan, spec)), "env": download_env(spec, plan),
            "resources": RESOURCES, "securityContext": container_security_context(READ_ONLY_ROOT_FILESYSTEM),
            "volumeMounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, *scratch_mounts],
            "terminationMessagePolicy": "FallbackToLogsOnError"}


def job_values(name: str, spec: Gemma4DeploymentSpec, plan: Plan, image: str) -> dict[str, object]:
    """The Job's pod runs as the serving pods' identity (serving.securityContext), so both agree on who owns
    the cache PVC's files."""
    pod = spec.pod_template.spec
    pod_settings = {"imagePullSecrets": [s.model_dump() for s in pod.image_pull_secrets],
                    "tolerations": list(pod.tolerations), "priorityClassName": pod.priority_class_name}
    scratch, scratch_mounts = scratch_volumes()
    return {"job_name": job_name(name), "annotations": {CHECKPOINT_ANNOTATION: download_id(plan, spec)},
            "backoff_limit": BACKOFF_LIMIT,
            "pod_settings": {k: v for k, v in pod_settings.items() if v}, "image": image,
            "command": download_command(download_manifest(plan, spec)), "env": download_env(spec, plan),
            "resources": RESOURCES,
            "pod_security": pod_security_context(spec),
            "container_security": container_security_context(READ_ONLY_ROOT_FILESYSTEM),
            "volumes": [job_cache_volume(name, plan), *scratch],
            "volume_mounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, *scratch_mounts]}
