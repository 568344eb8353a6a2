"""Real Kubernetes control plane (etcd + kube-apiserver + kube-controller-manager 1.20.2) for e2e tests."""

from .cluster import (
    BUILD_SCRIPT,
    K8S_VERSION,
    ControlPlane,
    ControlPlaneError,
    binaries_available,
    build_binaries,
    default_bin_dir,
    tools_cache_dir,
)

__all__ = [
    "BUILD_SCRIPT",
    "K8S_VERSION",
    "ControlPlane",
    "ControlPlaneError",
    "binaries_available",
    "build_binaries",
    "default_bin_dir",
    "tools_cache_dir",
]
