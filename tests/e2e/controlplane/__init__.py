"""Real Kubernetes control plane (etcd 3.6 + kube-apiserver + kube-controller-manager 1.37, or the 1.29 floor)
built from Go modules, for e2e tests."""

from tests.tools.binaries import tools_cache_dir

from .cluster import (
    BUILD_SCRIPT,
    DEFAULT_RELEASE,
    RELEASES,
    ControlPlane,
    ControlPlaneError,
    binaries_available,
    build_binaries,
    default_bin_dir,
    selected_release,
)

__all__ = [
    "BUILD_SCRIPT",
    "DEFAULT_RELEASE",
    "RELEASES",
    "ControlPlane",
    "ControlPlaneError",
    "binaries_available",
    "build_binaries",
    "default_bin_dir",
    "selected_release",
    "tools_cache_dir",
]
