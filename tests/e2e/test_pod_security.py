"""Pod Security admission on the real API server: a namespace labelled
``pod-security.kubernetes.io/enforce: restricted`` admits the serving pods (vLLM and llama.cpp) and the download
Job's pod, which kube-controller-manager's ReplicaSet and Job controllers create (no kubelet runs them); a spec
forced to root there turns Degraded within a minute with the server's refusal, not at the Deployment's progress
deadline ten minutes later.

Pod Security admission is on by default from Kubernetes 1.23 (beta; GA in 1.25): older servers skip the module.
The tier's operator runs with the chart's args and no tenant policy; under the chart's default tenantPolicy
(runAsRoot: false) the root spec would be refused before any pod (Planned=False, PolicyViolation).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from gemma4_operator.api import KIND
from tests.e2e.test_operator_e2e import (
    ROOT,
    SERVING_SELECTOR,
    OperatorProcess,
    Rest,
    condition,
    create_g4d,
    g4d,
    load_example,
    wait_for,
    wait_reconciled,
)

pytestmark = pytest.mark.e2e

ENFORCE = "pod-security.kubernetes.io/enforce"
REFUSED_WITHIN_S = 60.0  # the bound for an admission refusal to reach status
# vLLM on the operator's --accelerators type (the pods stay Pending: admitted is what counts here), llama.cpp
# on CPU, and a download Job (storage.modelCache)
SERVING_EXAMPLES = ("26b-a4b-h100-fp8.yaml", "e2b-cpu.yaml")
CPU_SPEC: dict[str, Any] = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"},
                            "serving": {"maxModelLen": 4096}}
ROOT_CONTEXT = {"runAsUser": 0}  # runAsNonRoot then defaults to false: the kubelet would run it, the namespace not


@pytest.fixture(autouse=True)
def _pod_security_admission(version: tuple[int, int]) -> None:
    if version < (1, 23):
        pytest.skip(f"Pod Security admission is served from Kubernetes 1.23; this server is {version[0]}.{version[1]}")


@pytest.fixture
def restricted_namespace(k8s_api: client.ApiClient, e2e_namespace: str) -> str:
    """The test's namespace, enforcing Pod Security "restricted" (latest policy version)."""
    client.CoreV1Api(k8s_api).patch_namespace(e2e_namespace, {"metadata": {"labels": {ENFORCE: "restricted"}}})
    return e2e_namespace


def failed_creates(rest: Rest, namespace: str) -> list[str]:
    """What the ReplicaSet and Job controllers recorded when the namespace refused a pod."""
    return [f"{(e.get('involvedObject') or {}).get('kind')} {(e.get('involvedObject') or {}).get('name')}: "
            f"{e.get('message')}" for e in rest.objects("Event", namespace) if e.get("reason") == "FailedCreate"]


def test_a_restricted_namespace_admits_the_serving_pods_of_both_engines(rest: Rest, operator: OperatorProcess,
                                                                       restricted_namespace: str) -> None:
    names = []
    for example in SERVING_EXAMPLES:
        obj = load_example(ROOT / "manifests" / "examples" / example, restricted_namespace)
        create_g4d(rest, obj)
        names.append(obj["metadata"]["name"])
    for name in names:
        wait_reconciled(rest, restricted_namespace, name, operator)
        selector = f"{SERVING_SELECTOR},app.kubernetes.io/instance={name}"
        wait_for(f"the serving pods of {name}", functools.partial(rest.objects, "Pod", restricted_namespace, selector),
                 operator=operator)
    assert failed_creates(rest, restricted_namespace) == []
    for pod in rest.objects("Pod", restricted_namespace, SERVING_SELECTOR):
        assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for name in names:
        live = rest.get(KIND, restricted_namespace, name)
        assert live is not None
        degraded = condition(live, "Degraded")
        assert degraded is not None and degraded.get("reason") != "FailedCreate", degraded


