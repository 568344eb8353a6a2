"""spec.routing.inferencePool on the real API server, with the operator running as the chart's ServiceAccount with
routing.enabled (its least-privilege role: `bind` on the picker's ClusterRole, none of the picker's verbs).

The InferencePool (gateway-api-inference-extension) and HTTPRoute (gateway-api) CRDs are the published ones from
the release modules (tests/e2e/routing_crds.py). Nothing runs pods here: the test plays the kubelet for the
endpoint picker's pod (its Ready condition) and the Gateway for the pool's status.parents.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client import ApiException

from gemma4_operator.api import KIND
from tests.e2e.controlplane import ControlPlane
from tests.e2e.routing_crds import routing_crd
from tests.e2e.test_operator_e2e import (
    ACCELERATORS,
    CRD_PATH,
    RBAC_PATH,
    ChartIdentity,
    Obj,
    OperatorProcess,
    Rest,
    condition,
    g4d,
    install_chart_identity,
    remove_chart_identity,
    render_chart,
    wait_for,
    wait_settled,
)
from tests.packaging.chart import is_endpoint_picker_role

pytestmark = pytest.mark.e2e

ROUTING_PATHS = {
    "InferencePool": ("inference.networking.k8s.io/v1", "inferencepools"),
    "HTTPRoute": ("gateway.networking.k8s.io/v1", "httproutes"),
    "ConfigMap": ("v1", "configmaps"),
    "ServiceAccount": ("v1", "serviceaccounts"),
    "RoleBinding": ("rbac.authorization.k8s.io/v1", "rolebindings"),
}
STANDALONE_CHILDREN = {("InferencePool", "chat"), ("Deployment", "chat-epp"), ("Service", "chat-epp"),
                       ("Service", "chat-router"), ("ConfigMap", "chat-epp"), ("ServiceAccount", "chat-epp"),
                       ("RoleBinding", "chat-epp")}
SPEC: Obj = {"model": {"variant": "e2b"}, "accelerator": {"type": "cpu"}, "serving": {"maxModelLen": 4096},
             "replicas": 2, "routing": {"inferencePool": {}}}
GATEWAY_REF = {"name": "inference-gateway"}


@pytest.fixture(scope="module")
def chart_identity(control_plane: ControlPlane, rest: Rest, operator_namespace: str, helm_home: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartIdentity]:
    """The chart's identity with routing.enabled, and the picker's ClusterRole the chart ships (not bound by it)."""
    assert operator_namespace  # its ServiceAccount goes there
    objects = render_chart(helm_home, "--set", f"operator.accelerators={{{ACCELERATORS}}}",
                           "--set", "routing.enabled=true")
    ident = install_chart_identity(control_plane, rest, objects, tmp_path_factory.mktemp("identity"))
    epp_role = next(o for o in objects if o["kind"] == "ClusterRole" and is_endpoint_picker_role(o))
    rest.post(f"{RBAC_PATH}/clusterroles", epp_role)
    ident.created.append(f"{RBAC_PATH}/clusterroles/{epp_role['metadata']['name']}")
    assert any(a.startswith("--epp-cluster-role=") for a in ident.args)
    yield ident
    remove_chart_identity(rest, ident)


@pytest.fixture(scope="module", autouse=True)
def routing_kinds(rest: Rest) -> None:
    rest.kind_paths.update(ROUTING_PATHS)


def _established(rest: Rest, name: str) -> bool:
    conditions = (rest.request("GET", f"{CRD_PATH}/{name}").get("status") or {}).get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.fixture(scope="module")
def routing_crds(rest: Rest, operator: OperatorProcess) -> Iterator[None]:
    """The published CRDs installed; the operator restarted so that its startup discovery sees them (a running
    one looks again within a minute: controller.routing.RECHECK_S)."""
    names = []
    for crd_name in ("inferencepools", "httproutes"):
        crd = routing_crd(crd_name)
        rest.post(CRD_PATH, crd)
        names.append(crd["metadata"]["name"])
    for name in names:
        wait_for(f"CRD {name} established", functools.partial(_established, rest, name))
    operator.restart()
    yield
    operator.stop()  # before the CRDs go: a create refused by a terminating CRD is no RBAC denial to report
    for name in names:
        rest.delete_path(f"{CRD_PATH}/{name}")


def _routing_ready(rest: Rest, namespace: str, reason: str, operator: OperatorProcess) -> Obj:
    def probe() -> Obj | None:
        obj = rest.get(KIND, namespace, "chat")
        c = condition(obj, "RoutingReady") if obj else None
        return obj if c is not None and c.get("reason") == reason else None

    return wait_for(f"RoutingReady {reason}", probe, operator=operator)


def _live(rest: Rest, namespace: str, kind: str, name: str) -> Obj | None:
    return rest.get(kind, namespace, name)


def _routing_children(rest: Rest, namespace: str) -> set[tuple[str, str]]:
    found = set()
    for kind in (*ROUTING_PATHS, "Deployment", "Service"):
        try:
            listed = rest.objects(kind, namespace, "app.kubernetes.io/managed-by=gemma4-operator")
        except ApiException as err:
            if err.status != 404:  # a kind whose CRD is not installed
                raise
            listed = []
        found |= {(kind, obj["metadata"]["name"]) for obj in listed}
    return found - {("Deployment", "chat"), ("Service", "chat")}


def _play_kubelet_for_the_picker(rest: Rest, namespace: str, operator: OperatorProcess) -> None:
    """The picker's pod (made by the ReplicaSet controller; nothing runs it here) reported Ready."""
    pod = wait_for("the picker's pod", lambda: next(iter(rest.objects(
        "Pod", namespace, "app.kubernetes.io/name=gemma4-epp")), None), operator=operator)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = [{"type": t, "status": "True", "lastTransitionTime": now}
             for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")]
    rest.patch("Pod", namespace, pod["metadata"]["name"], {"status": {"phase": "Running", "conditions": ready}},
               subresource="status")


def _versions(rest: Rest, namespace: str) -> dict[tuple[str, str], str]:
    out = {}
    for kind in (*ROUTING_PATHS, "Deployment", "Service", KIND):
        for obj in rest.objects(kind, namespace):
            out[(kind, obj["metadata"]["name"])] = obj["metadata"]["resourceVersion"]
    return out


def test_without_the_crd_routing_is_refused_and_the_model_serves(rest: Rest, operator: OperatorProcess,
                                                                   e2e_namespace: str) -> None:
    rest.create(g4d("chat", e2e_namespace, SPEC))
    obj = _routing_ready(rest, e2e_namespace, "InferencePoolNotInstalled", operator)
    ready = condition(obj, "RoutingReady")
    assert ready is not None and ready["status"] == "False"
    assert "kubectl apply -f https://github.com/kubernetes-sigs/gateway-api-inference-extension/releases/" \
           "download/v1.5.0/manifests.yaml" in ready["message"]
    assert condition(obj, "Planned")["status"] == "True"  # type: ignore[index]
    assert obj["status"]["endpoint"] == f"http://chat.{e2e_namespace}.svc:8000/v1"
    assert _live(rest, e2e_namespace, "Deployment", "chat") is not None
    assert _live(rest, e2e_namespace, "Service", "chat") is not None
    assert _routing_children(rest, e2e_namespace) == set()


@pytest.mark.usefixtures("routing_crds")
def test_standalone_children_are_created_repaired_and_deleted(rest: Rest, operator: OperatorProcess,
                                                              e2e_namespace: str) -> None:
    rest.create(g4d("chat", e2e_namespace, SPEC))
    wait_for("the routing children", lambda: _routing_children(rest, e2e_namespace) == STANDALONE_CHILDREN or None,
             operator=operator)
    # the RoleBinding passed the escalation check on `bind` alone: the operator holds no InferenceObjective verbs
    binding = _live(rest, e2e_namespace, "RoleBinding", "chat-epp")
    assert binding is not None and binding["roleRef"]["name"].endswith("-epp")
    _routing_ready(rest, e2e_namespace, "EndpointPickerNotReady", operator)

    _play_kubelet_for_the_picker(rest, e2e_namespace, operator)
    obj = _routing_ready(rest, e2e_namespace, "Routing", operator)
    assert obj["status"]["endpoint"] == f"http://chat-router.{e2e_namespace}.svc:8081/v1"

    pool_uid = _live(rest, e2e_namespace, "InferencePool", "chat")["metadata"]["uid"]  # type: ignore[index]
    rest.delete("InferencePool", e2e_namespace, "chat")
    wait_for("the InferencePool recreated", lambda: ((p := _live(rest, e2e_namespace, "InferencePool", "chat"))
             is not None and p["metadata"]["uid"] != pool_uid) or None, operator=operator)
    config = _live(rest, e2e_namespace, "ConfigMap", "chat-epp")["data"]  # type: ignore[index]
    rest.patch("ConfigMap", e2e_namespace, "chat-epp", {"data": {"epp.yaml": "edited: true\n"}})
    wait_for("the picker's config reverted", lambda: (_live(rest, e2e_namespace, "ConfigMap", "chat-epp") or {})
             .get("data") == config or None, operator=operator)

    wait_settled(rest, operator)
    before = _versions(rest, e2e_namespace)
    time.sleep(3)
    assert _versions(rest, e2e_namespace) == before, "writes while nothing changed"

    rest.patch(KIND, e2e_namespace, "chat", {"spec": {"routing": {"inferencePool": None}}})
    wait_for("the routing children deleted", lambda: _routing_children(rest, e2e_namespace) == set() or None,
             operator=operator)
    obj = wait_for("RoutingReady removed", lambda: ((o := rest.get(KIND, e2e_namespace, "chat")) is not None
                   and condition(o, "RoutingReady") is None and o) or None, operator=operator)
    assert obj["status"]["endpoint"] == f"http://chat.{e2e_namespace}.svc:8000/v1"
    assert _live(rest, e2e_namespace, "Deployment", "chat") is not None


def _gateway_writes(rest: Rest, namespace: str, accepted: str) -> None:
    """What a Gateway implementation writes on the pool it routes to (InferencePool v1 status.parents)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    conditions = [{"type": "Accepted", "status": accepted, "reason": "Accepted" if accepted == "True" else
                   "NotSupportedByParent", "message": "test gateway", "lastTransitionTime": now},
                  {"type": "ResolvedRefs", "status": "True", "reason": "ResolvedRefs", "message": "",
                   "lastTransitionTime": now}]
    rest.patch("InferencePool", namespace, "chat", {"status": {"parents": [{
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": GATEWAY_REF["name"],
                      "namespace": namespace},
        "controllerName": "example.com/test-gateway", "conditions": conditions}]}}, subresource="status")


@pytest.mark.usefixtures("routing_crds")
def test_a_gateways_status_write_moves_routing_ready(rest: Rest, operator: OperatorProcess,
                                                     e2e_namespace: str) -> None:
    spec: Any = {**SPEC, "routing": {"inferencePool": {"mode": "gateway", "gatewayRef": GATEWAY_REF}}}
    rest.create(g4d("chat", e2e_namespace, spec))
    route = wait_for("the HTTPRoute", lambda: _live(rest, e2e_namespace, "HTTPRoute", "chat"), operator=operator)
    assert route["spec"]["rules"][0]["backendRefs"][0]["kind"] == "InferencePool"
    assert _live(rest, e2e_namespace, "Service", "chat-router") is None
    _play_kubelet_for_the_picker(rest, e2e_namespace, operator)
    _routing_ready(rest, e2e_namespace, "WaitingForGateway", operator)

    _gateway_writes(rest, e2e_namespace, "True")
    obj = _routing_ready(rest, e2e_namespace, "Accepted", operator)
    assert condition(obj, "RoutingReady")["status"] == "True"  # type: ignore[index]
    _gateway_writes(rest, e2e_namespace, "False")
    obj = _routing_ready(rest, e2e_namespace, "GatewayNotAccepted", operator)
    assert "NotSupportedByParent" in condition(obj, "RoutingReady")["message"]  # type: ignore[index]


@pytest.mark.usefixtures("routing_crds")
def test_without_bind_the_server_refuses_the_pickers_binding(
        control_plane: ControlPlane, rest: Rest, chart_identity: ChartIdentity, e2e_namespace: str) -> None:
    """The control: the operator's own rules less `bind` cannot create the RoleBinding (the API server's
    escalation check), so the tests above passed through `bind`, not through holding the picker's verbs."""
    role = {**chart_identity.cluster_role, "metadata": {"name": "gemma4-e2e-no-bind"},
            "rules": [r for r in chart_identity.cluster_role["rules"] if "bind" not in r["verbs"]]}
    rest.post(f"{RBAC_PATH}/clusterroles", role)
    sa = "no-bind"
    try:
        rest.post(f"/api/v1/namespaces/{e2e_namespace}/serviceaccounts", {"metadata": {"name": sa}})
        rest.post(f"{RBAC_PATH}/namespaces/{e2e_namespace}/rolebindings", {
            "metadata": {"name": "no-bind"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "gemma4-e2e-no-bind"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": e2e_namespace}]})
        token = control_plane.service_account_token(e2e_namespace, sa, create=False)
        epp_role = next(a.split("=", 1)[1] for a in chart_identity.args if a.startswith("--epp-cluster-role="))
        binding = {"metadata": {"name": "picker"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": epp_role},
                   "subjects": [{"kind": "ServiceAccount", "name": "picker", "namespace": e2e_namespace}]}
        with control_plane.api_client(token=token) as api, pytest.raises(ApiException) as refused:
            Rest(api, "policy/v1").post(f"{RBAC_PATH}/namespaces/{e2e_namespace}/rolebindings", binding)
        assert refused.value.status == 403, refused.value.body
        assert "attempting to grant RBAC permissions not currently held" in str(refused.value.body), \
            refused.value.body
    finally:
        rest.delete_path(f"{RBAC_PATH}/clusterroles/gemma4-e2e-no-bind")
