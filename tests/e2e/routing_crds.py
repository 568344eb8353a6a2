"""The published CRDs routing needs, for the e2e tier: taken from the release modules on the Go module proxy (the
same source the control plane's build uses), cached under $GEMMA4_TOOLS_CACHE/crds.

- InferencePool v1: sigs.k8s.io/gateway-api-inference-extension, config/crd/bases (the release's manifests.yaml
  is built from that directory: its Makefile's `kustomize build config/crd`); the version is the catalog's.
- HTTPRoute v1: sigs.k8s.io/gateway-api, config/crd/standard (its standard-install.yaml).
"""

from __future__ import annotations

import io
import os
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

import yaml

from gemma4_operator.render.routing import routing_catalog
from tests.tools.binaries import tools_cache_dir

GATEWAY_API_VERSION = "v1.3.0"  # HTTPRoute v1 with timeouts in the standard channel (since v1.2)


def _sources() -> dict[str, tuple[str, str, str]]:
    """CRD file name -> (module, version, path inside the module)."""
    gie = ("sigs.k8s.io/gateway-api-inference-extension", routing_catalog().release)
    return {
        "inferencepools": (*gie, "config/crd/bases/inference.networking.k8s.io_inferencepools.yaml"),
        "httproutes": ("sigs.k8s.io/gateway-api", GATEWAY_API_VERSION,
                       "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml"),
    }


def _fetch(module: str, version: str, path: str, dest: Path) -> None:
    proxy = (os.environ.get("GOPROXY") or "https://proxy.golang.org").split(",")[0]
    with urllib.request.urlopen(f"{proxy}/{module}/@v/{version}.zip", timeout=120) as resp:
        archive = zipfile.ZipFile(io.BytesIO(resp.read()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(archive.read(f"{module}@{version}/{path}"))


def routing_crd(name: str) -> dict[str, Any]:
    """The CRD ``inferencepools`` or ``httproutes`` as published (fetched once)."""
    module, version, path = _sources()[name]
    dest = tools_cache_dir() / "crds" / f"{module.replace('/', '_')}@{version}" / Path(path).name
    if not dest.is_file():
        _fetch(module, version, path, dest)
    crd: dict[str, Any] = yaml.safe_load(dest.read_text(encoding="utf-8"))
    return crd
