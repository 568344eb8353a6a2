"""The download Job of storage.modelCache (templates/job.yaml.j2): huggingface_hub's `hf download` of the plan's
checkpoint into the cache PVC, once, under a standard-library wrapper that reports the outcome (bytes, seconds,
the Hub's error) in the termination message. The Job's pod template is immutable: a new checkpoint gets a new
Job, told apart by the checkpoint annotation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.catalog import load_catalog
from gemma4_operator.engines.base import SCRATCH_ENV, K8sObject, hub_env, with_user_env
from gemma4_operator.planner.plan import Plan
from gemma4_operator.planner.weights import CACHE_MOUNT, MODELS_DIR, WeightsMode, drafter_directory
from gemma4_operator.render.pod_security import container_security_context, pod_security_context, scratch_volumes
from gemma4_operator.weights import download_script_source

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
    drafter = f" +{plan.drafter.repo}" if plan.drafter is not None else ""
    return f"{w.repo}@{w.revision or 'main'}{files}{drafter}"


# With a drafter: its download first, into the checkpoint's directory (planner.weights.drafter_directory), then the
# checkpoint's, whose pruning keeps the directory's contents; each under the wrapper, the checkpoint's report last.
# The drafter's `hf` is the checkpoint command's own first word ("$1" after the shift).
_WITH_DRAFTER = ('src=$0 root=$1 repo=$2 dir=$3; shift 4; python3 -c "$src" --prune-root "$root" -- "$1" download '
                 '"$repo" --local-dir "$dir" && exec python3 -c "$src" --prune-root "$root" -- "$@"')


def download_command(plan: Plan) -> list[str]:
    """The Job's whole command line; older checkpoints under MODELS_DIR are removed first (the PVC is sized
    for one checkpoint; running pods have already loaded theirs)."""
    w = plan.weights
    revision = ["--revision", w.revision] if w.revision else []
    hf = ["hf", "download", w.repo, *w.download_files, *revision, "--local-dir", w.directory]
    if plan.drafter is not None:
        return ["sh", "-c", _WITH_DRAFTER, download_script_source(), MODELS_DIR, plan.drafter.repo,
                drafter_directory(w), "--", *hf]
    return ["python3", "-c", download_script_source(), "--prune-root", MODELS_DIR, "--", *hf]


# HF_DEBUG=1: hf's one-line error says "Model 'REPO' not found." for a 401 and a 404 alike (huggingface_hub
# cli/_errors.py); the traceback it adds carries the status ("RepositoryNotFoundError: 401 Client Error."), which
# tells a gated or private repository from a missing one (weights/outcome.py). Tokens are shown as <TOKEN>
# (utils/_http.py _curlify). HF_HUB_DISABLE_UPDATE_CHECK=1: no version check against PyPI at start
# (cli/_cli_utils.py check_cli_update), a call an air-gapped cluster would wait on.
# HF_XET_CHUNK_CACHE_SIZE_BYTES=0: hf_xet keeps a chunk cache under HF_HOME/xet, up to 10 GB unless built
# without it (xet-runtime src/config/groups/chunk_cache.rs); HF_HOME is on the cache PVC, sized for one checkpoint
# plus 20%, and a one-time download reads no chunk twice.
HF_CLI_ENV: tuple[K8sObject, ...] = ({"name": "HF_DEBUG", "value": "1"},
                                     {"name": "HF_HUB_DISABLE_UPDATE_CHECK", "value": "1"},
                                     {"name": "HF_XET_CHUNK_CACHE_SIZE_BYTES", "value": "0"})


def download_env(spec: Gemma4DeploymentSpec) -> list[K8sObject]:
    """HF_HOME and the token (this pod downloads), hf's settings for the report, HOME on its volume;
    serving.env too (e.g. HF_ENDPOINT for a mirror)."""
    return with_user_env([*hub_env(spec, token=True), *HF_CLI_ENV, *SCRATCH_ENV], spec)


def downloader_image() -> str:
    """The catalog's; the operator's `--image downloader=IMAGE` wins (RenderOptions.downloader_image)."""
    return load_catalog().weights.downloader.image


# The downloader (python3 and hf) writes only HF_HOME on the cache PVC, HOME and /tmp: a read-only root.
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
            "command": download_command(plan), "env": download_env(spec), "resources": RESOURCES,
            "pod_security": pod_security_context(spec),
            "container_security": container_security_context(READ_ONLY_ROOT_FILESYSTEM),
            "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": f"{name}-model-cache"}}, *scratch],
            "volume_mounts": [{"name": "cache", "mountPath": CACHE_MOUNT}, *scratch_mounts]}