def test_a_restricted_namespace_admits_the_download_jobs_pod(rest: Rest, operator: OperatorProcess,
                                                           restricted_namespace: str) -> None:
    create_g4d(rest, g4d("cached", restricted_namespace, {**CPU_SPEC, "storage": {"modelCache": {}}}))
    pod = wait_for("the download Job's pod", lambda: next(iter(
        rest.objects("Pod", restricted_namespace, "job-name=cached-download")), None), operator=operator)
    assert pod["spec"]["securityContext"]["runAsUser"] != 0
    assert failed_creates(rest, restricted_namespace) == []


def _refused(rest: Rest, namespace: str, name: str, operator: OperatorProcess) -> tuple[dict[str, Any], float]:
    t0 = time.monotonic()

    def probe() -> dict[str, Any] | None:
        obj = rest.get(KIND, namespace, name)
        found = condition(obj, "Degraded") if obj is not None else None
        return dict(found) if found and found.get("status") == "True" and found.get("reason") == "FailedCreate" \
            else None

    degraded = wait_for(f"{name} Degraded FailedCreate", probe, timeout=REFUSED_WITHIN_S, interval=0.5,
                        operator=operator)
    return degraded, time.monotonic() - t0


@pytest.mark.parametrize(("name", "spec", "refused_kind"), [
    ("root", {**CPU_SPEC, "serving": {**CPU_SPEC["serving"], "securityContext": ROOT_CONTEXT}}, "Deployment"),
    ("root-cached", {**CPU_SPEC, "serving": {**CPU_SPEC["serving"], "securityContext": ROOT_CONTEXT},
                     "storage": {"modelCache": {}}}, "Job"),
], ids=["serving-deployment", "download-job"])
def test_a_spec_forced_to_root_turns_degraded_within_a_minute_with_the_admission_message(
        rest: Rest, operator: OperatorProcess, restricted_namespace: str, name: str, spec: dict[str, Any],
        refused_kind: str, record_property: Callable[[str, object], None]) -> None:
    create_g4d(rest, g4d(name, restricted_namespace, spec))
    degraded, seconds = _refused(rest, restricted_namespace, name, operator)
    record_property(f"refused_{refused_kind.lower()}_to_degraded_s", round(seconds, 2))
    print(f"\n{refused_kind} pods refused -> Degraded in {seconds:.1f}s: {degraded['message']}", file=sys.stderr)
    message = str(degraded["message"])
    target = name if refused_kind == "Deployment" else f"{name}-download"
    assert message.startswith(f"{refused_kind} {target} cannot create its pods: pods ")
    assert 'is forbidden: violates PodSecurity "restricted:latest"' in message
    assert "runAsNonRoot != true" in message and "runAsUser=0" in message
    assert "the namespace enforces a Pod Security level these pods do not meet" in message
    obj = rest.get(KIND, restricted_namespace, name)
    assert obj is not None and obj["status"]["phase"] == "Degraded"
    warnings = [e for e in rest.events_for(restricted_namespace, name)
                if e.get("type") == "Warning" and e.get("reason") == "FailedCreate"]
    assert warnings and "violates PodSecurity" in warnings[0]["message"]


NETWORK_POLICIES = "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies/{name}"


def test_the_network_policy_is_applied_and_pruned_by_the_real_server(rest: Rest, operator: OperatorProcess,
                                                                    e2e_namespace: str) -> None:
    """The rendered NetworkPolicy is valid for the server (server-side apply, strict field validation) and goes
    when the spec turns it off."""
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    create_g4d(rest, g4d("fenced", e2e_namespace, {**CPU_SPEC, "networkPolicy": {"enabled": True,
                                                                                 "ingressFrom": [peer]}}))
    path = NETWORK_POLICIES.format(namespace=e2e_namespace, name="fenced")

    def policy() -> dict[str, Any] | None:
        try:
            return rest.request("GET", path)
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    found = wait_for("the NetworkPolicy", policy, operator=operator)
    assert found["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "fenced"
    assert peer in found["spec"]["ingress"][0]["from"]
    assert found["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8000}]
    rest.patch(KIND, e2e_namespace, "fenced", {"spec": {"networkPolicy": {"enabled": False}}})
    wait_for("the NetworkPolicy pruned", lambda: policy() is None or None, operator=operator)
