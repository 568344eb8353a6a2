"""The chart's tenant policy on a real API server: the ValidatingAdmissionPolicy, its binding and its parameters
(ConfigMap) as `helm template` renders them with the default values refuse a Gemma4Deployment that names a
disallowed image or service account, with the policy's own words, and admit the documented examples; an update
that leaves the spec alone (finalizers, labels) passes for an object created before the policy, so tightening it
never blocks a deletion.

Needs admissionregistration.k8s.io/v1 (Kubernetes 1.30+): the e2e tier's 1.37, not the 1.29 floor check. The
same table of specs runs through cel-python and the operator's re-check in tests/packaging/test_tenant_policy_chart.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes.client import ApiException

from gemma4_operator.api import KIND
from tests.e2e.test_operator_e2e import OPERATOR_NAMESPACE, Rest, g4d, render_chart, wait_for
from tests.packaging.chart import Manifest, one
from tests.packaging.test_tenant_policy_chart import policy_params

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
ADMISSION = "/apis/admissionregistration.k8s.io/v1"
SUFFIX = "is not allowed by the tenant policy; an administrator allows it with the Helm value tenantPolicy."
IMAGE_REFUSAL = (f'spec.serving.image: image "evil.example.com/miner:1" {SUFFIX}imagePrefixes (the engine images of '
                 "the catalog and operator.images are always allowed)")
SA_REFUSAL = f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "cluster-admin-sa" {SUFFIX}serviceAccountNames'
LEGACY = "legacy"  # a Gemma4Deployment (and its service account) from before the policy
LEGACY_REFUSAL = f'spec.podTemplate.spec.serviceAccountName: ServiceAccount "legacy" {SUFFIX}serviceAccountNames'
CPU: dict[str, Any] = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}}
Obj = dict[str, Any]


def refusal(rest: Rest, obj: Obj, *, dry_run: bool = False) -> tuple[int, Obj] | None:
    """(HTTP status, Status body) when the server refuses to create ``obj``; None when it admits it."""
    try:
        rest.request("POST", rest.path(KIND, obj["metadata"]["namespace"]), body=obj,
                     query={"dryRun": "All"} if dry_run else None)
    except ApiException as e:
        return int(e.status), json.loads(e.body or "{}")
    return None


@pytest.fixture(scope="module")
def tenant_policy(rest: Rest, version: tuple[int, int], g4d_crd: Obj, operator_namespace: str,
                  helm_home: Path) -> Iterator[Manifest]:
    """The chart's admission objects, installed as the chart renders them by default, after an object the policy
    refuses (LEGACY, as if created before the policy); all removed afterwards (the policy is cluster-wide: no
    other module may run under it)."""
    assert version >= (1, 30), (f"ValidatingAdmissionPolicy v1 is served from Kubernetes 1.30; this server is "
                                f"{version[0]}.{version[1]} (the e2e tier runs 1.37; this module is not a floor check)")
    assert g4d_crd and operator_namespace == OPERATOR_NAMESPACE
    objects = render_chart(helm_home)
    policy, binding = one(objects, "ValidatingAdmissionPolicy"), one(objects, "ValidatingAdmissionPolicyBinding")
    params = policy_params(objects)
    assert params["metadata"]["namespace"] == OPERATOR_NAMESPACE
    rest.create(g4d(LEGACY, OPERATOR_NAMESPACE, {**CPU, "podTemplate": {"spec": {"serviceAccountName": LEGACY}}}))
    rest.post(f"/api/v1/namespaces/{OPERATOR_NAMESPACE}/configmaps", params)
    created = [f"{ADMISSION}/validatingadmissionpolicybindings/{binding['metadata']['name']}",
               f"{ADMISSION}/validatingadmissionpolicies/{policy['metadata']['name']}",
               rest.path(KIND, OPERATOR_NAMESPACE, LEGACY)]
    try:
        rest.post(f"{ADMISSION}/validatingadmissionpolicies", policy)
        rest.post(f"{ADMISSION}/validatingadmissionpolicybindings", binding)
        yield policy
    finally:
        for path in created:
            rest.delete_path(path)


@pytest.fixture(scope="module")
def enforced(rest: Rest, tenant_policy: Manifest) -> Manifest:
    """The policy once the admission plugin has picked it up (its informers run asynchronously): a dry-run
    create of a refused spec is refused."""
    probe = g4d("probe", "default", {**CPU, "serving": {"image": "evil.example.com/miner:1"}})
    t0 = time.monotonic()
    wait_for("the admission policy to be enforced", lambda: refusal(rest, probe, dry_run=True), timeout=60.0)
    print(f"\nadmission policy enforced {time.monotonic() - t0:.1f}s after it was created")
    return tenant_policy


def assert_refused(found: tuple[int, Obj] | None, message: str, policy: Manifest) -> None:
    """Refused by the chart's policy (403 Forbidden, the validations' reason) with ``message`` as its words."""
    assert found is not None, f"admitted, expected: {message}"
    status, body = found
    assert (status, body.get("reason")) == (403, "Forbidden"), body
    name = policy["metadata"]["name"]
    assert f"ValidatingAdmissionPolicy '{name}' with binding '{name}' denied request: " in body["message"], body
    assert body["message"].endswith(f"denied request: {message}"), body["message"]


def test_disallowed_image_is_refused_with_the_policy_message(rest: Rest, enforced: Manifest,
                                                             e2e_namespace: str) -> None:
    obj = g4d("miner", e2e_namespace, {**CPU, "serving": {"image": "evil.example.com/miner:1"}})
    assert_refused(refusal(rest, obj), IMAGE_REFUSAL, enforced)
    assert rest.get(KIND, e2e_namespace, "miner") is None


@pytest.mark.parametrize(("serving", "message"), [
    ({"securityContext": {"runAsUser": 0}}, "spec.serving.securityContext.runAsUser: running as root (0) is not "
     "allowed by the tenant policy; an administrator allows it with the Helm value tenantPolicy.runAsRoot"),
    ({"apiKeySecretRef": {"name": "db-password", "key": "password"}}, 'spec.serving.apiKeySecretRef: Secret '
     '"db-password" is not allowed by the tenant policy; an administrator allows it with the Helm value '
     "tenantPolicy.secretNames"),
], ids=["root", "api-key-secret"])
def test_root_and_another_secret_are_refused_with_the_policy_message(rest: Rest, enforced: Manifest,
                                                                     e2e_namespace: str, serving: Obj,
                                                                     message: str) -> None:
    obj = g4d("sec", e2e_namespace, {**CPU, "serving": serving})
    assert_refused(refusal(rest, obj), message, enforced)


def test_disallowed_service_account_is_refused_with_the_policy_message(rest: Rest, enforced: Manifest,
                                                                       e2e_namespace: str) -> None:
    obj = g4d("escalate", e2e_namespace, {**CPU, "podTemplate": {"spec": {"serviceAccountName": "cluster-admin-sa"}}})
    assert_refused(refusal(rest, obj), SA_REFUSAL, enforced)
    assert rest.get(KIND, e2e_namespace, "escalate") is None


def test_documented_examples_are_admitted(rest: Rest, enforced: Manifest, e2e_namespace: str) -> None:
    assert enforced
    for path in sorted((ROOT / "manifests" / "examples").glob("*.yaml")):
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
        obj["metadata"]["namespace"] = e2e_namespace
        assert refusal(rest, obj, dry_run=True) is None, path.name


def test_an_older_object_keeps_its_metadata_updates_but_not_a_spec_change(rest: Rest, enforced: Manifest) -> None:
    labelled = rest.patch(KIND, OPERATOR_NAMESPACE, LEGACY, {"metadata": {"labels": {"team": "a"},
                                                                          "finalizers": ["example.com/hold"]}})
    assert labelled["metadata"]["labels"]["team"] == "a"
    released = rest.patch(KIND, OPERATOR_NAMESPACE, LEGACY, {"metadata": {"finalizers": None}})  # as a deletion needs
    assert not released["metadata"].get("finalizers")
    with pytest.raises(ApiException) as e:
        rest.patch(KIND, OPERATOR_NAMESPACE, LEGACY, {"spec": {"replicas": 2}})
    assert_refused((int(e.value.status), json.loads(e.value.body or "{}")), LEGACY_REFUSAL, enforced)


def test_the_policy_type_checks_against_the_crd(rest: Rest, enforced: Manifest) -> None:
    """The server type-checks each expression against the Gemma4Deployment schema and reports what it doubts."""
    path = f"{ADMISSION}/validatingadmissionpolicies/{enforced['metadata']['name']}"

    def checked() -> Obj | None:
        status = rest.request("GET", path).get("status") or {}
        return status if status.get("typeChecking") is not None else None

    status = wait_for("the policy's type checking", checked, timeout=30.0)
    assert status["typeChecking"].get("expressionWarnings") in (None, []), status["typeChecking"]
