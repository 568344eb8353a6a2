"""Render the Helm chart with the real helm v4 binary, and generate the files derived from it.

``python -m tests.packaging.chart`` (``make manifests``, after ``make crd``) rewrites the generated files:

- ``charts/gemma4-operator/crds/gemma4deployments.serving.gemma4.dev.yaml``: a copy of ``crds/``;
- ``manifests/install.yaml``: a Namespace plus the chart rendered with default values and its CRDs
  (``helm template --include-crds``), for ``kubectl apply -f``;
- ``manifests/argocd/argocd-cm.yaml``: the argocd-cm snippet that carries ``health.lua``;
- ``charts/gemma4-operator/dashboards/*.json``: the Grafana dashboards (``tests/packaging/dashboards.py``).

The packaging tests check that both are in sync with their sources.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.tools.binaries import helm_env, helm_path

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "gemma4-operator"
CRD_FILE = "gemma4deployments.serving.gemma4.dev.yaml"
CRD = ROOT / "crds" / CRD_FILE
CHART_CRD = CHART / "crds" / CRD_FILE
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
INSTALL_YAML = ROOT / "manifests" / "install.yaml"
ARGOCD = ROOT / "manifests" / "argocd"
HEALTH_LUA = ARGOCD / "health.lua"
ARGOCD_CM = ARGOCD / "argocd-cm.yaml"

RELEASE = "gemma4-operator"
ROLE_LABEL = "serving.gemma4.dev/role"
EPP_ROLE = "endpoint-picker"
NAMESPACE = "gemma4-system"
HEALTH_KEY = "resource.customizations.health.serving.gemma4.dev_Gemma4Deployment"

Manifest = dict[str, Any]


class HelmError(Exception):
    """helm exited non-zero. ``output`` is what it printed (lint reports on stdout, the rest on stderr)."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.output = stdout + stderr
        super().__init__(f"helm {' '.join(args)} exited {returncode}:\n{self.output}")


def helm(*args: str, home: Path) -> str:
    """Run helm with its cache/config/data under ``home``; stdout, or HelmError."""
    proc = subprocess.run([str(helm_path()), *args], capture_output=True, text=True, check=False,
                          env=helm_env(home), cwd=ROOT)
    if proc.returncode != 0:
        raise HelmError(args, proc.returncode, proc.stdout, proc.stderr)
    return proc.stdout


def template(*args: str, home: Path, include_crds: bool = True, release: str = RELEASE,
             namespace: str = NAMESPACE) -> str:
    """``helm template`` of the chart; extra ``args`` are passed through (``-f``, ``--set``, ...)."""
    flags = ["--include-crds"] if include_crds else []
    return helm("template", release, str(CHART), "--namespace", namespace, *flags, *args, home=home)


def load_objects(text: str) -> list[Manifest]:
    """Every non-empty YAML document of a manifest stream."""
    return [d for d in yaml.safe_load_all(text) if d]


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[Manifest], kind: str) -> Manifest:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


AGGREGATE_LABEL_PREFIX = "rbac.authorization.k8s.io/aggregate-to-"


def is_aggregated(role: Manifest) -> bool:
    """A ClusterRole for Gemma4Deployment authors (gemma4-view/-edit), aggregated into view/edit/admin."""
    return any(k.startswith(AGGREGATE_LABEL_PREFIX) for k in (role["metadata"].get("labels") or {}))


def is_endpoint_picker_role(role: Manifest) -> bool:
    """The ClusterRole the chart ships for the endpoint picker (routing.enabled), which the operator binds."""
    return (role["metadata"].get("labels") or {}).get(ROLE_LABEL) == EPP_ROLE


def operator_roles(objects: list[Manifest]) -> list[Manifest]:
    """The operator's own ClusterRole(s) and Roles: everything RBAC renders but the tenants' aggregated roles and
    the endpoint picker's."""
    return [o for o in objects if o["kind"] in ("ClusterRole", "Role") and not is_aggregated(o)
            and not is_endpoint_picker_role(o)]


def operator_cluster_role(objects: list[Manifest]) -> Manifest:
    found = [o for o in operator_roles(objects) if o["kind"] == "ClusterRole"]
    assert len(found) == 1, f"expected one operator ClusterRole, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def workload(objects: list[Manifest]) -> Manifest:
    """The operator's Deployment (one replica) or StatefulSet (ha.enabled)."""
    found = [o for o in objects if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(found) == 1, f"expected one operator workload, found {[o['kind'] for o in found]}"
    return found[0]


def install_namespace() -> str:
    namespace: Manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/name": "gemma4-operator",
                # The operator pod meets the restricted Pod Security Standard.
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }
    return yaml.safe_dump(namespace, sort_keys=False)


def install_yaml(home: Path) -> str:
    header = (
        "# gemma4-operator: the Helm chart charts/gemma4-operator rendered with its default values and\n"
        f"# CRDs into namespace {NAMESPACE}, for `kubectl apply -f manifests/install.yaml`.\n"
        "# Generated by `make manifests` (helm template --include-crds); do not edit, change the chart.\n"
    )
    return header + "---\n" + install_namespace() + template(home=home)


def argocd_cm_yaml() -> str:
    lua = HEALTH_LUA.read_text(encoding="utf-8")
    body = "".join(f"    {line}".rstrip() + "\n" for line in lua.splitlines())
    return (
        "# Argo CD health check for Gemma4Deployment, as an argocd-cm entry. Generated by\n"
        "# `make manifests` from health.lua; do not edit. Merge it into the existing ConfigMap, e.g.\n"
        "#   kubectl -n argocd patch configmap argocd-cm --patch-file manifests/argocd/argocd-cm.yaml\n"
        "# or as a patch in the kustomization that installs Argo CD.\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: argocd-cm\n"
        "  namespace: argocd\n"
        "  labels:\n"
        "    app.kubernetes.io/name: argocd-cm\n"
        "    app.kubernetes.io/part-of: argocd\n"
        "data:\n"
        f"  {HEALTH_KEY}: |\n"
        f"{body}"
    )


def main() -> int:
    CHART_CRD.write_bytes(CRD.read_bytes())
    with tempfile.TemporaryDirectory(prefix="gemma4-helm-") as home:
        INSTALL_YAML.write_text(install_yaml(Path(home)), encoding="utf-8")
    ARGOCD_CM.write_text(argocd_cm_yaml(), encoding="utf-8")
    for path in (CHART_CRD, INSTALL_YAML, ARGOCD_CM):
        print(f"wrote {path.relative_to(ROOT)}", file=sys.stderr)
    from tests.packaging import dashboards  # grafana-foundation-sdk: only needed here

    return dashboards.main()


if __name__ == "__main__":
    sys.exit(main())
