"""The security settings of every pod the operator creates (serving pods and the download Job's): they pass
Pod Security "restricted" by default (https://kubernetes.io/docs/concepts/security/pod-security-standards/):
a non-root UID/GID chosen here, seccomp RuntimeDefault, no privilege escalation, every capability dropped,
and the paths the processes write (HOME, /tmp) on emptyDir volumes so that a read-only root works where the
engine allows it (EngineContainer.read_only_root_filesystem). ``serving.securityContext`` overrides the identity
and the read-only root.
"""

from __future__ import annotations

from gemma4_operator.api import Gemma4DeploymentSpec
from gemma4_operator.engines.base import HOME_DIR, TMP_DIR, K8sObject

# Not 0 and not an ID the images use for a daemon: the engine images run as root and ship no user of
# their own (vllm/vllm-openai, ghcr.io/ggml-org/llama.cpp), so any UID works once its writable paths are
# volumes; 1000 is the conventional first user ID.
DEFAULT_UID = 1000
DEFAULT_GID = 1000
SCRATCH_VOLUMES: tuple[tuple[str, str], ...] = (("home", HOME_DIR), ("tmp", TMP_DIR))


def pod_security_context(spec: Gemma4DeploymentSpec) -> K8sObject:
    """Pod level: the identity (the spec's, else ours) and seccomp. fsGroup makes the volumes (the cache PVC
    the download Job fills, emptyDirs) writable by the pod's group; OnRootMismatch skips the kubelet's
    recursive chown of a large PVC whose root already matches."""
    ours = spec.serving.security_context
    user = DEFAULT_UID if ours.run_as_user is None else ours.run_as_user
    non_root = (user != 0) if ours.run_as_non_root is None else ours.run_as_non_root
    return {
        "runAsNonRoot": non_root,
        "runAsUser": user,
        "runAsGroup": DEFAULT_GID if ours.run_as_group is None else ours.run_as_group,
        "fsGroup": DEFAULT_GID if ours.fs_group is None else ours.fs_group,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root_filesystem: bool) -> K8sObject:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": read_only_root_filesystem}


def serving_read_only_root(spec: Gemma4DeploymentSpec, engine_default: bool) -> bool:
    chosen = spec.serving.security_context.read_only_root_filesystem
    return engine_default if chosen is None else chosen


def scratch_volumes() -> tuple[list[K8sObject], list[K8sObject]]:
    """emptyDirs for HOME and /tmp (volumes, mounts): on the node's disk like a writable root would be."""
    return ([{"name": name, "emptyDir": {}} for name, _ in SCRATCH_VOLUMES],
            [{"name": name, "mountPath": path} for name, path in SCRATCH_VOLUMES])
