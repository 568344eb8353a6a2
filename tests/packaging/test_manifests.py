"""Plain manifests: the chart's CRD copy, manifests/install.yaml and manifests/kustomization.yaml."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.packaging.chart import (
    CHART_CRD,
    CRD,
    INSTALL_YAML,
    NAMESPACE,
    ROOT,
    install_yaml,
    load_objects,
    of_kind,
    one,
)
from tests.packaging.conftest import Renderer
from tests.tools.binaries import kubectl_path


def test_chart_crd_is_identical_to_crds_dir() -> None:
    assert CHART_CRD.read_bytes() == CRD.read_bytes(), (
        f"{CHART_CRD.relative_to(ROOT)} differs from {CRD.relative_to(ROOT)}: run `make manifests`")


# The tenant policy's admission objects (admissionregistration.k8s.io/v1): Helm leaves them out below 1.30.
SERVED_FROM_1_30 = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def test_install_yaml_is_the_rendered_chart(helm_home: Path) -> None:
    assert INSTALL_YAML.read_text(encoding="utf-8") == install_yaml(helm_home), (
        "manifests/install.yaml is stale: run `make manifests`")


def test_install_yaml_contents(renderer: Renderer) -> None:
    objects = load_objects(INSTALL_YAML.read_text(encoding="utf-8"))
    assert objects[0]["kind"] == "Namespace" and objects[0]["metadata"]["name"] == NAMESPACE
    assert objects[0]["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert objects[1:] == renderer.value_set("default")
    kinds = [o["kind"] for o in objects]
    assert kinds.index("Namespace") < kinds.index("CustomResourceDefinition") < kinds.index("Deployment")
    for obj in objects:
        if obj["kind"] not in ("Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding",
                               "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_install_yaml_objects_are_valid(version: str) -> None:
    unserved = set()
    for obj in load_objects(INSTALL_YAML.read_text(encoding="utf-8")):
        if obj["kind"] in SERVED_FROM_1_30 and version < "1.30":
            unserved.add(obj["kind"])  # kubectl apply refuses these two there and applies the rest (README)
            continue
        kubernetes_validate.validate(obj, version, strict=True)
    assert unserved == (SERVED_FROM_1_30 if version < "1.30" else set())


def test_kustomization_builds_the_install_manifest() -> None:
    proc = subprocess.run([str(kubectl_path()), "kustomize", str(ROOT / "manifests")], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    built = load_objects(proc.stdout)
    expected = load_objects(INSTALL_YAML.read_text(encoding="utf-8"))

    def key(o: dict[str, Any]) -> str:
        return f"{o['kind']}/{o['metadata'].get('namespace', '')}/{o['metadata']['name']}"

    assert sorted(built, key=key) == sorted(expected, key=key)
    assert one(built, "Deployment")["metadata"]["namespace"] == NAMESPACE
    assert len(of_kind(built, "CustomResourceDefinition")) == 3
